"""The cupy backend's own kernel machinery, beyond the shared suites (which run its primitives
against the oracles): the vectorised tile loads and their alignment guard, GEMM edges,
transposes and batches, split reductions, the counter-based random numbers, the Winograd
transforms compiled in from fastconv.winograd. Expected values come from NumPy in float64.

Marked ``device``: they run in the emulated run (``FASTCONV_CUPY_EMULATE=1``) and on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry
from fastconv.utils import set_random_seed

from . import naive

pytestmark = pytest.mark.device("cupy")


@pytest.fixture
def be():
    with fastconv.use_backend("cupy") as backend:
        yield backend


def address(a) -> int:
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def misaligned(be, a):
    """A device copy of ``a`` starting 1 element past a 16-byte boundary (C-contiguous)."""
    flat = be.zeros((a.size + 1,), a.dtype)
    assert address(flat) % 16 == 0
    view = flat[1:].reshape(a.shape)
    view[...] = be.asarray(a)
    assert view.flags.c_contiguous and address(view) % 16 != 0
    return view


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (9, 5, 8), (17, 13, 12), (3, 20, 7)])
def test_matmul_edges_and_transposes(be, dtype, trans_a, trans_b, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    a_in = (a.T if trans_a else a).astype(dtype)
    b_in = (b.T if trans_b else b).astype(dtype)
    got = be.to_host(be.matmul(be.asarray(np.ascontiguousarray(a_in)),
                               be.asarray(np.ascontiguousarray(b_in)), trans_a, trans_b))
    want = a @ b  # a and b hold exactly the values of a_in and b_in only in float64
    if dtype == "float32":
        want = ((a_in.T if trans_a else a_in).astype(np.float64)
                @ (b_in.T if trans_b else b_in).astype(np.float64))
    assert got.dtype == dtype and got.shape == (m, n)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-5 if dtype == "float32" else 1e-12)


def test_matmul_with_empty_inner_dimension_is_zero(be):
    got = be.to_host(be.matmul(be.asarray(np.ones((3, 0))), be.asarray(np.ones((0, 4)))))
    np.testing.assert_array_equal(got, np.zeros((3, 4)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_loads_and_their_alignment_guard(be, dtype):
    """O a multiple of the vector width: aligned weights take the float4/double2 path, the same
    weights one element off a 16-byte boundary the scalar path; both match the oracle (and so
    does the dense GEMM's B operand)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 8)).astype(dtype)
    dy = rng.standard_normal((2, 6, 5, 8)).astype(dtype)
    g = conv_geometry(x.shape, w.shape, 1, "same")
    pads = (g.pt, g.pb, g.pl, g.pr)
    want_y = naive.conv2d_forward(x, w, None, (1, 1), pads, (1, 1))
    want_dw = naive.conv2d_backward_weight(x, dy, w.shape, (1, 1), pads, (1, 1))
    tol = 1e-5 if dtype == "float32" else 1e-12
    algo = be.conv_algorithm("im2col")
    aligned = be.asarray(w), be.asarray(dy)
    assert all(address(a) % 16 == 0 for a in aligned)
    for wd, dyd in (aligned, (misaligned(be, w), misaligned(be, dy))):
        y = be.to_host(algo.forward(be.asarray(x), wd, None, g, "linear"))
        np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol * 10)
        dw = be.to_host(algo.backward_weight(be.asarray(x), dyd, g))
        np.testing.assert_allclose(dw, want_dw, rtol=tol, atol=tol * 10)
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((5, 8)).astype(dtype)
    got = be.to_host(be.matmul(be.asarray(a), misaligned(be, b)))
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=tol, atol=tol)


