"""Direct convolution: the defining sums, vectorised along the contiguous channel axes.

    y[n, p, q, o]  = sum_{i, j, c} x[n, p*SH - PT + i*DH, q*SW - PL + j*DW, c] * w[i, j, c, o]
    dx[n, u, v, c] = sum over (i, j, p, q) with u = p*SH - PT + i*DH, v = q*SW - PL + j*DW of
                     sum_o dy[n, p, q, o] * w[i, j, c, o]
    dw[i, j, c, o] = sum_{n, p, q} x[n, p*SH - PT + i*DH, q*SW - PL + j*DW, c] * dy[n, p, q, o]

Forward and backward-data are parallel over output (input) rows and write disjoint rows;
backward-weight accumulates per-thread partial kernels that the caller adds up. Each parallel
task calls a serial row helper (LLVM vectorises loops in helpers, not inside ``prange`` bodies).
``g`` is ``ConvGeometry.astuple()``, unpacked whole in the order of ``CONV_FIELDS`` or read by
name (``g[CONV_OH]``, fastconv.geometry).
"""

from __future__ import annotations

import numba
from numba import prange

from ...geometry import CONV_H, CONV_N, CONV_OH
from .elementwise import RELU
from .jit import CONV_SERIAL_FLOPS, helper, sized_kernel


@helper
def _forward_row(x, w, b, has_bias, act, g, img, p, yrow):
    """One output row y[img, p] (OW x O)."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for q in range(ow):
        out = yrow[q]
        if has_bias:
            for m in range(o):
                out[m] = b[m]
        else:
            for m in range(o):
                out[m] = 0
        for i in range(kh):
            ih = p * sh - pt + i * dh
            if ih < 0 or ih >= h:
                continue
            xrow = x[img, ih]
            for j in range(kw):
                iw = q * sw - pl + j * dw
                if iw < 0 or iw >= wd:
                    continue
                for k in range(c):
                    xv = xrow[iw, k]
                    wv = w[i, j, k]
                    for m in range(o):
                        out[m] += xv * wv[m]
        if act == RELU:
            for m in range(o):
                out[m] = max(out[m], 0)


@sized_kernel(CONV_SERIAL_FLOPS)
def forward(x, w, b, has_bias, act, g, y):
    n, oh = g[CONV_N], g[CONV_OH]
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        _forward_row(x, w, b, has_bias, act, g, img, p, y[img, p])


@helper
def _backward_data_row(dy, w, wt, g, img, u, dxrow):
    """One input-gradient row dx[img, u] (W x C). ``w`` is the HWIO kernel, ``wt`` the same as
    (KH, KW, O, C): with few channels each dx value is a dot product along O (over ``w``),
    otherwise dy values scale runs along C (over ``wt``); either way the inner loop is
    contiguous."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for v in range(wd):
        acc = dxrow[v]
        for k in range(c):
            acc[k] = 0
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
                dyv = dy[img, p, q]
                if c < 8:
                    for k in range(c):
                        wv = w[i, j, k]
                        s = acc[k] * 0
                        for m in range(o):
                            s += dyv[m] * wv[m]
                        acc[k] += s
                else:
                    for m in range(o):
                        dv = dyv[m]
                        wv = wt[i, j, m]
                        for k in range(c):
                            acc[k] += dv * wv[k]


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_data(dy, w, wt, g, dx):
    n, h = g[CONV_N], g[CONV_H]
    for t in prange(n * h):
        img = t // h
        u = t - img * h
        _backward_data_row(dy, w, wt, g, img, u, dx[img, u])


@helper
def _backward_weight_row(x, dy, g, img, p, acc):
    """acc (KH, KW, C, O) += the contributions of output row dy[img, p]."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for q in range(ow):
        dyv = dy[img, p, q]
        for i in range(kh):
            ih = p * sh - pt + i * dh
            if ih < 0 or ih >= h:
                continue
            for j in range(kw):
                iw = q * sw - pl + j * dw
                if iw < 0 or iw >= wd:
                    continue
                xv_ = x[img, ih, iw]
                for k in range(c):
                    xv = xv_[k]
                    row = acc[i, j, k]
                    for m in range(o):
                        row[m] += xv * dyv[m]


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_weight(x, dy, g, partial):
    """partial[thread] (KH, KW, C, O) accumulates over the rows that thread takes."""
    n, oh = g[CONV_N], g[CONV_OH]
    partial[:] = 0
    for t in prange(n * oh):
        img = t // oh
        _backward_weight_row(x, dy, g, img, t - img * oh, partial[numba.get_thread_id()])



