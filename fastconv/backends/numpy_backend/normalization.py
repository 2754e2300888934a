"""NumPy batch and local response normalisation over (rows, channels) arrays: the reference.

Formulas in ``fastconv.backends.base.Backend`` (``batch_norm_*``, ``lrn_*``). Per-channel
constants are worked out in float64, then cast to the data's dtype.
"""

from __future__ import annotations

import numpy as np


def _inv_std(var, eps):
    return 1.0 / np.sqrt(var.astype(np.float64) + eps)


def batch_norm_statistics(x):
    x64 = x.astype(np.float64, copy=False)
    mean = x64.mean(axis=0)
    var = np.square(x64 - mean).mean(axis=0)
    return mean.astype(x.dtype), var.astype(x.dtype)


def batch_norm_forward(x, gamma, beta, mean, var, eps):
    scale = (gamma * _inv_std(var, eps)).astype(x.dtype)
    return (x - mean) * scale + beta


def batch_norm_backward(dy, x, gamma, mean, var, eps, training):
    inv = _inv_std(var, eps)
    xhat = (x - mean) * inv.astype(x.dtype)
    dbeta = dy.sum(axis=0, dtype=np.float64)
    dgamma = (dy * xhat).sum(axis=0, dtype=np.float64)
    scale = gamma * inv
    if training:
        n = x.shape[0]
        dx = (dy - (dbeta / n).astype(x.dtype) - xhat * (dgamma / n).astype(x.dtype)) \
            * scale.astype(x.dtype)
    else:
        dx = dy * scale.astype(x.dtype)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def _window_sum(a, radius):
    """s[:, c] = sum(a[:, c'] for |c' - c| <= radius), clipped at the channel ends."""
    channels = a.shape[1]
    padded = np.pad(a, ((0, 0), (radius, radius)))
    s = np.zeros_like(a)
    for offset in range(2 * radius + 1):
        s += padded[:, offset:offset + channels]
    return s


def lrn_forward(x, radius, bias, alpha, beta):
    scale = bias + alpha * _window_sum(x * x, radius)
    return x * scale ** -beta, scale


def lrn_backward(dy, x, y, scale, radius, alpha, beta):
    t = dy * y / scale
    return dy * scale ** -beta - (2 * alpha * beta) * x * _window_sum(t, radius)
