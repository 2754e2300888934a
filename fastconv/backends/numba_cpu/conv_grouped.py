"""Grouped and depthwise convolution: G groups, each a convolution of C/G input channels into
O/G output channels, all of one NHWC input into one NHWC output.

Shapes: x (N, H, W, C), w (KH, KW, C/G, O) (Keras's ``Conv2D(groups=G)`` kernel; output channel
``g*O/G + o`` belongs to group g and sees input channels ``g*C/G ... (g+1)*C/G - 1``), y
(N, OH, OW, O). Depthwise convolution is G == C: w is Keras's ``DepthwiseConv2D`` kernel
(KH, KW, C, M) seen as (KH, KW, 1, C*M), output channel ``c*M + m``.

    y[n, p, q, g*O/G + o] = sum_{i, j, c} x[n, p*SH - PT + i*DH, q*SW - PL + j*DW, g*C/G + c]
                                          * w[i, j, c, g*O/G + o]

Forward, depthwise (``depthwise_forward``): memory-bound, a direct loop over output pixels with
the channels innermost (contiguous in x, w and y). 3x3 kernels with multiplier 1 (MobileNet's)
run as explicit-vector sweeps (``sweep``): one vector of channels along a row of output pixels,
the nine weight vectors held in registers, each pixel's nine products summed in one register
and stored once, with the activation; border pixels sweep with a mask of the taps inside the
input. Other kernels and multipliers add tap by tap (vectorised along the channels). Parallel
over batch x output rows.
Forward, grouped (``grouped_forward``): per group an implicit GEMM on the micro-kernel, the
tile's patch rows read in place from x (one segment of C/G channels per tap, at the group's
channel offset, padding read from zeros), against the group's kernel packed in panels of one
vector (8 float32 / 4 float64 columns, so that groups of few output channels waste little), bias
and activation in the micro-kernel's epilogue. Parallel over blocks of output pixels, as many
per thread; within a block of tiles, group by group.
Backward passes: direct loops, vectorised along the channels; backward-data parallel over input
rows, backward-weight over output rows into per-thread partial kernels the caller adds up.

Every kernel runs serially below a size of work and in parallel above (``SizedKernel``):
``CONV_SERIAL_FLOPS`` for the micro-kernel, a quarter of it for the direct loops. ``g`` is
``ConvGeometry.astuple()`` of the whole convolution (``c`` = C, ``o`` = O).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ...geometry import (
    CONV_C,
    CONV_H,
    CONV_KH,
    CONV_KW,
    CONV_N,
    CONV_O,
    CONV_OH,
    CONV_OW,
    CONV_PL,
    CONV_PT,
    CONV_SH,
    CONV_SW,
)
from ..derived import DerivedCache
from .conv_im2col import patch_pointers
from .elementwise import ACTIVATION_CODES, RELU
from .gemm import store_tile
from .jit import CONV_SERIAL_FLOPS, helper, sized_kernel
from .microkernel import MR, W32, make_microkernel_bias_act

#: float32 lanes of the grouped micro-kernel's one vector per row (float64: half)
GROUP_LANES32 = 8
NRG32, NRG64 = GROUP_LANES32, GROUP_LANES32 // 2
#: Rows of the grouped micro-kernel's tile, one accumulator each: 12 of the 16 AVX2 registers
#: (AVX-512: 6 to 12 rows ran as fast on ResNeXt's 32 groups of 8 channels, 16 and 24 slower)
MRG = 12 if W32 >= 8 else MR
#: MRG x NRG tiles with the convolution's epilogue
group_microkernel = make_microkernel_bias_act(MRG, 1, GROUP_LANES32)
#: Tiles of output pixels the grouped forward runs group by group (``_group_tiles``)
BLOCK_TILES = 8
#: Largest number of output pixels one parallel task of the grouped forward takes
TASK_PIXELS = 768
#: Work (FLOPs) from which the direct loops (depthwise forward, both backward passes) run in
#: parallel: they compute about a quarter of a GEMM's FLOP/s (memory-bound), so waking the
#: pool pays from a quarter of ``CONV_SERIAL_FLOPS`` (MobileNetV2's 14x14x576 depthwise layer,
#: 2.0 MFLOP: 83 us serial, 49 us on two threads, AMD EPYC)
DIRECT_SERIAL_FLOPS = CONV_SERIAL_FLOPS // 4


# -- depthwise forward ------------------------------------------------------------------------

def vector_lanes(like):
    """Lanes of the depthwise row sweep's vectors for arrays like ``like`` (in kernels)."""


