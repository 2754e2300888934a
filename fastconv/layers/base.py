"""The Layer base class: ``build(input_shape)`` / ``call(x)`` lifecycle, weights made by one
``add_weight`` helper, input checks that name the layer, and config for serialisation.

Layers depend only on ops (``fastconv.functional``). Shapes exclude nothing: they are full
shapes with ``None`` for the batch axis, as in Keras.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from .. import functional as F
from .. import initializers
from ..backends import get_backend
from ..tensor import Tensor, Variable

_name_counts: defaultdict[str, int] = defaultdict(int)
_LAYER_CLASSES: dict[str, type] = {}


def unique_name(base: str) -> str:
    """Keras-style names: ``conv2d``, ``conv2d_1``, ``conv2d_2`` ..."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def reset_names() -> None:
    _name_counts.clear()


def snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return s.replace("2_d", "2d").replace("1_d", "1d")


def register(cls):
    """Make a layer class loadable from saved configs by its class name."""
    _LAYER_CLASSES[cls.__name__] = cls
    return cls


def layer_class(name: str):
    cls = _LAYER_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown layer class {name!r}; known layers: "
                         f"{', '.join(sorted(_LAYER_CLASSES))}")
    return cls


def _shape_tuple(shape, where: str) -> tuple:
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{where} must be a tuple of ints, got {shape!r}") from None
    for d in dims:
        if d is not None and (not isinstance(d, (int, np.integer)) or isinstance(d, bool)
                              or d < 1):
            raise ValueError(f"{where} must hold positive ints (or None), got {shape!r}")
    return tuple(None if d is None else int(d) for d in dims)


class Layer:
    """Base class of every layer."""

    #: rank the input must have (including the batch axis), or None for any rank >= 2
    input_ndim: int | None = None

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype="float32", **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise TypeError(f"{cls}: unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{cls}: name must be a non-empty string, got {name!r}")
        self.name = name or unique_name(snake_case(cls))
        self._trainable = bool(trainable)
        self._weights: list[Variable] = []
        self.built = False
        self.input_shape = None
        self.output_shape = None
        try:
            self.dtype = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"layer '{self.name}': unknown dtype {dtype!r}") from None
        if self.dtype not in ("float32", "float64"):
            raise TypeError(f"layer '{self.name}': dtype must be float32 or float64, got "
                            f"{self.dtype}")
        self.batch_input_shape = None
        if batch_input_shape is not None:
            self.batch_input_shape = _shape_tuple(batch_input_shape,
                                                  f"layer '{self.name}' batch_input_shape")
        elif input_shape is not None:
            self.batch_input_shape = (batch_size, *_shape_tuple(
                input_shape, f"layer '{self.name}' input_shape"))

    # -- weights -----------------------------------------------------------------------------
    def add_weight(self, name: str, shape, initializer="glorot_uniform",
                   trainable: bool = True) -> Variable:
        values = initializers.get(initializer)(tuple(shape))
        data = get_backend().asarray(values, dtype=self.dtype)
        var = Variable(data, name=f"{self.name}/{name}", trainable=trainable and self._trainable)
        self._weights.append(var)
        return var

    @property
    def weights(self) -> list[Variable]:
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Variable]:
        return [w for w in self._weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [w for w in self._weights if not w.trainable]

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freeze (False) or unfreeze the layer's weights, as in Keras transfer learning."""
        self._trainable = bool(value)
        for w in self._weights:
            w.trainable = self._trainable

    def count_params(self) -> int:
        return int(sum(w.size for w in self._weights))

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy().copy() for w in self._weights]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(f"layer '{self.name}' has {len(self._weights)} weights, got "
                             f"{len(weights)} arrays")
        for var, value in zip(self._weights, weights):
            value = np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise TypeError(f"layer '{self.name}': weight {var.name!r} must be numeric, got "
                                f"dtype {value.dtype}")
            var.assign(value)

    # -- lifecycle ---------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the weights for ``input_shape`` (batch axis None)."""

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape) -> tuple:
        return tuple(input_shape)

    def inference_step(self, input_shape, backend):
        """A function from this layer's input array (shape ``input_shape``) to its output array,
        for inference plans (``fastconv.inference``). Subclasses specialise it; the default
        runs ``call`` on a Tensor."""
        from ..inference import generic_step

        return generic_step(self, backend)

    def check_input_shape(self, shape) -> None:
        """Raise a ValueError naming this layer when ``shape`` cannot be its input."""
        shape = tuple(shape)
        if self.input_ndim is not None and len(shape) != self.input_ndim:
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                f"ndim={self.input_ndim}, found ndim={len(shape)}. Full shape received: {shape}")
        if self.input_ndim is None and len(shape) < 2:
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) needs at least 2 axes "
                f"(batch, features), got shape {shape}")
        if self.input_shape is not None:
            expected = self.input_shape
            if len(expected) != len(shape) or any(
                    e is not None and s is not None and e != s
                    for e, s in zip(expected[1:], shape[1:])):
                raise ValueError(
                    f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: "
                    f"expected shape {expected}, found shape {shape}")

    def ensure_built(self, input_shape) -> tuple:
        """Build for ``input_shape`` if needed and return the output shape."""
        input_shape = (None, *tuple(input_shape)[1:])
        if not self.built:
            self.check_input_shape(input_shape)
            self.build(input_shape)
            self.input_shape = input_shape
            self.output_shape = self.compute_output_shape(input_shape)
            self.built = True
            self.trainable = self._trainable
        else:
            self.check_input_shape(input_shape)
        return self.compute_output_shape(input_shape)

    def __call__(self, x, training: bool = False) -> Tensor:
        x = F.as_tensor(x, f"input of layer '{self.name}'")
        if x.dtype != self.dtype:
            x = Tensor(x._backend.asarray(x.data, dtype=self.dtype), backend=x._backend)
        self.ensure_built(x.shape)
        return self.call(x, training=training)

    # -- config ------------------------------------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if "batch_input_shape" in config and config["batch_input_shape"] is not None:
            config["batch_input_shape"] = tuple(config["batch_input_shape"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name='{self.name}'>"


@register
class InputLayer(Layer):
    """Declares the model's input shape (``Input(shape=...)`` makes one)."""

    def __init__(self, shape=None, batch_size=None, name=None, dtype="float32", **kwargs):
        if shape is None and "batch_input_shape" not in kwargs and "input_shape" not in kwargs:
            raise ValueError("InputLayer needs shape=(...) without the batch axis")
        if shape is not None:
            kwargs.setdefault("input_shape", shape)
        super().__init__(name=name, batch_size=batch_size, dtype=dtype, **kwargs)

    def call(self, x, training=False):
        return x

    def inference_step(self, input_shape, backend):
        return _identity


def _identity(a):
    return a


def Input(shape, batch_size=None, name=None, dtype="float32") -> InputLayer:  # noqa: N802
    """The input of a Sequential model: ``Sequential([Input((28, 28, 1)), ...])``."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype)
