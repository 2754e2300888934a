"""Launchers of the numba-cuda convolution kernels: one ConvAlgorithm class per algorithm.

Each pass checks its operands (shapes of the geometry, one floating dtype), makes them
C-contiguous device arrays and hands them to the kernel module of its algorithm
(``conv_direct``, ``conv_implicit_gemm``, ``conv_winograd``), which allocates the output and
launches the kernels.
"""

from __future__ import annotations

from ..base import ConvAlgorithm, WinogradAlgorithm
from ..derived import DerivedCache
from . import conv_direct, conv_implicit_gemm, conv_winograd

_DTYPES = ("float32", "float64")


def _operands(be, what, *pairs):
    """``(array, expected shape)`` pairs -> the arrays as C-contiguous device arrays, checked to
    have their shapes and one floating dtype (float32 or float64)."""
    arrays = [a for a, _ in pairs]
    dtype = arrays[0].dtype
    if dtype.name not in _DTYPES or any(a.dtype != dtype for a in arrays):
        raise TypeError(f"numba-cuda {what}: expects float32 or float64 operands of one dtype, "
                        f"got {', '.join(str(a.dtype) for a in arrays)}")
    for a, shape in pairs:
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"numba-cuda {what}: an operand of shape {tuple(a.shape)} where "
                             f"the geometry expects {tuple(shape)}")
    return [be.device(a) for a in arrays]


def _weights(be, what, w, b, g, dtype=None):
    """The kernel and the bias (zeros when there is none) as device arrays."""
    if b is None:
        (w,) = _operands(be, what, (w, g.w_shape))
        b = be.zeros((g.o,), w.dtype)
    else:
        w, b = _operands(be, what, (w, g.w_shape), (b, (g.o,)))
    if dtype is not None and w.dtype != dtype:
        raise TypeError(f"numba-cuda {what}: expects operands of one dtype, got input "
                        f"{dtype} and kernel {w.dtype}")
    return w, b


def _forward_operands(be, what, x, w, b, g):
    """x, w and the bias (zeros when there is none) as device arrays of one dtype."""
    (x,) = _operands(be, what, (x, g.x_shape))
    return (x, *_weights(be, what, w, b, g, x.dtype))


class DirectConv(ConvAlgorithm):
    """One thread per output element (``conv_direct``)."""

    name = "direct"

    def forward(self, x, w, b, geom, activation):
        be = self.backend
        x, w, b = _forward_operands(be, "direct convolution", x, w, b, geom)
        return conv_direct.forward(be, x, w, b, geom, activation)

    def backward_data(self, dy, w, geom):
        be = self.backend
        dy, w = _operands(be, "direct convolution backward-data", (dy, geom.y_shape),
                          (w, geom.w_shape))
        return conv_direct.backward_data(be, dy, w, geom)

    def backward_weight(self, x, dy, geom):
        be = self.backend
        x, dy = _operands(be, "direct convolution backward-weight", (x, geom.x_shape),
                          (dy, geom.y_shape))
        return conv_direct.backward_weight(be, x, dy, geom)


class Im2colConv(ConvAlgorithm):
    """im2col as an implicit GEMM: tiles of the patch matrix gathered straight into shared
    memory (``conv_implicit_gemm``)."""

    name = "im2col"

    def forward(self, x, w, b, geom, activation):
        be = self.backend
        x, w, b = _forward_operands(be, "im2col convolution", x, w, b, geom)
        return conv_implicit_gemm.forward(be, x, w, b, geom, activation)

    def backward_data(self, dy, w, geom):
        be = self.backend
        dy, w = _operands(be, "im2col convolution backward-data", (dy, geom.y_shape),
                          (w, geom.w_shape))
        return conv_implicit_gemm.backward_data(be, dy, w, geom)

    def backward_weight(self, x, dy, geom):
        be = self.backend
        x, dy = _operands(be, "im2col convolution backward-weight", (x, geom.x_shape),
                          (dy, geom.y_shape))
        return conv_implicit_gemm.backward_weight(be, x, dy, geom)


class WinogradConv(WinogradAlgorithm):
    """Winograd F(m x m, 3x3): transform kernels around the batched tiled GEMM
    (``conv_winograd``); the backward passes are WinogradAlgorithm's."""

    def forward(self, x, w, b, geom, activation):
        be = self.backend
        x, w, b = _forward_operands(be, f"{self.name} convolution", x, w, b, geom)
        return conv_winograd.forward(be, x, w, b, geom, activation, self.transform.m)

    def prepare_forward(self, geom, activation):
        """Inference: the filter transform and the bias made once per ``weights_key``."""
        be, m = self.backend, self.transform.m
        what = f"{self.name} convolution"
        cache = DerivedCache()

        def prepared(w, b):  # w and b are kept so that their ids in the key stay theirs
            w_dev, b_dev = _weights(be, what, w, b, geom)
            return w, b, b_dev, conv_winograd.filter_transform(be, w_dev, m)

        def run(x, w, b, weights_key):
            _, _, b_dev, u = cache.get(weights_key, lambda: prepared(w, b))
            (x,) = _operands(be, what, (x, geom.x_shape))
            if x.dtype != u.dtype:
                raise TypeError(f"numba-cuda {what}: expects operands of one dtype, got "
                                f"input {x.dtype} and kernel {u.dtype}")
            return conv_winograd.forward(be, x, None, b_dev, geom, activation, m, u=u)

        return run
