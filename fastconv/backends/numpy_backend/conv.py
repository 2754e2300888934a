"""NumPy convolution algorithms: NHWC activations, HWIO weights.

* ``DirectConv``: one GEMM per kernel tap, ``y = sum_ij x[tap ij] @ w[i, j]``.
* ``Im2colConv``: the patch matrix ``cols`` (N*OH*OW, KH*KW*C) times ``w`` as (KH*KW*C, O).
* ``WinogradF2Conv`` / ``WinogradF4Conv``: Lavin & Gray's F(m x m, 3x3) with tensor contractions:
  V = B^T d B per input tile, U = G g G^T per filter, M = V @ U per tile element, Y = A^T M A.
"""

from __future__ import annotations

import numpy as np

from ...winograd import tile_counts, transform_filter
from ..base import ConvAlgorithm, WinogradAlgorithm
from .taps import crop, pad_nhwc, tap


def _pads(g):
    return (g.pt, g.pb, g.pl, g.pr)


def _epilogue(backend, y, b, activation):
    return backend.bias_activation(y, b, activation)


class DirectConv(ConvAlgorithm):
    name = "direct"

    def forward(self, x, w, b, g, activation):
        xpad = pad_nhwc(x, _pads(g))
        y = np.zeros(g.y_shape, dtype=x.dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                y += tap(xpad, i, j, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw) @ w[i, j]
        return _epilogue(self.backend, y, b, activation)

    def backward_data(self, dy, w, g):
        dxpad = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dtype=dy.dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                tap(dxpad, i, j, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw)[...] += dy @ w[i, j].T
        return crop(dxpad, _pads(g), g.h, g.w)

    def backward_weight(self, x, dy, g):
        xpad = pad_nhwc(x, _pads(g))
        dw = np.empty(g.w_shape, dtype=x.dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                patch = tap(xpad, i, j, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw)
                dw[i, j] = np.tensordot(patch, dy, axes=((0, 1, 2), (0, 1, 2)))
        return dw


def im2col(x, g):
    """Patch matrix (N*OH*OW, KH*KW*C), columns ordered (i, j, c) like a flattened HWIO kernel."""
    xpad = pad_nhwc(x, _pads(g))
    cols = np.empty((g.n, g.oh, g.ow, g.kh, g.kw, g.c), dtype=x.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, :, :, i, j, :] = tap(xpad, i, j, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw)
    return cols.reshape(g.n * g.oh * g.ow, g.kh * g.kw * g.c)


class Im2colConv(ConvAlgorithm):
    name = "im2col"

    def forward(self, x, w, b, g, activation):
        y = im2col(x, g) @ w.reshape(-1, g.o)
        return _epilogue(self.backend, y.reshape(g.y_shape), b, activation)

    def backward_data(self, dy, w, g):
        dcols = (dy.reshape(-1, g.o) @ w.reshape(-1, g.o).T).reshape(
            g.n, g.oh, g.ow, g.kh, g.kw, g.c)
        dxpad = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dtype=dy.dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                tap(dxpad, i, j, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw)[...] += dcols[:, :, :, i, j]
        return crop(dxpad, _pads(g), g.h, g.w)

    def backward_weight(self, x, dy, g):
        return (im2col(x, g).T @ dy.reshape(-1, g.o)).reshape(g.w_shape)


class WinogradConv(WinogradAlgorithm):
    def forward(self, x, w, b, g, activation):
        t = self.transform
        m, a = t.m, t.alpha
        th, tw = tile_counts(g.oh, g.ow, m)
        # Zero-padded input covering every tile: tile (ty, tx) reads rows ty*m .. ty*m + a - 1.
        buf = np.zeros((g.n, th * m + 2, tw * m + 2, g.c), dtype=x.dtype)
        buf[:, g.pt:g.pt + g.h, g.pl:g.pl + g.w, :] = x  # fits: th*m + 2 >= h + pt + pb
        s = buf.strides
        d = np.lib.stride_tricks.as_strided(
            buf, shape=(g.n, th, tw, a, a, g.c),
            strides=(s[0], m * s[1], m * s[2], s[1], s[2], s[3]), writeable=False)
        BT = t.BT.astype(x.dtype)
        AT = t.AT.astype(x.dtype)
        V = np.einsum("ia,ntuabc,jb->ijntuc", BT, d, BT, optimize=True).reshape(a * a, -1, g.c)
        U = transform_filter(w, t).reshape(a * a, g.c, g.o)
        M = np.matmul(V, U).reshape(a, a, g.n, th, tw, g.o)
        Y = np.einsum("pi,ijntuo,qj->ntpuqo", AT, M, AT, optimize=True)
        y = np.ascontiguousarray(Y.reshape(g.n, th * m, tw * m, g.o)[:, :g.oh, :g.ow, :])
        return _epilogue(self.backend, y, b, activation)
