"""Arithmetic: the element-wise operators behind ``Tensor``'s ``+ - * /`` and unary minus (NumPy
broadcasting; gradients summed back over broadcast axes), matrix products (``@``), reductions
and scaling. ``add`` lives with the merge ops (residual connections)."""

from __future__ import annotations

import numpy as np

from ..tensor import Function, Tensor
from .base import as_tensor, as_tensors, broadcast_operands, unbroadcast


class SubtractOp(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, dy):
        return unbroadcast(dy, self.shapes[0]), unbroadcast(-dy, self.shapes[1])


class MultiplyOp(Function):
    """y = a * b. Backward: da = dy * b, db = dy * a (each summed over its broadcast axes)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, dy):
        need = self.needs_input_grad
        da = unbroadcast(dy * self.b, self.a.shape) if need[0] else None
        db = unbroadcast(dy * self.a, self.b.shape) if need[1] else None
        return da, db


class DivideOp(Function):
    """y = a / b. Backward: da = dy / b, db = -dy * a / b^2 = -dy * y / b."""

    def forward(self, a, b):
        y = a / b
        self.a_shape, self.b, self.y = a.shape, b, y
        return y

    def backward(self, dy):
        need = self.needs_input_grad
        da = unbroadcast(dy / self.b, self.a_shape) if need[0] else None
        db = unbroadcast(-dy * self.y / self.b, self.b.shape) if need[1] else None
        return da, db


class NegativeOp(Function):
    def forward(self, x):
        return -x

    def backward(self, dy):
        return (-dy,)


class MatMulOp(Function):
    """y = a @ b over the last two axes, leading axes broadcast (NumPy's ``matmul``).
    Backward: da = dy @ b^T, db = a^T @ dy (transposes of the last two axes), each summed over
    the leading axes it was broadcast along."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return self.backend.xp.matmul(a, b)

    def backward(self, dy):
        xp = self.backend.xp
        need = self.needs_input_grad
        da = unbroadcast(xp.matmul(dy, xp.swapaxes(self.b, -1, -2)), self.a.shape) \
            if need[0] else None
        db = unbroadcast(xp.matmul(xp.swapaxes(self.a, -1, -2), dy), self.b.shape) \
            if need[1] else None
        return da, db


def subtract(a, b) -> Tensor:
    """Element-wise ``a - b`` with NumPy broadcasting."""
    return SubtractOp.apply(*broadcast_operands("subtract", a, b))


def multiply(a, b) -> Tensor:
    """Element-wise ``a * b`` with NumPy broadcasting."""
    return MultiplyOp.apply(*broadcast_operands("multiply", a, b))


def divide(a, b) -> Tensor:
    """Element-wise ``a / b`` with NumPy broadcasting (IEEE results for division by zero)."""
    return DivideOp.apply(*broadcast_operands("divide", a, b))


def negative(x) -> Tensor:
    """``-x``."""
    return NegativeOp.apply(as_tensor(x, "negative input"))


def matmul(a, b) -> Tensor:
    """Matrix product over the last two axes of tensors with at least 2 axes each; leading
    (batch) axes broadcast, as NumPy's ``matmul``."""
    a, b = as_tensors("matmul", a=a, b=b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: both operands need at least 2 axes, got shapes {a.shape} and "
                         f"{b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match (last axis of "
                         f"the first {a.shape[-1]} != second-to-last axis of the second "
                         f"{b.shape[-2]})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: the leading axes of {a.shape} and {b.shape} do not "
                         f"broadcast") from None
    return MatMulOp.apply(a, b)


class SumOp(Function):
    def forward(self, x):
        self.shape = x.shape
        return x.sum()

    def backward(self, dy):
        return (self.backend.xp.broadcast_to(dy, self.shape).copy(),)


def sum(x) -> Tensor:  # noqa: A001 - mirrors numpy's name inside this namespace
    return SumOp.apply(as_tensor(x, "sum input"))


def mean(x) -> Tensor:
    x = as_tensor(x, "mean input")
    return ScaleOp.apply(sum(x), factor=1.0 / x.size)


class ScaleOp(Function):
    def forward(self, x, *, factor):
        self.factor = x.dtype.type(factor)
        return x * self.factor

    def backward(self, dy):
        return (dy * self.factor,)
