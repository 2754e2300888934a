"""Launchers of ``kernels/normalization.cu``: batch normalisation (statistics in two passes with
double sums, forward, backward) and local response normalisation, on (rows, channels) arrays.
Formulas: ``fastconv.backends.base.Backend``. Per-channel vectors of a few elements are
combined with ``be.xp`` (device arrays, no transfer)."""

from __future__ import annotations

import numpy as np

from .elementwise import _column_blocks
from .launch import blocks_1d, check_sizes, config, contiguous, i32, kernel, launch, real

SOURCE = "normalization.cu"


def _defines():
    return {"NORM_THREADS": config().threads_1d}


def _rows(be, x):
    if x.ndim != 2:
        raise ValueError(f"normalisation kernels take (rows, channels) arrays, got {x.shape}")
    x = contiguous(be, x)
    check_sizes(x)
    return x


def _column_sums(be, name, rows, ch, *args):
    """Two per-channel float64 sums over the rows (kernel ``name``)."""
    s1, s2 = be.zeros((ch,), np.float64), be.zeros((ch,), np.float64)
    if rows and ch:
        grid, block, rows_per = _column_blocks(rows, ch)
        launch(kernel(SOURCE, name, args[0].dtype, _defines()), grid, block,
               (*args, s1, s2, *i32(rows, ch, rows_per)))
    return s1, s2


def _elementwise(be, name, dtype, count, *args):
    grid, block = blocks_1d(count)
    launch(kernel(SOURCE, name, dtype), grid, block, args)


def batch_norm_statistics(be, x):
    """-> (mean, var) per channel, biased variance; two passes about the mean in float64."""
    x = _rows(be, x)
    rows, ch = x.shape
    if rows == 0:
        raise ValueError("batch_norm_statistics needs at least one row")
    s1, _ = _column_sums(be, "bn_centered_sums", rows, ch, x, be.zeros((ch,), np.float64))
    mean = be.device(s1 / rows)
    # second pass about the mean; its s1 (about 0) corrects the rounding of the mean
    s1, s2 = _column_sums(be, "bn_centered_sums", rows, ch, x, mean)
    var = (s2 - s1 * s1 / rows) / rows
    return be.device(mean.astype(x.dtype)), be.device(var.astype(x.dtype))


def _vec(be, v, dtype):
    return contiguous(be, v, dtype)


def batch_norm_forward(be, x, gamma, beta, mean, var, eps):
    """y = (x - mean) * gamma / sqrt(var + eps) + beta."""
    x = _rows(be, x)
    dt = x.dtype
    xp = be.xp
    scale = be.device((gamma.astype(np.float64) / xp.sqrt(var.astype(np.float64) + eps))
                      .astype(dt))
    y = be.empty(x.shape, dt)
    _elementwise(be, "bn_affine", dt, x.size, x, _vec(be, mean, dt), scale, _vec(be, beta, dt),
                 y, *i32(*x.shape))
    return y


def batch_norm_backward(be, dy, x, gamma, mean, var, eps, training):
    """-> (dx, dgamma, dbeta)."""
    x = _rows(be, x)
    dy = _rows(be, dy)
    rows, ch = x.shape
    dt = x.dtype
    xp = be.xp
    mean = _vec(be, mean, dt)
    s_dy, s_dyx = _column_sums(be, "bn_grad_sums", rows, ch, dy, x, mean)
    inv = 1.0 / xp.sqrt(var.astype(np.float64) + eps)
    a = gamma.astype(np.float64) * inv
    if training:
        b, c = -a * inv * inv * s_dyx / rows, -a * s_dy / rows
    else:
        b = c = xp.zeros(ch)
    dx = be.empty(x.shape, dt)
    _elementwise(be, "bn_dx", dt, x.size, dy, x, mean, _vec(be, a, dt), _vec(be, b, dt),
                 _vec(be, c, dt), dx, *i32(rows, ch))
    return dx, be.device((s_dyx * inv).astype(dt)), be.device(s_dy.astype(dt))


def lrn_forward(be, x, radius, bias, alpha, beta):
    """-> (y, scale): scale = bias + alpha * window sum of x^2; y = x * scale^-beta."""
    x = _rows(be, x)
    y, scale = be.empty(x.shape, x.dtype), be.empty(x.shape, x.dtype)
    _elementwise(be, "lrn_forward", x.dtype, x.size, x, y, scale, *i32(*x.shape, radius),
                 *real(x.dtype, bias, alpha, beta))
    return y, scale


def lrn_backward(be, dy, x, y, scale, radius, alpha, beta):
    """dx of lrn_forward."""
    dy = _rows(be, dy)
    dt = dy.dtype
    x, y, scale = (contiguous(be, a, dt) for a in (x, y, scale))
    dx = be.empty(dy.shape, dt)
    _elementwise(be, "lrn_backward", dt, dy.size, dy, x, y, scale, dx,
                 *i32(*dy.shape, radius), *real(dt, alpha, beta))
    return dx