@overload(vector_lanes, jit_options={"cache": True})
def _vector_lanes(like):
    lanes = W32 if like.dtype == types.float32 else W32 // 2
    return lambda like: lanes


def _make_sweep(masked: bool):
    """The 3x3 depthwise row sweep intrinsic; ``masked``: with a mask of the taps to add."""

    def typer(typingctx, r0, r1, r2, wp, bp, yp, count, xstep, tapstep, ldw, ystep, relu,
              mask, like):
        if not isinstance(like, types.Array) or like.dtype not in (types.float32,
                                                                     types.float64):
            return None
        sig = types.void(r0, r1, r2, wp, bp, yp, count, xstep, tapstep, ldw, ystep, relu, mask,
                         like)

        def codegen(context, builder, signature, args):
            _emit_sweep(context, builder, args, like.dtype, masked)
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = "depthwise_3x3_sweep_masked" if masked else "depthwise_3x3_sweep"
    return intrinsic(typer)


def _emit_sweep(context, builder, args, dtype, masked):
    """The sweep's IR: weights and bias loaded once, then per output pixel nine fused
    multiply-adds (the taps in ``mask`` only, where ``masked``) into one accumulator, the
    activation and one store."""
    r0_v, r1_v, r2_v, wp_v, bp_v, yp_v, count_v, xstep_v, tap_v, ldw_v, ystep_v, relu_v, \
        mask_v = args[:13]
    i64 = ir.IntType(64)
    lanes = W32 if dtype == types.float32 else W32 // 2
    real = context.get_value_type(dtype)
    vec = ir.VectorType(real, lanes)
    rptr, vptr = real.as_pointer(), vec.as_pointer()
    align = dtype.bitwidth // 8
    suffix = "f32" if dtype == types.float32 else "f64"
    fmuladd = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{lanes}{suffix}")
    zero = ir.Constant(vec, [ir.Constant(real, 0.0)] * lanes)

    def i64v(v):
        return builder.sext(v, i64) if v.type.width < 64 else v

    def load(base, offset):
        return builder.load(builder.bitcast(builder.gep(base, [offset]), vptr), align=align)

    rows = [builder.inttoptr(v, rptr) for v in (r0_v, r1_v, r2_v)]
    wbase, ybase = builder.inttoptr(wp_v, rptr), builder.inttoptr(yp_v, rptr)
    xstep, tap, ldw, ystep, mask = (i64v(v) for v in (xstep_v, tap_v, ldw_v, ystep_v, mask_v))
    weights = [load(wbase, builder.mul(ldw, ir.Constant(i64, t))) for t in range(9)]
    bias = load(builder.inttoptr(bp_v, rptr), ir.Constant(i64, 0))
    taps = [ir.Constant(i64, 0), tap, builder.add(tap, tap)]
    wanted = [builder.icmp_unsigned("!=", builder.and_(mask, ir.Constant(i64, 1 << t)),
                                    ir.Constant(i64, 0)) for t in range(9)] if masked else None
    acc_slot = cgutils.alloca_once(builder, vec)
    with cgutils.for_range(builder, i64v(count_v)) as loop:
        start = builder.mul(loop.index, xstep)
        builder.store(bias, acc_slot)
        for i in range(3):
            for j in range(3):
                t = i * 3 + j
                if masked:
                    with builder.if_then(wanted[t]):
                        value = load(rows[i], builder.add(start, taps[j]))
                        builder.store(builder.call(
                            fmuladd, [value, weights[t], builder.load(acc_slot)]), acc_slot)
                else:
                    value = load(rows[i], builder.add(start, taps[j]))
                    builder.store(builder.call(fmuladd, [value, weights[t],
                                                         builder.load(acc_slot)]), acc_slot)
        with builder.if_then(relu_v):
            acc = builder.load(acc_slot)
            builder.store(builder.select(builder.fcmp_ordered(">", zero, acc), zero, acc),
                          acc_slot)
        target = builder.bitcast(builder.gep(ybase, [builder.mul(loop.index, ystep)]), vptr)
        builder.store(builder.load(acc_slot), target, align=align)


