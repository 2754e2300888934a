"""``clone_model``: the same architecture with new layers (and so new weights), as
``keras.models.clone_model``.

Each layer is cloned by ``clone_function`` (by default ``layer.__class__.from_config(
layer.get_config())``: the same configuration, names included, and freshly initialised
weights); a layer shared by several calls is cloned once. A functional model's graph is called
again, node by node, on new ``Input`` tensors (or on ``input_tensors``); a Sequential model is
rebuilt from its cloned layers. A compiled model's clone is compiled with the same settings
(a new optimizer, without its state).
"""

from __future__ import annotations

from ..layers.base import Input, KerasTensor
from .functional import Functional
from .model import Model
from .sequential import Sequential


def _default_clone(layer):
    return layer.__class__.from_config(layer.get_config())


def clone_model(model, input_tensors=None, clone_function=None, call_function=None,
                recursive: bool = False, **kwargs):
    """A copy of ``model`` (Sequential or functional) with new layers and new weights.

    ``clone_function(layer)`` makes each new layer; ``recursive=True`` clones nested
    Sequential and functional models layer by layer with it (otherwise a nested model is one
    layer to ``clone_function``). ``input_tensors``: symbolic tensors to build the clone on
    (one per input; for a Sequential model, an ``Input(...)`` tensor). ``call_function`` is not
    supported."""
    cache = kwargs.pop("cache", None)
    if kwargs:
        raise ValueError(f"clone_model: unexpected keyword argument(s): {tuple(kwargs)}")
    if call_function is not None:
        raise NotImplementedError("clone_model: call_function is not supported by fastconv")
    if clone_function is not None and not callable(clone_function):
        raise ValueError(f"clone_model: clone_function must be a callable, got "
                         f"{clone_function!r}")
    if not isinstance(model, (Sequential, Functional)):
        if isinstance(model, Model):
            raise ValueError(f"clone_model: model '{model.name}' is a subclassed model "
                             f"({type(model).__name__}); only Sequential and functional models "
                             f"can be cloned")
        raise TypeError(f"clone_model: expected a Sequential or functional model, got "
                        f"{type(model).__name__}")
    clone = _cloner(clone_function or _default_clone, recursive, {} if cache is None else cache)
    if isinstance(model, Sequential):
        new = _clone_sequential(model, clone, input_tensors)
    else:
        new = _clone_functional(model, clone, input_tensors)
    if model.compiled:
        from ..losses import serialize as serialize_loss
        from ..optimizers import serialize as serialize_optimizer

        new.compile(**model.compile_config(serialize_optimizer, serialize_loss))
    return new


def _cloner(clone_function, recursive: bool, cache: dict):
    """``clone_function`` once per layer (a shared layer's clone is shared too)."""

    def clone(layer):
        if id(layer) not in cache:
            if recursive and isinstance(layer, (Sequential, Functional)):
                cache[id(layer)] = clone_model(layer, clone_function=clone_function,
                                               recursive=True, cache=cache)
            else:
                cache[id(layer)] = clone_function(layer)
        return cache[id(layer)]

    return clone


def _clone_sequential(model: Sequential, clone, input_tensors) -> Sequential:
    layers = [clone(layer) for layer in model.layers]
    if input_tensors is not None:
        if isinstance(input_tensors, (list, tuple)):
            if len(input_tensors) != 1:
                raise ValueError("clone_model: input_tensors must hold a single tensor for a "
                                 "Sequential model")
            input_tensors = input_tensors[0]
        if not isinstance(input_tensors, KerasTensor):
            raise ValueError(f"clone_model: input_tensors must be a KerasTensor, got "
                             f"{type(input_tensors).__name__}")
        layers.insert(0, input_tensors)
    elif model._input_layer is not None:
        source = model._input_layer
        layers.insert(0, Input(source.batch_input_shape[1:], batch_size=source.batch_input_shape[0],
                               name=source.name, dtype=source.dtype))
    return Sequential(layers, name=model.name, trainable=model.trainable)


def _clone_functional(model: Functional, clone, input_tensors) -> Functional:
    if input_tensors is None:
        new_inputs = [Input(t.shape[1:], batch_size=t.shape[0], name=t._keras_history.layer.name,
                            dtype=t.dtype) for t in model.inputs]
    else:
        new_inputs = list(input_tensors) if isinstance(input_tensors, (list, tuple)) else [
            input_tensors]
        if len(new_inputs) != len(model.inputs) or not all(
                isinstance(t, KerasTensor) for t in new_inputs):
            raise ValueError(f"clone_model: input_tensors must be {len(model.inputs)} "
                             f"KerasTensor(s), one per input of model '{model.name}'")
    values = {id(old): new for old, new in zip(model.inputs, new_inputs)}
    for node in model.graph_nodes:
        args = [values[id(t)] for t in node.input_tensors]
        out = clone(node.layer)(args if node.multi else args[0])
        for old, new in zip(node.outputs, out if isinstance(out, list) else [out]):
            values[id(old)] = new
    outputs = [values[id(t)] for t in model.outputs]
    return Functional(new_inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name,
                      trainable=model.trainable)
