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
from fastconv.geometry import conv_geometry

from . import naive

pytestmark = pytest.mark.device


@pytest.fixture
def be():
    with fastconv.use_backend("numba-cuda") as backend:
        yield backend


@pytest.fixture
def cuda_modules():
    from fastconv.backends.numba_cuda import gemm, launch

    return gemm, launch


@pytest.fixture
def igemm():
    from fastconv.backends.numba_cuda import conv_implicit_gemm

    return conv_implicit_gemm


def gpu_tile():
    from fastconv.backends.numba_cuda import launch

    return launch.GPU_CONFIG.gemm_tile


def conv_problem(rng, dtype, x_shape, w_shape, strides, padding, dilation=1):
    """Inputs rounded to ``dtype``, the geometry and the oracle's float64 answers."""
    g = conv_geometry(x_shape, w_shape, strides, padding, dilation)
    pads, s, d = (g.pt, g.pb, g.pl, g.pr), (g.sh, g.sw), (g.dh, g.dw)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    ref = {"y": naive.conv2d_forward(x, w, b, s, pads, d, "relu"),
           "dx": naive.conv2d_backward_data(dy, w, x_shape, s, pads, d),
           "dw": naive.conv2d_backward_weight(x, dy, w_shape, s, pads, d)}
    return g, x, w, b, dy, ref


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



# -- implicit GEMM with the GPU tile: one or two blocks of 256 threads per pass ------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_implicit_gemm_forward_gpu_tile(be, igemm, rng, dtype):
    """M = 2*8*5 = 80 output pixels (two 64-row tiles), K = 27 (four 8-deep steps, the last
    partial), O = 5."""
    g, x, w, b, _, ref = conv_problem(rng, dtype, (2, 8, 5, 3), (3, 3, 3, 5), 1, "same")
    y = igemm.forward(be, be.asarray(x), be.asarray(w), be.asarray(b), g, "relu", gpu_tile())
    assert_close(be.to_host(y), ref["y"], dtype, "implicit GEMM forward")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_implicit_gemm_backward_data_gpu_tile(be, igemm, rng, dtype):
    """Stride 2, asymmetric explicit padding: M = 2*9*4 = 72 input pixels (two tiles),
    K = 3*3*4 = 36, C = 3."""
    g, _, w, _, dy, ref = conv_problem(rng, dtype, (2, 9, 4, 3), (3, 3, 3, 4), 2,
                                       ((1, 2), (0, 1)))
    dx = igemm.backward_data(be, be.asarray(dy), be.asarray(w), g, gpu_tile())
    assert_close(be.to_host(dx), ref["dx"], dtype, "implicit GEMM backward-data")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_implicit_gemm_backward_weight_gpu_tile(be, igemm, rng, dtype):
    """Dilation 2: K = 27 rows (one tile), the reduction over M = 2*7*8 = 112 pixels split in
    two slices (two blocks)."""
    g, x, _, _, dy, ref = conv_problem(rng, dtype, (2, 7, 8, 3), (3, 3, 3, 2), 1, "same", 2)
    dw = igemm.backward_weight(be, be.asarray(x), be.asarray(dy), g, gpu_tile(), splits=2)
    assert_close(be.to_host(dw), ref["dw"], dtype, "implicit GEMM backward-weight")
