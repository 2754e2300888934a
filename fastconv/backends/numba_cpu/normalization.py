"""Batch normalisation and local response normalisation over NHWC activations viewed as
(rows, channels), channels contiguous. Formulas: ``fastconv.backends.base.Backend``
(``batch_norm_*``, ``lrn_*``); the NumPy backend holds the reference implementation.

Each parallel task takes a contiguous block of rows and runs a serial helper whose inner loop
runs along the channels (vectorised by LLVM). Per-channel sums go into one float64 row of
``partial`` per thread (``numba.get_thread_id()``), which the caller adds up: no atomics, and
float32 data keeps float64 sums.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .jit import helper, sized_kernel


@helper
def _centered_sums(x, center, s1, s2):
    """s1[k] += sum(x[:, k] - center[k]); s2[k] += sum((x[:, k] - center[k])^2)."""
    rows, ch = x.shape
    for r in range(rows):
        for k in range(ch):
            d = x[r, k] - center[k]
            s1[k] += d
            s2[k] += d * d


@sized_kernel(1 << 16)
def centered_sums(x, center, partial1, partial2, rows_per):
    """Per-thread partial sums of ``x - center`` and its square, per channel (float64)."""
    rows = x.shape[0]
    partial1[:] = 0
    partial2[:] = 0
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        tid = numba.get_thread_id()
        _centered_sums(x[lo:hi], center, partial1[tid], partial2[tid])


@helper
def _affine_centered(x, mean, scale, shift, y):
    """y[r, k] = (x[r, k] - mean[k]) * scale[k] + shift[k]."""
    rows, ch = x.shape
    for r in range(rows):
        for k in range(ch):
            y[r, k] = (x[r, k] - mean[k]) * scale[k] + shift[k]


@sized_kernel(1 << 16)
def affine_centered(x, mean, scale, shift, y, rows_per):
    """Batch norm's forward: y = (x - mean) * scale + shift per channel, with
    scale = gamma / sqrt(var + eps) and shift = beta."""
    rows = x.shape[0]
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        _affine_centered(x[lo:hi], mean, scale, shift, y[lo:hi])


@helper
def _grad_sums(dy, x, mean, s_dy, s_dyx):
    rows, ch = dy.shape
    for r in range(rows):
        for k in range(ch):
            g = dy[r, k]
            s_dy[k] += g
            s_dyx[k] += g * (x[r, k] - mean[k])


@sized_kernel(1 << 16)
def grad_sums(dy, x, mean, partial_dy, partial_dyx, rows_per):
    """Per-thread partial sums of dy and dy * (x - mean), per channel (float64)."""
    rows = dy.shape[0]
    partial_dy[:] = 0
    partial_dyx[:] = 0
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        tid = numba.get_thread_id()
        _grad_sums(dy[lo:hi], x[lo:hi], mean, partial_dy[tid], partial_dyx[tid])


@helper
def _bn_dx(dy, x, mean, a, b, c, dx):
    rows, ch = dy.shape
    for r in range(rows):
        for k in range(ch):
            dx[r, k] = a[k] * dy[r, k] + b[k] * (x[r, k] - mean[k]) + c[k]


@sized_kernel(1 << 16)
def bn_dx(dy, x, mean, a, b, c, dx, rows_per):
    """Batch norm's dx = a * dy + b * (x - mean) + c per channel: the training formula
    ``gamma * inv / N * (N dy - sum(dy) - xhat * sum(dy * xhat))`` regrouped into
    a = gamma * inv, b = -gamma * inv^3 * sum(dy * (x - mean)) / N, c = -gamma * inv * sum(dy)
    / N; inference has b = c = 0."""
    rows = dy.shape[0]
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        _bn_dx(dy[lo:hi], x[lo:hi], mean, a, b, c, dx[lo:hi])


@helper
def _neg_pow(s, beta, out):
    """out[k] = s[k] ** -beta, with square roots for the usual betas (0.5: TensorFlow's
    default, 0.75: AlexNet's, 1), which vectorise where a general power does not."""
    n = s.shape[0]
    if beta == 0.5:
        for k in range(n):
            out[k] = 1.0 / np.sqrt(s[k])
    elif beta == 0.75:
        for k in range(n):
            root = np.sqrt(s[k])
            out[k] = 1.0 / (root * np.sqrt(root))
    elif beta == 1.0:
        for k in range(n):
            out[k] = 1.0 / s[k]
    else:
        for k in range(n):
            out[k] = s[k] ** -beta


@helper
def _window_sum(a, radius, out):
    """out[k] = sum(a[k'] for |k' - k| <= radius), clipped at the ends: one pass per offset,
    each a contiguous loop that vectorises (a loop over the window per k does not)."""
    n = a.shape[0]
    out[:] = 0
    for o in range(-radius, radius + 1):
        for k in range(max(0, -o), min(n, n - o)):
            out[k] += a[k + o]


@helper
def _lrn_forward(x, radius, bias, alpha, beta, y, scale, buf):
    """Rows of ``x``; ``buf`` is a (3, channels) float64 scratch."""
    rows, ch = x.shape
    sq, s, p = buf[0], buf[1], buf[2]
    for r in range(rows):
        for k in range(ch):
            v = np.float64(x[r, k])  # float64 sums for float32 data too
            sq[k] = v * v
        _window_sum(sq, radius, s)
        for k in range(ch):
            s[k] = bias + alpha * s[k]
        _neg_pow(s, beta, p)
        for k in range(ch):
            scale[r, k] = s[k]
            y[r, k] = x[r, k] * p[k]


@sized_kernel(1 << 14)
def lrn_forward(x, radius, bias, alpha, beta, y, scale, scratch, rows_per):
    """scale[c] = bias + alpha * sum(x[c']^2, |c' - c| <= radius); y = x * scale^-beta.
    ``scratch``: one (3, channels) float64 block per thread."""
    rows = x.shape[0]
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        _lrn_forward(x[lo:hi], radius, bias, alpha, beta, y[lo:hi], scale[lo:hi],
                     scratch[numba.get_thread_id()])


@helper
def _lrn_backward(dy, x, y, scale, radius, alpha, beta, dx, buf):
    rows, ch = dy.shape
    t, s, p, acc = buf[0], buf[1], buf[2], buf[3]
    for r in range(rows):
        for k in range(ch):
            s[k] = scale[r, k]
            t[k] = dy[r, k] * y[r, k] / s[k]
        _neg_pow(s, beta, p)
        _window_sum(t, radius, acc)
        for k in range(ch):
            dx[r, k] = dy[r, k] * p[k] - 2 * alpha * beta * x[r, k] * acc[k]


@sized_kernel(1 << 14)
def lrn_backward(dy, x, y, scale, radius, alpha, beta, dx, scratch, rows_per):
    """dx[c] = dy[c] * scale[c]^-beta - 2 alpha beta x[c] * sum(t[c'], |c' - c| <= radius) with
    t = dy * y / scale; ``scratch``: one (4, channels) float64 block per thread."""
    rows = dy.shape[0]
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        _lrn_backward(dy[lo:hi], x[lo:hi], y[lo:hi], scale[lo:hi], radius, alpha, beta,
                      dx[lo:hi], scratch[numba.get_thread_id()])
