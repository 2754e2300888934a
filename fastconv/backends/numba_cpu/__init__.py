"""The ``numba-cpu`` backend: parallel Numba kernels on the CPU (float32 and float64).

Convolutions: direct, im2col + GEMM and Winograd F(2x2,3x3) / F(4x4,3x3), forward and both
backward passes, with bias + ReLU fused into the epilogues; grouped and depthwise convolution
with kernels of their own (``conv_grouped.py``). Every GEMM runs on fastconv's own
register-blocked micro-kernel (``microkernel.py``), on Numba's one thread pool. Threads:
``NUMBA_NUM_THREADS`` at start-up, ``fastconv.set_num_threads(n)`` at run time.
"""

from __future__ import annotations

import numba
import numpy as np

from ... import random as fc_random
from ..base import Backend, conv_algorithm_table
from ..derived import DerivedCache
from ..host_memory import keep_freed_memory
from ..jit_cache import CACHE_FOLDER  # noqa: F401 - set before any kernel below is defined
from . import conv, conv_grouped, elementwise, gemm, microkernel, pool
from . import normalization as norm

_CHUNK = 1 << 14  # elements per parallel task in element-wise kernels


def _pool_work(g) -> int:
    return g.n * g.oh * g.ow * g.c * g.ph * g.pw


