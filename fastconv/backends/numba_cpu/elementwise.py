"""Epilogues and element-wise steps: bias + activation, their gradient with the bias sums, Adam.
Arrays are viewed as (rows, channels) with channels last and contiguous.

Each parallel task hands a contiguous slice to a serial helper whose plain loop LLVM vectorises
(written inline in the ``prange`` body, the same loop ran unvectorised, 8x slower).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .jit import helper, sized_kernel

LINEAR, RELU = 0, 1
ACTIVATION_CODES = {"linear": LINEAR, "relu": RELU}


@helper
def bias_act(y, b, has_bias, act):
    """y[r, :] = act(y[r, :] + b) in place, serially; y is (rows, channels)."""
    rows, ch = y.shape
    for r in range(rows):
        if has_bias:
            for k in range(ch):
                y[r, k] += b[k]
        if act == RELU:
            for k in range(ch):
                y[r, k] = max(y[r, k], 0)


@sized_kernel(1 << 16)
def bias_act_rows(y, b, has_bias, act, rows_per):
    """y[r, :] = act(y[r, :] + b) in place; y is (rows, channels)."""
    rows = y.shape[0]
    for t in prange((rows + rows_per - 1) // rows_per):
        bias_act(y[t * rows_per:min((t + 1) * rows_per, rows)], b, has_bias, act)


@helper
def _epilogue_backward(dy, y, act, with_bias, dz, acc):
    rows, ch = dy.shape
    for r in range(rows):
        if act == RELU:
            for k in range(ch):
                dz[r, k] = dy[r, k] if y[r, k] > 0 else 0
        else:
            for k in range(ch):
                dz[r, k] = dy[r, k]
        if with_bias:
            for k in range(ch):
                acc[k] += dz[r, k]


@sized_kernel(1 << 16)
def epilogue_backward_rows(dy, y, act, with_bias, dz, partial, rows_per):
    """dz = dy * (y > 0) for ReLU (a copy of dy for linear) and, with_bias, per-thread partial
    column sums of dz in ``partial`` (the caller adds them up); (rows, channels) arrays."""
    rows = dy.shape[0]
    partial[:] = 0
    for t in prange((rows + rows_per - 1) // rows_per):
        lo, hi = t * rows_per, min((t + 1) * rows_per, rows)
        _epilogue_backward(dy[lo:hi], y[lo:hi], act, with_bias, dz[lo:hi],
                           partial[numba.get_thread_id()])


@helper
def _adam(p, g, m, v, lr_t, one_b1, one_b2, eps):
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_b1
        vi = v[i] + (gi * gi - v[i]) * one_b2
        m[i] = mi
        v[i] = vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)


@sized_kernel(1 << 17)
def adam_flat(p, g, m, v, lr_t, beta_1, beta_2, eps, chunk):
    """Adam in place (Keras form): m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    p -= lr_t * m / (sqrt(v) + eps)."""
    n = p.shape[0]
    one_b1 = 1 - beta_1
    one_b2 = 1 - beta_2
    for t in prange((n + chunk - 1) // chunk):
        lo, hi = t * chunk, min((t + 1) * chunk, n)
        _adam(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr_t, one_b1, one_b2, eps)
