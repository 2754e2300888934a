"""Ops that combine tensors: element-wise sum (residual connections), maximum and minimum (NumPy
broadcasting; gradients summed back over broadcast axes), and concatenation."""

from __future__ import annotations

import numpy as np

from ..tensor import Function, Tensor
from .base import as_tensor, broadcast_operands, same_dtype, unbroadcast


class AddOp(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, dy):
        return unbroadcast(dy, self.shapes[0]), unbroadcast(dy, self.shapes[1])


def add(a, b) -> Tensor:
    """Element-wise sum with NumPy broadcasting (residual connections). A plain number takes
    the other operand's dtype."""
    return AddOp.apply(*broadcast_operands("add", a, b))


class MaximumOp(Function):
    """``y = max(a, b)`` element-wise (NaN propagates). Backward: ``dy`` goes to ``a`` where
    ``a >= b`` (ties to the first operand), to ``b`` elsewhere, each summed over its broadcast
    axes."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        self.first = a >= b
        return self.backend.xp.maximum(a, b)

    def backward(self, dy):
        return _split(self, dy)


class MinimumOp(Function):
    """``y = min(a, b)`` element-wise (NaN propagates). Backward: ``dy`` goes to ``a`` where
    ``a <= b`` (ties to the first operand), to ``b`` elsewhere, each summed over its broadcast
    axes."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        self.first = a <= b
        return self.backend.xp.minimum(a, b)

    def backward(self, dy):
        return _split(self, dy)


def _split(fn, dy):
    """``dy`` split between the two operands of a maximum or minimum by ``fn.first``."""
    xp, zero, need = fn.backend.xp, dy.dtype.type(0), fn.needs_input_grad
    da = unbroadcast(xp.where(fn.first, dy, zero), fn.shapes[0]) if need[0] else None
    db = unbroadcast(xp.where(fn.first, zero, dy), fn.shapes[1]) if need[1] else None
    return da, db


def maximum(a, b) -> Tensor:
    """Element-wise maximum with NumPy broadcasting."""
    return MaximumOp.apply(*broadcast_operands("maximum", a, b))


def minimum(a, b) -> Tensor:
    """Element-wise minimum with NumPy broadcasting."""
    return MinimumOp.apply(*broadcast_operands("minimum", a, b))


class ConcatenateOp(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return self.backend.xp.concatenate(arrays, axis=axis)

    def backward(self, dy):
        xp = self.backend.xp
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(dy, cuts, axis=self.axis))


def concatenate(tensors, axis: int = -1) -> Tensor:
    tensors = [as_tensor(t, "concatenate input") for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    ndim = tensors[0].ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"concatenate: axis {axis} is out of range for {ndim}D tensors")
    ax = axis % ndim
    for t in tensors[1:]:
        if t.ndim != ndim or any(s != r for i, (s, r) in enumerate(zip(t.shape, tensors[0].shape))
                                 if i != ax):
            raise ValueError(
                f"concatenate: shapes {[t.shape for t in tensors]} differ outside axis {axis}")
    same_dtype("concatenate", **{f"input {i}": t for i, t in enumerate(tensors)})
    return ConcatenateOp.apply(*tensors, axis=ax)
