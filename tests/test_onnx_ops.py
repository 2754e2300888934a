"""The ops and layer options ONNX import needs: LeakyReLU, Clip, Permute (transpose), and
pooling with explicit padding, ceil_mode and count_include_pad, each against a float64 oracle
(tests/naive.py) and by central finite differences (tests/test_gradients.py's check)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F
from fastconv import Tensor
from fastconv import layers as L
from fastconv.models import Sequential
from fastconv.ops.activation import clip, leaky_relu
from fastconv.ops.pool import pool2d_plan
from fastconv.ops.shape import transpose

from . import naive
from .test_gradients import away_from_zero, check_backward, distinct


def ceil_pads(size, k, s, before, after):
    """ONNX's ceil_mode output length as padding added after the axis (written out)."""
    out = int(np.ceil((size + before + after - k) / s)) + 1
    if (out - 1) * s >= size + before:
        out -= 1
    return max((out - 1) * s + k - (size + before + after), 0)


def avg_count_include_pad(x, pool, strides, pads, ceil_mode):
    """Average pooling that counts the explicit padding as zeros but not the ceil_mode
    positions: the zero-padded input, pooled with only the ceil_mode padding (not counted)."""
    t, b, left, r = pads
    xp = naive.zero_pad2d(x, t, b, left, r)
    eb = ceil_pads(x.shape[1], pool[0], strides[0], t, b) if ceil_mode else 0
    er = ceil_pads(x.shape[2], pool[1], strides[1], left, r) if ceil_mode else 0
    return naive.avg_pool2d_forward(xp, pool, strides, (0, eb, 0, er))


POOL_CASES = [  # (x shape, pool, strides, ((top, bottom), (left, right)), ceil_mode)
    ((2, 7, 8, 3), (3, 3), (2, 2), ((1, 1), (1, 1)), True),
    ((1, 6, 5, 2), (3, 2), (2, 2), ((1, 0), (0, 1)), True),
    ((2, 5, 6, 2), (2, 2), (2, 2), ((0, 0), (0, 0)), True),
    ((1, 6, 7, 2), (3, 3), (1, 2), ((2, 1), (0, 2)), False),
]


def _pads(padding):
    (t, b), (left, r) = padding
    return t, b, left, r


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_explicit_padding_and_ceil_mode(backend, rng, case):
    shape, pool, strides, padding, ceil_mode = case
    x = distinct(rng, shape)
    t, b, left, r = _pads(padding)
    eb = ceil_pads(shape[1], pool[0], strides[0], t, b) if ceil_mode else 0
    er = ceil_pads(shape[2], pool[1], strides[1], left, r) if ceil_mode else 0
    want, _ = naive.max_pool2d_forward(x, pool, strides, (t, b + eb, left, r + er))
    got = F.max_pool2d(Tensor(backend.asarray(x)), pool, strides, padding, ceil_mode)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    check_backward(backend, lambda x_: F.max_pool2d(x_, pool, strides, padding, ceil_mode), [x])


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool_explicit_padding_ceil_mode_count_include_pad(backend, rng, case,
                                                              count_include_pad):
    shape, pool, strides, padding, ceil_mode = case
    x = rng.standard_normal(shape)
    pads = _pads(padding)
    if count_include_pad:
        want = avg_count_include_pad(x, pool, strides, pads, ceil_mode)
    else:
        t, b, left, r = pads
        eb = ceil_pads(shape[1], pool[0], strides[0], t, b) if ceil_mode else 0
        er = ceil_pads(shape[2], pool[1], strides[1], left, r) if ceil_mode else 0
        want = naive.avg_pool2d_forward(x, pool, strides, (t, b + eb, left, r + er))

    def fn(x_):
        return F.avg_pool2d(x_, pool, strides, padding, ceil_mode, count_include_pad)

    np.testing.assert_allclose(fn(Tensor(backend.asarray(x))).numpy(), want, rtol=1e-12)
    check_backward(backend, fn, [x])


