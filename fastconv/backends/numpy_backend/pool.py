"""NumPy pooling over NHWC: one vectorised pass per window tap."""

from __future__ import annotations

import numpy as np

from .taps import crop, pad_nhwc, tap


def _pads(g):
    return (g.pt, g.pb, g.pl, g.pr)


def max_pool2d_forward(x, g):
    xpad = pad_nhwc(x, _pads(g), value=-np.inf)
    y = np.full(g.y_shape, -np.inf, dtype=x.dtype)
    # a window holding only -inf keeps its first in-bounds tap, never a padding tap
    first_i = np.maximum(g.pt - np.arange(g.oh) * g.sh, 0)
    first_j = np.maximum(g.pl - np.arange(g.ow) * g.sw, 0)
    argmax = np.empty(g.y_shape, dtype=np.int32)
    argmax[...] = (first_i[:, None] * g.pw + first_j[None, :])[None, :, :, None]
    for i in range(g.ph):
        for j in range(g.pw):
            window = tap(xpad, i, j, g.oh, g.ow, g.sh, g.sw)
            # strict: the first maximum wins ties; a NaN wins once and stays (as in PyTorch)
            better = (window > y) | (np.isnan(window) & ~np.isnan(y))
            np.copyto(y, window, where=better)
            argmax[better] = i * g.pw + j
    return y, argmax


def max_pool2d_backward(dy, argmax, g):
    dxpad = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dtype=dy.dtype)
    for i in range(g.ph):
        for j in range(g.pw):
            tap(dxpad, i, j, g.oh, g.ow, g.sh, g.sw)[...] += np.where(
                argmax == i * g.pw + j, dy, 0)
    return crop(dxpad, _pads(g), g.h, g.w)


def _window_counts(g, dtype):
    """In-bounds elements per window (H x W maps broadcast over N and C)."""
    ones = pad_nhwc(np.ones((1, g.h, g.w, 1), dtype=dtype), _pads(g))
    count = np.zeros((1, g.oh, g.ow, 1), dtype=dtype)
    for i in range(g.ph):
        for j in range(g.pw):
            count += tap(ones, i, j, g.oh, g.ow, g.sh, g.sw)
    return count


def avg_pool2d_forward(x, g):
    xpad = pad_nhwc(x, _pads(g))
    y = np.zeros(g.y_shape, dtype=x.dtype)
    for i in range(g.ph):
        for j in range(g.pw):
            y += tap(xpad, i, j, g.oh, g.ow, g.sh, g.sw)
    y /= _window_counts(g, x.dtype)
    return y


def avg_pool2d_backward(dy, g):
    share = dy / _window_counts(g, dy.dtype)
    dxpad = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dtype=dy.dtype)
    for i in range(g.ph):
        for j in range(g.pw):
            tap(dxpad, i, j, g.oh, g.ow, g.sh, g.sw)[...] += share
    return crop(dxpad, _pads(g), g.h, g.w)
