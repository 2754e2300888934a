"""Arithmetic: reductions and scaling."""

from __future__ import annotations

from ..tensor import Function, Tensor
from .base import as_tensor


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
