"""The tiled GEMM kernel (dense layers; batched for Winograd's GEMM stage)."""


def describe() -> str:
    return "fastconv tiled GEMM (numba-cuda)"


def matmul(be, a, b, trans_a, trans_b):
    raise NotImplementedError
