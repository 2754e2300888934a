"""numba-cuda's tiled kernels with the GPU's tile sizes, against float64 oracles.

The convolution tests run the kernels with ``launch.CONFIG``, which is tiny under the simulator;
here each tiled kernel also runs once through its factory with ``launch.GPU_CONFIG.gemm_tile``
(256-thread blocks), on shapes of one or two blocks, so that the index arithmetic of the real
tile sizes is exercised too. Runs in the emulated device process and on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv

pytestmark = pytest.mark.device


@pytest.fixture
def be():
    with fastconv.use_backend("numba-cuda") as backend:
        yield backend


@pytest.fixture
def cuda_modules():
    from fastconv.backends.numba_cuda import gemm, launch

    return gemm, launch


def assert_close(got, want, dtype, what=""):
    rtol = 1e-12 if dtype == "float64" else 1e-5
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_gpu_tile(be, cuda_modules, rng, dtype):
    """Two 64-row blocks, one partial in rows, columns and depth (k = 13: two 8-deep steps),
    A transposed, B's batch of 1 broadcast over a batch of 2."""
    gemm, launch = cuda_modules
    tile = launch.GPU_CONFIG.gemm_tile
    a = rng.standard_normal((2, 13, 70)).astype(dtype)  # (batch, k, m), used transposed
    b = rng.standard_normal((1, 13, 37)).astype(dtype)
    c = gemm.batched_matmul(be, be.asarray(a), be.asarray(b), True, False, tile)
    want = np.einsum("zkm,kn->zmn", a.astype(np.float64), b[0].astype(np.float64))
    assert str(c.dtype) == dtype
    assert_close(be.to_host(c), want, dtype, "gemm")


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False),
                                              (True, True)])
def test_matmul_transposes_several_blocks(be, rng, trans_a, trans_b):
    """The dense primitive with the launch configuration's tiles: edge tiles in every
    dimension, every combination of transposes."""
    a = rng.standard_normal((11, 9))
    b = rng.standard_normal((9, 10))
    a_in = a.T.copy() if trans_a else a
    b_in = b.T.copy() if trans_b else b
    c = be.matmul(be.asarray(a_in), be.asarray(b_in), trans_a, trans_b)
    assert_close(be.to_host(c), a @ b, "float64", "matmul")


def test_gemm_bad_operands(be, cuda_modules):
    gemm, _ = cuda_modules
    a = be.asarray(np.ones((3, 4)))
    with pytest.raises(ValueError, match="do not match"):
        gemm.matmul(be, a, be.asarray(np.ones((3, 4))), False, False)
    with pytest.raises(TypeError, match="float32 or two float64"):
        gemm.matmul(be, a, be.asarray(np.ones((4, 2), np.float32)), False, False)
    with pytest.raises(ValueError, match="2D operands"):
        gemm.matmul(be, a, be.asarray(np.ones(4)), False, False)
    with pytest.raises(ValueError, match="TM must divide BM"):
        gemm.gemm_kernel((8, 8, 4, 3, 2))


def test_gemm_variants_are_declared_once_per_tile(cuda_modules):
    gemm, launch = cuda_modules
    k = gemm.gemm_kernel(launch.GPU_CONFIG.gemm_tile)
    assert gemm.gemm_kernel(tuple(launch.GPU_CONFIG.gemm_tile)) is k
    assert launch.KERNELS[k.name] is k and k.name == "gemm_64x64x8_4x4"
    assert "64x64" in gemm.describe() or "8x8" in gemm.describe()

