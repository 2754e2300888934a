"""Launchers of the Numba convolution kernels: allocate outputs, choose tile sizes, pass the
GEMM function and the geometry tuple. One ConvAlgorithm class per algorithm."""

from __future__ import annotations

import numpy as np

from ...winograd import F2x2_3x3, F4x4_3x3, tile_counts
from ..base import ConvAlgorithm, WinogradAlgorithm
from . import conv_direct, conv_im2col, conv_winograd
from .elementwise import ACTIVATION_CODES

#: Bytes of patch rows a thread packs per tile (kept within L2).
TILE_BYTES = 256 * 1024


def _c(a):
    return np.ascontiguousarray(a)


def _bias(b, o, dtype):
    return (np.zeros(o, dtype=dtype), False) if b is None else (_c(b), True)


def _unpadded_rows(g) -> bool:
    """1x1, stride 1, no padding: the input itself is the patch matrix."""
    return (g.kh, g.kw, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr) == (1, 1, 1, 1, 0, 0, 0, 0)


def _tile_rows(m: int, k: int, itemsize: int, threads: int) -> int:
    rows = max(16, TILE_BYTES // max(k * itemsize, 1))
    return max(1, min(rows, -(-m // threads)))


class Im2colConv(ConvAlgorithm):
    name = "im2col"

    def forward(self, x, w, b, g, activation):
        be = self.backend
        x = _c(x)
        wm = _c(w).reshape(-1, g.o)
        bias, has_bias = _bias(b, g.o, x.dtype)
        m, k = g.n * g.oh * g.ow, wm.shape[0]
        y = np.empty(g.y_shape, dtype=x.dtype)
        conv_im2col.forward(g.flops, be.blas.kernel_args(x.dtype), x, wm, bias, has_bias,
                            ACTIVATION_CODES[activation], g.astuple(), _unpadded_rows(g),
                            _tile_rows(m, k, x.itemsize, be.num_threads()), y.reshape(m, g.o))
        return y

    def backward_data(self, dy, w, g):
        be = self.backend
        dy = _c(dy)
        wm = _c(w).reshape(-1, g.o)
        if _unpadded_rows(g):
            dx = be.matmul(dy.reshape(-1, g.o), wm, trans_b=True)
            return dx.reshape(g.x_shape)
        dx = np.zeros(g.x_shape, dtype=dy.dtype)
        rows = max(16, TILE_BYTES // (wm.shape[0] * dy.itemsize))
        conv_im2col.backward_data(g.flops, be.blas.kernel_args(dy.dtype),
                                  dy.reshape(-1, g.o), wm, g.astuple(), rows, dx)
        return dx

    def backward_weight(self, x, dy, g):
        be = self.backend
        x, dy = _c(x), _c(dy)
        m, k = g.n * g.oh * g.ow, g.kh * g.kw * g.c
        partial = np.empty((be.num_threads(), k, g.o), dtype=x.dtype)
        conv_im2col.backward_weight(g.flops, be.blas.kernel_args(x.dtype), x,
                                    dy.reshape(m, g.o), g.astuple(), _unpadded_rows(g),
                                    _tile_rows(m, k, x.itemsize, be.num_threads()), partial)
        return partial.sum(axis=0).reshape(g.w_shape)


class DirectConv(ConvAlgorithm):
    name = "direct"

    def forward(self, x, w, b, g, activation):
        bias, has_bias = _bias(b, g.o, x.dtype)
        y = np.empty(g.y_shape, dtype=x.dtype)
        conv_direct.forward(g.flops, _c(x), _c(w), bias, has_bias, ACTIVATION_CODES[activation],
                            g.astuple(), y)
        return y

    def backward_data(self, dy, w, g):
        dx = np.empty(g.x_shape, dtype=dy.dtype)
        conv_direct.backward_data(g.flops, _c(dy), _c(w.transpose(0, 1, 3, 2)), g.astuple(), dx)
        return dx

    def backward_weight(self, x, dy, g):
        partial = np.empty((self.backend.num_threads(), *g.w_shape), dtype=x.dtype)
        conv_direct.backward_weight(g.flops, _c(x), _c(dy), g.astuple(), partial)
        return partial.sum(axis=0)


class _NumbaWinograd(WinogradAlgorithm):
    def forward(self, x, w, b, g, activation):
        be = self.backend
        t = self.transform
        x = _c(x)
        dtype = x.dtype
        a2 = t.alpha * t.alpha
        U = np.empty((a2, g.c, g.o), dtype=dtype)
        conv_winograd.filter_transform(U.size, _c(w), t.G.astype(dtype), U)
        th, tw = tile_counts(g.oh, g.ow, t.m)
        total = g.n * th * tw
        bias, has_bias = _bias(b, g.o, dtype)
        y = np.empty(g.y_shape, dtype=dtype)
        conv_winograd.forward(g.flops, be.blas.kernel_args(dtype), x, U,
                              t.BT.astype(dtype), t.AT.astype(dtype), bias, has_bias,
                              ACTIVATION_CODES[activation], g.astuple(), (t.m, th, tw),
                              self.tiles_per_block(total, g.c, g.o, a2), y)
        return y

    def tiles_per_block(self, total: int, c: int, o: int, a2: int) -> int:
        """Tiles per block: enough rows for an efficient GEMM, a block per thread at least."""
        wanted = max(32, (1 << 21) // (a2 * (c + o) * 4))
        return max(1, min(wanted, 512, -(-total // self.backend.num_threads())))


class WinogradF2Conv(_NumbaWinograd):
    name = "winograd"
    transform = F2x2_3x3


class WinogradF4Conv(_NumbaWinograd):
    name = "winograd4"
    transform = F4x4_3x3
