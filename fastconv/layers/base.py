"""The Layer base class: ``build(input_shape)`` / ``call(x)`` lifecycle, weights made by one
``add_weight`` helper, input checks that name the layer, and config for serialisation.

Layers depend only on ops (``fastconv.functional``). Shapes exclude nothing: they are full
shapes with ``None`` for the batch axis, as in Keras.

Calling a layer on real Tensors computes. Calling it on symbolic tensors (``KerasTensor``, what
``Input(shape)`` returns) builds the layer for their shapes, records a ``Node`` (the layer, its
input tensors, its outputs) in ``layer._inbound_nodes`` and returns symbolic outputs: this is
how functional models (``fastconv.models.Model(inputs, outputs)``) are described. Layers with
several inputs (merge layers) set ``multi_input = True`` and then receive a list of tensors in
``__call__`` and ``call``, and a list of shapes in ``build``, ``compute_output_shape`` and
``check_input_shape``.

``layer.input`` and ``layer.output`` are the symbolic tensors of the layer's first call (Keras 3:
a layer called several times answers with its first call). A layer's ``call`` may leave out the
``training`` argument (``def call(self, inputs)``), as Keras allows: the class then gets a
``call`` that takes ``training`` and does not pass it on.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from .. import allocation, initializers
from .. import functional as F
from ..backends import get_backend
from ..backends.device import batch_of, translate_device_error
from ..tensor import Tensor, Variable, no_grad

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


def _unique_variable_name(taken: set, layer_name: str) -> str:
    """Keras's names for unnamed weights: ``variable``, ``variable_1`` ... (the first one not
    in ``taken``, a set of full names ``layer/weight``)."""
    count = 0
    while True:
        name = "variable" if count == 0 else f"variable_{count}"
        if f"{layer_name}/{name}" not in taken:
            return name
        count += 1


def _weight_shape(shape, where: str) -> tuple:
    """A weight's shape: a tuple of non-negative ints (a single int for one axis)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{where} must be a tuple of ints, got {shape!r}") from None
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
            raise ValueError(f"{where} must hold non-negative ints, got {shape!r}")
    return tuple(int(d) for d in dims)


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


class KerasHistory(NamedTuple):
    """Where a symbolic tensor comes from: ``layer._inbound_nodes[node_index]``'s output number
    ``tensor_index``."""

    layer: object
    node_index: int
    tensor_index: int


