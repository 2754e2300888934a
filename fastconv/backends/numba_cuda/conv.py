"""Launchers of the numba-cuda convolution kernels: one ConvAlgorithm class per algorithm.

Each pass checks its operands, makes them C-contiguous device arrays and hands them to the
kernel module of its algorithm (``conv_direct``, ``conv_implicit_gemm``, ``conv_winograd``),
which allocates the output and launches the kernels.
"""

from __future__ import annotations

from ...winograd import F2x2_3x3, F4x4_3x3
from ..base import ConvAlgorithm, WinogradAlgorithm
from . import conv_direct, conv_implicit_gemm, conv_winograd

_DTYPES = ("float32", "float64")


def _operands(be, what, *arrays):
    """The arrays as C-contiguous device arrays of one floating dtype (float32 or float64)."""
    dtype = arrays[0].dtype
    if dtype.name not in _DTYPES or any(a.dtype != dtype for a in arrays):
        raise TypeError(f"numba-cuda {what}: expects float32 or float64 operands of one dtype, "
                        f"got {', '.join(str(a.dtype) for a in arrays)}")
    return [be.device(a) for a in arrays]


def _forward_operands(be, what, x, w, b, g):
    """x, w and the bias (zeros when there is none) as device arrays of one dtype."""
    if b is None:
        x, w = _operands(be, what, x, w)
        return x, w, be.zeros((g.o,), x.dtype)
    if b.shape != (g.o,):
        raise ValueError(f"numba-cuda {what}: bias of shape {b.shape}, expected ({g.o},)")
    return _operands(be, what, x, w, b)


class DirectConv(ConvAlgorithm):
    """One thread per output element (``conv_direct``)."""

    name = "direct"

    def forward(self, x, w, b, geom, activation):
        be = self.backend
        x, w, b = _forward_operands(be, "direct convolution", x, w, b, geom)
        return conv_direct.forward(be, x, w, b, geom, activation)

    def backward_data(self, dy, w, geom):
        be = self.backend
        dy, w = _operands(be, "direct convolution backward-data", dy, w)
        return conv_direct.backward_data(be, dy, w, geom)

    def backward_weight(self, x, dy, geom):
        be = self.backend
        x, dy = _operands(be, "direct convolution backward-weight", x, dy)
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
        dy, w = _operands(be, "im2col convolution backward-data", dy, w)
        return conv_implicit_gemm.backward_data(be, dy, w, geom)

    def backward_weight(self, x, dy, geom):
        be = self.backend
        x, dy = _operands(be, "im2col convolution backward-weight", x, dy)
        return conv_implicit_gemm.backward_weight(be, x, dy, geom)


class _NumbaCudaWinograd(WinogradAlgorithm):
    """Winograd F(m x m, 3x3): transform kernels around the batched tiled GEMM
    (``conv_winograd``); the backward passes are WinogradAlgorithm's."""

    def forward(self, x, w, b, geom, activation):
        be = self.backend
        x, w, b = _forward_operands(be, f"{self.name} convolution", x, w, b, geom)
        return conv_winograd.forward(be, x, w, b, geom, activation, self.transform.m)


class WinogradF2Conv(_NumbaCudaWinograd):
    name = "winograd"
    transform = F2x2_3x3


class WinogradF4Conv(_NumbaCudaWinograd):
    name = "winograd4"
    transform = F4x4_3x3
