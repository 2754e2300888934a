"""Argument handling shared by the ops: tensors from array-likes, dtype and activation checks,
and the reduction of broadcast gradients."""

from __future__ import annotations

import numbers

import numpy as np

from ..backends import FUSED_ACTIVATIONS, get_backend
from ..tensor import Tensor, mixed_backends_message

#: The dtypes ops compute in; float16 array-likes are computed in float32.
COMPUTE_DTYPES = ("float32", "float64")
#: the same as dtype objects, for the common case: a set lookup, where ``dtype.name`` is a
#: Python-level property
_COMPUTE = frozenset(np.dtype(d) for d in COMPUTE_DTYPES)


def _unsupported(name: str, dtype) -> TypeError:
    return TypeError(f"{name} has dtype {dtype}, which fastconv does not compute in: the "
                     f"supported dtypes are {' and '.join(COMPUTE_DTYPES)} (float16 inputs are "
                     f"computed in float32); cast it, e.g. x.astype('float32')")


def as_tensor(x, name: str = "input", dtype=None, backend=None) -> Tensor:
    """A Tensor from a Tensor or array-like of numbers: float32 and float64 as they are,
    float16 computed in float32, integers and booleans as ``dtype`` (default float32); other
    dtypes (longdouble, complex) are refused with the supported ones named. Array-likes go to
    ``backend`` (default: the current backend); a Tensor stays on its own."""
    if isinstance(x, Tensor):
        if x.dtype in _COMPUTE:
            return x
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {x.dtype}")
        if x.dtype.name not in COMPUTE_DTYPES:
            raise _unsupported(name, x.dtype)
        return x
    backend = get_backend() if backend is None else backend
    if isinstance(x, backend.xp.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    computed = arr.dtype in _COMPUTE  # the common case skips the name checks
    if not computed:
        kind = arr.dtype.kind
        if kind not in "biuf":
            raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
        if kind == "f" and arr.dtype.name not in COMPUTE_DTYPES + ("float16",):
            raise _unsupported(name, arr.dtype)
        computed = arr.dtype.name in COMPUTE_DTYPES
    if dtype is None:
        dtype = arr.dtype if computed else np.float32
    return Tensor(backend.asarray(arr, dtype=dtype), backend=backend)


def as_tensors(op: str, **named) -> list:
    """``as_tensor`` for the operands of one op (None stays None), then ``same_dtype`` and
    ``same_backend``: array-likes of integers take the dtype of the floating-point operands,
    so that an int input with a float64 kernel computes in float64; array-likes go to the
    backend of the Tensor operands (the current backend when there are none)."""
    def kind(v):
        dtype = getattr(v, "dtype", None)
        return np.dtype(dtype).kind if dtype is not None else np.asarray(v).dtype.kind

    backend = next((v._backend for v in named.values() if isinstance(v, Tensor)), None)
    floats = {k: as_tensor(v, f"{op} {k}", backend=backend) for k, v in named.items()
              if v is not None and kind(v) == "f"}
    like = next(iter(floats.values())).dtype if floats else None
    out = {k: None if v is None else floats[k] if k in floats else as_tensor(
        v, f"{op} {k}", dtype=like, backend=backend) for k, v in named.items()}
    same_dtype(op, **out)
    same_backend(op, **out)
    return list(out.values())


def same_backend(op: str, **tensors: Tensor) -> None:
    """Refuse operands that live on different backends, naming both."""
    given = [t for t in tensors.values() if t is not None]
    if any(t._backend is not given[0]._backend for t in given[1:]):
        raise ValueError(mixed_backends_message(op, given))


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
    (NumPy's rules). A plain number takes the other operand's dtype, and so does an integer
    array when the other operand holds floating-point numbers (``as_tensors``)."""
    if isinstance(a, Tensor) and isinstance(b, numbers.Real):
        b = as_tensor(b, f"{op} input", dtype=a.dtype, backend=a._backend)
    elif isinstance(b, Tensor) and isinstance(a, numbers.Real):
        a = as_tensor(a, f"{op} input", dtype=b.dtype, backend=b._backend)
    a, b = as_tensors(op, a=a, b=b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b
