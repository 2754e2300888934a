"""Winograd F(m x m, 3x3) convolution (Lavin & Gray 2016), fused per block of tiles.

For each block of ``tiles_per`` output tiles, on one thread:

1. input transform   V[e, t, :] = (B^T d_t B)[e]   for the (m+2)^2 elements e of tile t
2. element-wise GEMMs M[e] = V[e] @ U[e]          ((tiles x C) @ (C x O), micro-kernel)
3. output transform  y[tile t] = act(A^T M[:, t] A + b)

``U = G g G^T`` (shape ((m+2)^2, C, O)) is computed once per call by ``filter_transform`` and
packed into micro-kernel panels by ``pack_filter_panels``. The
transform matrices come from ``fastconv.winograd`` (shared with every backend); zero coefficients
are skipped. Channels are the innermost, contiguous axis of every buffer, so each transform step
is a vector operation over C (or O). ``g`` is ``ConvGeometry.astuple()``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .elementwise import RELU
from .jit import CONV_SERIAL_FLOPS, helper, sized_kernel
from .microkernel import MR, microkernel, pack_panels, tile_columns


@sized_kernel()
def filter_transform(w, G, U):
    """U[a*alpha + b, c, o] = sum_{i, j} G[a, i] w[i, j, c, o] G[b, j]."""
    kh, kw, c, o = w.shape
    alpha = G.shape[0]
    for k in prange(c):
        tmp = np.empty((alpha, kw, o), dtype=U.dtype)
        for a in range(alpha):
            for j in range(kw):
                tmp[a, j, :] = 0
                for i in range(kh):
                    coef = G[a, i]
                    if coef != 0:
                        for m in range(o):
                            tmp[a, j, m] += coef * w[i, j, k, m]
        for a in range(alpha):
            for b in range(alpha):
                row = U[a * alpha + b, k]
                row[:] = 0
                for j in range(kw):
                    coef = G[b, j]
                    if coef != 0:
                        for m in range(o):
                            row[m] += coef * tmp[a, j, m]


@helper
def pack_filter_panels(U, Up):
    """Up[e] = U[e] (C x O) packed in micro-kernel panels, for each tile element e."""
    a2, c, o = U.shape
    for e in range(a2):
        pack_panels(U[e], c, o, False, Up[e])


@helper
def tile_position(tile, th, tw):
    """Tile index (flat over images, tile rows, tile columns) -> (image, tile row, column)."""
    img = tile // (th * tw)
    rest = tile - img * th * tw
    ty = rest // tw
    return img, ty, rest - ty * tw


@sized_kernel(CONV_SERIAL_FLOPS)
def forward(x, Up, BT, AT, b, has_bias, act, g, tiles, tiles_per, y):
    """``tiles`` = (m, tiles along H, tiles along W); ``Up`` from ``pack_filter_panels``."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    m, th, tw = tiles
    alpha = BT.shape[0]
    a2 = alpha * alpha
    total = n * th * tw
    nr = tile_columns(y)
    opad = (o + nr - 1) // nr * nr
    item = x.itemsize
    for blk in prange((total + tiles_per - 1) // tiles_per):
        t0 = blk * tiles_per
        nt = min(tiles_per, total - t0)
        ntp = (nt + MR - 1) // MR * MR
        V = np.empty((a2, ntp, c), dtype=x.dtype)
        V[:, nt:, :] = 0
        M = np.empty((a2, ntp, opad), dtype=x.dtype)
        d = np.empty((alpha, alpha, c), dtype=x.dtype)
        tmp = np.empty((alpha, alpha, c), dtype=x.dtype)
        ptrs = np.empty(MR, dtype=np.int64)
        # 1. input transform, tile by tile
        for tt in range(nt):
            img, ty, tx = tile_position(t0 + tt, th, tw)
            for a in range(alpha):
                ih = ty * m + a - pt
                for bb in range(alpha):
                    iw = tx * m + bb - pl
                    if 0 <= ih < h and 0 <= iw < wd:
                        d[a, bb, :] = x[img, ih, iw, :]
                    else:
                        d[a, bb, :] = 0
            for a2_ in range(alpha):  # tmp = B^T d (rows)
                for bb in range(alpha):
                    tmp[a2_, bb, :] = 0
                    for a in range(alpha):
                        coef = BT[a2_, a]
                        if coef != 0:
                            for k in range(c):
                                tmp[a2_, bb, k] += coef * d[a, bb, k]
            for a2_ in range(alpha):  # V = tmp B (columns)
                for b2_ in range(alpha):
                    row = V[a2_ * alpha + b2_, tt]
                    row[:] = 0
                    for bb in range(alpha):
                        coef = BT[b2_, bb]
                        if coef != 0:
                            for k in range(c):
                                row[k] += coef * tmp[a2_, bb, k]
        # 2. one GEMM per tile element, in MR-row tiles (V and M are padded to whole tiles)
        for e in range(a2):
            panel = Up[e].ctypes.data
            for i0 in range(0, ntp, MR):
                for r in range(MR):
                    ptrs[r] = V.ctypes.data + ((e * ntp + i0 + r) * c) * item
                for jp in range(opad // nr):
                    microkernel(1, c, ptrs, panel + jp * c * nr * item,
                                M.ctypes.data + ((e * ntp + i0) * opad + jp * nr) * item, opad,
                                False, M)
        # 3. output transform and epilogue
        part = np.empty((m, alpha, o), dtype=x.dtype)
        acc = np.empty(o, dtype=x.dtype)
        for tt in range(nt):
            img, ty, tx = tile_position(t0 + tt, th, tw)
            for p in range(m):
                for bb in range(alpha):
                    part[p, bb, :] = 0
                    for a in range(alpha):
                        coef = AT[p, a]
                        if coef != 0:
                            for k in range(o):
                                part[p, bb, k] += coef * M[a * alpha + bb, tt, k]
            for p in range(m):
                oy = ty * m + p
                if oy >= oh:
                    continue
                for q in range(m):
                    ox = tx * m + q
                    if ox >= ow:
                        continue
                    if has_bias:
                        acc[:] = b
                    else:
                        acc[:] = 0
                    for bb in range(alpha):
                        coef = AT[q, bb]
                        if coef != 0:
                            for k in range(o):
                                acc[k] += coef * part[p, bb, k]
                    if act == RELU:
                        for k in range(o):
                            y[img, oy, ox, k] = max(acc[k], 0)
                    else:
                        y[img, oy, ox, :] = acc
