"""numba-cuda's tiled kernels with the GPU's tile sizes, against float64 oracles.

The convolution tests run the kernels with ``launch.CONFIG``, which is tiny under the simulator;
here each tiled kernel also runs once through its factory with ``launch.GPU_CONFIG.gemm_tile``
(256-thread blocks), on shapes of one or two blocks, so that the index arithmetic of the real
tile sizes is exercised too. Runs in the process emulating numba-cuda
(``NUMBA_ENABLE_CUDASIM=1``) and on a GPU; other processes skip it, saying why.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry

from . import naive
from .devices import emulated_subset

pytestmark = pytest.mark.device("numba-cuda")

#: The GPU-tile tests below take both dtypes on a GPU; the simulator (256 Python threads a
#: block) takes one each, alternating, so that float32 and float64 both run through the GPU
#: tile's GEMM, implicit GEMM and Winograd kernels (tests/test_conv_kernels.py runs both
#: dtypes through every algorithm with the simulator's tiles).
DTYPES = ["float32", "float64"]


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


@pytest.mark.parametrize("dtype", emulated_subset(DTYPES, {1}))
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
    dimension (k = 21: two steps of the simulator's 16-deep tiles, the last partial), every
    combination of transposes."""
    a = rng.standard_normal((11, 21))
    b = rng.standard_normal((21, 10))
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


@pytest.mark.parametrize("dtype", emulated_subset(DTYPES, {0}))
def test_implicit_gemm_forward_gpu_tile(be, igemm, rng, dtype):
    """M = 2*8*5 = 80 output pixels (two 64-row tiles), K = 27 (four 8-deep steps, the last
    partial), O = 5."""
    g, x, w, b, _, ref = conv_problem(rng, dtype, (2, 8, 5, 3), (3, 3, 3, 5), 1, "same")
    y = igemm.forward(be, be.asarray(x), be.asarray(w), be.asarray(b), g, "relu", gpu_tile())
    assert_close(be.to_host(y), ref["y"], dtype, "implicit GEMM forward")


@pytest.mark.parametrize("dtype", emulated_subset(DTYPES, {1}))
def test_implicit_gemm_backward_data_gpu_tile(be, igemm, rng, dtype):
    """Stride 2, asymmetric explicit padding: M = 2*9*4 = 72 input pixels (two tiles),
    K = 3*3*4 = 36, C = 3."""
    g, _, w, _, dy, ref = conv_problem(rng, dtype, (2, 9, 4, 3), (3, 3, 3, 4), 2,
                                       ((1, 2), (0, 1)))
    dx = igemm.backward_data(be, be.asarray(dy), be.asarray(w), g, gpu_tile())
    assert_close(be.to_host(dx), ref["dx"], dtype, "implicit GEMM backward-data")


@pytest.mark.parametrize("dtype", emulated_subset(DTYPES, {0}))
def test_implicit_gemm_backward_weight_gpu_tile(be, igemm, rng, dtype):
    """Dilation 2: K = 27 rows (one tile), the reduction over M = 2*7*8 = 112 pixels split in
    two slices (two blocks)."""
    g, x, _, _, dy, ref = conv_problem(rng, dtype, (2, 7, 8, 3), (3, 3, 3, 2), 1, "same", 2)
    dw = igemm.backward_weight(be, be.asarray(x), be.asarray(dy), g, gpu_tile(), splits=2)
    assert_close(be.to_host(dw), ref["dw"], dtype, "implicit GEMM backward-weight")


# -- Winograd: transforms against float64 ones, the GEMM stage with the GPU tile ---------------


@pytest.mark.parametrize("m, dtype", emulated_subset([(m, dt) for m in (2, 4) for dt in DTYPES],
                                                    {0, 3}))
