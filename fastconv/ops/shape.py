"""Shape ops."""

from __future__ import annotations

import numpy as np

from ..tensor import Function, Tensor
from .base import as_tensor


class ReshapeOp(Function):
    def forward(self, x, *, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, dy):
        return (dy.reshape(self.in_shape),)


def reshape(x, shape) -> Tensor:
    x = as_tensor(x, "reshape input")
    shape = tuple(int(s) for s in shape)
    known = int(np.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or any(s < -1 or s == 0 for s in shape) or (
            -1 not in shape and known != x.size) or (-1 in shape and x.size % known):
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} values) to {shape}")
    return ReshapeOp.apply(x, shape=shape)


def flatten(x) -> Tensor:
    """(N, ...) -> (N, prod(...))."""
    x = as_tensor(x, "flatten input")
    return reshape(x, (x.shape[0], -1))
