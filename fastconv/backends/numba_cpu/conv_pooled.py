"""A convolution and the pooling after it in one pass, for inference.

    y[n, r, s, o] = pool over (i, j) < (PH, PW) of act(conv(x) + b)[n, r*PSH + i, s*PSW + j, o]

with max or average pooling whose windows do not overlap (strides >= pool size) and have no
padding. Each parallel task takes one image and a block of pooled rows: it computes the
convolution rows those windows read into a buffer that stays in cache (the im2col tiles of
``conv_im2col.conv_pixels``, the same arithmetic as the unfused forward), then pools them into
y. The convolution's output is never written to memory whole, and rows and columns that no
window reads (the last row and column of an odd size under 2x2 pooling) are not computed at
all: the tiles run over the convolution as if its output were only as wide as the windows
read.
The pooling itself is the pooling kernels' (``pool.max_row`` and ``pool.avg_row``), so its
results are those of the separate pass, bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ...geometry import (
    CONV_N,
    CONV_O,
    CONV_OH,
    CONV_OW,
    POOL_OH,
    POOL_OW,
    POOL_PH,
    POOL_PW,
    POOL_SH,
    POOL_SW,
)
from .conv_im2col import conv_pixels, scratch
from .jit import CONV_SERIAL_FLOPS, sized_kernel
from .pool import avg_row, max_row

MAX, AVERAGE = 0, 1


@sized_kernel(CONV_SERIAL_FLOPS)
def forward(x, wp, b, act, g, mode, pool, kind, rows_per, threads, y):
    """y (N, POH, POW, O) = pool(act(conv(x) + b)); ``x``, ``wp``, ``g`` and ``mode`` as for
    ``conv_im2col.forward``; ``pool`` the pooling's geometry over the convolution's output
    (``PoolGeometry.astuple()``), ``kind`` MAX or AVERAGE; ``rows_per`` pooled rows per task;
    ``threads`` the size of the thread pool (per-thread scratch)."""
    n, o, oh = g[CONV_N], g[CONV_O], g[CONV_OH]
    ph, pw, psh, psw, poh, pow_ = (pool[POOL_PH], pool[POOL_PW], pool[POOL_SH], pool[POOL_SW],
                                   pool[POOL_OH], pool[POOL_OW])
    used = (pow_ - 1) * psw + pw  # the columns the windows read
    # the convolution as if its output were `used` columns wide: its tiles skip the others
    gu = g[:CONV_OW] + (used,)
    blocks = (poh + rows_per - 1) // rows_per
    # tasks are small (a few tiles), so each thread keeps its scratch for all of its tasks
    zeros, ptrs, tile, cols = scratch(x, y, g, mode, threads)
    bufs = np.empty((threads, ((rows_per - 1) * psh + ph) * used * o), dtype=y.dtype)
    no_argmax = np.empty((1, 1), dtype=np.int32)
    for t in prange(n * blocks):
        img = t // blocks
        pr0 = (t - img * blocks) * rows_per
        pr1 = min(poh, pr0 + rows_per)
        p0 = pr0 * psh
        rows = (pr1 - 1 - pr0) * psh + ph  # conv rows p0 .. p0+rows-1, `used` pixels each
        me = numba.get_thread_id()
        conv_pixels(x, wp, b, act, gu, mode, (img * oh + p0) * used, rows * used, zeros,
                    ptrs[me], tile[me], cols[me], bufs[me], 0)
        part = bufs[me][:rows * used * o].reshape((1, rows, used, o))
        # the pooling kernels' own rows, over the buffer as a one-image input
        pg = (1, rows, used, o, ph, pw, psh, psw, 0, 0, 0, 0, pr1 - pr0, pow_)
        for r in range(pr1 - pr0):
            if kind == MAX:
                max_row(part, pg, 0, r, y[img, pr0 + r], no_argmax, False)
            else:
                avg_row(part, pg, 0, r, y[img, pr0 + r])
