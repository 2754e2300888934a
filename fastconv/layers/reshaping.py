"""ZeroPadding2D, Rescaling, Slice, UpSampling2D, Cropping2D and Cropping1D."""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from ..geometry import normalize_tuple
from ..ops.shape import (
    UPSAMPLING_OPS,
    SliceOp,
    crop,
    crop_index,
    crop_pairs,
    slice_axis,
    upsampling2d,
    zero_pad_pads,
)
from .base import Layer, register
from .convolutional import check_data_format


@register
class ZeroPadding2D(Layer):
    """Zeros around the image (NHWC): ``padding`` is an int, ``(h, w)`` (symmetric) or
    ``((top, bottom), (left, right))``, as Keras's."""

    input_ndim = 4

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = f"ZeroPadding2D layer '{self.name}'"
        check_data_format(where, data_format)
        top, bottom, left, right = zero_pad_pads(padding, f"{where}: padding")
        self.padding = ((top, bottom), (left, right))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (top, bottom), (left, right) = self.padding
        return (n, None if h is None else h + top + bottom,
                None if w is None else w + left + right, c)

    def call(self, x, training=False):
        return F.zero_pad2d(x, self.padding)

    def inference_step(self, input_shape, backend):
        (top, bottom), (left, right) = self.padding
        pads = (top, bottom, left, right)
        return lambda a: F.ZeroPad2DOp.evaluate(backend, a, pads=pads)

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


def _scale_value(value, where: str):
    """A number, or a list/array of numbers broadcast against the input (Keras allows both)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        raise TypeError(f"{where} must be a number or an array of numbers, got {value!r}")
    return float(arr) if arr.ndim == 0 else arr.astype(np.float64)


def _operand(value, dtype, xp):
    """``value`` (a float or a float64 array) in ``dtype`` on the backend's array module."""
    return dtype.type(value) if isinstance(value, float) else xp.asarray(value, dtype=dtype)