class KerasTensor:
    """A symbolic tensor: a shape (``None`` for the batch axis and unknown sizes), a dtype and
    the layer call that produced it. Layers called on it record the graph of a functional
    model instead of computing."""

    __slots__ = ("shape", "dtype", "name", "_keras_history")

    def __init__(self, shape, dtype="float32", history: KerasHistory | None = None,
                 name: str | None = None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self._keras_history = history
        self.name = name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __bool__(self) -> bool:
        return True

    def __array__(self, *args, **kwargs):
        raise TypeError("a KerasTensor is symbolic (it has no values): call layers on it to "
                        "build a model, then fit or predict that model")


class Node:
    """One call of ``layer`` in a graph: its input tensors (a list, given to the layer as a list
    when ``multi`` is set) and its output tensors."""

    __slots__ = ("layer", "input_tensors", "outputs", "multi")

    def __init__(self, layer, input_tensors: list, multi: bool):
        self.layer = layer
        self.input_tensors = list(input_tensors)
        self.multi = multi
        self.outputs: list[KerasTensor] = []

    @property
    def is_input(self) -> bool:
        return not self.input_tensors

    @property
    def parent_nodes(self) -> list:
        return [t._keras_history.layer._inbound_nodes[t._keras_history.node_index]
                for t in self.input_tensors]

    def __repr__(self) -> str:
        return f"<Node layer='{self.layer.name}' inputs={len(self.input_tensors)}>"


def is_symbolic(x) -> bool:
    """A KerasTensor, or a list or tuple holding one."""
    if isinstance(x, KerasTensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(t, KerasTensor) for t in x)


def _is_shape_list(shape) -> bool:
    """Several shapes (a list of tuples) rather than one shape (a tuple of ints)."""
    return isinstance(shape, list) and all(isinstance(s, (tuple, list)) for s in shape)


def _batchless(shape) -> tuple:
    return (None, *tuple(shape)[1:])


def _takes_training(call) -> bool:
    """Whether ``call`` accepts a ``training`` keyword (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _training_dropped(call):
    """``call`` made to accept (and not pass on) the ``training`` keyword."""

    @functools.wraps(call)
    def call_without_training(self, *args, training=False, **kwargs):
        return call(self, *args, **kwargs)

    return call_without_training


#: sizes that stand in for unknown ones when a layer's output shape is found by running it
_STAND_IN_SIZES = (32, 37)

#: Keras 3's ``add_weight`` arguments that fastconv has no machinery for, with their defaults
_ADD_WEIGHT_UNSUPPORTED = {"regularizer": None, "constraint": None, "aggregation": "none",
                           "overwrite_with_gradient": False}


class Layer:
    """Base class of every layer."""

    #: rank the input must have (including the batch axis), or None for any rank >= 2
    input_ndim: int | None = None
    #: True for layers called on a list of tensors (merge layers: Add, Concatenate ...)
    multi_input: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("call")
        if call is not None and not _takes_training(call):
            cls.call = _training_dropped(call)

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
        self._inbound_nodes: list[Node] = []
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
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable: bool = True,
                   autocast: bool = True, name: str | None = None, **kwargs) -> Variable:
        """A new weight of this layer, as Keras 3's ``add_weight``: ``shape`` (``()`` when
        None), ``initializer`` (a name from ``fastconv.initializers`` or a callable
        ``f(shape, dtype=None)``; ``'glorot_uniform'`` when None), ``dtype`` (the layer's when
        None; float32 or float64), ``trainable`` and ``name`` (``variable``, ``variable_1`` ...
        when None). fastconv's older order, the name first (``add_weight('kernel', shape,
        initializer)``), is taken too. ``regularizer``, ``constraint``, ``aggregation`` and
        ``overwrite_with_gradient`` raise unless left at their defaults; ``autocast`` has
        nothing to do (fastconv keeps weights in the layer's dtype)."""
        if isinstance(shape, str):  # fastconv's (name, shape, initializer) order
            name, shape, initializer, dtype = shape, initializer, dtype, None
        where = f"layer '{self.name}' add_weight"
        for key in kwargs:
            if key not in _ADD_WEIGHT_UNSUPPORTED:
                raise TypeError(f"{where}: unexpected keyword argument {key!r}")
        given = [k for k, v in kwargs.items() if v != _ADD_WEIGHT_UNSUPPORTED[k]]
        if given:
            raise NotImplementedError(f"{where}: {', '.join(given)} is not supported by fastconv "
                                      f"(leave it at its default)")
        if name is None:
            taken = {w.name for w in self._weights}
            name = _unique_variable_name(taken, self.name)
        elif not isinstance(name, str) or not name:
            raise ValueError(f"{where}: name must be a non-empty string, got {name!r}")
        shape = () if shape is None else _weight_shape(shape, f"{where}: shape")
        if dtype is None:
            dtype = self.dtype
        else:
            try:
                dtype = np.dtype(dtype).name
            except TypeError:
                raise TypeError(f"{where}: unknown dtype {dtype!r}") from None
            if dtype not in ("float32", "float64"):
                raise TypeError(f"{where}: weights must be float32 or float64, got {dtype}")
        if initializer is None:
            initializer = "glorot_uniform"
        make = initializer if callable(initializer) else initializers.get(initializer)
        nbytes = allocation.reserve(self.name, name, shape, dtype)  # before allocating
        try:
            values = make(shape, dtype=dtype) if callable(initializer) else make(shape)
            data = get_backend().asarray(np.asarray(values), dtype=dtype)
        except MemoryError:
            raise allocation.too_large(self.name, name, shape, dtype, nbytes) from None
        if tuple(data.shape) != shape:
            raise ValueError(f"{where}: the initializer made an array of shape "
                             f"{tuple(data.shape)} for a weight of shape {shape}")
        var = Variable(data, name=f"{self.name}/{name}",
                       trainable=bool(trainable) and self._trainable)
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
            value = value.data if isinstance(value, Tensor) else value
            if not isinstance(value, var._backend.xp.ndarray):  # host data
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

    def compute_output_shape(self, input_shape):
        """The output shape for ``input_shape``. fastconv's own layers that keep the shape use
        this default as it is; for a layer class defined elsewhere (a user's custom layer) that
        does not override it, the shape is found by running ``call`` once on one zero sample,
        and remembered per input shape (Keras finds it by tracing ``call``)."""
        if type(self).__module__.startswith("fastconv."):
            return tuple(input_shape)
        return self._traced_output_shape(input_shape)

    def _traced_output_shape(self, input_shape):
        """The output shape(s) found by running ``call`` on one zero sample. With unknown sizes
        (None), ``call`` runs on symbolic tensors when it only calls layers; otherwise it runs
        at two stand-in sizes, and an output size that differs between the two runs is unknown
        (None) too."""
        several = self.multi_input and _is_shape_list(input_shape)
        shapes = [tuple(s) for s in input_shape] if several else [tuple(input_shape)]
        key = tuple(s[1:] for s in shapes)
        cache = self.__dict__.setdefault("_traced_shapes", {})
        if key not in cache:
            unknown = any(d is None for s in key for d in s)
            symbolic = self._run_on_symbols(key, several) if unknown else None
            if symbolic is not None:
                cache[key] = symbolic
                return self._traced_output_shape(input_shape)
            results = [self._run_on_zeros(key, stand_in, several)
                       for stand_in in (_STAND_IN_SIZES if unknown else _STAND_IN_SIZES[:1])]
            listed, runs = results[0][0], [shapes_out for _, shapes_out in results]
            if any(len(r) != len(runs[0]) or any(len(a) != len(b) for a, b in zip(r, runs[0]))
                   for r in runs):
                raise ValueError(f"layer '{self.name}' ({type(self).__name__}): the rank of its "
                                 f"output depends on the input sizes; define "
                                 f"compute_output_shape")
            found = [tuple(d if all(r[i][j] == d for r in runs) else None
                           for j, d in enumerate(shape)) for i, shape in enumerate(runs[0])]
            cache[key] = found if listed else found[0]
        found = cache[key]
        batch = shapes[0][0]
        if isinstance(found, list):
            return [(batch, *f) for f in found]
        return (batch, *found)

    def _run_on_symbols(self, key: tuple, several: bool):
        """The output shape(s) (without the batch axis) of ``call`` on symbolic inputs, when
        ``call`` only calls layers; None when it computes on its inputs itself."""
        xs = [KerasTensor((None, *k), self.dtype) for k in key]
        try:
            out = self.call(xs if several else xs[0], training=False)
        except Exception:  # noqa: BLE001 - arithmetic on symbolic tensors: run it on zeros
            return None
        if isinstance(out, KerasTensor):
            return tuple(out.shape[1:])
        if isinstance(out, (list, tuple)) and out and all(isinstance(o, KerasTensor)
                                                          for o in out):
            return [tuple(o.shape[1:]) for o in out]
        return None

    def _run_on_zeros(self, key: tuple, stand_in: int, several: bool) -> tuple[bool, list]:
        """Whether ``call`` returns a list, and its output shapes (without the batch axis), on
        one zero sample of each input shape in ``key``, unknown sizes set to ``stand_in``."""
        backend = next((w._backend for w in self._weights), None) or get_backend()
        xs = [Tensor(backend.asarray(np.zeros((1, *(stand_in if d is None else d for d in k)),
                                              dtype=self.dtype)), backend=backend)
              for k in key]
        try:
            with no_grad():
                out = self.call(xs if several else xs[0], training=False)
        except Exception as exc:
            if not any(d is None for k in key for d in k):
                raise
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) cannot find its output "
                             f"shape for inputs of unknown sizes {list(key)}: define "
                             f"compute_output_shape ({type(exc).__name__}: {exc})") from exc
        listed = isinstance(out, (list, tuple))
        return listed, [tuple(getattr(o, "shape", ()))[1:] for o in (out if listed else [out])]

    def folded_norm_terms(self, input_shape):
        """For a normalisation that an inference plan may fold into the convolution before it
        (its input of ``input_shape`` normalised over the last axis by fixed statistics):
        ``(gamma, beta, mean, variance, epsilon)``, Variables (None for an absent gamma or
        beta) and a float. None for every other layer."""
        return None

    def absorbs_norm(self, norm, input_shape) -> bool:
        """Whether this layer's inference step can take ``norm`` (a layer whose
        ``folded_norm_terms`` are not None) into its own weights: ``inference_step(...,
        norm=norm)``. No layer can by default."""
        return False

    def pooled_inference_step(self, input_shape, backend, pool, norm=None):
        """An inference step computing ``pool(self(x))`` in one pass (``norm`` as for
        ``absorbs_norm``), where this layer can take the pooling layer ``pool`` after it
        into its own step; None otherwise (the default)."""
        return None

    def inference_step(self, input_shape, backend):
        """A function from this layer's input array (shape ``input_shape``) to its output array,
        for inference plans (``fastconv.inference``). Subclasses specialise it; the default
        runs ``call`` on a Tensor."""
        from ..inference import generic_step

        return generic_step(self, backend)

    def check_input_shape(self, shape) -> None:
        """Raise a ValueError naming this layer when ``shape`` cannot be its input (a list of
        shapes for multi-input layers)."""
        if self.multi_input:
            if not _is_shape_list(shape) or not shape:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) takes a list of "
                                 f"inputs, got a single input of shape {tuple(shape)}")
            expected = self.input_shape if _is_shape_list(self.input_shape) else None
            if expected is not None and len(expected) != len(shape):
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) was built for {len(expected)} "
                    f"inputs, got {len(shape)}: {[tuple(s) for s in shape]}")
            for i, one in enumerate(shape):
                self._check_one_shape(tuple(one), None if expected is None else expected[i])
            return
        self._check_one_shape(tuple(shape), self.input_shape)

    def _check_one_shape(self, shape: tuple, expected) -> None:
        if self.input_ndim is not None and len(shape) != self.input_ndim:
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                f"ndim={self.input_ndim}, found ndim={len(shape)}. Full shape received: {shape}")
        if self.input_ndim is None and len(shape) < 2:
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) needs at least 2 axes "
                f"(batch, features), got shape {shape}")
        if expected is not None:
            if len(expected) != len(shape) or any(
                    e is not None and s is not None and e != s
                    for e, s in zip(expected[1:], shape[1:])):
                raise ValueError(
                    f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible: "
                    f"expected shape {expected}, found shape {shape}")

    def ensure_built(self, input_shape):
        """Build for ``input_shape`` if needed and return the output shape (for multi-input
        layers, ``input_shape`` is a list of shapes)."""
        if self.multi_input and _is_shape_list(input_shape):
            input_shape = [_batchless(s) for s in input_shape]
        else:
            input_shape = _batchless(input_shape)
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

    # -- the graph ---------------------------------------------------------------------------
    @property
    def input(self):
        """The input tensor(s) of this layer's first call on symbolic tensors (Keras 3)."""
        return self._first_node_attribute("input_tensors", "input")

    @property
    def output(self):
        """The output tensor(s) of this layer's first call on symbolic tensors (Keras 3)."""
        return self._first_node_attribute("outputs", "output")

    def _first_node_attribute(self, attr: str, what: str):
        if not self._inbound_nodes:
            raise AttributeError(f"The layer {self.name} has never been called and thus has no "
                                 f"defined {what}.")
        values = getattr(self._inbound_nodes[0], attr)
        return values[0] if len(values) == 1 else list(values)

    def __call__(self, x, training: bool = False):
        if is_symbolic(x):
            return self._symbolic_call(x)
        if self.multi_input:
            if not isinstance(x, (list, tuple)):
                raise TypeError(f"layer '{self.name}' ({type(self).__name__}) takes a list of "
                                f"tensors, got {type(x).__name__}")
            xs = [self._as_input(t) for t in x]
            self.ensure_built([t.shape for t in xs])
            try:
                return self.call(xs, training=training)
            except Exception as exc:
                err = translate_device_error(exc, xs[0]._backend, self._where(), batch_of(xs))
                if err is None:
                    raise
                raise err from exc
        x = self._as_input(x)
        self.ensure_built(x.shape)
        try:
            return self.call(x, training=training)
        except Exception as exc:  # a device's raw errors name the layer
            err = translate_device_error(exc, x._backend, self._where(), batch_of(x))
            if err is None:
                raise
            raise err from exc

    def _where(self) -> str:
        return f"layer '{self.name}' ({type(self).__name__})"

    def _as_input(self, x) -> Tensor:
        x = F.as_tensor(x, f"input of layer '{self.name}'")
        if x.dtype != self.dtype:
            x = Tensor(x._backend.asarray(x.data, dtype=self.dtype), backend=x._backend)
        return x

    def _symbolic_call(self, x):
        """Record a node of the graph and return its symbolic output(s)."""
        cls = type(self).__name__
        if isinstance(x, (list, tuple)):
            if not all(isinstance(t, KerasTensor) for t in x):
                kinds = ", ".join(type(t).__name__ for t in x)
                raise TypeError(f"layer '{self.name}' ({cls}) was called on a mix of symbolic "
                                f"and other inputs ({kinds}): pass only tensors from Input() "
                                f"or from layers called on them")
            if not self.multi_input and len(x) != 1:
                raise TypeError(f"layer '{self.name}' ({cls}) takes one input, got a list of "
                                f"{len(x)}")
            inputs, multi = list(x), self.multi_input
        else:
            if self.multi_input:
                raise TypeError(f"layer '{self.name}' ({cls}) takes a list of inputs, got one "
                                f"tensor of shape {x.shape}")
            inputs, multi = [x], False
        shapes = [t.shape for t in inputs] if multi else inputs[0].shape
        try:
            out_shape = self.ensure_built(shapes)
        except (ValueError, TypeError) as exc:
            if f"'{self.name}'" in str(exc):
                raise
            shown = ", ".join(str(t.shape) for t in inputs)
            raise type(exc)(f"layer '{self.name}' ({cls}) cannot take inputs of shapes "
                            f"{shown}: {exc}") from exc
        node = Node(self, inputs, multi)
        index = len(self._inbound_nodes)
        self._inbound_nodes.append(node)
        several = _is_shape_list(out_shape)
        shapes_out = out_shape if several else [out_shape]
        node.outputs = [KerasTensor(shape, self.dtype, KerasHistory(self, index, i),
                                    name=self.name) for i, shape in enumerate(shapes_out)]
        return list(node.outputs) if several else node.outputs[0]

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
    """The start of a model's graph; ``Input(shape=...)`` makes one and returns its symbolic
    output tensor (``layer.output``)."""

    def __init__(self, shape=None, batch_size=None, name=None, dtype="float32", **kwargs):
        if shape is None and "batch_input_shape" not in kwargs and "input_shape" not in kwargs:
            raise ValueError("InputLayer needs shape=(...) without the batch axis")
        if shape is not None:
            kwargs.setdefault("input_shape", shape)
        super().__init__(name=name, batch_size=batch_size,
                         dtype=dtype, **kwargs)

    @property
    def output(self) -> KerasTensor:
        """The symbolic tensor this input feeds (made on first use, then always the same)."""
        if not self._inbound_nodes:
            shape = self.batch_input_shape
            self.built = True
            self.input_shape = self.output_shape = _batchless(shape)
            node = Node(self, [], False)
            node.outputs = [KerasTensor(shape, self.dtype, KerasHistory(self, 0, 0),
                                        name=self.name)]
            self._inbound_nodes.append(node)
        return self._inbound_nodes[0].outputs[0]

    def call(self, x, training=False):
        return x

    def inference_step(self, input_shape, backend):
        return _identity


def _identity(a):
    return a


def Input(shape, batch_size=None, name=None, dtype="float32") -> KerasTensor:  # noqa: N802
    """A symbolic input tensor of ``shape`` (without the batch axis), for
    ``Model(inputs, outputs)``; ``Sequential([Input((28, 28, 1)), ...])`` takes it too."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype).output