class NumbaCpuBackend(Backend):
    name = "numba-cpu"
    xp = np
    inference_chunk_bytes = 2 << 20
    compile_fallback = "numpy"
    # past the heuristic's own bound for direct (32), direct lost every pass of every bench
    # layer to im2col (bench/RESULTS-amd-epyc.md), and compiling its three kernels costs a
    # first run about 4.5 s
    direct_tuning_max_products = 32
    conv_algorithm_classes = conv_algorithm_table(conv)

    def __init__(self):
        super().__init__()
        keep_freed_memory()
        self._gemm_description = microkernel.describe()

    def to_host(self, a):
        return np.asarray(a)

    def compile_last_first(self, run) -> None:
        from .jit import recorded

        for dispatcher, types in reversed(recorded(run)):
            dispatcher.compile(types)  # loads from Numba's cache when already compiled there

    def runs_from_cache(self, run) -> bool:
        from .jit import refusing_to_compile

        with refusing_to_compile() as refused:
            try:
                run()
            except refused:
                return False
        return True

    def compile_variants(self, run) -> None:
        """``run()`` once with every kernel serial and once parallel (``SizedKernel``)."""
        from .jit import SizedKernel

        try:
            for mode in ("serial", "parallel"):
                SizedKernel.mode = mode
                run()
        finally:
            SizedKernel.mode = "auto"

    def gemm_description(self) -> str:
        return self._gemm_description

    def num_threads(self) -> int:
        return numba.get_num_threads()

    def set_num_threads(self, n: int) -> None:
        limit = numba.config.NUMBA_NUM_THREADS
        if n > limit:
            raise ValueError(f"numba-cpu can use at most {limit} threads (NUMBA_NUM_THREADS); "
                             f"got {n}")
        numba.set_num_threads(n)

    def heuristic_conv_algorithm(self, geom, conv_pass, candidates):
        # Too few products per output for a GEMM to pay. For the forward pass that is only
        # up to about 4 (1x1 kernels on a few channels): from 9 products on (a 3x3 kernel on
        # one channel, the lesson's and LeNet's first layers), im2col ran 1.2-4x faster than
        # direct at batch 1 and 32 on AMD EPYC.
        # Backward-weight with one input channel and horizontal stride 1 has its own im2col
        # kernel, which reads the input in place: 2-7x faster than direct (3x3 and 5x5, batch
        # 1-128, AMD EPYC).
        small = 4 if conv_pass == "forward" else 32
        single_channel = conv_pass == "backward_weight" and geom.c == 1 and geom.sw == 1
        if (geom.c * geom.kh * geom.kw <= small and "direct" in candidates
                and not (single_channel and "im2col" in candidates)):
            return "direct"
        return "im2col" if "im2col" in candidates else candidates[0]

    # -- grouped and depthwise convolution ----------------------------------------------------
    def grouped_conv2d_forward(self, x, w, b, geom, groups, activation="linear"):
        return conv_grouped.forward(x, w, b, geom, groups, activation, self.num_threads())

    def prepare_grouped_conv2d_forward(self, geom, groups, activation):
        return conv_grouped.prepare_forward(geom, groups, activation, self.num_threads)

    def grouped_conv2d_backward_data(self, dy, w, geom, groups):
        return conv_grouped.backward_data_pass(dy, w, geom, groups)

    def grouped_conv2d_backward_weight(self, x, dy, geom, groups):
        return conv_grouped.backward_weight_pass(x, dy, geom, groups, self.num_threads())

    # -- dense ------------------------------------------------------------------------------
    def matmul(self, a, b, trans_a=False, trans_b=False):
        return gemm.matmul(a, b, trans_a, trans_b, self.num_threads())

    def prepare_matmul(self):
        cache = DerivedCache()

        def run(a, b, b_key):  # the entry keeps b, so that id(b) in the key stays b's
            _, (bp, k, n) = cache.get(b_key, lambda: (b, gemm.packed(b, False)))
            if k == 0:
                return np.zeros((a.shape[0], n), dtype=a.dtype)
            return gemm.matmul_packed(a, bp, n, self.num_threads())

        return run

    # -- pooling ------------------------------------------------------------------------------
    def max_pool2d_forward(self, x, geom, with_argmax=True):
        y = np.empty(geom.y_shape, dtype=x.dtype)
        argmax = np.empty(geom.y_shape if with_argmax else (1, 1, geom.ow, geom.c), np.int32)
        pool.max_forward(_pool_work(geom), np.ascontiguousarray(x), geom.astuple(), with_argmax,
                         y, argmax)
        return y, (argmax if with_argmax else None)

    def max_pool2d_backward(self, dy, argmax, geom):
        g = geom
        if (g.sh, g.sw, g.pt, g.pl) == (g.ph, g.pw, 0, 0):  # windows tile the input
            dx = np.empty(g.x_shape, dtype=dy.dtype)
            pool.max_backward_tiled(_pool_work(g), np.ascontiguousarray(dy), argmax,
                                    g.astuple(), dx)
            return dx
        dx = np.zeros(g.x_shape, dtype=dy.dtype)
        pool.max_backward(_pool_work(g), np.ascontiguousarray(dy), argmax, g.astuple(), dx)
        return dx

    def avg_pool2d_forward(self, x, geom):
        y = np.empty(geom.y_shape, dtype=x.dtype)
        pool.avg_forward(_pool_work(geom), np.ascontiguousarray(x), geom.astuple(), y)
        return y

    def avg_pool2d_backward(self, dy, geom):
        dx = np.zeros(geom.x_shape, dtype=dy.dtype)
        pool.avg_backward(_pool_work(geom), np.ascontiguousarray(dy), geom.astuple(), dx)
        return dx

    # -- element-wise -------------------------------------------------------------------------
    def bias_activation(self, y, b, activation):
        ch = y.shape[-1]
        rows = y.size // ch if ch else 0
        has_bias = b is not None
        bias = np.ascontiguousarray(b, dtype=y.dtype) if has_bias else np.zeros(ch, y.dtype)
        elementwise.bias_act_rows(y.size, y.reshape(rows, ch), bias, has_bias,
                                  elementwise.ACTIVATION_CODES[activation],
                                  max(1, _CHUNK // max(ch, 1)))
        return y

    def epilogue_backward(self, dy, y, activation, bias):
        if activation != "relu" and not bias:
            return dy, None
        ch = dy.shape[-1]
        rows = dy.size // ch
        dy2 = np.ascontiguousarray(dy).reshape(rows, ch)
        dz = np.empty_like(dy2)
        partial = np.empty((self.num_threads(), ch), dtype=dy.dtype)
        elementwise.epilogue_backward_rows(
            dy.size, dy2, dy2 if y is None else y.reshape(rows, ch),
            elementwise.ACTIVATION_CODES[activation], bias, dz, partial,
            max(1, _CHUNK // max(ch, 1)))
        return dz.reshape(dy.shape), (partial.sum(axis=0) if bias else None)

    def adam_update(self, param, grad, m, v, lr_t, beta_1, beta_2, epsilon):
        real = param.dtype.type  # float32 arrays: float32 arithmetic (vectorised sqrt/div)
        elementwise.adam_flat(param.size, param.reshape(-1), np.ascontiguousarray(grad).reshape(-1),
                              m.reshape(-1), v.reshape(-1), real(lr_t), real(beta_1), real(beta_2),
                              real(epsilon), _CHUNK)

    # -- normalisation -----------------------------------------------------------------------
    def _partials(self, ch: int):
        return (np.empty((self.num_threads(), ch)), np.empty((self.num_threads(), ch)))

    def batch_norm_statistics(self, x):
        rows, ch = x.shape
        x = np.ascontiguousarray(x)
        p1, p2 = self._partials(ch)
        rows_per = _rows_per(ch)
        norm.centered_sums(x.size, x, np.zeros(ch), p1, p2, rows_per)
        mean = p1.sum(axis=0) / rows
        # second pass about the mean; s1 (about 0) corrects its rounding
        norm.centered_sums(x.size, x, mean, p1, p2, rows_per)
        s1 = p1.sum(axis=0)
        var = (p2.sum(axis=0) - s1 * s1 / rows) / rows
        return mean.astype(x.dtype), var.astype(x.dtype)

    def batch_norm_forward(self, x, gamma, beta, mean, var, eps):
        dt = x.dtype
        scale = (gamma / np.sqrt(var.astype(np.float64) + eps)).astype(dt)
        x = np.ascontiguousarray(x)
        y = np.empty_like(x)
        norm.affine_centered(x.size, x, _vec(mean, dt), scale, _vec(beta, dt), y,
                             _rows_per(x.shape[1]))
        return y

    def batch_norm_backward(self, dy, x, gamma, mean, var, eps, training):
        rows, ch = x.shape
        dt = x.dtype
        dy, x, mean = np.ascontiguousarray(dy), np.ascontiguousarray(x), _vec(mean, dt)
        p_dy, p_dyx = self._partials(ch)
        rows_per = _rows_per(ch)
        norm.grad_sums(dy.size, dy, x, mean, p_dy, p_dyx, rows_per)
        s_dy, s_dyx = p_dy.sum(axis=0), p_dyx.sum(axis=0)
        inv = 1.0 / np.sqrt(var.astype(np.float64) + eps)
        a = gamma * inv
        if training:
            b, c = -a * inv * inv * s_dyx / rows, -a * s_dy / rows
        else:
            b = c = np.zeros(ch)
        dx = np.empty_like(dy)
        norm.bn_dx(dy.size, dy, x, mean, a.astype(dt), b.astype(dt), c.astype(dt), dx, rows_per)
        return dx, (s_dyx * inv).astype(dt), s_dy.astype(dt)

    def lrn_forward(self, x, radius, bias, alpha, beta):
        x = np.ascontiguousarray(x)
        y, scale = np.empty_like(x), np.empty_like(x)
        scratch = np.empty((self.num_threads(), 3, x.shape[1]))
        norm.lrn_forward(x.size * (2 * radius + 1), x, int(radius), float(bias), float(alpha),
                         float(beta), y, scale, scratch, _rows_per(x.shape[1]))
        return y, scale

    def lrn_backward(self, dy, x, y, scale, radius, alpha, beta):
        dy = np.ascontiguousarray(dy)
        dx = np.empty_like(dy)
        scratch = np.empty((self.num_threads(), 4, dy.shape[1]))
        norm.lrn_backward(dy.size * (2 * radius + 1), dy, np.ascontiguousarray(x),
                          np.ascontiguousarray(y), np.ascontiguousarray(scale), int(radius),
                          float(alpha), float(beta), dx, scratch, _rows_per(dy.shape[1]))
        return dx

    def random_uniform(self, shape, dtype):
        return fc_random.host_rng().random(shape, dtype=np.dtype(dtype))


def _rows_per(ch: int) -> int:
    """Rows per parallel task in (rows, channels) kernels."""
    return max(1, _CHUNK // max(ch, 1))


def _vec(a, dtype):
    """A contiguous per-channel vector of ``dtype``."""
    return np.ascontiguousarray(a, dtype=dtype)


def create_backend() -> NumbaCpuBackend:
    return NumbaCpuBackend()
