"""Launchers of ``kernels/pool.cu``: max and average pooling, forward and backward, NHWC.

Semantics of ``Backend.max_pool2d_forward`` and friends (fastconv.backends.base); the geometry
goes to the kernels as the ints of ``PoolGeometry.astuple()`` (POOL_FIELDS order)."""

from __future__ import annotations

import numpy as np

from .launch import blocks_1d, check_sizes, contiguous, i32, kernel, launch

SOURCE = "pool.cu"


def _run(name, dtype, count, *args):
    grid, block = blocks_1d(count)
    launch(kernel(SOURCE, name, dtype), grid, block, args)


def max_forward(be, x, geom, with_argmax):
    """-> (y, argmax int32 or None)."""
    x = contiguous(be, x)
    check_sizes(x)
    y = be.empty(geom.y_shape, x.dtype)
    argmax = be.empty(geom.y_shape if with_argmax else (1,), np.int32)
    _run("max_pool_forward", x.dtype, y.size, x, y, argmax, *i32(bool(with_argmax)),
         *i32(*geom.astuple()))
    return y, (argmax if with_argmax else None)


def max_backward(be, dy, argmax, geom):
    dy = contiguous(be, dy)
    argmax = contiguous(be, argmax, np.int32)
    dx = be.empty(geom.x_shape, dy.dtype)
    check_sizes(dx)
    _run("max_pool_backward", dy.dtype, dx.size, dy, argmax, dx, *i32(*geom.astuple()))
    return dx


def avg_forward(be, x, geom):
    x = contiguous(be, x)
    check_sizes(x)
    y = be.empty(geom.y_shape, x.dtype)
    _run("avg_pool_forward", x.dtype, y.size, x, y, *i32(*geom.astuple()))
    return y


def avg_backward(be, dy, geom):
    dy = contiguous(be, dy)
    dx = be.empty(geom.x_shape, dy.dtype)
    check_sizes(dx)
    _run("avg_pool_backward", dy.dtype, dx.size, dy, dx, *i32(*geom.astuple()))
    return dx
