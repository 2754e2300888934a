"""Argument handling shared by the ops: tensors from array-likes, dtype and activation checks,
and the reduction of broadcast gradients."""

from __future__ import annotations

import numbers

import numpy as np

from ..backends import FUSED_ACTIVATIONS, get_backend
from ..tensor import Tensor


def as_tensor(x, name: str = "input", dtype=None) -> Tensor:
    """A Tensor from a Tensor or array-like of numbers (non-float numbers become float32)."""
    if isinstance(x, Tensor):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {x.dtype}")
        return x
    backend = get_backend()
    if isinstance(x, backend.xp.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if kind == "f" else np.float32
    return Tensor(backend.asarray(arr, dtype=dtype), backend=backend)


def same_dtype(op: str, **tensors: Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise TypeError(f"{op}: dtypes differ ({listed}); cast them to one dtype")


def check_activation(op: str, activation) -> str:
    activation = "linear" if activation is None else activation
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(
            f"{op}: the fused activation must be one of {', '.join(FUSED_ACTIVATIONS)} or None, "
            f"got {activation!r}; apply other activations as separate ops")
    return activation


def unbroadcast(g, shape):
    """Sum a broadcast gradient back to ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, s in enumerate(shape) if s == 1 and g.shape[i + extra] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def broadcast_operands(op: str, a, b) -> tuple[Tensor, Tensor]:
    """The two operands of an element-wise op as Tensors of one dtype whose shapes broadcast
    (NumPy's rules). A plain number takes the other operand's dtype."""
    if isinstance(a, Tensor) and isinstance(b, numbers.Real):
        b = as_tensor(b, f"{op} input", dtype=a.dtype)
    elif isinstance(b, Tensor) and isinstance(a, numbers.Real):
        a = as_tensor(a, f"{op} input", dtype=b.dtype)
    a, b = as_tensor(a, f"{op} input"), as_tensor(b, f"{op} input")
    same_dtype(op, a=a, b=b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b
