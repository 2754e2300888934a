"""Launchers of the cupy backend's convolution kernels: one ConvAlgorithm class per algorithm.

* ``direct`` (``kernels/conv_direct.cu``): one thread per output element of each pass.
* ``im2col`` (``kernels/conv_implicit_gemm.cu``): the three passes as implicit GEMMs on the
  shared tiled main loop, the patch matrix never stored.
* ``winograd`` / ``winograd4`` (``kernels/conv_winograd.cu`` + ``kernels/gemm.cu``): F(2x2,3x3)
  and F(4x4,3x3) forward as filter transform, input transform, batched GEMM and output
  transform, the matrices of ``fastconv.winograd`` compiled in as defines; the backward passes
  are WinogradAlgorithm's (the flipped forward; im2col for the weights).
"""

from __future__ import annotations

from ...winograd import WinogradTransform, tile_counts
from ..base import ConvAlgorithm, WinogradAlgorithm
from ..derived import DerivedCache
from . import gemm
from .elementwise import _act
from .launch import (
    blocks_1d,
    ceil_div,
    check_sizes,
    config,
    contiguous,
    i32,
    kernel,
    launch,
    same_dtype,
    split,
)


def _inputs(be, *arrays):
    arrays = [None if a is None else contiguous(be, a) for a in arrays]
    same_dtype("conv2d", arrays[0].dtype, *arrays[1:])
    check_sizes(*arrays)
    return arrays


class DirectConv(ConvAlgorithm):
    name = "direct"
    SOURCE = "conv_direct.cu"

    def forward(self, x, w, b, g, activation):
        be = self.backend
        x, w, b = _inputs(be, x, w, b)
        y = be.empty(g.y_shape, x.dtype)
        check_sizes(y)
        grid, block = blocks_1d(y.size)
        launch(kernel(self.SOURCE, "direct_forward", x.dtype), grid, block,
               (x, w, y if b is None else b, y, *i32(b is not None, _act(activation)),
                *i32(*g.astuple())))
        return y

    def backward_data(self, dy, w, g):
        be = self.backend
        dy, w = _inputs(be, dy, w)
        dx = be.empty(g.x_shape, dy.dtype)
        check_sizes(dx)
        grid, block = blocks_1d(dx.size)
        launch(kernel(self.SOURCE, "direct_backward_data", dy.dtype), grid, block,
               (dy, w, dx, *i32(*g.astuple())))
        return dx

    def backward_weight(self, x, dy, g):
        be = self.backend
        x, dy = _inputs(be, x, dy)
        dw = be.zeros(g.w_shape, x.dtype)
        chunk, splits = split(g.n * g.oh * g.ow)
        (blocks,), block = blocks_1d(dw.size)
        launch(kernel(self.SOURCE, "direct_backward_weight", x.dtype), (blocks, splits), block,
               (x, dy, dw, *i32(chunk), *i32(*g.astuple())))
        return dw


class Im2colConv(ConvAlgorithm):
    name = "im2col"
    SOURCE = "conv_implicit_gemm.cu"

    def _launch(self, name, dtype, m, n, splits, args):
        cfg = config()
        bm, bn = cfg.gemm_tile[:2]
        launch(kernel(self.SOURCE, name, dtype, cfg.gemm_defines()),
               (ceil_div(m, bm), ceil_div(n, bn), splits), (cfg.gemm_threads,), args)

    def forward(self, x, w, b, g, activation):
        be = self.backend
        x, w, b = _inputs(be, x, w, b)
        y = be.empty(g.y_shape, x.dtype)
        check_sizes(y)
        self._launch("implicit_gemm_forward", x.dtype, g.n * g.oh * g.ow, g.o, 1,
                     (x, w, y if b is None else b, y, *i32(b is not None, _act(activation)),
                      *i32(*g.astuple())))
        return y

    def backward_data(self, dy, w, g):
        be = self.backend
        dy, w = _inputs(be, dy, w)
        dx = be.empty(g.x_shape, dy.dtype)
        check_sizes(dx)
        self._launch("implicit_gemm_backward_data", dy.dtype, g.n * g.h * g.w, g.c, 1,
                     (dy, w, dx, *i32(*g.astuple())))
        return dx

    def backward_weight(self, x, dy, g):
        be = self.backend
        x, dy = _inputs(be, x, dy)
        dw = be.zeros(g.w_shape, x.dtype)
        chunk, splits = split(g.n * g.oh * g.ow, config().gemm_tile[2])
        self._launch("implicit_gemm_backward_weight", x.dtype, g.kh * g.kw * g.c, g.o, splits,
                     (x, dy, dw, *i32(chunk), *i32(*g.astuple())))
        return dw


