"""Pooling on every backend against the naive oracle: the 2D primitives called directly, and the
1D and global pooling ops built on them (through ``fastconv.functional``)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv.geometry import pool_geometry
from fastconv.ops.base import COMPUTE_DTYPES

from . import naive

# (name, x_shape, pool, strides, padding)
CASES = [
    ("2x2-valid", (2, 6, 6, 3), (2, 2), None, "valid"),
    ("2x2-valid-odd", (2, 7, 5, 2), (2, 2), None, "valid"),
    ("2x2-same-odd", (2, 7, 5, 2), (2, 2), None, "same"),
    ("3x3-stride1-same", (1, 5, 6, 2), (3, 3), (1, 1), "same"),
    ("3x3-stride1-valid", (2, 5, 6, 1), (3, 3), (1, 1), "valid"),
    ("3x3-stride2-same", (2, 8, 7, 2), (3, 3), (2, 2), "same"),
    ("stride-larger-than-pool-valid", (1, 9, 10, 2), (2, 2), (3, 4), "valid"),
    ("stride-larger-than-pool-same", (1, 9, 10, 2), (2, 2), (3, 4), "same"),
    ("non-square-pool", (2, 6, 7, 2), (2, 3), None, "valid"),
    ("non-square-pool-same", (2, 6, 7, 2), (3, 2), (1, 2), "same"),
    ("pool-as-large-as-input", (2, 4, 5, 3), (4, 5), None, "valid"),
    ("pool-as-large-as-input-same", (2, 4, 5, 3), (4, 5), (1, 1), "same"),
    ("pool-larger-than-input-same", (1, 2, 3, 2), (4, 4), None, "same"),
    ("1x1-pool", (1, 3, 4, 2), (1, 1), (2, 1), "valid"),
    ("batch1-channel1", (1, 5, 5, 1), (2, 2), (1, 1), "valid"),
    ("4x4-stride3-same", (1, 10, 11, 2), (4, 4), (3, 3), "same"),
]
IDS = [c[0] for c in CASES]


def _strides(pool, strides):
    return pool if strides is None else strides


def _ref(case):
    name, x_shape, pool, strides, padding = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    strides = _strides(pool, strides)
    pads = naive.pool_padding(padding, x_shape, pool, strides)
    x = rng.standard_normal(x_shape)
    dy = rng.standard_normal(naive.pool_output_shape(x_shape, pool, strides, pads))
    return x, dy, strides, pads


def _dtypes(backend):
    """Both dtypes ops compute in, each of which every backend must declare: ops never consult
    ``backend.dtypes``, so a backend without one would be handed its arrays anyway (a failure
    here, never a dtype left out of the test)."""
    missing = [d for d in COMPUTE_DTYPES if d not in backend.dtypes]
    assert not missing, f"backend {backend.name!r} declares no {', '.join(missing)} support"
    return COMPUTE_DTYPES


def _rtol(dtype):
    return 1e-13 if dtype == "float64" else 1e-5


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pool_geometry_matches_oracle(case):
    _, x_shape, pool, strides, padding = case
    x, dy, s, pads = _ref(case)
    g = pool_geometry(x_shape, pool, strides, padding)
    assert (g.pt, g.pb, g.pl, g.pr) == pads
    assert g.y_shape == dy.shape
    assert (g.sh, g.sw) == tuple(s)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool2d_matches_oracle(backend, case):
    _, x_shape, pool, strides, padding = case
    x, dy, s, pads = _ref(case)
    g = pool_geometry(x_shape, pool, strides, padding)
    y_ref, argmax_ref = naive.max_pool2d_forward(x, pool, s, pads)
    dx_ref = naive.max_pool2d_backward(x, dy, pool, s, pads)
    for dtype in _dtypes(backend):
        xd, dyd = backend.asarray(x, dtype=dtype), backend.asarray(dy, dtype=dtype)
        y, argmax = backend.max_pool2d_forward(xd, g)
        assert str(y.dtype) == dtype
        # max pooling only selects values: exact in any dtype
        np.testing.assert_array_equal(backend.to_host(y), y_ref.astype(dtype))
        np.testing.assert_array_equal(backend.to_host(argmax), argmax_ref)
        dx = backend.max_pool2d_backward(dyd, argmax, g)
        assert str(dx.dtype) == dtype
        np.testing.assert_allclose(backend.to_host(dx), dx_ref, rtol=_rtol(dtype),
                                   atol=_rtol(dtype))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_avg_pool2d_matches_oracle(backend, case):
    _, x_shape, pool, strides, padding = case
    x, dy, s, pads = _ref(case)
    g = pool_geometry(x_shape, pool, strides, padding)
    y_ref = naive.avg_pool2d_forward(x, pool, s, pads)
    dx_ref = naive.avg_pool2d_backward(dy, x_shape, pool, s, pads)
    for dtype in _dtypes(backend):
        y = backend.avg_pool2d_forward(backend.asarray(x, dtype=dtype), g)
        assert str(y.dtype) == dtype
        np.testing.assert_allclose(backend.to_host(y), y_ref, rtol=_rtol(dtype),
                                   atol=_rtol(dtype))
        dx = backend.avg_pool2d_backward(backend.asarray(dy, dtype=dtype), g)
        assert str(dx.dtype) == dtype
        np.testing.assert_allclose(backend.to_host(dx), dx_ref, rtol=_rtol(dtype),
                                   atol=_rtol(dtype))


def test_max_pool_ties_pick_the_first_maximum(backend):
    """Every value equal: the first tap of each window wins and gets the whole gradient."""
    x = np.ones((1, 4, 4, 1))
    g = pool_geometry(x.shape, (2, 2), (1, 1), "valid")
    y, argmax = backend.max_pool2d_forward(backend.asarray(x), g)
    np.testing.assert_array_equal(backend.to_host(argmax), np.zeros((1, 3, 3, 1)))
    dx = backend.max_pool2d_backward(backend.asarray(np.ones((1, 3, 3, 1))), argmax, g)
    expected = np.zeros((1, 4, 4, 1))
    expected[0, :3, :3, 0] = 1
    np.testing.assert_array_equal(backend.to_host(dx), expected)


def test_max_pool_propagates_nan(backend):
    """A NaN in a window is its maximum (as in PyTorch) and takes the window's gradient."""
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    x[0, 1, 0, 0] = np.nan  # window (0, 0), tap 2
    x[0, 3, 3, 0] = np.nan  # window (1, 1), tap 3, after that window's larger values
    g = pool_geometry(x.shape, (2, 2), None, "valid")
    y, argmax = backend.max_pool2d_forward(backend.asarray(x), g)
    y, argmax = backend.to_host(y), backend.to_host(argmax)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 1, 1, 0])
    assert y[0, 0, 1, 0] == 7 and y[0, 1, 0, 0] == 13
    assert argmax[0, 0, 0, 0] == 2 and argmax[0, 1, 1, 0] == 3
    dx = backend.to_host(backend.max_pool2d_backward(
        backend.asarray(np.ones((1, 2, 2, 1))), backend.asarray(argmax), g))
    assert dx[0, 1, 0, 0] == 1 and dx[0, 3, 3, 0] == 1 and dx.sum() == 4


