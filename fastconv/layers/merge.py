"""Merge layers: called on a list of tensors (``multi_input``), as Keras's ``Add`` and
``Concatenate``. Each checks its inputs' shapes together and raises a ValueError naming the
layer and every shape when they do not fit."""

from __future__ import annotations

import numbers

from .. import functional as F
from .base import Layer, register


class Merge(Layer):
    """Base of the merge layers: a list of inputs, shapes with the batch axis (None)."""

    multi_input = True

    def _incompatible(self, shapes, why: str):
        shown = ", ".join(str(tuple(s)) for s in shapes)
        return ValueError(f"{type(self).__name__} layer '{self.name}': inputs of shapes {shown} "
                          f"are incompatible: {why}")

    def merged_shape(self, shapes) -> tuple:
        raise NotImplementedError

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        self.merged_shape(shape)

    def compute_output_shape(self, input_shape):
        return self.merged_shape(input_shape)


@register
class Add(Merge):
    """Element-wise sum of its inputs (residual connections). Shapes must match, axis by axis,
    up to NumPy broadcasting of size-1 axes."""

    def merged_shape(self, shapes):
        shapes = [tuple(s) for s in shapes]
        if len({len(s) for s in shapes}) > 1:
            raise self._incompatible(shapes, "they have different ranks")
        out = []
        for axis, dims in enumerate(zip(*shapes)):
            sizes = {d for d in dims if d is not None and d != 1}
            if len(sizes) > 1:
                raise self._incompatible(shapes, f"sizes {sorted(sizes)} on axis {axis}")
            out.append(sizes.pop() if sizes else (None if None in dims else 1))
        return tuple(out)

    def call(self, xs, training=False):
        y = xs[0]
        for x in xs[1:]:
            y = F.add(y, x)
        return y

    def inference_step(self, input_shape, backend):
        def step(arrays):
            y = arrays[0] + arrays[1] if len(arrays) > 1 else arrays[0].copy()
            for a in arrays[2:]:
                y += a
            return y

        return step


@register
class Concatenate(Merge):
    """Concatenation of its inputs along ``axis`` (the channels by default); every other axis
    must match."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise ValueError(f"Concatenate layer '{self.name}': axis must be an int, got "
                             f"{axis!r}")
        self.axis = int(axis)

    def merged_shape(self, shapes):
        shapes = [tuple(s) for s in shapes]
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise self._incompatible(shapes, "they have different ranks")
        ndim = ranks.pop()
        if not -ndim <= self.axis < ndim or self.axis % ndim == 0:
            raise self._incompatible(shapes, f"axis {self.axis} is not a non-batch axis of "
                                             f"{ndim}D inputs")
        ax = self.axis % ndim
        out = []
        for axis, dims in enumerate(zip(*shapes)):
            if axis == ax:
                out.append(None if None in dims else sum(dims))
                continue
            sizes = {d for d in dims if d is not None}
            if len(sizes) > 1:
                raise self._incompatible(
                    shapes, f"sizes {sorted(sizes)} on axis {axis} (only axis {self.axis} may "
                            f"differ)")
            out.append(sizes.pop() if sizes else None)
        return tuple(out)

    def call(self, xs, training=False):
        return F.concatenate(xs, axis=self.axis % xs[0].ndim)

    def inference_step(self, input_shape, backend):
        axis = self.axis

        def step(arrays):
            return backend.xp.concatenate(arrays, axis=axis % arrays[0].ndim)

        return step

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
