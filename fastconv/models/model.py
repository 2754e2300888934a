"""Model: compile / fit / evaluate / predict / save, Keras's contract, on any layer graph.

Subclasses provide ``layers``, ``build(input_shape)``, ``call(x, training)`` and the config:
``Sequential`` (a chain) and ``Functional`` (a graph; ``Model(inputs, outputs)`` makes one).
A user's subclass that defines ``call`` is a subclassed model (Keras's idiom): its layers are
its attributes, and it predicts by running ``call`` rather than an inference plan.
A model is a layer too, so models nest: ``Sequential([base, Flatten(), Dense(10)])``.

Data: one array per input and per output. A model with several inputs or outputs takes a list
(or a dict by input/output layer name) and returns a list, as Keras. Host data (NumPy arrays) is
validated once, cut into batches on the host and sent to the backend batch by batch.

Freezing: ``model.trainable = False`` (or ``layer.trainable = False``) sets the flag on every
layer beneath it and on their weights, as Keras; ``trainable_weights`` follows at once. fastconv
reads ``trainable_weights`` at every training step, so a layer frozen after ``compile`` is
frozen from the next ``fit`` / ``train_on_batch`` step on, without recompiling (Keras asks for a
recompile). The optimizer keeps the state of weights it updated before, keyed by weight path,
so a model frozen after training saves and loads.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os

import numpy as np

from .. import functional as F
from .. import interrupts, warmup
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from .. import random as fc_random
from ..backends import get_backend
from ..backends.device import batch_of, translate_device_error
from ..callbacks import Callback, History
from ..inference import InferencePlan, chunk_size, plan_key, structure_changed, structure_epoch
from ..layers.base import Layer, snake_case, unique_name
from ..ops.losses import Labels
from ..progbar import Progbar, write_line
from ..tensor import Tensor, enable_grad, no_grad
from .summary import render_summary


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite; ``.history`` holds the
    History up to that point."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def _verbose(value, where: str) -> int:
    if value == "auto":
        return 1
    if value not in (0, 1, 2) or isinstance(value, bool):
        raise ValueError(f"{where}: verbose must be 0, 1, 2 or 'auto', got {value!r}")
    return int(value)


def _positive_int(value, name: str, allow_zero: bool = False) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < (
            0 if allow_zero else 1):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def _host_array(a, name: str, backend) -> np.ndarray:
    """A host array of numbers (Tensors and arrays of ``backend``, the model's, are copied to
    the host through ``Backend.to_host``)."""
    if isinstance(a, Tensor):
        a = a.numpy()
    elif not isinstance(a, np.ndarray):
        if isinstance(a, backend.xp.ndarray):  # a device array
            a = backend.to_host(a)
        else:
            _refuse_data_pipelines(a, name)
    try:
        a = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name} must have a batch axis, got a scalar")
    return a


def _refuse_data_pipelines(a, name: str) -> None:
    """Generators, iterators and ``keras.utils.PyDataset``-like objects (``__len__`` and
    ``__getitem__`` returning batches) are not arrays: NumPy would try to turn one into an
    object array, element by element (a PyDataset grew a process to 21 GB). Refused by name."""

    if isinstance(a, (list, tuple, numbers.Number)) or hasattr(a, "__array__") or hasattr(
            a, "__array_interface__"):
        return
    kind = None
    if inspect.isgenerator(a) or (hasattr(a, "__next__") and hasattr(a, "__iter__")):
        kind = "a generator or iterator"
    elif hasattr(a, "__getitem__") and hasattr(a, "__len__"):
        kind = f"a dataset object ({type(a).__name__}, like keras.utils.PyDataset)"
    elif hasattr(a, "__iter__"):
        kind = f"an iterable {type(a).__name__}"
    if kind is not None:
        raise TypeError(f"{name} is {kind}; fastconv takes arrays (NumPy arrays, lists of "
                        f"arrays, dicts by input name): fitting on generators and datasets is "
                        f"not supported yet, so load the data into an array first")


def _describe(data) -> str:
    if isinstance(data, (list, tuple)):
        return f"a {type(data).__name__} of {len(data)}"
    shape = getattr(data, "shape", None)
    return f"{type(data).__name__} of shape {tuple(shape)}" if shape is not None else \
        type(data).__name__


def _per_output(value, names: list[str], what: str) -> list:
    """One entry per output from a single value (shared), a list, or a dict by output name."""
    if isinstance(value, dict) and not (what == "loss" and "name" in value
                                        and "name" not in names):  # a loss's saved config
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"compile: {what} names unknown output(s) {unknown}; the model's "
                             f"outputs are {names}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and len(names) > 1:
        if len(value) != len(names):
            raise ValueError(f"compile: the model has {len(names)} outputs ({', '.join(names)}), "
                             f"but {what} lists {len(value)} entries")
        return list(value)
    return [value] * len(names)


def _recording_build(build):
    """A subclassed model's own ``build``, followed by what marks the model built."""

    @functools.wraps(build)
    def build_and_record(self, input_shape=None):
        build(self, input_shape)
        self._record_build(input_shape)

    return build_and_record


