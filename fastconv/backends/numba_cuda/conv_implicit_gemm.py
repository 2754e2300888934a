"""im2col as an implicit GEMM: the patch matrix is never written to global memory.

With ``P[m, k]`` the patch matrix of the input (``m = (n, oy, ox)`` over the N*OH*OW output
pixels, ``k = (kh, kw, c)`` over the KH*KW*C taps, HWIO order: ``P[m, k] = x[n, oy * sh - pt +
kh * dh, ox * sw - pl + kw * dw, c]``, zero in the padding):

* forward:          ``y[M, O] = act(P @ W[K, O] + b)`` (W is the HWIO kernel seen as K x O);
* backward-data:    ``dx[N*H*W, C] = D @ Wt`` with ``D[(n, ih, iw), (kh, kw, o)] = dy[n, oy,
  ox, o]`` for the taps whose output pixel ``(oy, ox) = ((ih + pt - kh*dh) / sh, (iw + pl -
  kw*dw) / sw)`` is integral and inside the output (else 0) and ``Wt[(kh, kw, o), c] = w[kh,
  kw, c, o]``: a gather, so strides and dilations need no scatter;
* backward-weight:  ``dW[K, O] = P^T @ dY[M, O]``, the reduction over M split in ``S`` slices
  (grid z) whose partial products are summed afterwards.

Each kernel is the tiled GEMM of ``gemm.py`` (``BM x BN`` block tiles, ``BK`` deep, ``TM x TN``
outputs per thread in registers, tile shape from the factory's argument) whose tile loads
compute the patch indices instead of reading a matrix: a block copies the ``BM x BK`` tile of
the virtual operand straight from ``x`` (or ``dy``) into shared memory.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from . import launch
from .conv_direct import ACTIVATION_CODES, RELU
from .gemm import check_tile, threads_per_block, tile_pieces
from .launch import CONV_GEOM, I32, array

#: backward-weight: blocks to aim for (K x O tiles times reduction slices), the most slices,
#: and the fewest BK-deep steps per slice (small in the simulator, so that tests split too)
SPLIT_TARGET_BLOCKS = 8 if launch.SIMULATED else 512
MAX_SPLITS = 64
MIN_SLICE_STEPS = 2 if launch.SIMULATED else 16


def _tile_name(tile) -> str:
    bm, bn, bk, tm, tn = tile
    return f"{bm}x{bn}x{bk}_{tm}x{tn}"


@functools.cache
def forward_kernel(tile):
    """``conv_igemm_forward(x, w2, bias, act, g, y2)``: ``y2 = act(P @ w2 + bias)`` with ``w2``
    the kernel as (K, O) and ``y2`` the output as (N*OH*OW, O). Grid: (ceil(M / BM),
    ceil(O / BN)); block: (BM/TM) * (BN/TN) threads."""
    bm, bn, bk, tm, tn = check_tile(tile)
    ty_step, tx_step = bm // tm, bn // tn
    nt = ty_step * tx_step
    clear, multiply = tile_pieces(tile)

    @launch.kernel(lambda dt: (array(dt, 4), array(dt, 2), array(dt, 1), I32, CONV_GEOM,
                               array(dt, 2)),
                   name=f"conv_igemm_forward_{_tile_name(tile)}")
    def conv_igemm_forward(x, w2, bias, act, g, y2):
        """y2[M, O] = act(P[M, K] @ w2[K, O] + bias), P gathered from x tile by tile."""
        nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
        m = nb * oh * ow
        k = kh_ * kw_ * c
        tid = cuda.threadIdx.x
        tx = tid % tx_step
        ty = tid // tx_step
        row0 = cuda.blockIdx.x * bm
        col0 = cuda.blockIdx.y * bn
        As = cuda.shared.array((bk, bm), y2.dtype)
        Bs = cuda.shared.array((bk, bn), y2.dtype)
        acc = cuda.local.array((tm, tn), y2.dtype)
        ar = cuda.local.array(tm, y2.dtype)
        br = cuda.local.array(tn, y2.dtype)
        clear(acc)
        for k0 in range(0, k, bk):
            # P tile: taps fastest (runs of channels of one pixel are contiguous in x)
            for e in range(tid, bm * bk, nt):
                kk = e % bk
                r = e // bk
                gr = row0 + r
                gk = k0 + kk
                loaded = False
                if gr < m and gk < k:
                    ci = gk % c
                    t = gk // c
                    ox = gr % ow
                    u = gr // ow
                    ih = (u % oh) * sh - pt + (t // kw_) * dh
                    iw = ox * sw - pl + (t % kw_) * dw
                    if 0 <= ih < h and 0 <= iw < wd:
                        As[kk, r] = x[u // oh, ih, iw, ci]
                        loaded = True
                if not loaded:
                    As[kk, r] = 0
            for e in range(tid, bn * bk, nt):
                col = e % bn
                kk = e // bn
                gc = col0 + col
                gk = k0 + kk
                if gc < o and gk < k:
                    Bs[kk, col] = w2[gk, gc]
                else:
                    Bs[kk, col] = 0
            cuda.syncthreads()
            multiply(As, Bs, acc, ar, br, ty, tx)
            cuda.syncthreads()
        for i in range(tm):
            gr = row0 + ty + i * ty_step
            if gr < m:
                for j in range(tn):
                    gc = col0 + tx + j * tx_step
                    if gc < o:
                        v = acc[i, j] + bias[gc]
                        if act == RELU and v < 0:
                            y2[gr, gc] = 0
                        else:
                            y2[gr, gc] = v

    return conv_igemm_forward


@functools.cache
def backward_data_kernel(tile):
    """``conv_igemm_backward_data(dy, w, g, dx2)``: ``dx2[N*H*W, C] = D @ Wt`` (module
    docstring), D gathered from ``dy``, Wt read from the HWIO ``w``. Grid: (ceil(N*H*W / BM),
    ceil(C / BN))."""
    bm, bn, bk, tm, tn = check_tile(tile)
    ty_step, tx_step = bm // tm, bn // tn
    nt = ty_step * tx_step
    clear, multiply = tile_pieces(tile)

    @launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), CONV_GEOM, array(dt, 2)),
                   name=f"conv_igemm_backward_data_{_tile_name(tile)}")
    def conv_igemm_backward_data(dy, w, g, dx2):
        """dx2[(n, ih, iw), c] = sum over (kh, kw, o) of D[(n, ih, iw), (kh, kw, o)] *
        w[kh, kw, c, o], D gathered from dy tile by tile."""
        nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
        m = nb * h * wd
        k = kh_ * kw_ * o
        tid = cuda.threadIdx.x
        tx = tid % tx_step
        ty = tid // tx_step
        row0 = cuda.blockIdx.x * bm
        col0 = cuda.blockIdx.y * bn
        As = cuda.shared.array((bk, bm), dx2.dtype)
        Bs = cuda.shared.array((bk, bn), dx2.dtype)
        acc = cuda.local.array((tm, tn), dx2.dtype)
        ar = cuda.local.array(tm, dx2.dtype)
        br = cuda.local.array(tn, dx2.dtype)
        clear(acc)
        for k0 in range(0, k, bk):
            # D tile: output channels fastest (contiguous in dy)
            for e in range(tid, bm * bk, nt):
                kk = e % bk
                r = e // bk
                gr = row0 + r
                gk = k0 + kk
                loaded = False
                if gr < m and gk < k:
                    oc = gk % o
                    t = gk // o
                    iw = gr % wd
                    u = gr // wd
                    ty_ = (u % h) + pt - (t // kw_) * dh  # = oy * sh
                    tx_ = iw + pl - (t % kw_) * dw  # = ox * sw
                    if (ty_ >= 0 and tx_ >= 0 and ty_ % sh == 0 and tx_ % sw == 0
                            and ty_ // sh < oh and tx_ // sw < ow):
                        As[kk, r] = dy[u // h, ty_ // sh, tx_ // sw, oc]
                        loaded = True
                if not loaded:
                    As[kk, r] = 0
            # Wt tile: output channels fastest (contiguous in w)
            for e in range(tid, bn * bk, nt):
                kk = e % bk
                col = e // bk
                gc = col0 + col
                gk = k0 + kk
                if gc < c and gk < k:
                    t = gk // o
                    Bs[kk, col] = w[t // kw_, t % kw_, gc, gk % o]
                else:
                    Bs[kk, col] = 0
            cuda.syncthreads()
            multiply(As, Bs, acc, ar, br, ty, tx)
            cuda.syncthreads()
        for i in range(tm):
            gr = row0 + ty + i * ty_step
            if gr < m:
                for j in range(tn):
                    gc = col0 + tx + j * tx_step
                    if gc < c:
                        dx2[gr, gc] = acc[i, j]

    return conv_igemm_backward_data


@functools.cache
def backward_weight_kernel(tile):
    """``conv_igemm_backward_weight(x, dy2, g, chunk, part)``: ``part[z] = P^T @ dy2`` over the
    pixels ``[z * chunk, (z + 1) * chunk)`` of the reduction (``chunk`` a multiple of BK);
    ``part`` is (S, K, O), ``dy2`` (N*OH*OW, O). Grid: (ceil(K / BM), ceil(O / BN), S)."""
    bm, bn, bk, tm, tn = check_tile(tile)
    ty_step, tx_step = bm // tm, bn // tn
    nt = ty_step * tx_step
    clear, multiply = tile_pieces(tile)

    @launch.kernel(lambda dt: (array(dt, 4), array(dt, 2), CONV_GEOM, I32, array(dt, 3)),
                   name=f"conv_igemm_backward_weight_{_tile_name(tile)}")
    def conv_igemm_backward_weight(x, dy2, g, chunk, part):
        """part[z, k, o] = sum over the slice z of the pixels m of P[m, k] * dy2[m, o], P
        gathered from x tile by tile."""
        nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
        m = nb * oh * ow
        k = kh_ * kw_ * c
        tid = cuda.threadIdx.x
        tx = tid % tx_step
        ty = tid // tx_step
        row0 = cuda.blockIdx.x * bm
        col0 = cuda.blockIdx.y * bn
        z = cuda.blockIdx.z
        m_end = min(m, (z + 1) * chunk)
        As = cuda.shared.array((bk, bm), part.dtype)
        Bs = cuda.shared.array((bk, bn), part.dtype)
        acc = cuda.local.array((tm, tn), part.dtype)
        ar = cuda.local.array(tm, part.dtype)
        br = cuda.local.array(tn, part.dtype)
        clear(acc)
        for m0 in range(z * chunk, m_end, bk):
            # P^T tile: taps (channels) fastest, contiguous in x
            for e in range(tid, bm * bk, nt):
                r = e % bm
                kk = e // bm
                gr = row0 + r
                gm = m0 + kk
                loaded = False
                if gr < k and gm < m_end:
                    ci = gr % c
                    t = gr // c
                    ox = gm % ow
                    u = gm // ow
                    ih = (u % oh) * sh - pt + (t // kw_) * dh
                    iw = ox * sw - pl + (t % kw_) * dw
                    if 0 <= ih < h and 0 <= iw < wd:
                        As[kk, r] = x[u // oh, ih, iw, ci]
                        loaded = True
                if not loaded:
                    As[kk, r] = 0
            for e in range(tid, bn * bk, nt):
                col = e % bn
                kk = e // bn
                gc = col0 + col
                gm = m0 + kk
                if gc < o and gm < m_end:
                    Bs[kk, col] = dy2[gm, gc]
                else:
                    Bs[kk, col] = 0
            cuda.syncthreads()
            multiply(As, Bs, acc, ar, br, ty, tx)
            cuda.syncthreads()
        for i in range(tm):
            gr = row0 + ty + i * ty_step
            if gr < k:
                for j in range(tn):
                    gc = col0 + tx + j * tx_step
                    if gc < o:
                        part[z, gr, gc] = acc[i, j]

    return conv_igemm_backward_weight


def _tile(tile):
    return check_tile(tile or launch.CONFIG.gemm_tile)


def forward(be, x, w, bias, g, activation, tile=None):
    """y = act(conv(x, w) + bias) (device arrays; ``bias`` zeros when the layer has none)."""
    tile = _tile(tile)
    m, k = g.n * g.oh * g.ow, g.kh * g.kw * g.c
    y = be.empty(g.y_shape, x.dtype)
    grid = (launch.ceil_div(m, tile[0]), launch.ceil_div(g.o, tile[1]))
    forward_kernel(tile)[grid, threads_per_block(tile)](
        x.dtype, x, w.reshape(k, g.o), bias, np.int32(ACTIVATION_CODES[activation]),
        launch.geometry(g.astuple()), y.reshape(m, g.o))
    return y


def backward_data(be, dy, w, g, tile=None):
    tile = _tile(tile)
    m = g.n * g.h * g.w
    dx = be.empty(g.x_shape, dy.dtype)
    grid = (launch.ceil_div(m, tile[0]), launch.ceil_div(g.c, tile[1]))
    backward_data_kernel(tile)[grid, threads_per_block(tile)](
        dy.dtype, dy, w, launch.geometry(g.astuple()), dx.reshape(m, g.c))
    return dx


def weight_splits(g, tile) -> int:
    """Slices of the backward-weight reduction: enough blocks to fill the device, each slice
    at least MIN_SLICE_STEPS steps of BK pixels deep."""
    bm, bn, bk = tile[:3]
    m, k = g.n * g.oh * g.ow, g.kh * g.kw * g.c
    tiles = launch.ceil_div(k, bm) * launch.ceil_div(g.o, bn)
    deepest = launch.ceil_div(m, MIN_SLICE_STEPS * bk)
    return max(1, min(deepest, MAX_SPLITS, SPLIT_TARGET_BLOCKS // tiles))


def backward_weight(be, x, dy, g, tile=None, splits=None):
    tile = _tile(tile)
    bk = tile[2]
    m, k = g.n * g.oh * g.ow, g.kh * g.kw * g.c
    splits = splits or weight_splits(g, tile)
    chunk = launch.ceil_div(launch.ceil_div(m, splits), bk) * bk
    splits = launch.ceil_div(m, chunk)  # no empty slice
    part = be.empty((splits, k, g.o), x.dtype)
    grid = (launch.ceil_div(k, tile[0]), launch.ceil_div(g.o, tile[1]), splits)
    backward_weight_kernel(tile)[grid, threads_per_block(tile)](
        x.dtype, x, dy.reshape(m, g.o), launch.geometry(g.astuple()), np.int32(chunk), part)
    dw = part[0] if splits == 1 else part.sum(axis=0)
    return be.device(dw.reshape(g.w_shape))


def declare_gpu_kernels(config) -> None:
    """Declare the three passes' variants for the GPU tile (for the PTX resource check)."""
    for factory in (forward_kernel, backward_data_kernel, backward_weight_kernel):
        factory(config.gemm_tile)
