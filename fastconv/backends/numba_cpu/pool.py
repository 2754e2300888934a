"""Max and average pooling over NHWC, vectorised along channels.

Max pooling records the window tap ``i * PW + j`` of each maximum (the first on ties; padding
never wins, so a window of -inf records its first in-bounds tap; NaN propagates, as in
PyTorch) for its backward pass. Average pooling divides by the number of in-bounds elements of
each window (Keras's 'same' padding). Forward kernels are parallel over output rows; backward
kernels over images, so that overlapping windows of one image are summed by one thread.
``g`` is ``PoolGeometry.astuple()``: (n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow),
unpacked whole in that order or read by name (``g[POOL_OH]``, fastconv.geometry).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...geometry import POOL_H, POOL_N, POOL_OH
from .jit import helper, sized_kernel


@njit(cache=True, nogil=True, error_model="numpy")
def max_row(x, g, img, p, yrow, argrow, with_argmax):
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    # a window holding only -inf keeps its first in-bounds tap, never a padding tap
    first_i = max(pt - p * sh, 0)
    for q in range(ow):
        best = yrow[q]
        best[:] = -np.inf
        if with_argmax:
            argrow[q, :] = first_i * pw + max(pl - q * sw, 0)
        for i in range(ph):
            ih = p * sh - pt + i
            if ih < 0 or ih >= h:
                continue
            for j in range(pw):
                iw = q * sw - pl + j
                if iw < 0 or iw >= w:
                    continue
                tap = i * pw + j
                xv = x[img, ih, iw]
                for k in range(c):
                    v = xv[k]
                    b = best[k]
                    if v > b or (v != v and b == b):  # a NaN wins once and stays
                        best[k] = v
                        if with_argmax:
                            argrow[q, k] = tap


@sized_kernel(1 << 16, fastmath=False)
def max_forward(x, g, with_argmax, y, argmax):
    """``argmax`` is written only ``with_argmax``; otherwise it is a (1, 1, OW, C) stand-in."""
    n, oh = g[POOL_N], g[POOL_OH]
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        argrow = argmax[img, p] if with_argmax else argmax[0, 0]
        max_row(x, g, img, p, y[img, p], argrow, with_argmax)


@sized_kernel(1 << 16, fastmath=False)
def max_backward(dy, argmax, g, dx):
    """dx (zeroed by the caller) receives each dy at its window's maximum."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    for img in prange(n):
        for p in range(oh):
            for q in range(ow):
                for k in range(c):
                    tap = argmax[img, p, q, k]
                    i = tap // pw
                    j = tap - i * pw
                    dx[img, p * sh - pt + i, q * sw - pl + j, k] += dy[img, p, q, k]


@helper
def _max_backward_tiled_row(dy, argmax, g, img, u, dxrow):
    """Input row u of dx when windows tile the input (stride == pool, no top/left padding):
    each input element belongs to at most one window, so it is dy there if it was that
    window's maximum, else 0; rows and columns no window covers are 0."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    p = u // ph
    i = u - p * ph
    for v in range(w):
        out = dxrow[v]
        q = v // pw
        if p >= oh or q >= ow:
            for k in range(c):
                out[k] = 0
            continue
        tap = i * pw + (v - q * pw)
        arg = argmax[img, p, q]
        grad = dy[img, p, q]
        for k in range(c):
            out[k] = grad[k] if arg[k] == tap else 0


@sized_kernel(1 << 16, fastmath=False)
def max_backward_tiled(dy, argmax, g, dx):
    """max_backward for windows that tile the input: parallel over input rows, no zeroing
    pass and no scatter."""
    n, h = g[POOL_N], g[POOL_H]
    for t in prange(n * h):
        img = t // h
        u = t - img * h
        _max_backward_tiled_row(dy, argmax, g, img, u, dx[img, u])


@helper
def avg_row(x, g, img, p, yrow):
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    i0, i1 = max(p * sh - pt, 0), min(p * sh - pt + ph, h)
    for q in range(ow):
        j0, j1 = max(q * sw - pl, 0), min(q * sw - pl + pw, w)
        acc = yrow[q]
        acc[:] = 0
        for ih in range(i0, i1):
            for iw in range(j0, j1):
                xv = x[img, ih, iw]
                for k in range(c):
                    acc[k] += xv[k]
        inv = 1.0 / ((i1 - i0) * (j1 - j0))
        for k in range(c):
            acc[k] *= inv


@sized_kernel(1 << 16)
def avg_forward(x, g, y):
    n, oh = g[POOL_N], g[POOL_OH]
    for t in prange(n * oh):
        img = t // oh
        avg_row(x, g, img, t - img * oh, y[img, t - img * oh])


@sized_kernel(1 << 16)
def avg_backward(dy, g, dx):
    """dx (zeroed by the caller) += dy / count over each window's in-bounds elements."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    for img in prange(n):
        for p in range(oh):
            i0 = max(p * sh - pt, 0)
            i1 = min(p * sh - pt + ph, h)
            for q in range(ow):
                j0 = max(q * sw - pl, 0)
                j1 = min(q * sw - pl + pw, w)
                inv = 1.0 / ((i1 - i0) * (j1 - j0))
                for ih in range(i0, i1):
                    for iw in range(j0, j1):
                        for k in range(c):
                            dx[img, ih, iw, k] += dy[img, p, q, k] * inv