@register
class Rescaling(Layer):
    """``x * scale + offset`` (Keras's preprocessing layer, e.g. ``Rescaling(1 / 255)``);
    ``scale`` and ``offset`` are numbers or arrays broadcast against the input."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        where = f"Rescaling layer '{self.name}'"
        self.scale = _scale_value(scale, f"{where}: scale")
        self.offset = _scale_value(offset, f"{where}: offset")

    def call(self, x, training=False):
        xp = x._backend.xp
        return F.add(F.multiply(x, _operand(self.scale, x.dtype, xp)),
                     _operand(self.offset, x.dtype, xp))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for v in (self.scale, self.offset):
            if isinstance(v, np.ndarray) and v.ndim:
                try:
                    np.broadcast_shapes(tuple(1 if d is None else d for d in shape), v.shape)
                except ValueError:
                    raise ValueError(f"Rescaling layer '{self.name}': scale/offset of shape "
                                     f"{v.shape} does not broadcast against inputs of shape "
                                     f"{shape}") from None
        return shape

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        self.compute_output_shape(shape)

    def inference_step(self, input_shape, backend):
        xp, scale, offset = backend.xp, self.scale, self.offset

        def step(a):
            return a * _operand(scale, a.dtype, xp) + _operand(offset, a.dtype, xp)

        return step

    def get_config(self):
        def plain(v):
            return v if isinstance(v, float) else v.tolist()

        return {**super().get_config(), "scale": plain(self.scale), "offset": plain(self.offset)}


@register
class Slice(Layer):
    """``x`` sliced along one axis, as Python's ``start:stop:step`` (fastconv's layer: Keras
    writes it as a Lambda; ONNX's Slice and Split import as it). ``axis`` counts the batch as 0
    (negative from the last) and may not be the batch axis; ``stop=None`` runs to the end."""

    def __init__(self, axis, start=0, stop=None, step=1, **kwargs):
        super().__init__(**kwargs)
        where = f"Slice layer '{self.name}'"
        for key, v in (("axis", axis), ("start", start), ("step", step)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool):
                raise ValueError(f"{where}: {key} must be an integer, got {v!r}")
        if stop is not None and (not isinstance(stop, numbers.Integral) or isinstance(stop, bool)):
            raise ValueError(f"{where}: stop must be an integer or None, got {stop!r}")
        if axis == 0 or step == 0:
            raise ValueError(f"{where}: axis {axis} (the batch axis is 0) and step {step} (not 0) "
                             f"are not allowed")
        self.axis, self.start, self.step = int(axis), int(start), int(step)
        self.stop = None if stop is None else int(stop)

    def _index(self, rank: int) -> tuple:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ValueError(f"Slice layer '{self.name}': axis {self.axis} is out of range for "
                             f"inputs of rank {rank} (the batch axis is 0)")
        index = [slice(None)] * rank
        index[axis] = slice(self.start, self.stop, self.step)
        return tuple(index)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        index = self._index(len(shape))
        for axis, s in enumerate(index):
            if shape[axis] is not None and s != slice(None):
                shape[axis] = len(range(*s.indices(shape[axis])))
                if shape[axis] == 0:
                    raise ValueError(f"Slice layer '{self.name}': {s.start}:{s.stop}:{s.step} "
                                     f"of an axis of length {input_shape[axis]} is empty")
        return tuple(shape)

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        self.compute_output_shape(shape)

    def call(self, x, training=False):
        return slice_axis(x, self.axis, self.start, self.stop, self.step)

    def inference_step(self, input_shape, backend):
        index = self._index(len(input_shape))
        return lambda a: SliceOp.evaluate(backend, a, index=index)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "start": self.start,
                "stop": self.stop, "step": self.step}


@register
class UpSampling2D(Layer):
    """NHWC images enlarged by integer factors ``size`` (an int or (rows, columns)), as Keras's
    UpSampling2D: ``interpolation`` 'nearest' (each pixel repeated) or 'bilinear' (half-pixel
    centres, as Keras's ``image.resize``); Keras's other interpolations are refused."""

    input_ndim = 4

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        where = f"UpSampling2D layer '{self.name}'"
        check_data_format(where, data_format)
        self.size = normalize_tuple(size, 2, f"{where}: size")
        mode = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if mode not in UPSAMPLING_OPS:
            raise ValueError(f"{where}: interpolation must be one of "
                             f"{', '.join(map(repr, UPSAMPLING_OPS))} (fastconv implements no "
                             f"other), got {interpolation!r}")
        self.interpolation = mode

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h * self.size[0],
                None if w is None else w * self.size[1], c)

    def call(self, x, training=False):
        return upsampling2d(x, self.size, self.interpolation)

    def inference_step(self, input_shape, backend):
        op, size = UPSAMPLING_OPS[self.interpolation], self.size
        return lambda a: op.evaluate(backend, a, size=size)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size),
                "interpolation": self.interpolation}


class _Cropping(Layer):
    """What Cropping1D and Cropping2D share: ``cropping`` as ``rank`` (before, after) pairs cut
    off the spatial axes (a slice of the input)."""

    rank = 2

    def __init__(self, cropping, **kwargs):
        super().__init__(**kwargs)
        self.cropping = crop_pairs(cropping, self.rank, f"{self._label()}: cropping")

    @property
    def input_ndim(self):
        return self.rank + 2

    def _label(self) -> str:
        return f"{type(self).__name__} layer '{self.name}'"

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, s in enumerate(crop_index(shape, self.cropping, self._label())):
            if shape[axis] is not None and s != slice(None):
                shape[axis] = s.stop - s.start
        return tuple(shape)

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        self.compute_output_shape(shape)

    def call(self, x, training=False):
        return crop(x, self.cropping[0] if self.rank == 1 else self.cropping, self.rank)

    def inference_step(self, input_shape, backend):
        pairs = self.cropping

        def step(a):
            return SliceOp.evaluate(backend, a, index=crop_index(a.shape, pairs))

        return step


@register
class Cropping2D(_Cropping):
    """Rows and columns cut off NHWC images, as Keras's Cropping2D: ``cropping`` an int,
    ``(rows, columns)`` (symmetric) or ``((top, bottom), (left, right))``."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, **kwargs)
        check_data_format(self._label(), data_format)

    def get_config(self):
        return {**super().get_config(), "cropping": [list(p) for p in self.cropping]}


@register
class Cropping1D(_Cropping):
    """Steps cut off (batch, steps, channels) inputs, as Keras's Cropping1D: ``cropping`` an
    int or ``(before, after)``."""

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(cropping, **kwargs)

    def get_config(self):
        return {**super().get_config(), "cropping": list(self.cropping[0])}