def test_pooling_matches_pytorch_ceil_mode_and_count_include_pad(rng):
    import torch
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    for ceil_mode in (False, True):
        for cip in (False, True):
            got = F.avg_pool2d(x, 3, 2, ((1, 1), (1, 1)), ceil_mode, cip).numpy()
            want = torch.nn.functional.avg_pool2d(xt, 3, 2, 1, ceil_mode, cip)
            np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=1e-6,
                                       atol=1e-7)
        got = F.max_pool2d(x, 3, 2, ((1, 1), (1, 1)), ceil_mode).numpy()
        want = torch.nn.functional.max_pool2d(xt, 3, 2, 1, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(got, want.permute(0, 2, 3, 1).numpy())


def test_pool_plan_refuses_padding_as_large_as_the_window():
    with pytest.raises(ValueError, match="smaller than the pool"):
        pool2d_plan((1, 5, 5, 1), 2, 2, ((2, 0), (0, 0)))
    with pytest.raises(ValueError, match="smaller than the pool"):
        L.MaxPooling2D(2, padding=((0, 0), (0, 3)))
    with pytest.raises(ValueError, match="'valid' or 'same', or explicit"):
        pool2d_plan((1, 5, 5, 1), 2, 2, 1, ceil_mode=True)
    with pytest.raises(ValueError, match="average pooling option"):
        L.MaxPooling2D(2, count_include_pad=True)


def test_leaky_relu_forward_and_gradient(backend, rng):
    x = away_from_zero(rng, (3, 4, 5))
    got = leaky_relu(Tensor(backend.asarray(x)), 0.15).numpy()
    np.testing.assert_allclose(got, np.where(x >= 0, x, 0.15 * x), rtol=1e-15)
    check_backward(backend, lambda x_: leaky_relu(x_, 0.15), [x])


@pytest.mark.parametrize("low,high", [(-0.5, 0.4), (None, 0.3), (-0.2, None)])
def test_clip_forward_and_gradient(backend, rng, low, high):
    x = rng.uniform(-1, 1, (4, 6))
    for bound in (low, high):  # away from the kinks
        if bound is not None:
            x = np.where(np.abs(x - bound) < 0.05, x + 0.1, x)
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    got = clip(Tensor(backend.asarray(x)), low, high).numpy()
    np.testing.assert_array_equal(got, np.minimum(np.maximum(x, lo), hi))
    check_backward(backend, lambda x_: clip(x_, low, high), [x])
    with pytest.raises(ValueError, match="greater than"):
        clip(Tensor(backend.asarray(x)), 1.0, 0.0)


def test_transpose_forward_and_gradient(backend, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    got = transpose(Tensor(backend.asarray(x)), (0, 3, 1, 2)).numpy()
    np.testing.assert_array_equal(got, x.transpose(0, 3, 1, 2))
    check_backward(backend, lambda x_: transpose(x_, (0, 2, 3, 1)), [x])
    with pytest.raises(ValueError, match="not a permutation"):
        transpose(Tensor(backend.asarray(x)), (0, 1, 1, 2))


def test_new_layers_predict_like_their_ops_and_save(tmp_path, rng):
    """Inference plans (predict) and the graph (call) agree, and the configs round-trip."""
    from fastconv.saving import load_model

    model = Sequential([
        L.Input((9, 8, 3)),
        L.MaxPooling2D(3, 2, ((1, 1), (0, 1)), ceil_mode=True),
        L.AveragePooling2D(2, 1, ((1, 0), (1, 1)), ceil_mode=True, count_include_pad=True),
        L.LeakyReLU(0.1), L.Clip(-0.3, 0.5), L.Permute((3, 1, 2)), L.Flatten(), L.Dense(4),
    ])
    x = rng.standard_normal((3, 9, 8, 3)).astype(np.float32)
    graph = model(x).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), graph, rtol=1e-6, atol=1e-6)
    assert model.layers[0].compute_output_shape((None, 9, 8, 3)) == (None, 5, 4, 3)
    path = tmp_path / "m.fcm"
    model.save(path)
    again = load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), graph, rtol=1e-6, atol=1e-6)
    cfg = again.layers[1].get_config()
    assert cfg["count_include_pad"] and cfg["ceil_mode"] and cfg["padding"] == [[1, 0], [1, 1]]
    assert "ceil_mode" not in L.MaxPooling2D(2).get_config()  # Keras's configs stay Keras's


def test_new_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="negative_slope"):
        L.LeakyReLU("a")
    with pytest.raises(ValueError, match="greater than"):
        L.Clip(1, 0)
    with pytest.raises(ValueError, match="permutation"):
        L.Permute((1, 1))
