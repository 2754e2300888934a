"""Sequential: a linear stack of layers.

Once its input shape is known (an ``Input`` first, ``input_shape=`` on the first layer, or the
first data) a Sequential model also calls its layers on symbolic tensors, as Keras 3 does: an
input tensor (``model.input``; an ``InputLayer`` is made when the model has none), then each
layer's output. So ``model.output``, ``layer.output`` and
``Model(model.input, model.get_layer(name).output)`` work as for a functional model."""

from __future__ import annotations

from ..layers.base import InputLayer, KerasTensor, Layer, layer_class, register, unique_name
from ..tensor import Tensor
from .model import Model


@register
class Sequential(Model):
    """``Sequential([Conv2D(...), ...])`` or ``model.add(layer)``; the first layer may carry
    ``input_shape=`` or be an ``Input(shape)``. Models are layers too:
    ``Sequential([base_model, Flatten(), Dense(10)])``."""

    _graph_model = True

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        super().__init__(name=name or unique_name("sequential"), trainable=trainable)
        self._layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self._batch_input_shape = None
        #: the symbolic input, then each layer's symbolic output (as far as they are known)
        self._graph: list[KerasTensor] = []
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def dtype(self) -> str:
        if self._input_layer is not None:
            return self._input_layer.dtype
        return self._layers[0].dtype if self._layers else "float32"

    def add(self, layer) -> None:
        if isinstance(layer, KerasTensor):
            source = layer._keras_history.layer
            if not isinstance(source, InputLayer):
                raise TypeError(f"Sequential.add takes layers and Input(...) tensors; got the "
                                f"output of layer '{source.name}'")
            layer = source
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastconv layer, got "
                            f"{type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("Sequential: an Input must come first, before any layer")
            self._input_layer = layer
            self._batch_input_shape = layer.batch_input_shape
            return
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"Sequential: a layer named '{layer.name}' is already in the model; "
                             f"layer names must be unique")
        if not self._layers and layer.batch_input_shape is not None:
            if self._batch_input_shape is None:
                self._batch_input_shape = layer.batch_input_shape
        self._layers.append(layer)
        self._forget_plans()
        if self._batch_input_shape is not None:
            # Shapes are known: build now, so that a misfit layer fails where it is added.
            try:
                self.build(self._batch_input_shape)
            except (ValueError, TypeError):
                self._layers.pop()
                del self._graph[len(self._layers) + 1:]
                raise

    def pop(self) -> Layer:
        if not self._layers:
            raise IndexError("Sequential.pop: the model has no layers")
        self._forget_plans()
        layer = self._layers.pop()
        del self._graph[len(self._layers) + 1:]
        return layer

    @property
    def input_shape(self):
        if self._batch_input_shape is not None:
            return (None, *self._batch_input_shape[1:])
        if self._layers and self._layers[0].built:
            return self._layers[0].input_shape
        return None

    @property
    def output_shape(self):
        if not self._layers or not self._layers[-1].built:
            return None
        return self._layers[-1].output_shape

    @property
    def built(self) -> bool:
        return bool(self._layers) and all(layer.built for layer in self._layers)

    @property
    def input_names(self) -> list[str]:
        if self._input_layer is not None:
            return [self._input_layer.name]
        return [self._layers[0].name] if self._layers else ["input_layer"]

    def _prepare_inputs(self, shapes: list) -> None:
        if len(shapes) != 1:
            return
        expected = self.input_shape
        if not self.built or expected is None or tuple(expected[1:]) != tuple(shapes[0][1:]):
            self.build(shapes[0])

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` (full shape, batch axis None)."""
        if input_shape is None:
            input_shape = self.input_shape
        if input_shape is None:
            raise ValueError(f"model '{self.name}' does not know its input shape: give the first "
                             f"layer input_shape=..., start with Input(shape), or call fit/predict")
        if not self._layers:
            raise ValueError(f"model '{self.name}' has no layers")
        shape = (None, *tuple(input_shape)[1:])
        if self._batch_input_shape is None and not self._layers[0].built:
            self._batch_input_shape = shape
        for layer in self._layers:
            shape = layer.ensure_built(shape)
        self._extend_graph((None, *tuple(input_shape)[1:]))

    def _extend_graph(self, shape: tuple) -> None:
        """Call the layers not yet in the symbolic graph on the last symbolic tensor (first
        making the input tensor, for inputs of ``shape``)."""
        if not self._graph:
            source = self._input_layer or InputLayer(batch_input_shape=shape, dtype=self.dtype)
            self._graph.append(source.output)
        if tuple(self._graph[0].shape[1:]) != tuple(shape[1:]):
            return  # built again for other inputs: the graph keeps its first input shape
        for layer in self._layers[len(self._graph) - 1:]:
            self._graph.append(layer(self._graph[-1]))

    def _graph_tensor(self, index: int, what: str):
        if len(self._graph) != len(self._layers) + 1 or not self._layers:
            raise AttributeError(f"Sequential model '{self.name}' has no defined {what} yet.")
        return self._graph[index]

    @property
    def input(self):
        """The symbolic input tensor (once the input shape is known)."""
        return self._graph_tensor(0, "input")

    @property
    def output(self):
        """The symbolic output tensor (once the input shape is known)."""
        return self._graph_tensor(-1, "output")

    @property
    def inputs(self) -> list:
        return [self._graph_tensor(0, "inputs")]

    @property
    def outputs(self) -> list:
        return [self._graph_tensor(-1, "outputs")]

    def call(self, x, training: bool = False) -> Tensor:
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    # -- config ------------------------------------------------------------------------------
    def get_config(self) -> dict:
        layers = []
        if self._batch_input_shape is not None:
            layers.append({"class_name": "InputLayer", "config": {
                "batch_input_shape": list(self._batch_input_shape), "dtype": self.dtype,
                "name": self._input_layer.name if self._input_layer else "input_layer"}})
        for layer in self._layers:
            layers.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        config = {"name": self.name, "layers": layers}
        if not self.trainable:
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        model = cls(name=config["name"])
        for entry in config["layers"]:
            layer_cls = layer_class(entry["class_name"])
            model.add(layer_cls.from_config(entry["config"]))
        model._trainable = bool(config.get("trainable", True))
        return model