def test_winograd_stages_gpu_tile(be, rng, m, dtype):
    """The transform kernels against the matrices of fastconv.winograd applied in float64, and
    the GEMM stage ``M[p] = V[p]^T U[p]`` with the GPU tile on two of the alpha*alpha positions
    (one block each; T tiles and C channels both partial tiles). The full pipeline is checked
    against the convolution oracle by tests/test_conv_kernels.py."""
    from fastconv import winograd
    from fastconv.backends.numba_cuda import conv_winograd, gemm, launch

    t = winograd.TRANSFORMS["winograd" if m == 2 else "winograd4"]
    g, x, w, _, _, _ = conv_problem(rng, dtype, (2, 9, 10, 3), (3, 3, 3, 5), 1,
                                    ((1, 2), (0, 1)))
    th, tw = winograd.tile_counts(g.oh, g.ow, m)
    a = t.alpha
    # float64 oracle of the transforms: V[p, c, tile], U[p, c, o]
    xp = np.pad(x.astype(np.float64), ((0, 0), (g.pt, th * m + 2 - g.h - g.pt),
                                       (g.pl, tw * m + 2 - g.w - g.pl), (0, 0)))
    patches = np.stack([xp[:, i * m:i * m + a, j * m:j * m + a, :] for i in range(th)
                        for j in range(tw)], axis=1)  # (n, tiles, a, a, c)
    v_ref = np.einsum("ik,ntklc,jl->ijcnt", t.BT, patches, t.BT).reshape(a * a, g.c, -1)
    u_ref = winograd.transform_filter(w.astype(np.float64), t).reshape(a * a, g.c, g.o)

    u = conv_winograd.filter_transform(be, be.asarray(w), m)
    assert_close(be.to_host(u), u_ref, dtype, "filter transform")
    v = be.empty(v_ref.shape, dtype)
    conv_winograd.input_transform_kernel(m)[launch.blocks_for(v_ref.shape[2] * g.c)](
        dtype, be.asarray(x), launch.geometry(g.astuple()), np.int32(th), np.int32(tw), v)
    assert_close(be.to_host(v), v_ref, dtype, "input transform")

    pos = [0, a * a - 1]
    mm = gemm.batched_matmul(be, be.device(v[pos]), be.device(u[pos]), trans_a=True,
                             tile=launch.GPU_CONFIG.gemm_tile)
    assert_close(be.to_host(mm), np.einsum("pct,pco->pto", v_ref[pos], u_ref[pos]), dtype,
                 "GEMM stage")


@pytest.mark.parametrize("algo", ["direct", "im2col", "winograd", "winograd4"])
def test_conv_launchers_refuse_bad_operands(be, algo):
    """The launchers check what the kernels would otherwise read out of bounds."""
    g = conv_geometry((1, 4, 4, 2), (3, 3, 2, 3), 1, "same")
    x, w = be.asarray(np.ones(g.x_shape)), be.asarray(np.ones(g.w_shape))
    with pytest.raises(TypeError, match="one dtype"):
        be.conv2d_forward(x, be.asarray(np.ones(g.w_shape, np.float32)), None, g, algo)
    with pytest.raises(ValueError, match=r"shape \(1, 4, 4, 3\) where the geometry expects"):
        be.conv2d_forward(be.asarray(np.ones((1, 4, 4, 3))), w, None, g, algo)
    with pytest.raises(ValueError, match=r"shape \(2,\) where the geometry expects \(3,\)"):
        be.conv2d_forward(x, w, be.asarray(np.ones(2)), g, algo)
    with pytest.raises(TypeError, match="float32 or float64"):
        be.conv2d_backward_weight(be.asarray(np.ones(g.x_shape, np.int32)),
                                  be.asarray(np.ones(g.y_shape, np.int32)), g, algo)


def test_winograd_kernel_refuses_other_geometries(be):
    from fastconv.backends.numba_cuda import conv_winograd

    g = conv_geometry((1, 6, 6, 2), (3, 3, 2, 2), 2, "same")
    x, w = be.asarray(np.ones(g.x_shape)), be.asarray(np.ones(g.w_shape))
    with pytest.raises(ValueError, match="stride 1 and dilation 1 only"):
        conv_winograd.forward(be, x, w, be.zeros((2,), x.dtype), g, "linear", 2)
