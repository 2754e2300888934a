"""Batch normalisation and local response normalisation kernels on (rows, channels) device
arrays, channels contiguous. Formulas: ``fastconv.backends.base.Backend`` (``batch_norm_*``,
``lrn_*``); numba-cpu's kernels are the model (float64 sums for float32 data too).

Per-channel sums over the rows (batch statistics, the backward pass's sums of ``dy`` and
``dy * (x - mean)``) are column sums in two kernels (see ``elementwise``): 2D blocks of float64
per-thread sums reduced in shared memory to one partial row per block row, then
``elementwise.column_sums``; no atomics, so every run gives the same sums. The per-channel
vectors in between (scale, the backward pass's coefficients) are computed with ``be.xp`` on the
device. The element-wise passes and LRN are 1D grid-stride loops over the elements; LRN sums
its window of channels per element (the neighbours are in the same row, in cache).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, types

from .elementwise import TX, TY, block_column_sum, column_sums, sum_grid
from .launch import I32, array, blocks_for, kernel
from .pool import grid_range, split

F64 = types.float64


def _f64(dims):
    return array(np.float64, dims)


# -- batch normalisation ---------------------------------------------------------------------
@kernel(lambda dt: (array(dt, 2), _f64(1), _f64(2), _f64(2)))
def centered_sums(x, center, partial1, partial2):
    """Column sums of ``d = x - center`` and ``d^2`` (float64): partial1/partial2[blockIdx.y, k]
    receive this block row's sums. 2D blocks (TX over channels, TY over rows), grid-stride
    along both; reduced over the block in shared memory."""
    sm1 = cuda.shared.array((TY, TX), F64)
    sm2 = cuda.shared.array((TY, TX), F64)
    rows, ch = x.shape
    tx = cuda.threadIdx.x
    row0 = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    row_step = cuda.gridDim.y * cuda.blockDim.y
    for k0 in range(cuda.blockIdx.x * TX, ch, cuda.gridDim.x * TX):
        k = k0 + tx
        s1 = 0.0
        s2 = 0.0
        if k < ch:
            ck = center[k]
            for r in range(row0, rows, row_step):
                d = np.float64(x[r, k]) - ck
                s1 += d
                s2 += d * d
        block_column_sum(sm1, s1, partial1, k)
        block_column_sum(sm2, s2, partial2, k)


@kernel(lambda dt: (array(dt, 2), array(dt, 2), array(dt, 1), _f64(2), _f64(2)))
def grad_sums(dy, x, mean, partial_dy, partial_dyx):
    """Column sums of ``dy`` and ``dy * (x - mean)`` (float64), per block row as in
    :func:`centered_sums`."""
    sm1 = cuda.shared.array((TY, TX), F64)
    sm2 = cuda.shared.array((TY, TX), F64)
    rows, ch = dy.shape
    tx = cuda.threadIdx.x
    row0 = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    row_step = cuda.gridDim.y * cuda.blockDim.y
    for k0 in range(cuda.blockIdx.x * TX, ch, cuda.gridDim.x * TX):
        k = k0 + tx
        s1 = 0.0
        s2 = 0.0
        if k < ch:
            mk = np.float64(mean[k])
            for r in range(row0, rows, row_step):
                g = np.float64(dy[r, k])
                s1 += g
                s2 += g * (np.float64(x[r, k]) - mk)
        block_column_sum(sm1, s1, partial_dy, k)
        block_column_sum(sm2, s2, partial_dyx, k)


@kernel(lambda dt: (array(dt, 2), array(dt, 1), array(dt, 1), array(dt, 1), array(dt, 2)))
def affine_centered(x, mean, scale, shift, y):
    """Batch norm's forward: y[r, k] = (x[r, k] - mean[k]) * scale[k] + shift[k], with
    scale = gamma / sqrt(var + eps) and shift = beta. 1D grid-stride over the elements."""
    rows, ch = x.shape
    start, step = grid_range()
    for t in range(start, np.int32(rows * ch), step):
        r, k = split(t, ch)
        y[r, k] = (x[r, k] - mean[k]) * scale[k] + shift[k]


@kernel(lambda dt: (array(dt, 2), array(dt, 2), array(dt, 1), array(dt, 1), array(dt, 1),
                    array(dt, 1), array(dt, 2)))
def bn_dx(dy, x, mean, a, b, c, dx):
    """Batch norm's dx = a * dy + b * (x - mean) + c per channel: the training formula
    ``gamma * inv / N * (N dy - sum(dy) - xhat * sum(dy * xhat))`` regrouped into
    a = gamma * inv, b = -gamma * inv^3 * sum(dy * (x - mean)) / N, c = -gamma * inv * sum(dy)
    / N; inference has b = c = 0. 1D grid-stride over the elements."""
    rows, ch = dy.shape
    start, step = grid_range()
    for t in range(start, np.int32(rows * ch), step):
        r, k = split(t, ch)
        dx[r, k] = a[k] * dy[r, k] + b[k] * (x[r, k] - mean[k]) + c[k]


def _rows_channels(be, a, what, dtype=None):
    a = be.asarray(a, dtype=dtype)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a (rows, channels) array, got shape {tuple(a.shape)}")
    if a.dtype.name not in ("float32", "float64"):
        raise TypeError(f"{what} must be float32 or float64, got {a.dtype}")
    if a.size >= 2**31:
        raise ValueError(f"{what} has {a.size} elements; numba-cuda's normalisation kernels "
                         f"index with int32 (at most 2**31 - 1 elements)")
    return a


def _vector(be, a, ch, dtype, what):
    a = be.asarray(a, dtype=dtype)
    if a.shape != (ch,):
        raise ValueError(f"{what} must have shape ({ch},), got {tuple(a.shape)}")
    return a


def _column_sums2(be, kern, dtype, rows, ch, *args):
    """Two float64 per-channel sums from a column-sum kernel taking ``args`` then the two
    partial arrays."""
    gx, gy = sum_grid(rows, ch)
    p1 = be.empty((gy, ch), np.float64)
    p2 = be.empty((gy, ch), np.float64)
    kern[(gx, gy), (TX, TY)](dtype, *args, p1, p2)
    return column_sums(be, p1, np.float64), column_sums(be, p2, np.float64)


def batch_norm_statistics(be, x):
    """Mean, then the biased variance about it (a second pass; its sum of ``x - mean``, about
    0, corrects the mean's rounding), float64 sums, returned in x's dtype."""
    x = _rows_channels(be, x, "batch_norm_statistics input")
    rows, ch = x.shape
    zero = be.zeros((ch,), np.float64)
    s1, _ = _column_sums2(be, centered_sums, x.dtype, rows, ch, x, zero)
    mean = s1 / rows
    s1, s2 = _column_sums2(be, centered_sums, x.dtype, rows, ch, x, mean)
    var = (s2 - s1 * s1 / rows) / rows
    return be.device(mean.astype(x.dtype)), be.device(var.astype(x.dtype))


def batch_norm_forward(be, x, gamma, beta, mean, var, eps):
    x = _rows_channels(be, x, "batch_norm_forward input")
    dt, ch = x.dtype, x.shape[1]
    gamma, beta, mean, var = (_vector(be, v, ch, dt, name) for v, name in (
        (gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "variance")))
    xp = be.xp
    scale = be.device((gamma / xp.sqrt(var.astype(np.float64) + eps)).astype(dt))
    y = be.empty(x.shape, dt)
    affine_centered[blocks_for(x.size)](dt, x, mean, scale, beta, y)
    return y


def batch_norm_backward(be, dy, x, gamma, mean, var, eps, training):
    x = _rows_channels(be, x, "batch_norm_backward input")
    dt = x.dtype
    rows, ch = x.shape
    dy = _rows_channels(be, dy, "batch_norm_backward gradient", dtype=dt)
    if dy.shape != x.shape:
        raise ValueError(f"batch_norm_backward: the gradient has shape {tuple(dy.shape)}, the "
                         f"input {tuple(x.shape)}")
    gamma, mean, var = (_vector(be, v, ch, dt, name) for v, name in (
        (gamma, "gamma"), (mean, "mean"), (var, "variance")))
    s_dy, s_dyx = _column_sums2(be, grad_sums, dt, rows, ch, dy, x, mean)
    xp = be.xp
    inv = 1.0 / xp.sqrt(var.astype(np.float64) + eps)
    a = gamma * inv
    if training:
        b, c = -a * inv * inv * s_dyx / rows, -a * s_dy / rows
    else:
        b = c = xp.zeros(ch)
    a, b, c = (be.device(v.astype(dt)) for v in (a, b, c))
    dx = be.empty(x.shape, dt)
    bn_dx[blocks_for(x.size)](dt, dy, x, mean, a, b, c, dx)
    return dx, be.device((s_dyx * inv).astype(dt)), be.device(s_dy.astype(dt))


# -- local response normalisation ------------------------------------------------------------
@cuda.jit(device=True, inline=True)
def neg_pow(s, beta):
    """s ** -beta (float64), with square roots for the usual betas (0.5: TensorFlow's
    default, 0.75: AlexNet's, 1), cheaper than a general power."""
    if beta == 0.5:
        return 1.0 / math.sqrt(s)
    if beta == 0.75:
        root = math.sqrt(s)
        return 1.0 / (root * math.sqrt(root))
    if beta == 1.0:
        return 1.0 / s
    return math.pow(s, -beta)


@kernel(lambda dt: (array(dt, 2), I32, F64, F64, F64, array(dt, 2), array(dt, 2)))
def lrn_fwd(x, radius, bias, alpha, beta, y, scale):
    """scale[r, k] = bias + alpha * sum(x[r, k']^2 for |k' - k| <= radius) (float64 sums);
    y = x * scale^-beta. 1D grid-stride over the elements, each summing its window."""
    rows, ch = x.shape
    start, step = grid_range()
    for t in range(start, np.int32(rows * ch), step):
        r, k = split(t, ch)
        acc = 0.0
        for j in range(max(k - radius, 0), min(k + radius + 1, ch)):
            v = np.float64(x[r, j])
            acc += v * v
        s = bias + alpha * acc
        scale[r, k] = s
        y[r, k] = np.float64(x[r, k]) * neg_pow(s, beta)


@kernel(lambda dt: (array(dt, 2), array(dt, 2), array(dt, 2), array(dt, 2), I32, F64, F64,
                    array(dt, 2)))
def lrn_bwd(dy, x, y, scale, radius, alpha, beta, dx):
    """dx[k] = dy[k] * scale[k]^-beta - 2 alpha beta x[k] * sum(t[k'] for |k' - k| <= radius),
    t = dy * y / scale (float64). 1D grid-stride over the elements, each summing its window."""
    rows, ch = dy.shape
    start, step = grid_range()
    for t in range(start, np.int32(rows * ch), step):
        r, k = split(t, ch)
        acc = 0.0
        for j in range(max(k - radius, 0), min(k + radius + 1, ch)):
            acc += np.float64(dy[r, j]) * np.float64(y[r, j]) / np.float64(scale[r, j])
        dx[r, k] = (np.float64(dy[r, k]) * neg_pow(np.float64(scale[r, k]), beta)
                    - 2.0 * alpha * beta * np.float64(x[r, k]) * acc)


def _lrn_radius(radius, ch):
    """The radius as int32, clipped to the channels (a wider window sums the same)."""
    radius = int(radius)
    if radius < 0:
        raise ValueError(f"lrn: depth_radius must be >= 0, got {radius}")
    return np.int32(min(radius, ch))


def lrn_forward(be, x, radius, bias, alpha, beta):
    x = _rows_channels(be, x, "lrn_forward input")
    y, scale = be.empty(x.shape, x.dtype), be.empty(x.shape, x.dtype)
    lrn_fwd[blocks_for(x.size)](x.dtype, x, _lrn_radius(radius, x.shape[1]), np.float64(bias),
                                np.float64(alpha), np.float64(beta), y, scale)
    return y, scale


def lrn_backward(be, dy, x, y, scale, radius, alpha, beta):
    dy = _rows_channels(be, dy, "lrn_backward gradient")
    dt = dy.dtype
    x, y, scale = (_rows_channels(be, a, f"lrn_backward {name}", dtype=dt)
                   for a, name in ((x, "input"), (y, "output"), (scale, "scale")))
    for a, name in ((x, "input"), (y, "output"), (scale, "scale")):
        if a.shape != dy.shape:
            raise ValueError(f"lrn_backward: {name} has shape {tuple(a.shape)}, the gradient "
                             f"{tuple(dy.shape)}")
    dx = be.empty(dy.shape, dt)
    lrn_bwd[blocks_for(dy.size)](dt, dy, x, y, scale, _lrn_radius(radius, dy.shape[1]),
                                 np.float64(alpha),
                                 np.float64(beta), dx)
    return dx