class Model(Layer):
    """Training and inference on top of a layer graph (see Sequential and Functional), or on a
    subclass's own ``call``.

    ``Model(inputs=..., outputs=..., name=...)`` makes a functional model. A subclass that
    defines ``call(self, inputs, training=False)`` (``training`` may be left out) is a
    subclassed model, as in Keras: its layers are the layers (and models) assigned to its
    attributes, directly or in lists, tuples and dicts, in the order they were assigned; it is
    built on its first data (``fit``, ``predict``, calling it) or by ``build(input_shape)``,
    which runs ``call`` once on one zero sample so that every layer is built. A subclassed
    model takes one input array and returns one output; its weights save with
    ``save_weights``, not in model files (its architecture is its Python code)."""

    #: True for models whose structure is a graph of layer calls (Sequential, Functional);
    #: False for subclassed models, whose structure is their ``call`` method
    _graph_model = False
    built = False
    input_shape = None
    output_shape = None

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional

            return object.__new__(Functional)
        return object.__new__(cls)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is not None and not cls._graph_model:
            cls.build = _recording_build(build)

    def __init__(self, *args, name: str | None = None, trainable: bool = True, dtype=None,
                 **kwargs):
        # A model is a layer (models nest): Layer.__init__'s attributes that Sequential and
        # Functional compute are properties there.
        cls = type(self).__name__
        if args or "inputs" in kwargs or "outputs" in kwargs:
            raise NotImplementedError(
                f"{cls}: a subclass of Model built from inputs and outputs "
                f"(super().__init__(inputs, outputs)) is not supported; use "
                f"Model(inputs, outputs), or define call() in the subclass")
        if kwargs:
            raise TypeError(f"{cls}: unexpected keyword argument(s): "
                            f"{', '.join(sorted(kwargs))}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{cls}: name must be a non-empty string, got {name!r}")
        if not self._graph_model:
            name = name or unique_name(snake_case(cls))
            try:
                self.dtype = np.dtype(dtype or "float32").name
            except TypeError:
                raise TypeError(f"model '{name}': unknown dtype {dtype!r}") from None
            if self.dtype not in ("float32", "float64"):
                raise TypeError(f"model '{name}': dtype must be float32 or float64, got "
                                f"{self.dtype}")
            self._output_shapes: dict[tuple, tuple] = {}
        elif dtype is not None:
            raise TypeError(f"{cls}: the dtype comes from the model's layers; dtype= is not "
                            f"taken")
        self.name = name
        self._trainable = bool(trainable)
        self._weights = []  # a subclassed model's own weights (add_weight in its build)
        self._inbound_nodes = []
        self.optimizer = None
        self.loss = None
        self._losses: list = []
        self._loss_weights: list[float] = []
        self.metrics_names: list[str] = []
        self._metrics: list[metrics_mod.Metric] = []
        self._metric_specs: list[tuple[int, metrics_mod.Metric, str]] = []
        self.compiled = False
        self.stop_training = False
        self.history: History | None = None
        self._plans: dict[tuple, InferencePlan] = {}
        self._chunks: dict[tuple, int] = {}  # images per inference chunk, per input shape
        self._placement: str | None = None  # the backend named by Model.to, if any

    # -- what Sequential and Functional provide, and subclassed models' defaults --------------
    @property
    def layers(self) -> list:
        """A subclassed model's layers: those assigned to its attributes (also inside lists,
        tuples and dicts), each once, in the order of assignment."""
        found: list[Layer] = []
        seen = {id(self)}
        stack = list(reversed(list(vars(self).values())))
        while stack:
            value = stack.pop()
            if isinstance(value, Layer):
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
            elif isinstance(value, (list, tuple)):
                stack.extend(reversed(value))
            elif isinstance(value, dict):
                stack.extend(reversed(list(value.values())))
        return found

    def call(self, x, training: bool = False):
        raise NotImplementedError(f"model '{self.name}' ({type(self).__name__}): a subclass of "
                                  f"Model must define call(self, inputs, training=False)")

    def build(self, input_shape=None) -> None:
        """A subclassed model: build every layer for ``input_shape`` (batch axis included) by
        running ``call`` once on one zero sample. A subclass's own ``build`` may call this
        (``super().build(input_shape)``) anywhere: the model is marked built after it."""
        if type(self).build is Model.build:  # a subclass's build records when it is done
            self._record_build(input_shape)

    def _record_build(self, input_shape) -> None:
        """Mark a subclassed model built for ``input_shape`` and learn its output shape."""
        if input_shape is None:
            input_shape = self.input_shape
        if input_shape is None:
            raise ValueError(f"model '{self.name}': build needs the input shape, e.g. "
                             f"model.build((None, 28, 28, 1))")
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0],
                                                                        (tuple, list)):
            raise NotImplementedError(f"model '{self.name}' ({type(self).__name__}): subclassed "
                                      f"models with several inputs are not supported")
        shape = (None, *tuple(input_shape)[1:])
        self.input_shape = shape
        self.built = True
        self.output_shape = self.compute_output_shape(shape)

    def compute_output_shape(self, input_shape):
        """A subclassed model's output shape for ``input_shape``: found by running ``call``
        once on one zero sample (remembered per input shape)."""
        shape = tuple(input_shape)
        key = shape[1:]
        out = self._output_shapes.get(key)
        if out is None:
            if any(d is None for d in key):
                raise ValueError(f"model '{self.name}' ({type(self).__name__}): cannot find the "
                                 f"output shape for an input shape with unknown sizes {shape}; "
                                 f"build it with full sizes or call it on data")
            backend = self.backend
            x = Tensor(backend.asarray(np.zeros((1, *key), dtype=self.dtype)), backend=backend)
            with no_grad():
                y = self.call(x, training=False)
            if isinstance(y, (list, tuple)):
                raise NotImplementedError(f"model '{self.name}' ({type(self).__name__}): "
                                          f"subclassed models with several outputs are not "
                                          f"supported")
            out = self._output_shapes[key] = tuple(y.shape[1:])
        return (shape[0], *out)

    @property
    def input_names(self) -> list[str]:
        """Names of the input layers, in the order fit/predict take the arrays."""
        return ["input_layer"]

    @property
    def output_names(self) -> list[str]:
        """Names of the layers that make the outputs, in the order predict returns them."""
        if not self._graph_model:
            return ["output_1"]
        return [self.layers[-1].name] if self.layers else ["output"]

    def _input_shapes(self) -> list:
        """The expected shape (batch axis None) of each input, None where not known yet (a
        subclassed model takes any shape its call takes)."""
        return [self.input_shape if self._graph_model else None]

    def _prepare_inputs(self, shapes: list) -> None:
        """Build for these input shapes where the model does not know its own yet."""
        if not self._graph_model and not self.built:
            self.build(shapes[0] if len(shapes) == 1 else shapes)

    def summary(self, line_length: int | None = None, print_fn=None) -> None:
        """Print the table of layers, output shapes and parameter counts (Keras 3's layout)."""
        if not self._graph_model and not self.built:
            raise ValueError(f"This model has not yet been built. Build the model first by "
                             f"calling `build()` or by calling the model on a batch of data "
                             f"(model '{self.name}').")
        text = render_summary(self, line_length)
        (print_fn or write_line)(text)

    # -- as a layer --------------------------------------------------------------------------
    @property
    def batch_input_shape(self):
        shapes = self._input_shapes()
        return shapes[0] if len(shapes) == 1 else None

    def check_input_shape(self, shape) -> None:
        expected = self._input_shapes()
        shapes = shape if self.multi_input else [shape]
        if len(shapes) != len(expected):
            raise ValueError(f"model '{self.name}' takes {len(expected)} inputs, got "
                             f"{len(shapes)}")
        for one, want, name in zip(shapes, expected, self.input_names):
            one = tuple(one)
            if want is None:
                continue
            if len(one) != len(want) or any(w is not None and o is not None and w != o
                                            for w, o in zip(want[1:], one[1:])):
                raise ValueError(f"Input '{name}' of model '{self.name}' is incompatible: "
                                 f"expected shape {tuple(want)}, found shape {one}")

    def ensure_built(self, input_shape):
        if self.multi_input:
            shapes = [(None, *tuple(s)[1:]) for s in input_shape]
        else:
            shapes = [(None, *tuple(input_shape)[1:])]
        self.check_input_shape(shapes if self.multi_input else shapes[0])
        if not self.built:
            self.build(shapes if self.multi_input else shapes[0])
        return self.compute_output_shape(shapes if self.multi_input else shapes[0])

    def inference_step(self, input_shape, backend):
        """A nested model runs as one step: its own plan for ``input_shape`` (a subclassed
        model: its ``call``)."""
        if not self._graph_model:
            return Layer.inference_step(self, input_shape, backend)
        plan = InferencePlan(self, input_shape, backend)
        return plan.run

    def get_layer(self, name: str | None = None, index: int | None = None):
        """A layer by name, or by position in ``model.layers``."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give either name=... or index=..., not both or neither")
        layers = self.layers
        if index is not None:
            if not isinstance(index, numbers.Integral) or isinstance(index, bool):
                raise TypeError(f"get_layer: index must be an int, got {index!r}")
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: model '{self.name}' has {len(layers)} layers, "
                                 f"index {index} is out of range")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r} in model '{self.name}'; its layers "
                         f"are: {', '.join(la.name for la in layers)}")

    # -- weights -----------------------------------------------------------------------------
    def _own_weights(self) -> list:
        return list(self.__dict__.get("_weights", ()))

    @Layer.trainable.setter
    def trainable(self, value: bool) -> None:
        """Freeze (False) or unfreeze every layer beneath the model, recursively (Keras)."""
        self._trainable = bool(value)
        for w in self._own_weights():
            w.trainable = self._trainable
        for layer in self.layers:
            layer.trainable = self._trainable

    @property
    def weights(self):
        return self._own_weights() + [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        return [w for w in self._own_weights() if w.trainable] + [
            w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self._trainable:
            return self.weights
        return [w for w in self._own_weights() if not w.trainable] + [
            w for layer in self.layers for w in layer.non_trainable_weights]

    def weight_paths(self) -> dict:
        """Every weight by its path: ``layer/weight``, with the names of nested models before
        it (``base/conv2d/kernel``). Optimizer state is saved under these paths."""
        paths = {w.name: w for w in self._own_weights()}
        for layer in self.layers:
            if isinstance(layer, Model):
                paths.update({f"{layer.name}/{k}": v for k, v in layer.weight_paths().items()})
            else:
                for w in layer.weights:
                    paths[w.name] = w
        return paths

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy().copy() for w in self._own_weights()] + [
            w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        expected = len(self.weights)
        if len(weights) != expected:
            raise ValueError(f"model '{self.name}' has {expected} weight arrays, got "
                             f"{len(weights)}")
        own = self._own_weights()
        if own:
            Layer.set_weights(self, weights[:len(own)])
        i = len(own)
        for layer in self.layers:
            n = len(layer.weights)
            layer.set_weights(weights[i:i + n])
            i += n

    def count_params(self) -> int:
        return int(sum(w.size for w in self._own_weights())) + sum(
            layer.count_params() for layer in self.layers)

    # -- placement ---------------------------------------------------------------------------
    @property
    def backend(self):
        """The backend the model runs on: the one named by :meth:`to`, else the current one."""
        placement = self.__dict__.get("_placement")
        return get_backend(placement) if placement is not None else get_backend()

    def to(self, backend: str) -> Model:
        """Move the weights (their values; each weight's version is bumped, gradients dropped)
        and the optimizer's state to backend ``backend`` (``'name'``, or ``'name:index'`` for a
        GPU backend), and run the model there from now on, whichever backend is current.
        Returns the model. Weights are created on the current backend; a model never moved
        runs on the current backend."""
        target = get_backend(backend)
        if not self.built:
            raise ValueError(f"Model.to: model '{self.name}' is not built yet, so it has no "
                             f"weights to move; build it (or call it on data) first")
        moved: set[int] = set()
        for var in self.weights:  # a shared layer's weights appear once per use
            if id(var) in moved:
                continue
            moved.add(id(var))
            if self.optimizer is not None:
                self.optimizer.move_state(var, target)
            source = var._backend
            if source is not target:
                var.data = target.asarray(source.to_host(var.data), dtype=var.dtype)
                var._backend = target
            var.grad = None
            var.changed()
        self._placement = backend
        self._forget_plans()
        return self

    # -- compile -----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                **kwargs) -> None:
        """Set the optimizer, loss and metrics (Keras names or objects). With several outputs,
        ``loss`` is one loss for every output or one per output (a list, or a dict by output
        name), and the training loss is their (weighted) sum, as Keras; ``metrics`` is then a
        list with one entry (a metric or a list of them) per output, or a dict by output name."""
        if kwargs:
            raise TypeError(f"compile: unsupported argument(s): {', '.join(sorted(kwargs))}")
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='categorical_crossentropy'")
        names = self.output_names
        self.optimizer = optimizers_mod.get(optimizer)
        losses = _per_output(loss, names, "loss")
        for name, one in zip(names, losses):
            if one is None:
                raise ValueError(f"compile: no loss for output '{name}'")
        self._losses = [losses_mod.get(one) for one in losses]
        self.loss = self._losses[0] if len(names) == 1 else loss
        weights = [1.0] * len(names) if loss_weights is None else _per_output(
            loss_weights, names, "loss_weights")
        for name, w in zip(names, weights):
            if not isinstance(w, numbers.Real) or isinstance(w, bool) or not math.isfinite(w):
                raise ValueError(f"compile: the loss weight of output '{name}' must be a "
                                 f"number, got {w!r}")
        self._loss_weights = [float(w) for w in weights]
        specs = []
        if len(names) == 1:
            for m in list(metrics or []):
                metric = metrics_mod.get(m, self._losses[0])
                specs.append((0, metric, metric.name))
        elif metrics:
            if isinstance(metrics, (list, tuple)) and len(metrics) != len(names):
                raise ValueError(f"compile: for a model with {len(names)} outputs, metrics must "
                                 f"have one entry per output ({', '.join(names)}) or be a dict "
                                 f"by output name, got {list(metrics)!r}")
            for i, entry in enumerate(_per_output(metrics, names, "metrics")):
                entries = [] if entry is None else (
                    list(entry) if isinstance(entry, (list, tuple)) else [entry])
                for m in entries:
                    metric = metrics_mod.get(m, self._losses[i])
                    specs.append((i, metric, f"{names[i]}_{metric.name}"))
        self._metric_specs = specs
        self._metrics = [m for _, m, _ in specs]
        self.metrics_names = ["loss"] + ([f"{n}_loss" for n in names] if len(names) > 1
                                         else []) + [log for _, _, log in specs]
        self.compiled = True

    def compile_config(self, serialize_optimizer, serialize_loss) -> dict:
        """The compile settings as saved in model files (``compile(**config)`` restores them)."""
        config = {"optimizer": serialize_optimizer(self.optimizer)}
        if len(self._losses) == 1:
            config["loss"] = serialize_loss(self._losses[0])
            config["metrics"] = [metrics_mod.serialize(m) for m in self._metrics]
            return config
        config["loss"] = [serialize_loss(loss) for loss in self._losses]
        config["metrics"] = [[metrics_mod.serialize(m) for i, m, _ in self._metric_specs if i == k]
                             for k in range(len(self._losses))]
        config["loss_weights"] = list(self._loss_weights)
        return config

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{where}: compile the model first, e.g. "
                               f"model.compile(optimizer='adam', loss='categorical_crossentropy')")

    # -- data --------------------------------------------------------------------------------
    def _arrays(self, data, names: list[str], where: str, what: str) -> list[np.ndarray]:
        """One host array per input (``what='x'``) or output (``'y'``)."""
        kind = "input" if what.startswith("x") else "output"
        n = len(names)
        if isinstance(data, dict):
            if set(data) != set(names):
                raise ValueError(f"{where}: {what} is a dict with keys {sorted(data)}, but the "
                                 f"model's {kind}s are named {names}")
            items = [data[k] for k in names]
        elif n == 1:
            if (isinstance(data, (list, tuple)) and len(data) == 1
                    and isinstance(data[0], (np.ndarray, Tensor))):
                data = data[0]
            items = [data]
        else:
            if not isinstance(data, (list, tuple)) or len(data) != n:
                raise ValueError(f"{where}: the model has {n} {kind}s ({', '.join(names)}): pass "
                                 f"{what} as a list of {n} arrays or a dict by name, got "
                                 f"{_describe(data)}")
            items = list(data)
        if n == 1:
            return [_host_array(items[0], f"{where}: {what}", self.backend)]
        return [_host_array(a, f"{where}: {what}[{i}] ('{name}')", self.backend)
                for i, (a, name) in enumerate(zip(items, names))]

    def _check_x(self, x, where: str) -> list[np.ndarray]:
        if isinstance(x, np.ndarray) and not self.multi_input:  # the common case, kept short
            xs = [_host_array(x, f"{where}: x", self.backend)]
        else:
            xs = self._arrays(x, self.input_names, where, "x")
        if len(xs) == 1:
            a = xs[0]
            self._prepare_inputs([(None, *a.shape[1:])])
            expected = self._input_shapes()[0]
            if expected is not None and (len(expected) != a.ndim or any(
                    e is not None and e != s for e, s in zip(expected[1:], a.shape[1:]))):
                raise ValueError(
                    f"{where}: x has shape {a.shape}, but the model's input (layer "
                    f"'{self.input_names[0]}') expects {tuple(expected)}")
            return xs
        self._prepare_inputs([(None, *a.shape[1:]) for a in xs])
        for i, (a, expected, name) in enumerate(zip(xs, self._input_shapes(), self.input_names)):
            if expected is not None and (len(expected) != a.ndim or any(
                    e is not None and e != s for e, s in zip(expected[1:], a.shape[1:]))):
                raise ValueError(
                    f"{where}: x[{i}] has shape {a.shape}, but the model's input (layer "
                    f"'{name}') expects {tuple(expected)}")
        if len({len(a) for a in xs}) > 1:
            raise ValueError(f"{where}: the inputs hold different numbers of samples: "
                             f"{[len(a) for a in xs]}")
        return xs

    def _check_xy(self, x, y, where: str) -> tuple[list, list]:
        xs = self._check_x(x, where)
        ys = self._arrays(y, self.output_names, where, "y")
        for y_ in ys:
            if len(xs[0]) != len(y_):
                raise ValueError(f"{where}: x and y hold different numbers of samples: "
                                 f"{len(xs[0])} and {len(y_)}")
        if len(xs[0]) == 0:
            raise ValueError(f"{where}: x and y are empty")
        return xs, ys

    def _to_backend(self, xb: np.ndarray) -> Tensor:
        backend = self.backend
        return Tensor(backend.asarray(xb, dtype=self.dtype), backend=backend)

    def _forward(self, xs: list[np.ndarray], training: bool) -> list[Tensor]:
        inputs = [self._to_backend(a) for a in xs]
        out = self.call(inputs if self.multi_input else inputs[0], training=training)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _total_loss(self, ys, preds) -> tuple[Tensor, list]:
        """The loss to minimise and, with several outputs, each output's loss Tensor."""
        if len(preds) == 1:
            return self._losses[0](ys[0], preds[0]), []
        parts = [loss(y, p) for loss, y, p in zip(self._losses, ys, preds)]
        total = None
        for part, w in zip(parts, self._loss_weights):
            term = part if w == 1.0 else F.ScaleOp.apply(part, factor=w)
            total = term if total is None else F.add(total, term)
        return total, parts

    def _step_labels(self, ys, preds) -> list:
        """Each output's labels checked and uploaded once, for its loss and its metrics."""
        return [loss.labels(y, p) for loss, y, p in zip(self._losses, ys, preds)]

    def _step_results(self, loss, parts, labels, preds) -> tuple[list[float], list]:
        """The step's losses and each metric's (totals, count), brought to the host together: on a
        GPU one device-to-host copy per step, of a few numbers."""
        backend = self.backend
        xp = backend.xp
        scalars = [loss.data] + [p.data for p in parts]
        counts, sizes, host_metrics = [], [], {}
        for k, (i, m, _) in enumerate(self._metric_specs):
            y = labels[i]
            if isinstance(y, Labels):  # labels on the backend: compute there, bring the totals
                totals, count = m.batch_totals(y.array, preds[i].data)
                scalars.append(totals)
                sizes.append(int(totals.size))
                counts.append(count)
            else:  # a custom loss's own labels: compare on the host
                host_metrics[k] = (y, preds[i])
                counts.append(None)
        host = backend.to_host(xp.concatenate([xp.asarray(v, dtype=xp.float64).reshape(-1)
                                               for v in scalars]))
        n_losses = 1 + len(parts)
        losses = [float(v) for v in host[:n_losses]]
        offsets = np.cumsum([n_losses, *sizes])
        device_totals = iter(host[a:b] for a, b in zip(offsets[:-1], offsets[1:]))
        results = []
        for k, count in enumerate(counts):
            if count is None:
                y, pred = host_metrics[k]
                totals, count = self._metric_specs[k][1].batch_totals(np.asarray(y), pred.numpy())
                results.append((np.asarray(totals, dtype=np.float64), count))
            else:
                results.append((next(device_totals), count))
        return losses, results

    # -- one step ----------------------------------------------------------------------------
    def _train_step(self, xs, ys, update_when_not_finite=False) -> tuple[list[float], list]:
        """One optimisation step -> (losses, each metric's (totals, count)). A loss that is not
        finite skips the backward pass and the update, unless ``update_when_not_finite`` (a
        compiling process's dry run, fastconv.warmup, whose kernels compute nothing)."""
        variables = self.trainable_weights
        for v in variables:
            v.grad = None
        with enable_grad():
            preds = self._forward(xs, training=True)
            labels = self._step_labels(ys, preds)
            loss, parts = self._total_loss(labels, preds)
        values, metrics = self._step_results(loss, parts, labels, preds)
        if update_when_not_finite or math.isfinite(values[0]):
            try:
                loss.backward()
                with no_grad():
                    self.optimizer.apply(variables)
            except Exception as exc:  # a device's raw errors say where they happened
                err = translate_device_error(exc, self.backend, f"the backward pass and update "
                                             f"of model '{self.name}'", batch_of(xs))
                if err is None:
                    raise
                raise err from exc
        return values, metrics

    def _test_step(self, xs, ys) -> tuple[list[float], list]:
        with no_grad():
            preds = self._forward(xs, training=False)
            labels = self._step_labels(ys, preds)
            loss, parts = self._total_loss(labels, preds)
        return self._step_results(loss, parts, labels, preds)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One optimisation step on (x, y). Returns the loss before the update (Keras 3:
        ``[loss, *output losses, *metrics]`` in the order of ``metrics_names``, the loss
        alone when that is all), or the logs dict with ``return_dict=True``."""
        self._require_compiled("train_on_batch")
        self._refuse_weighting("train_on_batch", sample_weight, class_weight)
        xs, ys = self._check_xy(x, y, "train_on_batch")
        return self._batch_result(*self._train_step(xs, ys), return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss and metrics of (x, y), without training; returns as ``train_on_batch``."""
        self._require_compiled("test_on_batch")
        self._refuse_weighting("test_on_batch", sample_weight, None)
        xs, ys = self._check_xy(x, y, "test_on_batch")
        return self._batch_result(*self._test_step(xs, ys), return_dict)

    @staticmethod
    def _refuse_weighting(where: str, sample_weight, class_weight) -> None:
        for name, value in (("sample_weight", sample_weight), ("class_weight", class_weight)):
            if value is not None:
                raise NotImplementedError(f"{where}: {name} is not supported by fastconv")

    def _batch_result(self, losses, metric_results, return_dict: bool = False):
        """One batch's results as Keras 3 returns them: the metrics start from zero for the
        batch; a list in ``metrics_names`` order (the loss alone when that is all) or, with
        ``return_dict``, the logs dict (alphabetical, as ``fit``'s logs)."""
        for (_, m, _), result in zip(self._metric_specs, metric_results):
            m.reset()
            m.add(*result)
        if return_dict:
            return self._epoch_values(list(losses), 1)
        if not self._metric_specs and len(losses) == 1:
            return losses[0]
        return list(losses) + [m.result() for _, m, _ in self._metric_specs]

    def _update_metrics(self, metric_results) -> None:
        for (_, m, _), result in zip(self._metric_specs, metric_results):
            m.add(*result)

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            validation_batch_size=None) -> History:
        """Train for ``epochs`` epochs; returns a History (also kept as ``model.history``)."""
        self._require_compiled("fit")
        verbose = _verbose(verbose, "fit")
        batch_size = _positive_int(batch_size, "fit: batch_size")
        epochs = _positive_int(epochs, "fit: epochs", allow_zero=True)
        initial_epoch = _positive_int(initial_epoch, "fit: initial_epoch", allow_zero=True)
        xs, ys = self._check_xy(x, y, "fit")
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        if validation_data is not None and validation_split:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        n = len(xs[0])
        if validation_split:
            cut = int(n * (1 - validation_split))
            if cut == 0 or cut == n:
                raise ValueError(f"fit: validation_split={validation_split} leaves no training "
                                 f"or no validation samples out of {n}")
            validation_data = ([a[cut:] for a in xs], [a[cut:] for a in ys])
            xs, ys = [a[:cut] for a in xs], [a[:cut] for a in ys]
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
            validation_data = self._check_xy(*validation_data, "fit: validation_data")
        val_batch = _positive_int(validation_batch_size or batch_size,
                                  "fit: validation_batch_size")
        warmup.start_training_compile(self, xs, ys, batch_size)

        history = History()
        cbs = [*self._check_callbacks(callbacks), history]
        steps = math.ceil(len(xs[0]) / batch_size)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.history = history
        self.stop_training = False
        with interrupts.remembered():
            self._run_epochs(cbs, xs, ys, batch_size, epochs, initial_epoch, shuffle, verbose,
                             history, validation_data, val_batch)
        return history

    def _run_epochs(self, cbs, xs, ys, batch_size, epochs, initial_epoch, shuffle, verbose,
                    history, validation_data, val_batch) -> None:
        self._initial_epoch = None
        for cb in cbs:
            cb.on_train_begin()
        # a callback that restores an interrupted run (BackupAndRestore) sets where it resumes
        initial_epoch = self.__dict__.pop("_initial_epoch", None) or initial_epoch
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if verbose:
                write_line(f"Epoch {epoch + 1}/{epochs}")
            logs = self._run_epoch(xs, ys, batch_size, shuffle, verbose, cbs, epoch, history,
                                   validation_data, val_batch)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            interrupts.check()
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()

    @staticmethod
    def _check_callbacks(callbacks) -> list[Callback]:
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be fastconv.callbacks.Callback instances, "
                                f"got {type(cb).__name__}")
        return callbacks

    def _run_epoch(self, xs, ys, batch_size, shuffle, verbose, cbs, epoch, history,
                   validation_data, val_batch) -> dict:
        n = len(xs[0])
        order = fc_random.host_rng().permutation(n) if shuffle else None
        steps = math.ceil(n / batch_size)
        bar = Progbar(steps, verbose=verbose)
        sums, seen = [0.0] * (1 + len(self._losses) if len(self._losses) > 1 else 1), 0
        for m in self._metrics:
            m.reset()
        for step in range(steps):
            for cb in cbs:
                cb.on_train_batch_begin(step)
            idx = (order[step * batch_size:(step + 1) * batch_size] if order is not None
                   else slice(step * batch_size, (step + 1) * batch_size))
            xb, yb = [a[idx] for a in xs], [a[idx] for a in ys]
            losses, metric_results = self._train_step(xb, yb)
            loss = losses[0]
            if not math.isfinite(loss):
                logs = {**self._epoch_values(sums, seen), "loss": loss}
                if self._stopped_on_non_finite(cbs, step, logs):
                    bar.finish(logs)
                    return logs
                bar.finish(self._epoch_values(sums, seen))
                message = (f"the loss became {loss} at epoch {epoch + 1}, batch {step + 1}: "
                           f"training stopped (try a smaller learning rate, or check the data "
                           f"for NaN or infinite values)")
                raise NonFiniteLossError(message, history)
            count = len(xb[0])
            sums = [t + v * count for t, v in zip(sums, losses)]
            seen += count
            self._update_metrics(metric_results)
            logs = self._epoch_values(sums, seen)
            for cb in cbs:
                cb.on_train_batch_end(step, logs)
            interrupts.check()
            bar.update(step + 1, logs)
        logs = self._epoch_values(sums, seen)
        if validation_data is not None:
            val = self._evaluate_arrays(*validation_data, val_batch, verbose=0)
            logs.update({f"val_{k}": v for k, v in val.items()})
        bar.finish(logs)
        return logs

    def _stopped_on_non_finite(self, cbs, step: int, logs: dict) -> bool:
        """Show the callbacks the batch whose loss is not finite (its update was skipped);
        True when one of them stops training (``TerminateOnNaN``), which then ends the epoch
        instead of raising ``NonFiniteLossError``."""
        for cb in cbs:
            cb.on_train_batch_end(step, logs)
        return self.stop_training

    def _epoch_values(self, sums: list[float], seen: int) -> dict:
        """Keras 3 logs order: metrics and losses (with several outputs, each output's loss as
        ``<output>_loss`` too), alphabetically."""
        values = {log: m.result() for _, m, log in self._metric_specs}
        values["loss"] = sums[0] / max(seen, 1)
        if len(sums) > 1:
            for name, total in zip(self.output_names, sums[1:]):
                values[f"{name}_loss"] = total / max(seen, 1)
        return dict(sorted(values.items()))

    # -- evaluate / predict ------------------------------------------------------------------
    def _evaluate_arrays(self, xs, ys, batch_size, verbose) -> dict:
        n = len(xs[0])
        steps = math.ceil(n / batch_size)
        bar = Progbar(steps, verbose=verbose)
        for m in self._metrics:
            m.reset()
        sums = None
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            yb = [a[sl] for a in ys]
            losses, metric_results = self._test_step([a[sl] for a in xs], yb)
            count = len(yb[0])
            sums = [v * count for v in losses] if sums is None else [
                t + v * count for t, v in zip(sums, losses)]
            self._update_metrics(metric_results)
            bar.update(step + 1, self._epoch_values(sums, min(n, (step + 1) * batch_size)))
        logs = self._epoch_values(sums, n)
        bar.finish(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", return_dict=False):
        """Loss and metrics over (x, y): ``[loss, *metrics]`` (or the loss alone without
        metrics; with several outputs ``[loss, *output losses, *metrics]``, the order of
        ``metrics_names``), or a dict with ``return_dict=True``."""
        self._require_compiled("evaluate")
        verbose = _verbose(verbose, "evaluate")
        batch_size = _positive_int(batch_size, "evaluate: batch_size")
        xs, ys = self._check_xy(x, y, "evaluate")
        logs = self._evaluate_arrays(xs, ys, batch_size, verbose)
        if return_dict:
            return logs
        ordered = [logs[name] for name in self.metrics_names]
        return ordered[0] if len(ordered) == 1 else ordered

    def inference_plan(self, batch_shape) -> InferencePlan:
        """The plan ``predict`` runs for inputs of ``batch_shape`` (a list of shapes for a model
        with several inputs), made once, then reused."""
        backend = self.backend
        key = plan_key(self, batch_shape, backend)
        plan = self._plans.get(key)
        if plan is None:
            plans = self._plans

            def keep(real):  # a plan that compiled in the background hands over
                plans[key] = real

            plan = self._plans[key] = warmup.plan_for(self, batch_shape, backend, keep)
        return plan

    def _forget_plans(self) -> None:
        self._plans.clear()
        self._chunks.clear()
        structure_changed()

    def __getstate__(self) -> dict:
        """Pickling drops the inference plans and chunk sizes (closures over backend state);
        they are made again on the next predict."""
        state = self.__dict__.copy()
        state["_plans"] = {}
        state["_chunks"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _predict_batch(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Host outputs (one array per model output) for host inputs ``xs``."""
        backend = self.backend
        if not self._graph_model:  # a subclassed model: its call
            with no_grad():
                out = self(Tensor(backend.asarray(xs[0], dtype=self.dtype), backend=backend))
            return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]
        if len(xs) == 1:  # the single-input path, kept short: batch-1 latency matters
            xb = xs[0]
            key = (xb.shape[1:], backend.name, backend.inference_chunk_bytes, structure_epoch())
            chunk = self._chunks.get(key)
            if chunk is None:
                chunk = self._chunks[key] = chunk_size(self, xb.shape[1:], backend)
            if not chunk or len(xb) <= chunk:
                out = self.inference_plan(xb.shape).run(backend.asarray(xb, dtype=self.dtype))
                return [backend.to_host(out)] if not isinstance(out, list) else [
                    backend.to_host(o) for o in out]
        else:
            item = tuple(a.shape[1:] for a in xs)
            key = (item, backend.name, backend.inference_chunk_bytes, structure_epoch())
            chunk = self._chunks.get(key)
            if chunk is None:
                chunk = self._chunks[key] = chunk_size(self, list(item), backend)
        n = len(xs[0])
        step = chunk or n
        outs = None
        for start in range(0, n, step):
            parts = [a[start:start + step] for a in xs]
            arrays = [backend.asarray(p, dtype=self.dtype) for p in parts]
            shapes = parts[0].shape if len(parts) == 1 else [p.shape for p in parts]
            ys = self.inference_plan(shapes).run(arrays[0] if len(arrays) == 1 else arrays)
            ys = [backend.to_host(y) for y in (ys if isinstance(ys, list) else [ys])]
            if outs is None:
                outs = [np.empty((n, *y.shape[1:]), dtype=y.dtype) for y in ys]
            for o, y in zip(outs, ys):
                o[start:start + len(parts[0])] = y
        return outs

    @staticmethod
    def _unwrap(outs: list):
        return outs[0] if len(outs) == 1 else outs

    def predict(self, x, batch_size=32, verbose="auto"):
        """Outputs for ``x`` as a host NumPy array (a list of arrays for a model with several
        outputs), computed ``batch_size`` samples at a time."""
        verbose = _verbose(verbose, "predict")
        batch_size = _positive_int(batch_size, "predict: batch_size")
        xs = self._check_x(x, "predict")
        n = len(xs[0])
        steps = math.ceil(n / batch_size)
        bar = Progbar(steps, verbose=verbose)
        outs = None
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            ys = self._predict_batch([a[sl] for a in xs])
            if outs is None:
                outs = [np.empty((n, *y.shape[1:]), dtype=y.dtype) for y in ys]
            for o, y in zip(outs, ys):
                o[sl] = y
            bar.update(step + 1, {})
        bar.finish({})
        if outs is None:
            shapes = self.output_shape if isinstance(self.output_shape, list) else [
                self.output_shape]
            outs = [np.empty((0, *s[1:]), dtype=self.dtype) for s in shapes]
        return self._unwrap(outs)

    def predict_on_batch(self, x):
        return self._unwrap(self._predict_batch(self._check_x(x, "predict_on_batch")))

    # -- saving ------------------------------------------------------------------------------
    def save(self, filepath) -> None:
        """Write architecture, weights, compile settings and optimizer state to one file
        (atomically: a failed save leaves any earlier file intact)."""
        from ..saving import save_model

        if not self._graph_model:
            raise NotImplementedError(
                f"save: model '{self.name}' is a subclassed model ({type(self).__name__}): its "
                f"architecture is Python code, which .fcm and .keras model files cannot hold; "
                f"save its weights with save_weights(...) and load them into a new "
                f"{type(self).__name__} with load_weights(...)")
        save_model(self, filepath)

    def save_weights(self, filepath) -> None:
        """Write the weights: a Keras 3 ``.weights.h5`` file, or fastconv's own format for any
        other name."""

        from ..saving import save_weights

        if self._own_weights() and os.fspath(filepath).lower().endswith((".h5", ".hdf5")):
            raise NotImplementedError(
                f"save_weights: model '{self.name}' has weights of its own (add_weight in the "
                f"model), which fastconv's Keras .weights.h5 writer does not hold; save them to "
                f"a fastconv weights file (a name not ending in .h5)")

        save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        from ..saving import load_weights

        load_weights(self, filepath)

    # -- config ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """``Model.from_config``: the functional model a functional config describes (as
        ``Functional.from_config``); a subclassed model's class: ``cls(**config)``."""
        if custom_objects is not None:
            raise NotImplementedError("from_config: custom_objects is not supported by fastconv; "
                                      "register custom layer classes with "
                                      "fastconv.layers.base.register instead")
        if not isinstance(config, dict):
            raise TypeError(f"from_config: config must be a dict, got {type(config).__name__}")
        if cls is Model:
            if {"layers", "input_layers", "output_layers"} <= set(config):
                from .functional import Functional

                return Functional.from_config(config)
            raise ValueError("Model.from_config takes a functional model's config (with "
                             "'layers', 'input_layers' and 'output_layers'); for a Sequential "
                             "model's config use Sequential.from_config")
        try:
            return cls(**config)
        except TypeError as exc:
            raise TypeError(f"{cls.__name__}.from_config: {exc}; a subclassed model whose "
                            f"__init__ takes other arguments must override get_config() and "
                            f"from_config()") from exc
