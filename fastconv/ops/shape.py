"""Shape ops: reshape, flatten, transpose, slice, zero padding."""

from __future__ import annotations

import numpy as np

from ..geometry import resolve_padding
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


class TransposeOp(Function):
    """Axes permuted by ``axes`` (as ``numpy.transpose``); backward: the inverse permutation."""

    def forward(self, x, *, axes):
        self.inverse = tuple(int(i) for i in np.argsort(axes))
        return self.backend.xp.ascontiguousarray(x.transpose(axes))

    def backward(self, dy):
        return (self.backend.xp.ascontiguousarray(dy.transpose(self.inverse)),)


def transpose(x, axes) -> Tensor:
    """``x`` with its axes permuted: ``axes`` holds every axis index once."""
    x = as_tensor(x, "transpose input")
    axes = tuple(int(a) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} is not a permutation of the {x.ndim} axes of "
                         f"an input of shape {x.shape}")
    return TransposeOp.apply(x, axes=axes)


class SliceOp(Function):
    """``x[index]`` for a tuple of basic slices (a copy); backward: the gradient placed at those
    indices of zeros."""

    def forward(self, x, *, index):
        self.in_shape, self.index = x.shape, index
        return self.backend.xp.ascontiguousarray(x[index])

    def backward(self, dy):
        dx = self.backend.xp.zeros(self.in_shape, dtype=dy.dtype)
        dx[self.index] = dy
        return (dx,)


def slice_axis(x, axis: int, start: int, stop: int, step: int = 1) -> Tensor:
    """``x`` sliced along ``axis`` (Python's ``start:stop:step``; ``axis`` counts the batch as
    0, negative from the last)."""
    x = as_tensor(x, "slice input")
    if not -x.ndim <= axis < x.ndim or step == 0:
        raise ValueError(f"slice: axis {axis} (rank {x.ndim}) or step {step} is out of range")
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop, step)
    return SliceOp.apply(x, index=tuple(index))


class ZeroPad2DOp(Function):
    """Zeros around the H and W axes of NHWC ``x``. Backward: the gradient's inner window."""

    def forward(self, x, *, pads):
        top, bottom, left, right = pads
        n, h, w, c = x.shape
        y = self.backend.xp.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
        y[:, top:top + h, left:left + w, :] = x
        self.window = (top, h, left, w)
        return y

    def backward(self, dy):
        top, h, left, w = self.window
        return (self.backend.xp.ascontiguousarray(dy[:, top:top + h, left:left + w, :]),)


def zero_pad_pads(padding, name: str = "padding") -> tuple[int, int, int, int]:
    """ZeroPadding2D's ``padding`` (an int, ``(h, w)`` or ``((top, bottom), (left, right))``)
    as ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        raise ValueError(f"{name} must be an int, (h, w) or ((top, bottom), (left, right)); "
                         f"got {padding!r}")
    pads = resolve_padding(padding, (1, 1), (1, 1), (1, 1), (None, None), name)
    return tuple(int(p) for p in pads)


def zero_pad2d(x, padding=1) -> Tensor:
    """Zero padding of NHWC ``x`` along H and W: ``padding`` is an int, ``(h, w)`` (symmetric)
    or ``((top, bottom), (left, right))``."""
    x = as_tensor(x, "zero_pad2d input")
    if x.ndim != 4:
        raise ValueError(f"zero_pad2d expects a 4D NHWC input, got shape {x.shape}")
    return ZeroPad2DOp.apply(x, pads=zero_pad_pads(padding, "zero_pad2d: padding"))