def test_batched_gemm_with_broadcast_operand(be):
    from fastconv.backends.cupy_backend import gemm

    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 10, 6))
    b = rng.standard_normal((6, 9))  # one B for every batch: stride 0
    c = be.empty((3, 10, 9), np.float64)
    gemm.batched(be, be.asarray(a), be.asarray(b), c, 10, 9, 6, stride_a=60, stride_b=0,
                 stride_c=90, batches=3)
    np.testing.assert_allclose(be.to_host(c), a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_backward_weight_split_over_many_blocks(be, algo):
    """More pixels than one block's chunk: the partial sums of several blocks are added."""
    from fastconv.backends.cupy_backend.launch import split

    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 9, 8, 2))
    dy = rng.standard_normal((3, 9, 8, 3))
    g = conv_geometry(x.shape, (3, 3, 2, 3), 1, "same")
    assert split(g.n * g.oh * g.ow)[1] > 1
    got = be.to_host(be.conv2d_backward_weight(be.asarray(x), be.asarray(dy), g, algo))
    want = naive.conv2d_backward_weight(x, dy, (3, 3, 2, 3), (1, 1),
                                        (g.pt, g.pb, g.pl, g.pr), (1, 1))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("dtype, bits", [("float32", 24), ("float64", 53)])
def test_random_uniform_is_seeded_and_on_the_grid(be, dtype, bits):
    set_random_seed(42)
    a = be.to_host(be.random_uniform((1000, 3), dtype))
    b = be.to_host(be.random_uniform((1000, 3), dtype))
    set_random_seed(42)
    again = be.to_host(be.random_uniform((1000, 3), dtype))
    assert a.dtype == dtype and a.shape == (1000, 3)
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, b)  # a new seed for each call
    assert a.min() >= 0 and a.max() < 1
    scaled = a.astype(np.float64) * 2.0 ** bits
    np.testing.assert_array_equal(scaled, np.floor(scaled))  # multiples of 2^-bits
    assert abs(a.mean() - 0.5) < 0.03 and abs(a.var() - 1 / 12) < 0.01
    assert len(np.unique(a)) > 2990


def test_winograd_defines_carry_the_transforms():
    from fastconv.backends.cupy_backend.conv import winograd_defines
    from fastconv.winograd import F4x4_3x3

    d = winograd_defines(F4x4_3x3)
    assert d["WINO_M"] == 4
    bt = [float(v) for v in d["WINO_BT"].strip("{}").split(",")]
    g = [float(v) for v in d["WINO_G"].strip("{}").split(",")]
    np.testing.assert_array_equal(np.reshape(bt, (6, 6)), F4x4_3x3.BT)
    np.testing.assert_array_equal(np.reshape(g, (6, 3)), F4x4_3x3.G)  # exact: repr round-trips


@pytest.mark.parametrize("algo", ["winograd", "winograd4"])
def test_winograd_refuses_other_geometries(be, algo):
    g = conv_geometry((1, 6, 6, 1), (3, 3, 1, 1), 2, "same")
    with pytest.raises(ValueError, match="3x3 convolutions with stride 1"):
        be.conv_algorithm(algo).forward(be.asarray(np.ones((1, 6, 6, 1))),
                                        be.asarray(np.ones((3, 3, 1, 1))), None, g, "linear")


def test_sizes_reach_kernels_as_int32():
    from fastconv.backends.cupy_backend.launch import i32, real

    assert all(type(v) is np.int32 for v in i32(1, True, np.int64(7)))
    with pytest.raises(ValueError, match="32-bit"):
        i32(2**31)
    assert type(real("float32", 0.5)[0]) is np.float32


@pytest.mark.parametrize("algo", ["winograd", "winograd4"])
def test_winograd_prepared_forward_transforms_the_filters_once_per_weights(be, algo,
                                                                           monkeypatch):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 7, 6, 3))
    w1, w2 = rng.standard_normal((2, 3, 3, 3, 4))
    b = rng.standard_normal(4)
    g = conv_geometry(x.shape, w1.shape, 1, "same")
    pads = (g.pt, g.pb, g.pl, g.pr)
    alg = be.conv_algorithm(algo)
    calls = []
    transform = alg.filter_transform
    monkeypatch.setattr(alg, "filter_transform", lambda w, g: calls.append(1) or transform(w, g))
    run = be.prepare_conv2d_forward(g, algo, "relu")
    xd, w1d, w2d, bd = (be.asarray(a) for a in (x, w1, w2, b))
    for w, wd, key in ((w1, w1d, 1), (w1, w1d, 1), (w2, w2d, 2)):
        got = be.to_host(run(xd, wd, bd, key))
        want = naive.conv2d_forward(x, w, b, (1, 1), pads, (1, 1), "relu")
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert len(calls) == 2  # once for key 1, once for key 2
