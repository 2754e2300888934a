"""im2col + GEMM convolution, tiled so that each thread packs a block of patch rows into a
buffer that stays in cache, multiplies it with the kernel matrix and applies the epilogue.

Shapes: x (N, H, W, C), w (KH, KW, C, O) seen as the (KH*KW*C, O) matrix ``wm``, y (N, OH, OW, O)
seen as the (N*OH*OW, O) matrix. A patch row holds, for one output pixel, the input values met by
taps (i, j) in order i, j, c (zeros where the tap falls in the padding):

    cols[r, (i*KW + j)*C + c] = x[n, oh*SH - PT + i*DH, ow*SW - PL + j*DW, c]
    y = cols @ wm;   dcols = dy @ wm^T (scattered back: col2im);   dw = cols^T @ dy

The geometry ``g`` is ``ConvGeometry.astuple()``: (n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb,
pl, pr, oh, ow).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .blas import NO_TRANS, TRANS
from .elementwise import RELU
from .gemm import gemm_tile
from .jit import CONV_SERIAL_FLOPS, helper, sized_kernel


@helper
def pack_rows(x, g, r0, rows, cols):
    """cols[0:rows] = patch rows r0 .. r0+rows-1 (flat output-pixel index n*OH*OW + oh*OW + ow)."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for r in range(rows):
        q = r0 + r
        b = q // (oh * ow)
        rem = q - b * oh * ow
        y0 = (rem // ow) * sh - pt
        x0 = (rem % ow) * sw - pl
        for i in range(kh):
            ih = y0 + i * dh
            for j in range(kw):
                iw = x0 + j * dw
                base = (i * kw + j) * c
                if 0 <= ih < h and 0 <= iw < w:
                    for k in range(c):
                        cols[r, base + k] = x[b, ih, iw, k]
                else:
                    for k in range(c):
                        cols[r, base + k] = 0


@helper
def scatter_rows(dcols, g, r0, rows, dx):
    """col2im for one tile: dx[pixel met by tap] += dcols[r, tap block]; serial."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for r in range(rows):
        q = r0 + r
        b = q // (oh * ow)
        rem = q - b * oh * ow
        y0 = (rem // ow) * sh - pt
        x0 = (rem % ow) * sw - pl
        for i in range(kh):
            ih = y0 + i * dh
            if ih < 0 or ih >= h:
                continue
            for j in range(kw):
                iw = x0 + j * dw
                if iw < 0 or iw >= w:
                    continue
                base = (i * kw + j) * c
                for k in range(c):
                    dx[b, ih, iw, k] += dcols[r, base + k]


@helper
def epilogue_rows(y2, r0, rows, b, has_bias, act):
    o = y2.shape[1]
    for r in range(r0, r0 + rows):
        if has_bias:
            for k in range(o):
                y2[r, k] += b[k]
        if act == RELU:
            for k in range(o):
                y2[r, k] = max(y2[r, k], 0)


@sized_kernel(CONV_SERIAL_FLOPS)
def forward(blas, x, wm, b, has_bias, act, g, direct_rows, rows_per, y2):
    """y2 (N*OH*OW, O) = act(cols @ wm + b). ``direct_rows``: x itself is the patch matrix (1x1,
    stride 1, no padding), so no packing is needed."""
    m, o = y2.shape
    k = wm.shape[0]
    x2 = x.reshape(-1)
    wflat = wm.reshape(-1)
    yflat = y2.reshape(-1)
    for t in prange((m + rows_per - 1) // rows_per):
        r0 = t * rows_per
        rows = min(rows_per, m - r0)
        if direct_rows:
            gemm_tile(blas, NO_TRANS, NO_TRANS, rows, o, k, x2, r0 * k, k, wflat, 0, o, 0.0,
                      yflat, r0 * o, o)
        else:
            cols = np.empty((rows, k), dtype=x.dtype)
            pack_rows(x, g, r0, rows, cols)
            gemm_tile(blas, NO_TRANS, NO_TRANS, rows, o, k, cols.reshape(-1), 0, k, wflat, 0, o,
                      0.0, yflat, r0 * o, o)
        epilogue_rows(y2, r0, rows, b, has_bias, act)


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_data(blas, dy2, wm, g, rows_per, dx):
    """dx (zeroed by the caller) += col2im(dy2 @ wm^T); one image per task, so the scatter of
    one task never meets another's."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    k = wm.shape[0]
    per_image = oh * ow
    dflat = dy2.reshape(-1)
    wflat = wm.reshape(-1)
    for img in prange(n):
        dcols = np.empty((min(rows_per, per_image), k), dtype=dy2.dtype)
        for r0 in range(img * per_image, (img + 1) * per_image, rows_per):
            rows = min(rows_per, (img + 1) * per_image - r0)
            gemm_tile(blas, NO_TRANS, TRANS, rows, k, o, dflat, r0 * o, o, wflat, 0, o, 0.0,
                      dcols.reshape(-1), 0, k)
            scatter_rows(dcols, g, r0, rows, dx)


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_weight(blas, x, dy2, g, direct_rows, rows_per, partial):
    """partial[thread] += cols^T @ dy2 over row tiles; the caller sums the partials."""
    m, o = dy2.shape
    k = partial.shape[1]
    x2 = x.reshape(-1)
    dflat = dy2.reshape(-1)
    partial[:] = 0
    for t in prange((m + rows_per - 1) // rows_per):
        acc = partial[numba.get_thread_id()].reshape(-1)
        r0 = t * rows_per
        rows = min(rows_per, m - r0)
        if direct_rows:
            gemm_tile(blas, TRANS, NO_TRANS, k, o, rows, x2, r0 * k, k, dflat, r0 * o, o, 1.0,
                      acc, 0, o)
        else:
            cols = np.empty((rows, k), dtype=x.dtype)
            pack_rows(x, g, r0, rows, cols)
            gemm_tile(blas, TRANS, NO_TRANS, k, o, rows, cols.reshape(-1), 0, k, dflat, r0 * o,
                      o, 1.0, acc, 0, o)