#: One vector of channels (``vector_lanes``) of ``count`` output pixels of a 3x3 depthwise row
#: sweep (multiplier 1), in explicit vectors: ``sweep(r0, r1, r2, wp, bp, yp, count, xstep,
#: tapstep, ldw, ystep, relu, mask, like)``. The nine weight vectors and the bias stay in
#: registers over the sweep; each pixel's products are summed in one accumulator, activated
#: (``relu``: negative sums stored as 0, NaN kept) and stored once. ``r0``, ``r1``, ``r2``:
#: addresses of the first pixel's top-left tap in kernel rows 0..2 at the vector's first
#: channel; ``wp``, ``bp``, ``yp``: addresses of that channel in tap (0, 0) of the kernel, in
#: the bias and in the first output pixel; in elements: ``xstep`` from one pixel's window to
#: the next (SW*C), ``tapstep`` between horizontal taps (DW*C), ``ldw`` between the kernel's
#: taps (C), ``ystep`` between output pixels (O). ``sweep_masked`` adds only the taps t = i*3+j
#: whose bit ``1 << t`` is set in ``mask`` (the others are never read: border pixels);
#: ``sweep`` ignores ``mask``. Element type from the array ``like``.
sweep = _make_sweep(False)
sweep_masked = _make_sweep(True)


@helper
def _dw_add_taps(x, w, g, mult, img, y0, x0, out):
    """out (C*M) += the products of the window whose top-left tap is at (y0, x0), the taps
    that fall in the padding left out."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    for i in range(kh):
        ih = y0 + i * dh
        if ih < 0 or ih >= h:
            continue
        xrow = x[img, ih]
        for j in range(kw):
            iw = x0 + j * dw
            if iw < 0 or iw >= wd:
                continue
            xv = xrow[iw]
            wv = w[i, j, 0]
            if mult == 1:
                for k in range(c):
                    out[k] += xv[k] * wv[k]
            else:
                for ch in range(c):
                    xs = xv[ch]
                    base = ch * mult
                    for m in range(mult):
                        out[base + m] += xs * wv[base + m]


@helper
def _dw_span(x, w, b, g, mult, img, y0, q0, q1, yrow):
    """Output pixels q0 .. q1-1 of one row, tap by tap (any window, any multiplier)."""
    o, sw, pl = g[CONV_O], g[CONV_SW], g[CONV_PL]
    for q in range(q0, q1):
        out = yrow[q]
        for k in range(o):
            out[k] = b[k]
        _dw_add_taps(x, w, g, mult, img, y0, q * sw - pl, out)


@helper
def _dw_3x3_run(x, w, b, relu, g, img, y0, q0, q1, mask, yrow):
    """Output pixels q0 .. q1-1 of one row of a 3x3 depthwise convolution (multiplier 1),
    activation included, the taps in ``mask`` only (all nine: 511): whole vectors of channels
    swept along the row (``sweep``: the input rows a vector reads stay in L1), the channels
    left over by a loop."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    if q1 <= q0:
        return
    item = x.itemsize
    lanes = vector_lanes(x)
    a0 = q0 * sw - pl
    base = x.ctypes.data + ((img * h + y0) * wd + a0) * c * item  # top-left tap, channel 0
    r0, r1, r2 = base, base + dh * wd * c * item, base + 2 * dh * wd * c * item
    whole = c - c % lanes
    full = mask == 511
    wp, bp = w.ctypes.data, b.ctypes.data
    yp = yrow[q0].ctypes.data
    for k in range(0, whole, lanes):
        off = k * item
        if full:
            sweep(r0 + off, r1 + off, r2 + off, wp + off, bp + off, yp + off, q1 - q0, sw * c,
                  dw * c, c, o, relu, mask, yrow)
        else:
            sweep_masked(r0 + off, r1 + off, r2 + off, wp + off, bp + off, yp + off, q1 - q0,
                         sw * c, dw * c, c, o, relu, mask, yrow)
    if whole < c:
        for q in range(q0, q1):
            out = yrow[q]
            x0 = q * sw - pl
            for k in range(whole, c):
                out[k] = b[k]
            for i in range(3):
                for j in range(3):
                    if mask & (1 << (i * 3 + j)):
                        xv = x[img, y0 + i * dh, x0 + j * dw]
                        wv = w[i, j, 0]
                        for k in range(whole, c):
                            out[k] += xv[k] * wv[k]
            if relu:
                for k in range(whole, c):
                    out[k] = max(out[k], 0)