def test_max_pool_padding_never_wins(backend):
    """All-negative input with 'same' padding: zeros in the padding must not be picked."""
    x = -1.0 - np.arange(2 * 5 * 5 * 2, dtype=np.float64).reshape(2, 5, 5, 2)
    g = pool_geometry(x.shape, (3, 3), (2, 2), "same")
    assert g.pt + g.pb + g.pl + g.pr > 0
    y, _ = backend.max_pool2d_forward(backend.asarray(x), g)
    y = backend.to_host(y)
    assert (y < 0).all()
    np.testing.assert_array_equal(y, naive.max_pool2d_forward(x, (3, 3), (2, 2),
                                                              (g.pt, g.pb, g.pl, g.pr))[0])


def test_avg_pool_same_counts_only_in_bounds_elements(backend):
    """Keras/TF: a corner window of 'same' padding averages only the pixels it covers."""
    x = np.ones((1, 3, 3, 1))
    y = F.avg_pool2d(x, (3, 3), (1, 1), "same").numpy()
    np.testing.assert_allclose(y, np.ones((1, 3, 3, 1)), rtol=1e-15)
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    y = F.avg_pool2d(x, (2, 2), (2, 2), "same").numpy()
    np.testing.assert_allclose(y[0, :, :, 0], [[2.0, 3.5], [6.5, 8.0]], rtol=1e-15)


