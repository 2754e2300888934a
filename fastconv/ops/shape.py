"""Shape ops: reshape, flatten, transpose, slice, zero padding, upsampling, cropping."""

from __future__ import annotations

import numpy as np

from ..geometry import normalize_tuple, resolve_padding
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


class UpSamplingNearest2DOp(Function):
    """Nearest-neighbour upsampling of NHWC ``x`` by integer factors ``size`` = (sh, sw):
    ``y[n, i, j, c] = x[n, i // sh, j // sw, c]``. Backward: the gradient summed over each
    ``sh x sw`` block."""

    def forward(self, x, *, size):
        (sh, sw), (n, h, w, c) = size, x.shape
        self.size, self.in_shape = size, x.shape
        y = self.backend.xp.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c))
        return self.backend.xp.ascontiguousarray(y.reshape(n, h * sh, w * sw, c))

    def backward(self, dy):
        (sh, sw), (n, h, w, c) = self.size, self.in_shape
        return (self.backend.xp.ascontiguousarray(
            dy.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4))),)


def bilinear_matrix(size: int, scale: int) -> np.ndarray:
    """The (size * scale, size) float64 matrix of bilinear upsampling along one axis with
    half-pixel centres (TensorFlow's and PyTorch's ``align_corners=False``): output ``i`` reads
    ``src = (i + 0.5) / scale - 0.5`` (at least 0), ``(1 - f)`` of ``floor(src)`` and ``f`` of
    the next input (the last one at the end), ``f = src - floor(src)``."""
    src = np.maximum((np.arange(size * scale) + 0.5) / scale - 0.5, 0.0)
    low = np.floor(src).astype(np.int64)
    frac = src - low
    high = np.minimum(low + 1, size - 1)
    m = np.zeros((size * scale, size))
    rows = np.arange(size * scale)
    np.add.at(m, (rows, low), 1.0 - frac)
    np.add.at(m, (rows, high), frac)
    return m


class UpSamplingBilinear2DOp(Function):
    """Bilinear upsampling of NHWC ``x`` by integer factors: ``y = A_h x A_w^T`` over the H and
    W axes, with ``A`` of :func:`bilinear_matrix`. Backward: ``dx = A_h^T dy A_w``."""

    def forward(self, x, *, size):
        xp = self.backend.xp
        self.ah = xp.asarray(bilinear_matrix(x.shape[1], size[0]).astype(x.dtype))
        self.aw = xp.asarray(bilinear_matrix(x.shape[2], size[1]).astype(x.dtype))
        y = xp.einsum("ih,nhwc->niwc", self.ah, x)
        return xp.ascontiguousarray(xp.einsum("jw,niwc->nijc", self.aw, y))

    def backward(self, dy):
        xp = self.backend.xp
        g = xp.einsum("ih,nijc->nhjc", self.ah, dy)
        return (xp.ascontiguousarray(xp.einsum("jw,nhjc->nhwc", self.aw, g)),)


#: UpSampling2D's interpolations and their ops
UPSAMPLING_OPS = {"nearest": UpSamplingNearest2DOp, "bilinear": UpSamplingBilinear2DOp}


def upsampling2d(x, size=(2, 2), interpolation: str = "nearest") -> Tensor:
    """NHWC ``x`` enlarged by integer factors ``size`` (an int or (sh, sw)) along H and W,
    as Keras's UpSampling2D: ``interpolation`` 'nearest' or 'bilinear' (half-pixel centres)."""
    x = as_tensor(x, "upsampling2d input")
    if x.ndim != 4:
        raise ValueError(f"upsampling2d expects a 4D NHWC input, got shape {x.shape}")
    size = normalize_tuple(size, 2, "upsampling2d: size")
    op = UPSAMPLING_OPS.get(interpolation)
    if op is None:
        raise ValueError(f"upsampling2d: interpolation must be one of "
                         f"{', '.join(UPSAMPLING_OPS)}, got {interpolation!r}")
    return op.apply(x, size=size)


def crop_pairs(cropping, rank: int, name: str = "cropping") -> tuple[tuple[int, int], ...]:
    """Keras's ``cropping`` of Cropping1D (rank 1: an int or (before, after)) or Cropping2D
    (rank 2: an int, (h, w) symmetric, or ((top, bottom), (left, right))) as ``rank`` pairs of
    non-negative ints."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(cropping):
        pairs = ((int(cropping),) * 2,) * rank
    else:
        try:
            parts = tuple(cropping)
        except TypeError:
            parts = None
        if rank == 1 and parts is not None and len(parts) == 2 and all(map(is_int, parts)):
            pairs = (tuple(int(p) for p in parts),)
        elif rank == 2 and parts is not None and len(parts) == 2 and all(map(is_int, parts)):
            pairs = tuple((int(p), int(p)) for p in parts)
        elif (rank == 2 and parts is not None and len(parts) == 2
              and all(not is_int(p) and len(tuple(p)) == 2 and all(map(is_int, p))
                      for p in parts)):
            pairs = tuple((int(a), int(b)) for a, b in parts)
        else:
            form = ("an int or (before, after)" if rank == 1
                    else "an int, (h, w) or ((top, bottom), (left, right))")
            raise ValueError(f"{name} must be {form}; got {cropping!r}")
    if any(v < 0 for p in pairs for v in p):
        raise ValueError(f"{name} must not be negative, got {cropping!r}")
    return pairs


def crop_index(shape, pairs, where: str = "crop") -> tuple:
    """The basic index cropping ``pairs`` (before, after) off axes 1 .. len(pairs) of an input
    of ``shape``; a ValueError naming ``where`` when nothing would be left."""
    index = [slice(None)] * len(shape)
    for axis, (before, after) in enumerate(pairs, start=1):
        size = shape[axis]
        if size is not None and before + after >= size:
            raise ValueError(f"{where}: cropping {before} + {after} off an axis of length {size} "
                             f"leaves nothing (input shape {tuple(shape)})")
        index[axis] = slice(before, None if size is None else size - after)
    return tuple(index)


def crop(x, cropping, rank: int) -> Tensor:
    """``x`` with ``cropping`` (see :func:`crop_pairs`) cut off its ``rank`` spatial axes
    (Keras's Cropping1D for rank 1 on (batch, steps, channels), Cropping2D for rank 2 on
    NHWC); a slice, so its gradient is the slice's."""
    x = as_tensor(x, "crop input")
    if x.ndim != rank + 2:
        raise ValueError(f"crop expects a {rank + 2}D input, got shape {x.shape}")
    index = crop_index(x.shape, crop_pairs(cropping, rank, "crop: cropping"), "crop")
    return SliceOp.apply(x, index=index)
