"""Launchers of the Numba convolution kernels: allocate outputs, choose tile sizes, pass the
GEMM function and the geometry tuple. One ConvAlgorithm class per algorithm."""

from __future__ import annotations

import numpy as np

from ...winograd import tile_counts
from ..base import ConvAlgorithm, WinogradAlgorithm
from ..derived import DerivedCache
from ..precision import current_inference_precision
from . import bfloat16, conv_direct, conv_im2col, conv_pooled, conv_winograd
from .elementwise import ACTIVATION_CODES
from .microkernel import MR, NR32, NR64, pack_panels, panel_size

#: Largest number of output rows one parallel task takes (then its epilogue runs in cache).
TASK_ROWS = 768
#: Pixels per chunk of the backward-weight pass (its packed patch panels stay in L2).
WEIGHT_CHUNK = 256


def _c(a):
    return np.ascontiguousarray(a)


def _bias(b, o, dtype):
    return (np.zeros(o, dtype=dtype), False) if b is None else (_c(b), True)


def _panel_bias(b, o, dtype):
    """The bias for the micro-kernel's epilogue: O values (zeros for none) rounded up to whole
    NR-column panels with zeros."""
    nr = NR32 if np.dtype(dtype) == np.float32 else NR64
    out = np.zeros(-(-o // nr) * nr, dtype=dtype)
    if b is not None:
        out[:o] = b
    return out


def _rows_per_task(m: int, threads: int) -> int:
    per = min(-(-m // threads), TASK_ROWS)
    return -(-per // MR) * MR


def _padded(x, g):
    """x with the convolution's zero padding made explicit."""
    if not (g.pt or g.pb or g.pl or g.pr):
        return x
    out = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dtype=x.dtype)
    out[:, g.pt:g.pt + g.h, g.pl:g.pl + g.w, :] = x
    return out


def _forward_layout(g):
    """How the im2col forward reads patch rows: (mode, geometry the kernel runs on, whether x
    is padded explicitly first). With horizontal dilation 1 each kernel row is one contiguous
    run of KW*C values; otherwise one run per tap, or copied rows for few channels."""
    if g.dw == 1:
        return conv_im2col.ROW_SEGMENTS, g.unpadded(), True
    mode = (conv_im2col.PACKED_ROWS if g.c < conv_im2col.PACK_BELOW_CHANNELS
            else conv_im2col.TAP_SEGMENTS)
    return mode, g, False


def _bfloat16_ready(g, mode) -> bool:
    """Whether inference under the current precision runs this convolution in bfloat16: the
    ``bfloat16`` precision, a CPU with AVX512-BF16, and even segments (the micro-kernel takes
    A in pairs along each segment)."""
    if current_inference_precision() != "bfloat16" or not bfloat16.supported():
        return False
    segment = {conv_im2col.ROW_SEGMENTS: g.kw * g.c, conv_im2col.TAP_SEGMENTS: g.c}.get(
        mode, g.kh * g.kw * g.c)
    return segment % 2 == 0


def _packed(b, k, n, trans):
    bp = np.empty(panel_size(k, n, b.dtype), dtype=b.dtype)
    pack_panels(b, k, n, trans, bp)
    return bp


class Im2colConv(ConvAlgorithm):
    name = "im2col"

    def forward(self, x, w, b, g, activation):
        k = g.kh * g.kw * g.c
        m = g.n * g.oh * g.ow
        mode, g_run, pad = _forward_layout(g)
        x = _padded(_c(x), g) if pad else _c(x)
        y = np.empty(g.y_shape, dtype=x.dtype)
        conv_im2col.forward(g.flops, x, _packed(_c(w).reshape(k, g.o), k, g.o, False),
                            _panel_bias(b, g.o, x.dtype), ACTIVATION_CODES[activation],
                            g_run.astuple(), mode,
                            _rows_per_task(m, self.backend.num_threads()), y.reshape(m, g.o))
        return y

    def _prepared_operands(self, g):
        """For inference: ``(mode, geometry tuple, operands)``, worked out once per geometry;
        ``operands(x, w, b, weights_key)`` gives the kernel's (x, packed kernel, panel bias),
        packing the kernel and the bias once per ``weights_key``. Under the ``bfloat16``
        inference precision, where the CPU has AVX512-BF16 and the segments are even, a float32
        x and kernel become bfloat16 (``bfloat16.py``)."""
        k = g.kh * g.kw * g.c
        mode, g_run, pad = _forward_layout(g)
        halves = _bfloat16_ready(g, mode)
        cache = DerivedCache()
        threads = self.backend.num_threads

        def prepared(w, b):  # w and b are kept so that their ids in the key stay theirs
            wm = _c(w).reshape(k, g.o)
            wp = (bfloat16.packed_pairs(wm) if halves and w.dtype == np.float32
                  else _packed(wm, k, g.o, False))
            return w, b, wp, _panel_bias(b, g.o, w.dtype)

        def operands(x, w, b, weights_key):
            _, _, wp, bias = cache.get(weights_key, lambda: prepared(w, b))
            x = bfloat16.converted(x, threads()) if wp.dtype == np.uint16 else _c(x)
            return (_padded(x, g) if pad else x), wp, bias

        return mode, g_run.astuple(), operands

    def prepare_forward(self, g, activation):
        """Inference: mode, geometry tuple and task size once; the packed kernel and the bias
        once per ``weights_key``."""
        m = g.n * g.oh * g.ow
        rows_per = _rows_per_task(m, self.backend.num_threads())
        act = ACTIVATION_CODES[activation]
        mode, g_tuple, operands = self._prepared_operands(g)

        def run(x, w, b, weights_key):
            x, wp, bias = operands(x, w, b, weights_key)
            y = np.empty(g.y_shape, dtype=bias.dtype)  # x may be bfloat16
            conv_im2col.forward(g.flops, x, wp, bias, act, g_tuple, mode,
                                rows_per, y.reshape(m, g.o))
            return y

        return run

    def prepare_pooled_forward(self, g, activation, pool, kind):
        """Inference: the forward with the pooling after it (``conv_pooled``), prepared as
        ``prepare_forward`` is."""
        act = ACTIVATION_CODES[activation]
        mode, g_tuple, operands = self._prepared_operands(g)
        pool_tuple = pool.astuple()
        kind_code = conv_pooled.MAX if kind == "max" else conv_pooled.AVERAGE
        # pooled rows per task: about 8 tiles of conv pixels, and a task per thread at least
        per_task = max(1, -(-8 * MR // (pool.sh * g.ow)))
        per_task = min(per_task, max(1, -(-pool.oh * g.n // self.backend.num_threads())))
        y_shape = (g.n, pool.oh, pool.ow, g.o)

        def run(x, w, b, weights_key):
            x, wp, bias = operands(x, w, b, weights_key)
            y = np.empty(y_shape, dtype=bias.dtype)  # x may be bfloat16
            conv_pooled.forward(g.flops, x, wp, bias, act, g_tuple, mode, pool_tuple,
                                kind_code, per_task, self.backend.num_threads(), y)
            return y

        return run

    def backward_data(self, dy, w, g):
        """Stride 1: the implicit-GEMM forward on dy with the flipped kernel (parallel over
        rows, no scatter); otherwise dy @ wm^T scattered back (col2im)."""
        # The flipped forward also multiplies the zeros of its padded border (h*w output
        # positions, not oh*ow) and still beats the exact form's scatter on the lesson's layers.
        dx = self.backward_data_by_forward(dy, w, g)
        if dx is not None:
            return dx
        k = g.kh * g.kw * g.c
        dx = np.zeros(g.x_shape, dtype=dy.dtype)
        conv_im2col.backward_data(g.flops, _c(dy).reshape(-1, g.o),
                                  _packed(_c(w).reshape(k, g.o), g.o, k, True), g.astuple(), dx)
        return dx

    def backward_weight(self, x, dy, g):
        m, k = g.n * g.oh * g.ow, g.kh * g.kw * g.c
        nr = NR32 if x.dtype == np.float32 else NR64
        if g.c == 1 and g.sw == 1:
            partial = np.empty((self.backend.num_threads(), -(-k // MR) * MR,
                                -(-g.o // nr) * nr), dtype=x.dtype)
            dy2 = _c(dy).reshape(m, g.o)
            # with O == NR, dy's rows already are one panel
            dyp = dy2.reshape(-1) if g.o == nr else _packed(dy2, m, g.o, False)
            conv_im2col.backward_weight_single_channel(
                g.flops, _padded(_c(x), g), dyp, g.unpadded().astuple(), partial)
            return _c(partial.sum(axis=0)[:k, :g.o]).reshape(g.w_shape)
        partial = np.empty((self.backend.num_threads(), -(-g.o // MR) * MR, -(-k // nr) * nr),
                           dtype=x.dtype)
        dyt = _c(_c(dy).reshape(m, g.o).T)
        if g.c % nr == 0:  # every B panel is a run of channels of x: nothing to pack
            conv_im2col.backward_weight_row_pointers(g.flops, _c(x), dyt, g.astuple(),
                                                     WEIGHT_CHUNK, partial)
        else:
            conv_im2col.backward_weight(g.flops, _c(x), dyt, g.astuple(), WEIGHT_CHUNK,
                                        partial)
        dwt = partial.sum(axis=0)[:g.o, :k]
        return _c(dwt.T).reshape(g.w_shape)


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
        conv_direct.backward_data(g.flops, _c(dy), _c(w), _c(w.transpose(0, 1, 3, 2)),
                                  g.astuple(), dx)
        return dx

    def backward_weight(self, x, dy, g):
        partial = np.empty((self.backend.num_threads(), *g.w_shape), dtype=x.dtype)
        conv_direct.backward_weight(g.flops, _c(x), _c(dy), g.astuple(), partial)
        return partial.sum(axis=0)


class WinogradConv(WinogradAlgorithm):
    def forward(self, x, w, b, g, activation):
        t = self.transform
        x = _c(x)
        dtype = x.dtype
        a2 = t.alpha * t.alpha
        U = np.empty((a2, g.c, g.o), dtype=dtype)
        conv_winograd.filter_transform(U.size, _c(w), t.G.astype(dtype), U)
        Up = np.empty((a2, panel_size(g.c, g.o, dtype)), dtype=dtype)
        conv_winograd.pack_filter_panels(U, Up)
        th, tw = tile_counts(g.oh, g.ow, t.m)
        total = g.n * th * tw
        bias, has_bias = _bias(b, g.o, dtype)
        y = np.empty(g.y_shape, dtype=dtype)
        conv_winograd.forward(g.flops, x, Up, t.BT.astype(dtype), t.AT.astype(dtype), bias,
                              has_bias, ACTIVATION_CODES[activation], g.astuple(),
                              (t.m, th, tw), self.tiles_per_block(total, g.c, g.o, a2), y)
        return y

    def tiles_per_block(self, total: int, c: int, o: int, a2: int) -> int:
        """Tiles per block: enough rows for an efficient GEMM, a block per thread at least."""
        wanted = max(32, (1 << 21) // (a2 * (c + o) * 4))
        return max(1, min(wanted, 512, -(-total // self.backend.num_threads())))