def _initialiser(matrix) -> str:
    return "{" + ", ".join(repr(float(v)) for v in matrix.ravel()) + "}"


def winograd_defines(t: WinogradTransform) -> dict[str, object]:
    """The defines compiling ``conv_winograd.cu`` for transform ``t`` (its matrices as
    row-major initialiser lists)."""
    if t.r != 3:
        raise ValueError(f"conv_winograd.cu implements F(m x m, 3x3), not r = {t.r}")
    return {"WINO_M": t.m, "WINO_BT": _initialiser(t.BT), "WINO_G": _initialiser(t.G),
            "WINO_AT": _initialiser(t.AT)}


class WinogradConv(WinogradAlgorithm):
    SOURCE = "conv_winograd.cu"

    def _check(self, g):
        if not g.is_3x3_unit:
            raise ValueError(f"{self.name} computes 3x3 convolutions with stride 1 and dilation "
                             f"1, not {g}")

    def filter_transform(self, w, g):
        """U = G w G^T per (channel, filter): (alpha^2, C, O) device memory."""
        be = self.backend
        t = self.transform
        u = be.empty((t.alpha * t.alpha, g.c, g.o), w.dtype)
        check_sizes(u)
        grid, block = blocks_1d(g.c * g.o)
        launch(kernel(self.SOURCE, "winograd_filter", w.dtype, winograd_defines(t)), grid, block,
               (w, u, *i32(g.c, g.o)))
        return u

    def _apply(self, x, u, b, g, activation):
        """Input transform, batched GEMM with the transformed filters ``u``, output transform."""
        be = self.backend
        t = self.transform
        defines = winograd_defines(t)
        dtype = x.dtype
        a2 = t.alpha * t.alpha
        th, tw = tile_counts(g.oh, g.ow, t.m)
        tiles = g.n * th * tw
        v = be.empty((a2, tiles, g.c), dtype)
        m = be.empty((a2, tiles, g.o), dtype)
        y = be.empty(g.y_shape, dtype)
        check_sizes(v, m, y)
        geometry = i32(*g.astuple())
        grid, block = blocks_1d(tiles * g.c)
        launch(kernel(self.SOURCE, "winograd_input", dtype, defines), grid, block,
               (x, v, *i32(th, tw), *geometry))
        gemm.batched(be, v, u, m, tiles, g.o, g.c, stride_a=tiles * g.c, stride_b=g.c * g.o,
                     stride_c=tiles * g.o, batches=a2)
        grid, block = blocks_1d(tiles * g.o)
        launch(kernel(self.SOURCE, "winograd_output", dtype, defines), grid, block,
               (m, y if b is None else b, y, *i32(b is not None, _act(activation), th, tw),
                *geometry))
        return y

    def forward(self, x, w, b, g, activation):
        self._check(g)
        x, w, b = _inputs(self.backend, x, w, b)
        return self._apply(x, self.filter_transform(w, g), b, g, activation)

    def prepare_forward(self, g, activation):
        """Inference: the transformed filters (and the bias on device) once per
        ``weights_key``."""
        self._check(g)
        be = self.backend
        _act(activation)
        cache = DerivedCache()

        def prepared(w, b):  # w and b kept so that their ids in the key stay theirs
            w_dev, b_dev = _inputs(be, w, b)
            return w, b, self.filter_transform(w_dev, g), b_dev

        def run(x, w, b, weights_key):
            _, _, u, b_dev = cache.get(weights_key, lambda: prepared(w, b))
            (x,) = _inputs(be, x)
            if x.dtype != u.dtype:
                raise TypeError(f"conv2d: arrays of {x.dtype} and {u.dtype} mixed")
            return self._apply(x, u, b_dev, g, activation)

        return run
