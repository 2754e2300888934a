"""Activation ops."""

from __future__ import annotations

from ..tensor import Function, Tensor
from .base import as_tensor


class ReLUOp(Function):
    def forward(self, x):
        self.y = self.backend.bias_activation(x.copy(), None, "relu")
        return self.y

    def backward(self, dy):
        return (self.backend.epilogue_backward(dy, self.y, "relu", False)[0],)


class SigmoidOp(Function):
    def forward(self, x):
        xp = self.backend.xp
        # 1 / (1 + exp(-x)), written so that neither branch overflows.
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.y

    def backward(self, dy):
        return (dy * self.y * (1 - self.y),)


class TanhOp(Function):
    def forward(self, x):
        self.y = self.backend.xp.tanh(x)
        return self.y

    def backward(self, dy):
        return (dy * (1 - self.y * self.y),)


class SoftmaxOp(Function):
    def forward(self, x, *, axis):
        xp = self.backend.xp
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        return self.y

    def backward(self, dy):
        y = self.y
        return (y * (dy - (dy * y).sum(axis=self.axis, keepdims=True)),)


class LeakyReLUOp(Function):
    """``x`` where ``x >= 0``, ``negative_slope * x`` elsewhere (ONNX's LeakyRelu)."""

    def forward(self, x, *, negative_slope):
        self.slope = x.dtype.type(negative_slope)
        self.positive = x >= 0
        return self.backend.xp.where(self.positive, x, x * self.slope)

    def backward(self, dy):
        return (self.backend.xp.where(self.positive, dy, dy * self.slope),)


class ClipOp(Function):
    """``min(max(x, low), high)`` (ONNX's Clip; a None bound is no bound). The gradient passes
    where ``low <= x <= high``."""

    def forward(self, x, *, low, high):
        xp = self.backend.xp
        lo = -xp.inf if low is None else x.dtype.type(low)
        hi = xp.inf if high is None else x.dtype.type(high)
        self.inside = (x >= lo) & (x <= hi)
        return xp.minimum(xp.maximum(x, lo), hi).astype(x.dtype, copy=False)

    def backward(self, dy):
        return (self.backend.xp.where(self.inside, dy, dy.dtype.type(0)),)


def leaky_relu(x, negative_slope: float = 0.3) -> Tensor:
    """``x`` for ``x >= 0``, ``negative_slope * x`` otherwise."""
    return LeakyReLUOp.apply(as_tensor(x, "leaky_relu input"), negative_slope=float(negative_slope))


def clip(x, low=None, high=None) -> Tensor:
    """``x`` clipped to ``[low, high]`` (None: unbounded on that side)."""
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip: low {low!r} is greater than high {high!r}")
    return ClipOp.apply(as_tensor(x, "clip input"), low=None if low is None else float(low),
                        high=None if high is None else float(high))


def relu(x) -> Tensor:
    return ReLUOp.apply(as_tensor(x, "relu input"))


def sigmoid(x) -> Tensor:
    return SigmoidOp.apply(as_tensor(x, "sigmoid input"))


def tanh(x) -> Tensor:
    return TanhOp.apply(as_tensor(x, "tanh input"))


def softmax(x, axis: int = -1) -> Tensor:
    """Softmax along ``axis``; the result remembers its logits so that a following
    cross-entropy is computed stably from them (as Keras does)."""
    x = as_tensor(x, "softmax input")
    y = SoftmaxOp.apply(x, axis=axis)
    if x.ndim and axis % x.ndim == x.ndim - 1:  # cross-entropy's class axis is the last one
        y._logits = x
    return y


def linear(x) -> Tensor:
    return as_tensor(x, "linear input")