# -- functional ops built on the 2D primitives ---------------------------------------------------


@pytest.mark.parametrize("op, pool", [("max", True), ("avg", False)], ids=["max", "avg"])
@pytest.mark.parametrize("steps, size, stride, padding", [
    (7, 2, None, "valid"), (7, 2, None, "same"), (8, 3, 1, "same"), (9, 3, 2, "valid"),
    (5, 5, 1, "valid"), (6, 2, 4, "same"),
])
def test_pool1d_matches_oracle(backend, rng, op, pool, steps, size, stride, padding):
    x = rng.standard_normal((2, steps, 3))
    fn = F.max_pool1d if pool else F.avg_pool1d
    y = fn(x, size, stride, padding)
    s = size if stride is None else stride
    x4 = x[:, None]  # (N, 1, steps, C): 1D pooling is 2D pooling over a 1-pixel-high image
    pads = naive.pool_padding(padding, x4.shape, (1, size), (1, s))
    if pool:
        ref = naive.max_pool2d_forward(x4, (1, size), (1, s), pads)[0]
    else:
        ref = naive.avg_pool2d_forward(x4, (1, size), (1, s), pads)
    assert y.shape == (2, ref.shape[2], 3)
    np.testing.assert_allclose(y.numpy(), ref[:, 0], rtol=1e-13, atol=1e-13)


def test_global_avg_pool2d(backend, rng):
    x = rng.standard_normal((3, 5, 4, 2))
    y = F.global_avg_pool2d(x)
    assert y.shape == (3, 2)
    np.testing.assert_allclose(y.numpy(), x.mean(axis=(1, 2)), rtol=1e-13)


def test_functional_pooling_matches_primitives(backend, rng):
    x = rng.standard_normal((2, 7, 6, 3))
    got = F.max_pool2d(x, (3, 2), (2, 1), "same").numpy()
    pads = naive.pool_padding("same", x.shape, (3, 2), (2, 1))
    np.testing.assert_array_equal(got, naive.max_pool2d_forward(x, (3, 2), (2, 1), pads)[0])
    got = F.avg_pool2d(x).numpy()  # Keras defaults: 2x2 pool, strides = pool, valid
    np.testing.assert_allclose(got, naive.avg_pool2d_forward(x, (2, 2), (2, 2)), rtol=1e-13)


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.max_pool2d(np.ones((1, 3, 3, 1)), (4, 4)), ValueError,
     r"max_pool2d: the pool 4x4 is larger than the 3x3 input"),
    (lambda: F.avg_pool2d(np.ones((1, 3, 3, 1)), (1, 4)), ValueError, "avg_pool2d: the pool"),
    (lambda: F.max_pool2d(np.ones((3, 3, 1)), 2), ValueError, "4D NHWC"),
    (lambda: F.max_pool2d(np.ones((1, 3, 3, 1)), 0), ValueError, "pool_size must be >= 1"),
    (lambda: F.avg_pool2d(np.ones((1, 3, 3, 1)), 2, 0), ValueError, "strides must be >= 1"),
    (lambda: F.max_pool2d(np.ones((1, 3, 3, 1)), 2, padding=1), ValueError, "'valid' or 'same'"),
    (lambda: F.max_pool1d(np.ones((1, 3, 3, 1)), 2), ValueError, "3D"),
    (lambda: F.avg_pool1d(np.ones((1, 3, 2)), 4), ValueError, "larger than"),
    (lambda: F.global_avg_pool2d(np.ones((3, 3))), ValueError, "4D"),
    (lambda: F.max_pool2d(np.full((1, 3, 3, 1), "x"), 2), TypeError, "numbers"),
])
def test_pool_argument_errors(backend, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_pooling_keeps_dtype(backend):
    for dtype in backend.dtypes:
        x = np.ones((1, 4, 4, 2), dtype=dtype)
        assert str(F.max_pool2d(x).dtype) == dtype
        assert str(F.avg_pool2d(x).dtype) == dtype
    assert fastconv.get_backend() is backend
