"""Pooling kernels (max, average; forward and backward) over NHWC device arrays.

Every kernel is a grid-stride loop over the elements of its output, the channel fastest, so
that neighbouring threads read and write neighbouring channels (coalesced). Semantics are
numba-cpu's (see ``Backend.max_pool2d_forward``): max pooling records the window tap
``i * pw + j`` of each maximum, the first on ties; padding never wins (only in-bounds taps are
visited); a NaN in the window is the maximum. Average pooling divides by the number of
in-bounds elements of each window.

The backward passes are gathers, one thread per input element summing the gradients of the
windows that cover it, in window order: no atomics, and the same result on every run.

``g`` is ``PoolGeometry.astuple()`` as int32 scalars (``launch.geometry``), unpacked whole in
``POOL_FIELDS`` order. 1D and global pooling (``fastconv.ops.pool``) are 2D pooling of a
one-pixel-high image and of the whole image, through these kernels.

Every function takes the backend ``be`` first; outputs are allocated with ``be.empty``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .launch import I32, POOL_GEOM, array, blocks_for, geometry, kernel


@cuda.jit(device=True, inline=True)
def udiv(a, b):
    """``a // b`` for non-negative int32 ``a`` and positive ``b``, as an unsigned 32-bit
    division (Numba would widen signed ints to 64 bits and add Python's floor fix-ups)."""
    return np.int32(np.uint32(a) // np.uint32(b))


@cuda.jit(device=True, inline=True)
def split(t, d):
    """``(t // d, t % d)`` for non-negative int32 ``t`` and positive ``d`` (unsigned 32-bit)."""
    q = np.uint32(t) // np.uint32(d)
    return np.int32(q), np.int32(np.uint32(t) - q * np.uint32(d))


@cuda.jit(device=True, inline=True)
def grid_range():
    """(first, step) of this thread in a 1D grid-stride loop, as int32."""
    return (np.int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x),
            np.int32(cuda.gridDim.x * cuda.blockDim.x))


@kernel(lambda dt: (array(dt, 4), POOL_GEOM, I32, array(dt, 4), array("int32", 4)))
def max_pool_forward(x, g, with_argmax, y, argmax):
    """y[img, p, q, k] = max of x over the in-bounds taps of window (p, q); with_argmax != 0:
    argmax[img, p, q, k] = its tap ``i * pw + j`` (first on ties, a NaN wins and stays).
    One thread per output element, grid-stride over ``n * oh * ow * c``; ``argmax`` is any
    int32 array when ``with_argmax`` is 0 (never touched)."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    total = np.int32(n * oh * ow * c)
    start, step = grid_range()
    for t in range(start, total, step):
        r, k = split(t, c)
        r, q = split(r, ow)
        img, p = split(r, oh)
        top = p * sh - pt
        left = q * sw - pl
        i0 = max(-top, 0)
        i1 = min(h - top, ph)
        j0 = max(-left, 0)
        j1 = min(w - left, pw)
        arg = i0 * pw + j0
        if i0 < i1 and j0 < j1:
            best = x[img, top + i0, left + j0, k]
            for i in range(i0, i1):
                for j in range(j0, j1):
                    v = x[img, top + i, left + j, k]
                    if v > best or (v != v and best == best):
                        best = v
                        arg = i * pw + j
            y[img, p, q, k] = best
        else:  # a window with no input element (no geometry makes one): -inf
            y[img, p, q, k] = -math.inf
        if with_argmax != 0:
            argmax[img, p, q, k] = arg


@kernel(lambda dt: (array(dt, 4), array("int32", 4), POOL_GEOM, array(dt, 4)))
def max_pool_backward(dy, argmax, g, dx):
    """dx[img, u, v, k] = sum of dy[img, p, q, k] over the windows (p, q) covering (u, v)
    whose recorded maximum is that element. One thread per input element (a gather, grid-stride
    over ``n * h * w * c``); windows are visited in (p, q) order."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    total = np.int32(n * h * w * c)
    start, step = grid_range()
    for t in range(start, total, step):
        r, k = split(t, c)
        r, v = split(r, w)
        img, u = split(r, h)
        # windows p with p * sh - pt <= u < p * sh - pt + ph (no negative division)
        a = u + pt - ph + 1
        p0 = udiv(a + sh - 1, sh) if a > 0 else 0
        p1 = min(udiv(u + pt, sh) + 1, oh)
        b = v + pl - pw + 1
        q0 = udiv(b + sw - 1, sw) if b > 0 else 0
        q1 = min(udiv(v + pl, sw) + 1, ow)
        acc = dx.dtype.type(0)
        for p in range(p0, p1):
            i = u + pt - p * sh
            for q in range(q0, q1):
                if argmax[img, p, q, k] == i * pw + (v + pl - q * sw):
                    acc += dy[img, p, q, k]
        dx[img, u, v, k] = acc


@kernel(lambda dt: (array(dt, 4), POOL_GEOM, array(dt, 4)))
def avg_pool_forward(x, g, y):
    """y[img, p, q, k] = mean of x over the in-bounds elements of window (p, q). One thread per
    output element, grid-stride over ``n * oh * ow * c``; sums in the array's dtype."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    total = np.int32(n * oh * ow * c)
    start, step = grid_range()
    for t in range(start, total, step):
        r, k = split(t, c)
        r, q = split(r, ow)
        img, p = split(r, oh)
        u0 = max(p * sh - pt, 0)
        u1 = min(p * sh - pt + ph, h)
        v0 = max(q * sw - pl, 0)
        v1 = min(q * sw - pl + pw, w)
        acc = y.dtype.type(0)
        for u in range(u0, u1):
            for v in range(v0, v1):
                acc += x[img, u, v, k]
        count = (u1 - u0) * (v1 - v0)
        y[img, p, q, k] = acc / y.dtype.type(max(count, 1))


@kernel(lambda dt: (array(dt, 4), POOL_GEOM, array(dt, 4)))
def avg_pool_backward(dy, g, dx):
    """dx[img, u, v, k] = sum of dy[img, p, q, k] / count(p, q) over the windows covering
    (u, v), count being the window's in-bounds elements. One thread per input element (a
    gather, grid-stride over ``n * h * w * c``)."""
    n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow = g
    total = np.int32(n * h * w * c)
    start, step = grid_range()
    for t in range(start, total, step):
        r, k = split(t, c)
        r, v = split(r, w)
        img, u = split(r, h)
        a = u + pt - ph + 1
        p0 = udiv(a + sh - 1, sh) if a > 0 else 0
        p1 = min(udiv(u + pt, sh) + 1, oh)
        b = v + pl - pw + 1
        q0 = udiv(b + sw - 1, sw) if b > 0 else 0
        q1 = min(udiv(v + pl, sw) + 1, ow)
        acc = dx.dtype.type(0)
        for p in range(p0, p1):
            rows = min(p * sh - pt + ph, h) - max(p * sh - pt, 0)
            for q in range(q0, q1):
                cols = min(q * sw - pl + pw, w) - max(q * sw - pl, 0)
                acc += dy[img, p, q, k] / dx.dtype.type(rows * cols)
        dx[img, u, v, k] = acc


# -- launchers --------------------------------------------------------------------------------
def _check(be, a, shape, what):
    a = be.asarray(a)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(a.shape)}; the pooling geometry expects "
                         f"{tuple(shape)}")
    if a.dtype.name not in ("float32", "float64"):
        raise TypeError(f"{what} must be float32 or float64, got {a.dtype}")
    if a.size >= 2**31:
        raise ValueError(f"{what} has {a.size} elements; numba-cuda's pooling kernels index "
                         f"with int32 (at most 2**31 - 1 elements)")
    return a


def max_forward(be, x, geom, with_argmax):
    """-> (y, argmax int32 or None); semantics of Backend.max_pool2d_forward."""
    x = _check(be, x, geom.x_shape, "max_pool2d input")
    y = be.empty(geom.y_shape, x.dtype)
    argmax = be.empty(geom.y_shape if with_argmax else (1, 1, 1, 1), np.int32)
    max_pool_forward[blocks_for(y.size)](x.dtype, x, geometry(geom.astuple()),
                                          np.int32(1 if with_argmax else 0), y, argmax)
    return y, (argmax if with_argmax else None)


def max_backward(be, dy, argmax, geom):
    dy = _check(be, dy, geom.y_shape, "max_pool2d gradient")
    argmax = be.asarray(argmax)
    if tuple(argmax.shape) != tuple(geom.y_shape) or argmax.dtype != np.int32:
        raise ValueError(f"max_pool2d argmax must be int32 of shape {geom.y_shape}, got "
                         f"{argmax.dtype} {tuple(argmax.shape)}")
    dx = be.empty(geom.x_shape, dy.dtype)
    max_pool_backward[blocks_for(dx.size)](dy.dtype, dy, argmax, geometry(geom.astuple()), dx)
    return dx


def avg_forward(be, x, geom):
    x = _check(be, x, geom.x_shape, "avg_pool2d input")
    y = be.empty(geom.y_shape, x.dtype)
    avg_pool_forward[blocks_for(y.size)](x.dtype, x, geometry(geom.astuple()), y)
    return y


def avg_backward(be, dy, geom):
    dy = _check(be, dy, geom.y_shape, "avg_pool2d gradient")
    dx = be.empty(geom.x_shape, dy.dtype)
    avg_pool_backward[blocks_for(dx.size)](dy.dtype, dy, geometry(geom.astuple()), dx)
    return dx
