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
