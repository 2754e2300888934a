"""Winograd F(m x m, 3x3) forward (Lavin & Gray 2016): transform kernels and a batched GEMM.

With ``alpha = m + 2``, ``T = N * ceil(OH / m) * ceil(OW / m)`` output tiles and the transform
matrices ``BT`` (alpha x alpha), ``G`` (alpha x 3), ``AT`` (m x alpha) of
``fastconv.winograd``:

1. input transform, one thread per (tile, channel): ``V[:, c, t] = BT d BT^T`` (flattened
   row-major into alpha*alpha positions), ``d`` the alpha x alpha input patch of tile ``t`` (its
   top-left pixel at ``(ty * m - pt, tx * m - pl)``; zero outside the input);
2. filter transform, one thread per (channel, output channel): ``U[:, c, o] = G w[:, :, c, o]
   G^T``;
3. GEMM stage: ``M[p] = V[p]^T @ U[p]`` for each of the alpha*alpha positions ``p``, on the
   batched tiled GEMM of ``gemm.py`` (``M`` is (alpha*alpha, T, O));
4. output transform, one thread per (tile, output channel): ``Y = AT M[:, t, o] AT^T`` plus the
   bias, the activation, and only the pixels inside the output written (edge tiles cropped).

The matrices are baked into each kernel as constants of the compute dtype (the float64 matrices
rounded once for float32), so float64 inputs are transformed in float64.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from ...winograd import F2x2_3x3, F4x4_3x3, tile_counts
from . import launch
from .conv_direct import ACTIVATION_CODES, RELU
from .gemm import batched_matmul
from .launch import CONV_GEOM, I32, array

TRANSFORMS = {2: F2x2_3x3, 4: F4x4_3x3}


@functools.cache
def input_transform_kernel(m: int):
    """``winograd_input_f{m}(x, g, tiles_h, tiles_w, v)``: ``v[:, c, t] = BT d BT^T``; one
    thread per (tile, channel), channels fastest, grid-stride."""
    bt_host = np.ascontiguousarray(TRANSFORMS[m].BT)
    alpha = m + 2

    @launch.kernel(lambda dt: (array(dt, 4), CONV_GEOM, I32, I32, array(dt, 3)),
                   name=f"winograd_input_f{m}")
    def winograd_input(x, g, tiles_h, tiles_w, v):
        """V[p, c, t] = (BT d BT^T)[p], d the alpha x alpha input patch of tile t."""
        nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
        bt_const = cuda.const.array_like(bt_host)
        bt = cuda.local.array((alpha, alpha), v.dtype)
        d = cuda.local.array((alpha, alpha), v.dtype)
        tmp = cuda.local.array((alpha, alpha), v.dtype)
        for i in range(alpha):
            for j in range(alpha):
                bt[i, j] = bt_const[i, j]
        total = nb * tiles_h * tiles_w * c
        for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
            ci = idx % c
            t = idx // c
            tx = t % tiles_w
            u = t // tiles_w
            y0 = (u % tiles_h) * m - pt
            x0 = tx * m - pl
            n = u // tiles_h
            for i in range(alpha):
                ih = y0 + i
                for j in range(alpha):
                    iw = x0 + j
                    if 0 <= ih < h and 0 <= iw < wd:
                        d[i, j] = x[n, ih, iw, ci]
                    else:
                        d[i, j] = 0
            for i in range(alpha):  # tmp = BT d
                for j in range(alpha):
                    s = bt[i, 0] * d[0, j]
                    for k in range(1, alpha):
                        s += bt[i, k] * d[k, j]
                    tmp[i, j] = s
            for i in range(alpha):  # V = tmp BT^T
                for j in range(alpha):
                    s = tmp[i, 0] * bt[j, 0]
                    for k in range(1, alpha):
                        s += tmp[i, k] * bt[j, k]
                    v[i * alpha + j, ci, t] = s

    return winograd_input


@functools.cache
def filter_transform_kernel(m: int):
    """``winograd_filter_f{m}(w, u)``: ``u[:, c, o] = G w[:, :, c, o] G^T``; one thread per
    (channel, output channel), output channels fastest, grid-stride."""
    g_host = np.ascontiguousarray(TRANSFORMS[m].G)
    alpha = m + 2

    @launch.kernel(lambda dt: (array(dt, 4), array(dt, 3)), name=f"winograd_filter_f{m}")
    def winograd_filter(w, u):
        """U[p, c, o] = (G w[:, :, c, o] G^T)[p]."""
        c = w.shape[2]
        o = w.shape[3]
        g_const = cuda.const.array_like(g_host)
        gm = cuda.local.array((alpha, 3), u.dtype)
        tmp = cuda.local.array((alpha, 3), u.dtype)
        for i in range(alpha):
            for j in range(3):
                gm[i, j] = g_const[i, j]
        for idx in range(cuda.grid(1), c * o, cuda.gridsize(1)):
            oc = idx % o
            ci = idx // o
            for i in range(alpha):  # tmp = G w
                for j in range(3):
                    tmp[i, j] = (gm[i, 0] * w[0, j, ci, oc] + gm[i, 1] * w[1, j, ci, oc]
                                 + gm[i, 2] * w[2, j, ci, oc])
            for i in range(alpha):  # U = tmp G^T
                for j in range(alpha):
                    u[i * alpha + j, ci, oc] = (tmp[i, 0] * gm[j, 0] + tmp[i, 1] * gm[j, 1]
                                                + tmp[i, 2] * gm[j, 2])

    return winograd_filter


@functools.cache
def output_transform_kernel(m: int):
    """``winograd_output_f{m}(mm, bias, act, g, tiles_h, tiles_w, y)``: the m x m output tile
    ``act(AT M AT^T + bias)``, cropped to the output; one thread per (tile, output channel),
    output channels fastest, grid-stride."""
    at_host = np.ascontiguousarray(TRANSFORMS[m].AT)
    alpha = m + 2

    @launch.kernel(lambda dt: (array(dt, 3), array(dt, 1), I32, CONV_GEOM, I32, I32,
                               array(dt, 4)),
                   name=f"winograd_output_f{m}")
    def winograd_output(mm, bias, act, g, tiles_h, tiles_w, y):
        """y[n, ty*m + i, tx*m + j, o] = act((AT M[:, t, o] AT^T)[i, j] + bias[o]) inside
        the output."""
        nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
        at_const = cuda.const.array_like(at_host)
        at = cuda.local.array((m, alpha), y.dtype)
        p = cuda.local.array((alpha, alpha), y.dtype)
        tmp = cuda.local.array((m, alpha), y.dtype)
        for i in range(m):
            for j in range(alpha):
                at[i, j] = at_const[i, j]
        total = nb * tiles_h * tiles_w * o
        for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
            oc = idx % o
            t = idx // o
            tx = t % tiles_w
            u = t // tiles_w
            y0 = (u % tiles_h) * m
            x0 = tx * m
            n = u // tiles_h
            for i in range(alpha):
                for j in range(alpha):
                    p[i, j] = mm[i * alpha + j, t, oc]
            for i in range(m):  # tmp = AT M
                for j in range(alpha):
                    s = at[i, 0] * p[0, j]
                    for k in range(1, alpha):
                        s += at[i, k] * p[k, j]
                    tmp[i, j] = s
            b = bias[oc]
            for i in range(m):  # Y = tmp AT^T
                if y0 + i < oh:
                    for j in range(m):
                        if x0 + j < ow:
                            s = b
                            for k in range(alpha):
                                s += tmp[i, k] * at[j, k]
                            if act == RELU and s < 0:
                                y[n, y0 + i, x0 + j, oc] = 0
                            else:
                                y[n, y0 + i, x0 + j, oc] = s

    return winograd_output


def filter_transform(be, w, m: int):
    """U (alpha*alpha, C, O) of the HWIO 3x3 kernel ``w``."""
    alpha = m + 2
    c, o = w.shape[2], w.shape[3]
    u = be.empty((alpha * alpha, c, o), w.dtype)
    filter_transform_kernel(m)[launch.blocks_for(c * o)](w.dtype, w, u)
    return u


def forward(be, x, w, bias, g, activation, m: int, tile=None, u=None):
    """y = act(conv(x, w) + bias) by F(m x m, 3x3) for a stride-1, dilation-1 3x3 convolution
    (device arrays; ``bias`` zeros when the layer has none). ``u``: the filter transform when
    already made; ``tile``: the GEMM stage's tile (default ``launch.CONFIG.gemm_tile``)."""
    if not g.is_3x3_unit:
        raise ValueError(f"Winograd F({m}x{m},3x3) computes 3x3 convolutions with stride 1 and "
                         f"dilation 1 only, not {g.kh}x{g.kw} with stride {g.sh}x{g.sw} and "
                         f"dilation {g.dh}x{g.dw}")
    alpha = m + 2
    dtype = x.dtype
    th, tw = tile_counts(g.oh, g.ow, m)
    tiles = g.n * th * tw
    geom = launch.geometry(g.astuple())
    if u is None:
        u = filter_transform(be, w, m)
    v = be.empty((alpha * alpha, g.c, tiles), dtype)
    input_transform_kernel(m)[launch.blocks_for(tiles * g.c)](
        dtype, x, geom, np.int32(th), np.int32(tw), v)
    mm = batched_matmul(be, v, u, trans_a=True, tile=tile)  # (alpha*alpha, tiles, O)
    y = be.empty(g.y_shape, dtype)
    output_transform_kernel(m)[launch.blocks_for(tiles * g.o)](
        dtype, mm, bias, np.int32(ACTIVATION_CODES[activation]), geom, np.int32(th),
        np.int32(tw), y)
    return y


def declare_gpu_kernels(config) -> None:
    """Declare the transform kernels of F(2x2,3x3) and F(4x4,3x3) (for the PTX resource
    check); their GEMM stage is gemm.py's."""
    for m in (2, 4):
        for factory in (input_transform_kernel, filter_transform_kernel,
                        output_transform_kernel):
            factory(m)
