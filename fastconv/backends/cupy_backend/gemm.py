"""Launchers of ``kernels/gemm.cu``: the dense tiled GEMM (``matmul``) and its batched form
(Winograd's GEMM stage)."""

from __future__ import annotations

from .launch import ceil_div, check_sizes, config, contiguous, i32, kernel, launch, same_dtype

SOURCE = "gemm.cu"


def describe() -> str:
    bm, bn, bk, tm, tn = config().gemm_tile
    return (f"fastconv tiled GEMM (CUDA C, {bm}x{bn}x{bk} shared-memory tiles, {tm}x{tn} "
            f"registers per thread)")


def batched(be, a, b, c, m, n, k, trans_a=False, trans_b=False, lda=None, ldb=None, ldc=None,
            stride_a=0, stride_b=0, stride_c=0, batches=1):
    """c[z] = op(a[z]) @ op(b[z]) for z < batches on C-contiguous device buffers, row-major
    matrices with leading dimensions and batch strides in elements (0 broadcasts)."""
    cfg = config()
    bm, bn = cfg.gemm_tile[:2]
    lda = lda if lda is not None else (m if trans_a else k)
    ldb = ldb if ldb is not None else (k if trans_b else n)
    ldc = ldc if ldc is not None else n
    launch(kernel(SOURCE, "gemm", c.dtype, cfg.gemm_defines()),
           (ceil_div(m, bm), ceil_div(n, bn), batches), (cfg.gemm_threads,),
           (a, b, c, *i32(m, n, k, bool(trans_a), bool(trans_b), lda, ldb, ldc, stride_a,
                          stride_b, stride_c)))


def matmul(be, a, b, trans_a, trans_b):
    """``op(a) @ op(b)`` of 2-D device arrays."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul takes 2-D arrays, got shapes {a.shape} and {b.shape}")
    same_dtype("matmul", a.dtype, b)
    a, b = contiguous(be, a), contiguous(be, b)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k2:
        raise ValueError(f"matmul: inner dimensions differ ({a.shape}{'^T' * trans_a} @ "
                         f"{b.shape}{'^T' * trans_b})")
    out = be.zeros((m, n), a.dtype) if k == 0 else be.empty((m, n), a.dtype)
    check_sizes(a, b, out)
    if k:
        batched(be, a, b, out, m, n, k, trans_a, trans_b)
    return out
