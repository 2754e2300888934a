"""Epilogues and element-wise steps: bias + activation, activation gradient, bias gradient,
Adam. Arrays are viewed as (rows, channels) with channels last and contiguous."""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .jit import sized_kernel

LINEAR, RELU = 0, 1
ACTIVATION_CODES = {"linear": LINEAR, "relu": RELU}


@sized_kernel()
def bias_act_rows(y, b, has_bias, act, rows_per):
    """y[r, :] = act(y[r, :] + b) in place; y is (rows, channels)."""
    rows, ch = y.shape
    for t in prange((rows + rows_per - 1) // rows_per):
        for r in range(t * rows_per, min((t + 1) * rows_per, rows)):
            if has_bias:
                for k in range(ch):
                    y[r, k] += b[k]
            if act == RELU:
                for k in range(ch):
                    y[r, k] = max(y[r, k], 0)


@sized_kernel()
def epilogue_backward_rows(dy, y, act, with_bias, dz, partial, rows_per):
    """dz = dy * (y > 0) for ReLU (a copy of dy for linear) and, with_bias, per-thread partial
    column sums of dz in ``partial`` (the caller adds them up); (rows, channels) arrays."""
    rows, ch = dy.shape
    partial[:] = 0
    for t in prange((rows + rows_per - 1) // rows_per):
        acc = partial[numba.get_thread_id()]
        for r in range(t * rows_per, min((t + 1) * rows_per, rows)):
            if act == RELU:
                for k in range(ch):
                    dz[r, k] = dy[r, k] if y[r, k] > 0 else 0
            else:
                for k in range(ch):
                    dz[r, k] = dy[r, k]
            if with_bias:
                for k in range(ch):
                    acc[k] += dz[r, k]


@sized_kernel()
def adam_flat(p, g, m, v, lr_t, beta_1, beta_2, eps, chunk):
    """Adam in place (Keras form): m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    p -= lr_t * m / (sqrt(v) + eps)."""
    n = p.shape[0]
    one_b1 = 1 - beta_1
    one_b2 = 1 - beta_2
    for t in prange((n + chunk - 1) // chunk):
        for i in range(t * chunk, min((t + 1) * chunk, n)):
            gi = g[i]
            mi = m[i] + (gi - m[i]) * one_b1
            vi = v[i] + (gi * gi - v[i]) * one_b2
            m[i] = mi
            v[i] = vi
            p[i] -= lr_t * mi / (np.sqrt(vi) + eps)
