"""Max and average pooling over NHWC, vectorised along channels.

Max pooling records the window tap ``i * PW + j`` of each maximum (the first on ties; padding
never wins; NaN propagates, as in PyTorch) for its backward pass. Average pooling divides by
the number of in-bounds elements of each window (Keras's 'same' padding). Forward kernels are
parallel over output rows; backward kernels over images, so that overlapping windows of one
image are summed by one thread.
``g`` is ``PoolGeometry.astuple()``: (n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import sized_kernel


@sized_kernel(1 << 16, fastmath=False)
def max_forward(x, g, with_argmax, y, argmax):
    """``argmax`` is written only ``with_argmax`` (it may be empty otherwise)."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        best = np.empty(c, dtype=x.dtype)
        arg = np.empty(c, dtype=np.int32)
        for q in range(ow):
            best[:] = -np.inf
            arg[:] = 0
            for i in range(ph):
                ih = p * sh - pt + i
                if ih < 0 or ih >= h:
                    continue
                for j in range(pw):
                    iw = q * sw - pl + j
                    if iw < 0 or iw >= w:
                        continue
                    tap = i * pw + j
                    for k in range(c):
                        v = x[img, ih, iw, k]
                        b = best[k]
                        if v > b or (v != v and b == b):  # a NaN wins once and stays
                            best[k] = v
                            arg[k] = tap
            y[img, p, q, :] = best
            if with_argmax:
                argmax[img, p, q, :] = arg


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


@sized_kernel(1 << 16)
def avg_forward(x, g, y):
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        acc = np.empty(c, dtype=x.dtype)
        for q in range(ow):
            acc[:] = 0
            count = 0
            for i in range(ph):
                ih = p * sh - pt + i
                if ih < 0 or ih >= h:
                    continue
                for j in range(pw):
                    iw = q * sw - pl + j
                    if iw < 0 or iw >= w:
                        continue
                    count += 1
                    for k in range(c):
                        acc[k] += x[img, ih, iw, k]
            inv = 1.0 / count
            for k in range(c):
                y[img, p, q, k] = acc[k] * inv


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
