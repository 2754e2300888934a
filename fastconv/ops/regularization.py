"""Regularisation ops."""

from __future__ import annotations

import numbers

from ..tensor import Function, Tensor
from .base import as_tensor


class DropoutOp(Function):
    def forward(self, x, *, rate):
        keep = self.backend.random_uniform(x.shape, x.dtype) >= rate
        self.mask = keep * x.dtype.type(1.0 / (1.0 - rate))
        return x * self.mask

    def backward(self, dy):
        return (dy * self.mask,)


def dropout(x, rate: float, training: bool = True) -> Tensor:
    """Inverted dropout: zero each value with probability ``rate`` and scale the rest by
    1 / (1 - rate) while training; the identity otherwise."""
    if not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate!r}")
    x = as_tensor(x, "dropout input")
    if not training or rate == 0:
        return x
    return DropoutOp.apply(x, rate=float(rate))


class SpatialDropoutOp(Function):
    """Inverted dropout of whole channels: one keep-or-drop draw per (sample, channel), the
    mask of shape (N, 1, ..., 1, C) broadcast over every other axis (Keras's SpatialDropout
    ``noise_shape``); kept channels are scaled by 1 / (1 - rate)."""

    def forward(self, x, *, rate):
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        keep = self.backend.random_uniform(shape, x.dtype) >= rate
        self.mask = keep * x.dtype.type(1.0 / (1.0 - rate))
        return x * self.mask

    def backward(self, dy):
        return (dy * self.mask,)


def spatial_dropout(x, rate: float, training: bool = True) -> Tensor:
    """Dropout of whole channels (the last axis) of each sample, for inputs with at least one
    axis between the batch and the channels: zero each (sample, channel) with probability
    ``rate`` and scale the rest by 1 / (1 - rate) while training; the identity otherwise."""
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool) or not 0 <= rate < 1:
        raise ValueError(f"spatial_dropout: rate must be in [0, 1), got {rate!r}")
    x = as_tensor(x, "spatial_dropout input")
    if x.ndim < 3:
        raise ValueError(f"spatial_dropout expects (batch, ..., channels) with at least 3 axes, "
                         f"got shape {x.shape}")
    if not training or rate == 0:
        return x
    return SpatialDropoutOp.apply(x, rate=float(rate))
