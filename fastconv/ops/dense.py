"""The fully connected op."""

from __future__ import annotations

from ..tensor import Function, Tensor
from .base import as_tensors, check_activation


class DenseOp(Function):
    """y = act(x @ w + b) over the last axis of x."""

    def forward(self, x, w, b=None, *, activation):
        be = self.backend
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])
        y = be.bias_activation(be.matmul(x2, w), b, activation)
        self.x2, self.w, self.activation = x2, w, activation
        self.y = y if activation != "linear" else None
        return y.reshape(*x.shape[:-1], w.shape[1])

    def backward(self, dy):
        be = self.backend
        need = self.needs_input_grad
        dz, db = be.epilogue_backward(dy.reshape(-1, dy.shape[-1]), self.y, self.activation,
                                      len(need) > 2 and need[2])
        dx = be.matmul(dz, self.w, trans_b=True).reshape(self.x_shape) if need[0] else None
        dw = be.matmul(self.x2, dz, trans_a=True) if need[1] else None
        return dx, dw, db


def dense(x, kernel, bias=None, activation=None) -> Tensor:
    """Fully connected layer over the last axis: ``act(x @ kernel + bias)``."""
    x, kernel, bias = as_tensors("dense", input=x, kernel=kernel, bias=bias)
    if kernel.ndim != 2:
        raise ValueError(f"dense: kernel must be 2D (in, out), got shape {kernel.shape}")
    if x.ndim < 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"dense: input shape {x.shape} does not match kernel shape {kernel.shape} "
            f"(expected last axis {kernel.shape[0]})")
    if bias is not None and bias.shape != (kernel.shape[1],):
        raise ValueError(f"dense: bias must have shape ({kernel.shape[1]},), got {bias.shape}")
    activation = check_activation("dense", activation)
    args = (x, kernel) if bias is None else (x, kernel, bias)
    return DenseOp.apply(*args, activation=activation)