@helper
def _dw_3x3_row(x, w, b, act, g, img, p, yrow):
    """Output row y[img, p] of a 3x3 depthwise convolution (multiplier 1): the pixels whose
    windows lie inside the input in one sweep, each border pixel with the mask of its taps
    that fall inside."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    y0 = p * sh - pt
    rows = 0  # bits of the taps whose kernel row falls inside the input
    for i in range(3):
        if 0 <= y0 + i * dh < h:
            rows |= 7 << (3 * i)
    # output columns whose windows lie inside the input: q*SW - PL >= 0 and
    # q*SW - PL + 2*DW <= W - 1
    q_lo = min(ow, (pl + sw - 1) // sw)
    q_hi = min(ow, max(q_lo, (wd - 1 - 2 * dw + pl) // sw + 1))
    relu = act == RELU
    for q in range(ow):
        if q == q_lo and q_hi > q_lo:
            _dw_3x3_run(x, w, b, relu, g, img, y0, q_lo, q_hi, rows, yrow)
            continue
        if q_lo < q < q_hi:
            continue
        x0 = q * sw - pl
        cols = 0  # bits of the taps whose kernel column falls inside the input
        for j in range(3):
            if 0 <= x0 + j * dw < wd:
                cols |= 73 << j  # taps j, 3 + j, 6 + j
        _dw_3x3_run(x, w, b, relu, g, img, y0, q, q + 1, rows & cols, yrow)


@helper
def _relu_span(yrow, q0, q1):
    for q in range(q0, q1):
        out = yrow[q]
        for k in range(out.shape[0]):
            out[k] = max(out[k], 0)


@helper
def _dw_row(x, w, b, act, g, mult, img, p, yrow):
    """Output row y[img, p] (OW x C*M) of a depthwise convolution: 3x3 kernels with multiplier
    1 by explicit vector sweeps, others tap by tap."""
    kh, kw, ow = g[CONV_KH], g[CONV_KW], g[CONV_OW]
    if kh == 3 and kw == 3 and mult == 1:
        _dw_3x3_row(x, w, b, act, g, img, p, yrow)
        return
    _dw_span(x, w, b, g, mult, img, p * g[CONV_SH] - g[CONV_PT], 0, ow, yrow)
    if act == RELU:
        _relu_span(yrow, 0, ow)


@sized_kernel(DIRECT_SERIAL_FLOPS)
def depthwise_forward(x, w, b, act, g, mult, y):
    """y = act(depthwise(x, w) + b); ``b`` holds C*M values (zeros for no bias), ``mult`` is M
    (w is (KH, KW, 1, C*M))."""
    n, oh = g[CONV_N], g[CONV_OH]
    for t in prange(n * oh):
        img = t // oh
        p = t - img * oh
        _dw_row(x, w, b, act, g, mult, img, p, y[img, p])


# -- grouped forward (micro-kernel) ------------------------------------------------------------

@helper
def _group_tiles(x, wp, bp, act, g, groups, r0, r1, zeros, ptrs, gptrs, tile, y2):
    """act(conv + b) of output pixels r0 .. r1-1 (flat over N, OH, OW), in blocks of
    ``ptrs.shape[0]`` tiles: the block's patch-row pointers once, then group by group every
    tile of the block (a group's kernel panels are read once per block), each group's table
    the block's shifted to the group's channels."""
    c, o, kh, kw = g[CONV_C], g[CONV_O], g[CONV_KH], g[CONV_KW]
    cg, og = c // groups, o // groups
    taps = kh * kw
    npan, k, nr = wp.shape[1], wp.shape[2], wp.shape[3]
    item = y2.itemsize
    yflat = y2.reshape(-1)
    relu = act == RELU
    block = ptrs.shape[0] * MRG
    for b0 in range(r0, r1, block):
        b1 = min(r1, b0 + block)
        for t, q0 in enumerate(range(b0, b1, MRG)):
            patch_pointers(x, g, q0, min(MRG, b1 - q0), zeros, ptrs[t], MRG)
        for gi in range(groups):
            shift = gi * cg * x.itemsize  # the group's channels (padding: inside ``zeros``)
            for t, q0 in enumerate(range(b0, b1, MRG)):
                rows = min(MRG, b1 - q0)
                tp = ptrs[t]
                for s in range(taps * MRG):
                    gptrs[s] = tp[s] + shift
                for jp in range(npan):
                    cols = min(nr, og - jp * nr)
                    col0 = gi * og + jp * nr
                    panel = wp.ctypes.data + (gi * npan + jp) * k * nr * wp.itemsize
                    bias = bp.ctypes.data + (gi * npan + jp) * nr * item
                    if rows == MRG and cols == nr:
                        group_microkernel(taps, cg, gptrs, panel,
                                          yflat.ctypes.data + (q0 * o + col0) * item, o, bias,
                                          relu, y2, x)
                    else:
                        group_microkernel(taps, cg, gptrs, panel, tile.ctypes.data, nr, bias,
                                          relu, y2, x)
                        store_tile(tile, rows, cols, yflat, q0 * o + col0, o, False)


@sized_kernel(CONV_SERIAL_FLOPS)
def grouped_forward(x, wp, bp, act, g, groups, per_task, y2):
    """y2 (N*OH*OW, O) = act(grouped conv + b). ``wp`` (G, panels, KH*KW*C/G, NRG): each
    group's kernel as a (KH*KW*C/G, O/G) matrix in NRG-column panels, zero-padded; ``bp``
    (G, panels*NRG) the bias likewise."""
    c, kh, kw = g[CONV_C], g[CONV_KH], g[CONV_KW]
    m = y2.shape[0]
    for t in prange((m + per_task - 1) // per_task):
        zeros = np.zeros(c, dtype=x.dtype)
        ptrs = np.empty((BLOCK_TILES, kh * kw * MRG), dtype=np.int64)
        gptrs = np.empty(kh * kw * MRG, dtype=np.int64)
        tile = np.empty((MRG, wp.shape[3]), dtype=y2.dtype)
        r0 = t * per_task
        _group_tiles(x, wp, bp, act, g, groups, r0, min(m, r0 + per_task), zeros, ptrs, gptrs,
                     tile, y2)


# -- backward passes ----------------------------------------------------------------------------

@helper
def _backward_data_row(dy, w, g, groups, zero, img, u, dxrow):
    """Input-gradient row dx[img, u] (W x C)."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    cg, og = c // groups, o // groups
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
                wv = w[i, j]
                if cg == 1 and og == 1:  # depthwise
                    w0 = wv[0]
                    for k in range(c):
                        acc[k] += dyv[k] * w0[k]
                else:
                    for gi in range(groups):
                        for cl in range(cg):
                            wr = wv[cl]
                            s = zero
                            for ko in range(gi * og, gi * og + og):
                                s += dyv[ko] * wr[ko]
                            acc[gi * cg + cl] += s


@sized_kernel(DIRECT_SERIAL_FLOPS)
def backward_data(dy, w, g, groups, zero, dx):
    n, h = g[CONV_N], g[CONV_H]
    for t in prange(n * h):
        img = t // h
        u = t - img * h
        _backward_data_row(dy, w, g, groups, zero, img, u, dx[img, u])


@helper
def _backward_weight_row(x, dy, g, groups, img, p, acc):
    """acc (KH, KW, C/G, O) += the contributions of output row dy[img, p]."""
    n, h, wd, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    cg, og = c // groups, o // groups
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
                xv = x[img, ih, iw]
                if cg == 1 and og == 1:  # depthwise
                    row = acc[i, j, 0]
                    for k in range(c):
                        row[k] += xv[k] * dyv[k]
                else:
                    for cl in range(cg):
                        row = acc[i, j, cl]
                        for gi in range(groups):
                            xs = xv[gi * cg + cl]
                            for ko in range(gi * og, gi * og + og):
                                row[ko] += xs * dyv[ko]


@sized_kernel(DIRECT_SERIAL_FLOPS)
def backward_weight(x, dy, g, groups, partial):
    """partial[thread] (KH, KW, C/G, O) accumulates over the rows that thread takes."""
    n, oh = g[CONV_N], g[CONV_OH]
    partial[:] = 0
    for t in prange(n * oh):
        img = t // oh
        _backward_weight_row(x, dy, g, groups, img, t - img * oh,
                             partial[numba.get_thread_id()])


# -- launchers ----------------------------------------------------------------------------------

def _c(a):
    return np.ascontiguousarray(a)


def _work(geom, groups: int) -> int:
    """FLOPs of the grouped convolution: what decides serial or parallel."""
    return geom.flops // groups


def _is_depthwise(geom, groups: int) -> bool:
    return geom.c == groups


def group_panels(w, b, geom, groups: int, dtype):
    """(wp, bp) for ``grouped_forward``: every group's (KH*KW*C/G, O/G) kernel matrix in
    NRG-column panels and its bias, zero-padded to whole panels."""
    dtype = np.dtype(dtype)
    cg, og = geom.c // groups, geom.o // groups
    nr = NRG32 if dtype == np.float32 else NRG64
    panels = -(-og // nr)
    k = geom.kh * geom.kw * cg
    padded = np.zeros((k, groups, panels * nr), dtype=dtype)
    padded[:, :, :og] = np.asarray(w, dtype=dtype).reshape(k, groups, og)
    wp = _c(padded.reshape(k, groups, panels, nr).transpose(1, 2, 0, 3))
    bp = np.zeros((groups, panels * nr), dtype=dtype)
    if b is not None:
        bp[:, :og] = np.asarray(b, dtype=dtype).reshape(groups, og)
    return wp, bp


def _pixels_per_task(m: int, threads: int) -> int:
    """Output pixels per parallel task: at most ``TASK_PIXELS``, in whole tiles, and a number
    of tasks that is a multiple of the threads (each thread takes as many)."""
    threads = max(threads, 1)
    tasks = -(-m // TASK_PIXELS)
    tasks = -(-tasks // threads) * threads
    per = -(-m // tasks)
    return max(MRG, -(-per // MRG) * MRG)


def forward(x, w, b, geom, groups: int, activation: str, threads: int, packed=None):
    """The grouped forward pass; ``packed`` is ``group_panels``'s (wp, bp) when the caller
    keeps them (inference), else they are made here."""
    x = _c(x)
    act = ACTIVATION_CODES[activation]
    y = np.empty(geom.y_shape, dtype=x.dtype)
    if _is_depthwise(geom, groups):
        bias = np.zeros(geom.o, dtype=x.dtype) if b is None else _c(b)
        depthwise_forward(_work(geom, groups), x, _c(w), bias, act, geom.astuple(),
                          geom.o // groups, y)
        return y
    wp, bp = packed if packed is not None else group_panels(w, b, geom, groups, x.dtype)
    m = geom.n * geom.oh * geom.ow
    grouped_forward(_work(geom, groups), x, wp, bp, act, geom.astuple(), groups,
                    _pixels_per_task(m, threads), y.reshape(m, geom.o))
    return y


def prepare_forward(geom, groups: int, activation: str, threads):
    """``run(x, w, b, weights_key)`` for inference: the packed kernel made once per
    ``weights_key`` (``threads()`` read per call)."""
    cache = DerivedCache()
    depthwise = _is_depthwise(geom, groups)

    def run(x, w, b, weights_key):
        packed = None
        if not depthwise:  # the entry keeps w and b, so that their ids in the key stay theirs
            packed = cache.get(weights_key,
                               lambda: (w, b, group_panels(w, b, geom, groups, x.dtype)))[2]
        return forward(x, w, b, geom, groups, activation, threads(), packed)

    return run


def backward_data_pass(dy, w, geom, groups: int):
    dy = _c(dy)
    dx = np.empty(geom.x_shape, dtype=dy.dtype)
    backward_data(_work(geom, groups), dy, _c(w), geom.astuple(), groups, dy.dtype.type(0), dx)
    return dx


def backward_weight_pass(x, dy, geom, groups: int, threads: int):
    x = _c(x)
    partial = np.empty((threads, geom.kh, geom.kw, geom.c // groups, geom.o), dtype=x.dtype)
    backward_weight(_work(geom, groups), x, _c(dy), geom.astuple(), groups, partial)
    return partial.sum(axis=0)
