"""numba-cuda's pooling, element-wise, normalisation and random-number kernels beyond what the
every-backend tests check: float32 ties and NaN in max pooling, inference pooling without
argmax, column sums spanning several blocks along both axes, Adam in float32 arithmetic, the
Philox generator against a Python reference and the Random123 known answer, and bad inputs.

The Philox reference and the typing check of the generator run in the main process (no GPU
needed); the kernels run in the emulated device process and on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.geometry import pool_geometry
from fastconv.utils import set_random_seed

from . import naive

_MASK = 0xFFFFFFFF


def philox_reference(c0: int, c1: int, c2: int, c3: int, k0: int, k1: int) -> list[int]:
    """Philox-4x32-10 (Salmon et al. 2011) on Python ints."""
    x = [c0, c1, c2, c3]
    for _ in range(10):
        p0, p1 = 0xD2511F53 * x[0], 0xCD9E8D57 * x[2]
        x = [(p1 >> 32) ^ x[1] ^ k0, p1 & _MASK, (p0 >> 32) ^ x[3] ^ k1, p0 & _MASK]
        k0, k1 = (k0 + 0x9E3779B9) & _MASK, (k1 + 0xBB67AE85) & _MASK
    return x


def test_philox_reference_matches_the_random123_known_answers():
    assert philox_reference(0, 0, 0, 0, 0, 0) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C,
                                                   0x9B00DBD8]
    assert philox_reference(*[_MASK] * 6) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


@pytest.mark.host_only("compiles the generator for the CPU with Numba's typing rules")
def test_philox_device_function_keeps_64_bit_unsigned_words():
    """The device function compiled by Numba (CPU target, the same typing as CUDA's) gives the
    reference words: no product overflows and nothing is widened to float."""
    import numba

    from fastconv.backends.numba_cuda import elementwise

    fn = numba.njit(elementwise.philox4x32.py_func)
    for c0, k0, k1 in [(0, 0, 0), (12345, 0xDEADBEEF, 0x01234567), (_MASK, _MASK, _MASK)]:
        got = fn(np.uint64(c0), np.uint64(0), np.uint64(k0), np.uint64(k1))
        assert [int(v) for v in got] == philox_reference(c0, 0, 0, 0, k0, k1)


# -- kernels (emulated device process, GPU) ----------------------------------------------------


@pytest.fixture
def be():
    with fastconv.use_backend("numba-cuda") as backend:
        yield backend


device = pytest.mark.device("numba-cuda")


@device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_kernel_is_philox_of_the_element_counters(be, dtype):
    """Counter i gives elements 4i..4i+3 (float32, 24 bits each) or 2i, 2i+1 (float64, 53
    bits) under the key drawn from the seeded host stream; odd sizes fill the last block."""
    from fastconv import random as fc_random

    n = 11
    set_random_seed(3)
    key = int(fc_random.host_rng().integers(0, 2**63, dtype=np.int64))
    set_random_seed(3)
    got = be.to_host(be.random_uniform((n,), dtype))
    assert got.dtype == dtype and got.shape == (n,)
    k0, k1 = key & _MASK, key >> 32
    want = []
    for c in range(-(-n // (2 if dtype == "float64" else 4))):
        w = philox_reference(c, 0, 0, 0, k0, k1)
        if dtype == "float64":
            want += [((w[0] >> 5) * 2**26 + (w[1] >> 6)) / 2**53,
                     ((w[2] >> 5) * 2**26 + (w[3] >> 6)) / 2**53]
        else:
            want += [(v >> 8) / 2**24 for v in w]
    np.testing.assert_array_equal(got, np.array(want[:n], dtype=dtype))


@device
def test_uniform_shapes_bits_and_streams(be):
    set_random_seed(5)
    a = be.to_host(be.random_uniform((3, 70), np.float64))
    b = be.to_host(be.random_uniform((3, 70), "float32"))
    assert a.shape == b.shape == (3, 70)
    assert (a >= 0).all() and (a < 1).all() and (b >= 0).all() and (b < 1).all()
    assert np.array_equal(a * 2**53, np.floor(a * 2**53))
    assert np.array_equal(b * np.float32(2**24), np.floor(b * np.float32(2**24)))
    assert len(np.unique(a)) == a.size  # 53-bit values: no repeats in 210 draws
    assert be.random_uniform((0,), "float32").shape == (0,)
    with pytest.raises(TypeError, match="float32 or float64"):
        be.random_uniform((3,), "int32")


@device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_float_ties_nan_and_inference(be, dtype):
    x = np.zeros((1, 4, 6, 3), dtype)
    x[0, 1, 1, 1] = np.nan  # window (0, 0), tap 4 of a 2x3 window
    x[0, 0, 3:, 2] = -np.inf
    x[0, 1, 3:, 2] = -np.inf  # window (0, 1): only -inf in channel 2
    g = pool_geometry(x.shape, (2, 3), None, "valid")
    y, argmax = be.max_pool2d_forward(be.asarray(x), g)
    y_ref, arg_ref = naive.max_pool2d_forward(np.nan_to_num(x, nan=0.0, neginf=-np.inf),
                                              (2, 3), (2, 3))
    y_ref[0, 0, 0, 1], arg_ref[0, 0, 0, 1] = np.nan, 4  # the oracle knows no NaN
    np.testing.assert_array_equal(be.to_host(y), y_ref.astype(dtype))
    np.testing.assert_array_equal(be.to_host(argmax), arg_ref)
    assert be.to_host(argmax)[0, 0, 1, 2] == 0  # only -inf: the first tap
    y_inf, none = be.max_pool2d_forward(be.asarray(x), g, with_argmax=False)
    assert none is None
    np.testing.assert_array_equal(be.to_host(y_inf), be.to_host(y))


@device
def test_global_pooling_windows_and_overlapping_backward(be, rng):
    """A whole-image window (global pooling) and overlapping windows in the gather backward."""
    x = rng.standard_normal((2, 5, 7, 3))
    g = pool_geometry(x.shape, (5, 7), None, "valid")
    y = be.to_host(be.avg_pool2d_forward(be.asarray(x), g))
    np.testing.assert_allclose(y[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-13)
    g = pool_geometry(x.shape, (3, 3), (1, 2), "same")
    pads = (g.pt, g.pb, g.pl, g.pr)
    dy = rng.standard_normal(g.y_shape)
    _, argmax = be.max_pool2d_forward(be.asarray(x), g)
    np.testing.assert_allclose(be.to_host(be.max_pool2d_backward(be.asarray(dy), argmax, g)),
                               naive.max_pool2d_backward(x, dy, (3, 3), (1, 2), pads),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(be.to_host(be.avg_pool2d_backward(be.asarray(dy), g)),
                               naive.avg_pool2d_backward(dy, x.shape, (3, 3), (1, 2), pads),
                               rtol=1e-13, atol=1e-13)


@device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_epilogue_and_batch_norm_sums_over_several_block_rows(be, rng, dtype):
    """70 rows x 6 channels: several blocks along both axes of the column-sum kernels (under
    the simulator's 4x2-thread blocks), with a channel count no block width divides."""
    from fastconv.backends.numba_cuda import elementwise

    rows, ch = 70, 6
    gx, gy = elementwise.sum_grid(rows, ch)
    if elementwise.TX < 32:  # the simulator's sizes
        assert gx > 1 and gy > 1
    dy = rng.standard_normal((rows, ch)).astype(dtype)
    out = np.maximum(rng.standard_normal((rows, ch)), 0).astype(dtype)
    dz, db = be.epilogue_backward(be.asarray(dy), be.asarray(out), "relu", True)
    want = np.where(out > 0, dy, 0)
    np.testing.assert_array_equal(be.to_host(dz), want)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(be.to_host(db), want.astype(np.float64).sum(axis=0), rtol=tol,
                               atol=tol)
    assert str(db.dtype) == dtype
    mean, var = be.batch_norm_statistics(be.asarray(dy))
    np.testing.assert_allclose(be.to_host(mean), dy.astype(np.float64).mean(axis=0), rtol=tol,
                               atol=tol)
    np.testing.assert_allclose(be.to_host(var), dy.astype(np.float64).var(axis=0), rtol=tol,
                               atol=tol)


@device
def test_bias_activation_keeps_nan_and_writes_non_contiguous_outputs(be):
    y = be.asarray(np.array([[-1.0, np.nan, 2.0], [3.0, -4.0, 0.5]], np.float32))
    out = be.bias_activation(y, be.asarray(np.float32([0.5, 1.0, -3.0])), "relu")
    assert out is y
    np.testing.assert_array_equal(be.to_host(y), np.float32([[0, np.nan, 0], [3.5, 0, 0]]))
    base = be.asarray(np.arange(12.0).reshape(3, 4))
    view = base[:, ::2]  # not contiguous: the result is written back into the view
    be.bias_activation(view, be.asarray(np.array([-5.0, -100.0])), "relu")
    np.testing.assert_array_equal(be.to_host(base)[:, ::2], [[0, 0], [0, 0], [3, 0]])
    with pytest.raises(ValueError, match=r"bias has shape \(3,\); expected \(2,\)"):
        be.bias_activation(view, be.asarray(np.ones(3)), "relu")
    with pytest.raises(ValueError, match="unknown fused activation 'tanh'"):
        be.bias_activation(view, None, "tanh")


@device
def test_adam_in_float32_arithmetic_and_its_errors(be, rng):
    p, g = rng.standard_normal(37).astype(np.float32), rng.standard_normal(37).astype(np.float32)
    m, v = (rng.standard_normal(37) ** 2).astype(np.float32), np.full(37, 0.5, np.float32)
    pd, md, vd = be.asarray(p), be.asarray(m), be.asarray(v)
    be.adam_update(pd, be.asarray(g), md, vd, 0.01, 0.9, 0.999, 1e-7)
    f = np.float32
    m2 = m + (g - m) * f(1 - 0.9)
    v2 = v + (g * g - v) * f(1 - 0.999)
    p2 = p - f(0.01) * m2 / (np.sqrt(v2) + f(1e-7))
    for got, want in ((md, m2), (vd, v2), (pd, p2)):
        assert be.to_host(got).dtype == np.float32
        np.testing.assert_allclose(be.to_host(got), want, rtol=2e-7, atol=1e-7)
    with pytest.raises(ValueError, match="m must be a C-contiguous device array"):
        be.adam_update(pd, be.asarray(g), np.zeros(37, np.float32), vd, 0.01, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match="grad has shape"):
        be.adam_update(pd, be.asarray(g[:5]), md, vd, 0.01, 0.9, 0.999, 1e-7)


@device
def test_pool_and_normalization_bad_inputs(be):
    g = pool_geometry((1, 4, 4, 2), 2)
    with pytest.raises(ValueError, match=r"max_pool2d input has shape \(1, 4, 4, 3\)"):
        be.max_pool2d_forward(be.asarray(np.ones((1, 4, 4, 3))), g)
    with pytest.raises(ValueError, match="argmax must be int32"):
        be.max_pool2d_backward(be.asarray(np.ones((1, 2, 2, 2))),
                               be.asarray(np.zeros((1, 2, 2, 2))), g)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        be.batch_norm_forward(be.asarray(np.ones((4, 3))), np.ones(2), np.ones(3), np.ones(3),
                              np.ones(3), 1e-3)
    with pytest.raises(ValueError, match="rows, channels"):
        be.batch_norm_statistics(be.asarray(np.ones(5)))
    with pytest.raises(ValueError, match="depth_radius must be >= 0"):
        be.lrn_forward(be.asarray(np.ones((2, 3))), -1, 1.0, 1.0, 0.5)
