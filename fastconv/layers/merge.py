"""Merge layers: called on a list of tensors (``multi_input``), as Keras's ``Add``,
``Multiply``, ``Subtract``, ``Average``, ``Maximum``, ``Minimum`` and ``Concatenate``, and
fastconv's own ``Divide``. Each checks its inputs' shapes together and raises a ValueError naming
the layer and every shape when they do not fit."""

from __future__ import annotations

import numbers

import numpy as np

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


class ElementwiseMerge(Merge):
    """Base of the element-wise merge layers: shapes must match, axis by axis, up to NumPy
    broadcasting of size-1 axes (a squeeze-and-excitation gate (N, 1, 1, C) times (N, H, W, C)),
    and the gradient of each input is summed back over the axes it was broadcast along.
    ``arity``: the number of inputs the layer takes (None: one or more)."""

    arity: int | None = None

    def merged_shape(self, shapes):
        shapes = [tuple(s) for s in shapes]
        if self.arity is not None and len(shapes) != self.arity:
            raise self._incompatible(shapes, f"the layer takes exactly {self.arity} inputs, got "
                                             f"{len(shapes)}")
        if len({len(s) for s in shapes}) > 1:
            raise self._incompatible(shapes, "they have different ranks")
        out = []
        for axis, dims in enumerate(zip(*shapes)):
            sizes = {d for d in dims if d is not None and d != 1}
            if len(sizes) > 1:
                raise self._incompatible(shapes, f"sizes {sorted(sizes)} on axis {axis}")
            out.append(sizes.pop() if sizes else (None if None in dims else 1))
        return tuple(out)

    #: the op combining two tensors (``fastconv.functional``), and its array function (the
    #: name of a ufunc of ``backend.xp``)
    combine = None
    ufunc: str = ""

    def call(self, xs, training=False):
        y = xs[0]
        for x in xs[1:]:
            y = self.combine(y, x)
        return y

    def inference_step(self, input_shape, backend):
        ufunc = getattr(backend.xp, self.ufunc)

        def step(arrays):
            return _fold(ufunc, arrays)

        return step


def _fold(ufunc, arrays):
    """``ufunc`` folded over ``arrays`` from the left, in place where the running result
    already has the broadcast shape; a new array (never an input) even for one input."""
    if len(arrays) == 1:
        return arrays[0].copy()
    y = ufunc(arrays[0], arrays[1])
    for a in arrays[2:]:
        if np.broadcast_shapes(y.shape, a.shape) == y.shape:
            ufunc(y, a, out=y)
        else:
            y = ufunc(y, a)
    return y


@register
class Add(ElementwiseMerge):
    """Element-wise sum of its inputs (residual connections)."""

    combine = staticmethod(F.add)
    ufunc = "add"


@register
class Multiply(ElementwiseMerge):
    """Element-wise product of its inputs (a squeeze-and-excitation gate)."""

    combine = staticmethod(F.multiply)
    ufunc = "multiply"


@register
class Subtract(ElementwiseMerge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    arity = 2
    combine = staticmethod(F.subtract)
    ufunc = "subtract"


@register
class Divide(ElementwiseMerge):
    """``inputs[0] / inputs[1]`` (exactly two inputs; IEEE results for division by zero).
    fastconv's own layer, for ONNX's Div: Keras has no counterpart, so a model holding it
    cannot be saved in a Keras file."""

    arity = 2
    combine = staticmethod(F.divide)
    ufunc = "divide"


@register
class Maximum(ElementwiseMerge):
    """Element-wise maximum of its inputs; the gradient goes to the first input holding the
    maximum."""

    combine = staticmethod(F.maximum)
    ufunc = "maximum"


@register
class Minimum(ElementwiseMerge):
    """Element-wise minimum of its inputs; the gradient goes to the first input holding the
    minimum."""

    combine = staticmethod(F.minimum)
    ufunc = "minimum"


@register
class Average(ElementwiseMerge):
    """Element-wise mean of its inputs: ``(inputs[0] + ... + inputs[n-1]) / n``."""

    combine = staticmethod(F.add)
    ufunc = "add"

    def call(self, xs, training=False):
        return F.divide(super().call(xs, training), float(len(xs)))

    def inference_step(self, input_shape, backend):
        add = backend.xp.add

        def step(arrays):
            y = _fold(add, arrays)
            y /= y.dtype.type(len(arrays))
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
