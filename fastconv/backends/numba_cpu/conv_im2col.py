"""im2col convolution as an implicit GEMM on the micro-kernel: the patch matrix is never built.

Shapes: x (N, H, W, C), w (KH, KW, C, O) seen as the (K = KH*KW*C, O) matrix ``wm``, y
(N, OH, OW, O) seen as the (N*OH*OW, O) matrix. A patch row holds, for one output pixel, the
input values met by taps (i, j) in order i, j, c (zeros where the tap falls in the padding):

    cols[r, (i*KW + j)*C + c] = x[n, oh*SH - PT + i*DH, ow*SW - PL + j*DW, c]
    y = cols @ wm;   dcols = dy @ wm^T (scattered back: col2im);   dw = cols^T @ dy

Forward: for each tile of MR output pixels the micro-kernel reads the patch rows straight from
x: with horizontal dilation 1, one run of KW*C contiguous values per kernel row (from a
zero-padded copy of x when the convolution pads); otherwise one run of C channels per tap
(padding taps read zeros), or, with few channels, the tile's patch rows copied first.
Backward-data: dy rows times the packed wm^T, each result tile scattered into dx (one image per
task, so scatters never race).
Backward-weight: dw^T = dy^T @ cols over chunks of pixels, each chunk's patch columns packed as
panels, accumulated in per-thread partial kernels that the caller adds up. The geometry ``g`` is
``ConvGeometry.astuple()``: (n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow),
unpacked whole in that order or read by name (``g[CONV_OH]``, fastconv.geometry).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ...geometry import CONV_C, CONV_KH, CONV_KW, CONV_N, CONV_O, CONV_OH, CONV_OW
from .elementwise import RELU
from .gemm import matrix_rows, row_tile_bias_act
from .jit import CONV_SERIAL_FLOPS, helper, sized_kernel
from .microkernel import MR, copy_bytes, microkernel, tile_columns, zero_bytes

#: Below this many channels a tile's patch rows are copied into a buffer (few, short runs),
#: where kernel rows are not contiguous.
PACK_BELOW_CHANNELS = 16


@helper
def pixel_origin(g, q):
    """Output pixel q (flat over N, OH, OW) -> (image, top row, left column) of its window in
    the input (negative where the window starts in the padding)."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    img = q // (oh * ow)
    rem = q - img * oh * ow
    return img, (rem // ow) * sh - pt, (rem % ow) * sw - pl


@helper
def next_origin(g, img, y0, x0):
    """The window origin (see ``pixel_origin``) of the output pixel after the one at (img, y0,
    x0), in flat order. A tile's rows are found by such steps: integer division costs more
    than a tile's arithmetic when the channels are few."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    x0 += sw
    if x0 == ow * sw - pl:
        x0 = -pl
        y0 += sh
        if y0 == oh * sh - pt:
            y0 = -pt
            img += 1
    return img, y0, x0


@helper
def patch_pointers(x, g, q0, rows, zeros, ptrs, mr):
    """ptrs[tap*mr + r] = address of x[n, ih, iw, 0] for output pixel q0 + r and tap (i, j),
    or of ``zeros`` where the tap is in the padding or r >= rows (``mr``: the tile's rows,
    ``MR`` here, the grouped micro-kernel's own in conv_grouped)."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    base = x.ctypes.data
    item = x.itemsize
    zero = zeros.ctypes.data
    img, y0, x0 = pixel_origin(g, q0)
    for r in range(mr):
        if r >= rows:
            for tap in range(kh * kw):
                ptrs[tap * mr + r] = zero
            continue
        for i in range(kh):
            ih = y0 + i * dh
            for j in range(kw):
                iw = x0 + j * dw
                tap = i * kw + j
                if 0 <= ih < h and 0 <= iw < w:
                    ptrs[tap * mr + r] = base + (((img * h + ih) * w + iw) * c) * item
                else:
                    ptrs[tap * mr + r] = zero
        img, y0, x0 = next_origin(g, img, y0, x0)


@helper
def pack_patch_rows(x, g, q0, rows, cols):
    """cols[r] = the patch row of output pixel q0 + r (zeros for padding and r >= rows)."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    item = x.itemsize
    img, y0, x0 = pixel_origin(g, q0)
    for r in range(MR):
        if r >= rows:
            cols[r, :] = 0
            continue
        for i in range(kh):
            ih = y0 + i * dh
            for j in range(kw):
                iw = x0 + j * dw
                base = (i * kw + j) * c
                if 0 <= ih < h and 0 <= iw < w and c >= 4:
                    copy_bytes(cols.ctypes.data + (r * cols.shape[1] + base) * item,
                               x.ctypes.data + (((img * h + ih) * w + iw) * c) * item, c * item)
                elif 0 <= ih < h and 0 <= iw < w:
                    for k in range(c):
                        cols[r, base + k] = x[img, ih, iw, k]
                else:
                    for k in range(c):
                        cols[r, base + k] = 0
        img, y0, x0 = next_origin(g, img, y0, x0)


@helper
def kernel_row_pointers(x, g, q0, rows, zeros, ptrs):
    """For an unpadded geometry with horizontal dilation 1: ptrs[i*MR + r] = address of
    x[n, oh*SH + i*DH, ow*SW, 0] for output pixel q0 + r, the start of kernel row i's
    KW*C contiguous values (``zeros`` for r >= rows)."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    item = x.itemsize
    img, y0, x0 = pixel_origin(g, q0)  # unpadded: no offsets
    for r in range(MR):
        if r >= rows:
            for i in range(kh):
                ptrs[i * MR + r] = zeros.ctypes.data
            continue
        start = x.ctypes.data + (((img * h + y0) * w + x0) * c) * item
        for i in range(kh):
            ptrs[i * MR + r] = start + i * dh * w * c * item
        img, y0, x0 = next_origin(g, img, y0, x0)


#: forward modes: how the micro-kernel finds a tile's patch rows
ROW_SEGMENTS, TAP_SEGMENTS, PACKED_ROWS = 0, 1, 2


@helper
def conv_pixels(x, wp, b, act, g, mode, q_start, count, zeros, ptrs, tile, cols, out, out_off):
    """act(conv + b) of the output pixels q_start .. q_start+count-1 (flat over N, OH, OW)
    into the flat ``out`` from ``out_off`` on, O values per pixel, tile by tile, the bias and
    the activation applied in the micro-kernel's registers; ``b`` is rounded up to whole
    panels (zeros for no bias); ``ptrs``, ``tile`` and ``cols`` are the caller's scratch (see
    ``forward``)."""
    c, o, kh, kw = g[CONV_C], g[CONV_O], g[CONV_KH], g[CONV_KW]
    k = kh * kw * c
    # one call of the micro-kernel's driver for the three modes: it is the costly part to
    # compile, and each call site would compile (and optimise) it again
    nseg, seglen = (kh, kw * c) if mode == ROW_SEGMENTS else (
        (1, k) if mode == PACKED_ROWS else (kh * kw, c))
    for q0 in range(q_start, q_start + count, MR):
        rows = min(MR, q_start + count - q0)
        if mode == ROW_SEGMENTS:
            kernel_row_pointers(x, g, q0, rows, zeros, ptrs)
        elif mode == PACKED_ROWS:
            pack_patch_rows(x, g, q0, rows, cols)
            matrix_rows(cols, 0, MR, k, zeros, ptrs)
        else:
            patch_pointers(x, g, q0, rows, zeros, ptrs, MR)
        row_tile_bias_act(ptrs, nseg, seglen, wp, o, out, out_off + (q0 - q_start) * o, o, rows,
                          b, act == RELU, tile, x)


@helper
def scratch(x, out, g, mode, threads):
    """Scratch for ``conv_pixels`` writing into ``out``, one of each per thread (leading
    axis): (zeros (shared), ptrs, tile, cols)."""
    c, kh, kw = g[CONV_C], g[CONV_KH], g[CONV_KW]
    k = kh * kw * c
    zeros = np.zeros(max(k, 1), dtype=x.dtype)
    ptrs = np.empty((threads, kh * kw * MR), dtype=np.int64)
    tile = np.empty((threads, MR, tile_columns(out)), dtype=out.dtype)
    cols = np.empty((threads, MR if mode == PACKED_ROWS else 0, k), dtype=x.dtype)
    return zeros, ptrs, tile, cols


@sized_kernel(CONV_SERIAL_FLOPS)
def forward(x, wp, b, act, g, mode, rows_per, y2):
    """y2 (N*OH*OW, O) = act(cols @ wm + b); ``wp`` is wm packed in panels, ``b`` the bias
    rounded up to whole panels; x and ``wp`` as uint16 are bfloat16 (``bfloat16.py``, float32
    y2, even segment lengths). ``mode``:
    ROW_SEGMENTS (x already padded, horizontal dilation 1: one segment of KW*C values per
    kernel row), TAP_SEGMENTS (one segment of C values per tap, padding read from zeros) or
    PACKED_ROWS (few channels: the tile's patch rows copied first)."""
    o = g[CONV_O]
    m = y2.shape[0]
    yflat = y2.reshape(-1)
    for t in prange((m + rows_per - 1) // rows_per):
        zeros, ptrs, tile, cols = scratch(x, y2, g, mode, 1)
        r0 = t * rows_per
        conv_pixels(x, wp, b, act, g, mode, r0, min(m, r0 + rows_per) - r0, zeros,
                    ptrs[0], tile[0], cols[0], yflat, r0 * o)


@helper
def add_run(dst, dst_off, src, src_off, count):
    """dst[dst_off : dst_off + count] += src[src_off : src_off + count] (flat arrays)."""
    for t in range(count):
        dst[dst_off + t] += src[src_off + t]


@helper
def scatter_tile(tile, rows, col0, cols, g, q0, dx):
    """col2im for one result tile: dx[pixel met by tap] += dcols[q0 + r, col0 + j], one
    contiguous run of channels at a time."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    dflat = dx.reshape(-1)
    tflat = tile.reshape(-1)
    nr = tile.shape[1]
    img, y0, x0 = pixel_origin(g, q0)
    for r in range(rows):
        col = col0
        while col < col0 + cols:
            tap = col // c
            k = col - tap * c
            take = min(c - k, col0 + cols - col)
            i = tap // kw
            ih = y0 + i * dh
            iw = x0 + (tap - i * kw) * dw
            if 0 <= ih < h and 0 <= iw < w:
                add_run(dflat, ((img * h + ih) * w + iw) * c + k, tflat, r * nr + col - col0,
                        take)
            col += take
        img, y0, x0 = next_origin(g, img, y0, x0)


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_data(dy2, wtp, g, dx):
    """dx (zeroed by the caller) += col2im(dy2 @ wm^T); ``wtp`` is wm^T packed in panels. One
    image per task, so the scatters of two tasks never meet."""
    n, c, o, kh, kw = g[CONV_N], g[CONV_C], g[CONV_O], g[CONV_KH], g[CONV_KW]
    oh, ow = g[CONV_OH], g[CONV_OW]
    k = kh * kw * c
    per_image = oh * ow
    zeros = np.zeros(max(o, 1), dtype=dy2.dtype)
    item = dy2.itemsize
    for img in prange(n):
        ptrs = np.empty(MR, dtype=np.int64)
        tile = np.empty((MR, tile_columns(dx)), dtype=dx.dtype)
        nr = tile.shape[1]
        for q0 in range(img * per_image, (img + 1) * per_image, MR):
            rows = min(MR, (img + 1) * per_image - q0)
            matrix_rows(dy2, q0, rows, o, zeros, ptrs)
            for jp in range((k + nr - 1) // nr):
                microkernel(1, o, ptrs, wtp.ctypes.data + jp * o * nr * item, tile.ctypes.data,
                            nr, False, tile)
                scatter_tile(tile, rows, jp * nr, min(nr, k - jp * nr), g, q0, dx)


@helper
def pack_patch_panels(x, g, q0, count, kpad, bp):
    """The patch rows of output pixels q0 .. q0+count-1 as B panels for dw^T = dy^T @ cols:
    ``bp[(jp*count + p)*NR + j] = cols[q0 + p, jp*NR + j]`` (columns beyond K are zero). Each
    tap's channel run is copied (memcpy) in pieces that stay within one panel."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    nr = tile_columns(bp)
    k = kh * kw * c
    item = bp.itemsize
    xa, ba = x.ctypes.data, bp.ctypes.data
    xflat = x.reshape(-1)
    img, y0, x0 = pixel_origin(g, q0)
    for p in range(count):
        for i in range(kh):
            ih = y0 + i * dh
            for j in range(kw):
                iw = x0 + j * dw
                inside = 0 <= ih < h and 0 <= iw < w
                src = ((img * h + ih) * w + iw) * c
                col = (i * kw + j) * c
                done = 0
                while done < c:
                    jp = col // nr
                    jj = col - jp * nr
                    take = min(c - done, nr - jj)
                    dst = ba + ((jp * count + p) * nr + jj) * item
                    if inside and take >= 4:
                        copy_bytes(dst, xa + (src + done) * item, take * item)
                    elif inside:
                        for t in range(take):
                            bp[(jp * count + p) * nr + jj + t] = xflat[src + done + t]
                    else:
                        zero_bytes(dst, take * item)
                    done += take
                    col += take
        for col in range(k, kpad):
            jp = col // nr
            bp[(jp * count + p) * nr + col - jp * nr] = 0
        img, y0, x0 = next_origin(g, img, y0, x0)


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_weight(x, dyt, g, chunk, partial):
    """partial[thread] (O rounded up to MR, K rounded up to NR) += dy^T @ cols over the pixel
    chunks the thread takes; ``dyt`` is dy as (O, N*OH*OW). The caller sums the partials."""
    o = g[CONV_O]
    m = dyt.shape[1]
    opad, kpad = partial.shape[1], partial.shape[2]
    zeros = np.zeros(chunk, dtype=dyt.dtype)
    partial[:] = 0
    item = dyt.itemsize
    for t in prange((m + chunk - 1) // chunk):
        q0 = t * chunk
        count = min(chunk, m - q0)
        bp = np.empty(kpad * count, dtype=dyt.dtype)
        pack_patch_panels(x, g, q0, count, kpad, bp)
        ptrs = np.empty(MR, dtype=np.int64)
        acc = partial[numba.get_thread_id()].reshape(-1)
        nr = tile_columns(bp)
        for o0 in range(0, opad, MR):
            for r in range(MR):
                row = o0 + r
                ptrs[r] = (dyt.ctypes.data + (row * m + q0) * item if row < o
                           else zeros.ctypes.data)
            for jp in range(kpad // nr):
                microkernel(1, count, ptrs, bp.ctypes.data + jp * count * nr * item,
                            acc.ctypes.data + (o0 * kpad + jp * nr) * item, kpad, True, bp)


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_weight_single_channel(x, dyp, g, partial):
    """Backward-weight for one input channel and horizontal stride 1 (``g`` unpadded, x padded
    explicitly): dw (KH*KW, O) = cols^T @ dy, where row (i, j) of cols^T, along output row
    (img, p), is x[img, p*SH + i*DH, j*DW : j*DW + OW], contiguous; so the micro-kernel reads x
    in place, one segment per output row, against ``dyp`` (dy packed in panels over O). One
    image per task; partial[thread] is (KH*KW rounded up to MR, O rounded up to NR)."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    taps = kh * kw
    tpad, opad = partial.shape[1], partial.shape[2]
    nr = tile_columns(partial)
    m = n * oh * ow
    item = x.itemsize
    zeros = np.zeros(ow, dtype=x.dtype)
    partial[:] = 0
    for img in prange(n):
        acc = partial[numba.get_thread_id()].reshape(-1)
        ptrs = np.empty(oh * MR, dtype=np.int64)
        for r0 in range(0, tpad, MR):
            for p in range(oh):
                for r in range(MR):
                    tap = r0 + r
                    if tap < taps:
                        i = tap // kw
                        j = tap - i * kw
                        ptrs[p * MR + r] = x.ctypes.data + (
                            (img * h + p * sh + i * dh) * w + j * dw) * item
                    else:
                        ptrs[p * MR + r] = zeros.ctypes.data
            for jp in range(opad // nr):
                microkernel(oh, ow, ptrs, dyp.ctypes.data + (jp * m + img * oh * ow) * nr * item,
                            acc.ctypes.data + (r0 * opad + jp * nr) * item, opad, True, partial)


@sized_kernel(CONV_SERIAL_FLOPS)
def backward_weight_row_pointers(x, dyt, g, chunk, partial):
    """backward_weight for C a multiple of NR: each B panel of cols is one tap's block of NR
    channels, so the micro-kernel reads its rows straight from x (a table of row addresses per
    chunk of pixels; zeros for padding) and nothing is packed."""
    n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    m = dyt.shape[1]
    opad, kpad = partial.shape[1], partial.shape[2]
    nr = tile_columns(partial)
    blocks = c // nr
    item = dyt.itemsize
    zeros = np.zeros(max(chunk, nr), dtype=dyt.dtype)
    partial[:] = 0
    for t in prange((m + chunk - 1) // chunk):
        q0 = t * chunk
        count = min(chunk, m - q0)
        acc = partial[numba.get_thread_id()].reshape(-1)
        ptrs = np.empty(MR, dtype=np.int64)
        rows = np.empty((kh * kw, count), dtype=np.int64)  # address of x at (pixel, tap)
        img, y0, x0 = pixel_origin(g, q0)
        for p in range(count):
            for i in range(kh):
                ih = y0 + i * dh
                for j in range(kw):
                    iw = x0 + j * dw
                    rows[i * kw + j, p] = (
                        x.ctypes.data + (((img * h + ih) * w + iw) * c) * item
                        if 0 <= ih < h and 0 <= iw < w else zeros.ctypes.data)
            img, y0, x0 = next_origin(g, img, y0, x0)
        brows = np.empty(count, dtype=np.int64)
        for tap in range(kh * kw):
            for blk in range(blocks):
                for p in range(count):
                    base = rows[tap, p]
                    brows[p] = base + blk * nr * item if base != zeros.ctypes.data else base
                col = (tap * blocks + blk) * nr
                for o0 in range(0, opad, MR):
                    for r in range(MR):
                        row = o0 + r
                        ptrs[r] = (dyt.ctypes.data + (row * m + q0) * item if row < o
                                   else zeros.ctypes.data)
                    microkernel(1, count, ptrs, brows, acc.ctypes.data + (o0 * kpad + col) * item,
                                kpad, True, partial)
