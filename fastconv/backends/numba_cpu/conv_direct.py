"""Direct convolution: the defining sums, vectorised along the contiguous channel axes.

    y[n, p, q, o]  = sum_{i, j, c} x[n, p*SH - PT + i*DH, q*SW - PL + j*DW, c] * w[i, j, c, o]
    dx[n, u, v, c] = sum over (i, j, p, q) with u = p*SH - PT + i*DH, v = q*SW - PL + j*DW of
                     sum_o dy[n, p, q, o] * w[i, j, c, o]
    dw[i, j, c, o] = sum_{n, p, q} x[n, p*SH - PT + i*DH, q*SW - PL + j*DW, c] * dy[n, p, q, o]

Forward and backward-data are parallel over output (input) rows and write disjoint rows;
backward-weight accumulates per-thread partial kernels that the caller adds up. ``g`` is
``ConvGeometry.astuple()``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .elementwise import RELU
from .jit import CONV_SERIAL_FLOPS, sized_kernel


@sized_kernel(CONV_SERIAL_FLOPS)
def forward(x, w, b, has_bias, act, g, y):
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        acc = np.empty(o, dtype=y.dtype)
        for q in range(ow):
            if has_bias:
                acc[:] = b
            else:
                acc[:] = 0
            for i in range(kh):
                ih = p * sh - pt + i * dh
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    iw = q * sw - pl + j * dw
                    if iw < 0 or iw >= wd:
                        continue
                    for k in range(c):
                        xv = x[img, ih, iw, k]
                        for m in range(o):
                            acc[m] += xv * w[i, j, k, m]
            if act == RELU:
                for m in range(o):
                    y[img, p, q, m] = max(acc[m], 0)
            else:
                y[img, p, q, :] = acc


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_data(dy, wt, g, dx):
    """``wt`` is the kernel as (KH, KW, O, C), so the innermost loop runs along C."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for t in prange(n * h):
        img = t // h
        u = t - img * h
        acc = np.empty(c, dtype=dx.dtype)
        for v in range(wd):
            acc[:] = 0
            for i in range(kh):
                num = u + pt - i * dh
                if num < 0 or num % sh != 0:
                    continue
                p = num // sh
                if p >= oh:
                    continue
                for j in range(kw):
                    numw = v + pl - j * dw
                    if numw < 0 or numw % sw != 0:
                        continue
                    q = numw // sw
                    if q >= ow:
                        continue
                    for m in range(o):
                        dv = dy[img, p, q, m]
                        for k in range(c):
                            acc[k] += dv * wt[i, j, m, k]
            dx[img, u, v, :] = acc


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_weight(x, dy, g, partial):
    """partial[thread] (KH, KW, C, O) accumulates over the images that thread takes."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    partial[:] = 0
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        acc = partial[numba.get_thread_id()]
        for q in range(ow):
            for i in range(kh):
                ih = p * sh - pt + i * dh
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    iw = q * sw - pl + j * dw
                    if iw < 0 or iw >= wd:
                        continue
                    for k in range(c):
                        xv = x[img, ih, iw, k]
                        for m in range(o):
                            acc[i, j, k, m] += xv * dy[img, p, q, m]
