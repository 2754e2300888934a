"""Pooling ops: 2D max and average pooling as primitives; 1D and global pooling built on them."""

from __future__ import annotations

from ..geometry import normalize_tuple, pool_geometry
from ..tensor import Function, Tensor
from .base import as_tensor
from .shape import reshape


class MaxPool2DOp(Function):
    def forward(self, x, *, geom):
        y, self.argmax = self.backend.max_pool2d_forward(x, geom)
        self.geom = geom
        return y

    def backward(self, dy):
        return (self.backend.max_pool2d_backward(dy, self.argmax, self.geom),)


class AvgPool2DOp(Function):
    def forward(self, x, *, geom):
        self.geom = geom
        return self.backend.avg_pool2d_forward(x, geom)

    def backward(self, dy):
        return (self.backend.avg_pool2d_backward(dy, self.geom),)


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid") -> Tensor:
    """Max pooling over NHWC (Keras semantics; ``strides`` defaults to ``pool_size``)."""
    x = as_tensor(x, "max_pool2d input")
    geom = pool_geometry(x.shape, pool_size, strides, padding, op="max_pool2d")
    return MaxPool2DOp.apply(x, geom=geom)


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid") -> Tensor:
    """Average pooling over NHWC; with ``same`` padding only in-bounds elements are averaged."""
    x = as_tensor(x, "avg_pool2d input")
    geom = pool_geometry(x.shape, pool_size, strides, padding, op="avg_pool2d")
    return AvgPool2DOp.apply(x, geom=geom)


def global_avg_pool2d(x) -> Tensor:
    """Mean over H and W: (N, H, W, C) -> (N, C)."""
    x = as_tensor(x, "global_avg_pool2d input")
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool2d expects a 4D NHWC input, got shape {x.shape}")
    n, h, w, c = x.shape
    return reshape(avg_pool2d(x, (h, w)), (n, c))


def global_max_pool2d(x) -> Tensor:
    """Maximum over H and W: (N, H, W, C) -> (N, C)."""
    x = as_tensor(x, "global_max_pool2d input")
    if x.ndim != 4:
        raise ValueError(f"global_max_pool2d expects a 4D NHWC input, got shape {x.shape}")
    n, h, w, c = x.shape
    return reshape(max_pool2d(x, (h, w)), (n, c))


def _pool1d(pool2d, op, x, pool_size, strides, padding):
    x = as_tensor(x, f"{op} input")
    if x.ndim != 3:
        raise ValueError(f"{op} expects a 3D (batch, steps, channels) input, got shape {x.shape}")
    (p,) = normalize_tuple(pool_size, 1, "pool_size")
    (s,) = normalize_tuple(p if strides is None else strides, 1, "strides")
    n, steps, c = x.shape
    y = pool2d(reshape(x, (n, 1, steps, c)), (1, p), (1, s), padding)
    return reshape(y, (n, y.shape[2], c))


def max_pool1d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    """Max pooling over time series (batch, steps, channels)."""
    return _pool1d(max_pool2d, "max_pool1d", x, pool_size, strides, padding)


def avg_pool1d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    """Average pooling over time series (batch, steps, channels)."""
    return _pool1d(avg_pool2d, "avg_pool1d", x, pool_size, strides, padding)
