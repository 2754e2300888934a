"""Keras model configs (Sequential and Functional) <-> fastconv models.

Reading follows the JSON only: each layer entry becomes a fastconv layer through the allow-list
in ``layers.py``; a Functional entry's ``inbound_nodes`` name the tensors (layer, node index,
tensor index) it is called on, in Keras 3's form (``{"args": [...], "kwargs": {...}}``) or
Keras 2's (``[[name, node, tensor, kwargs], ...]``).
"""

from __future__ import annotations

from ..saving import InvalidModelFileError
from .layers import keras_layer_config, layer_from_keras

_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _error(label: str, why: str) -> InvalidModelFileError:
    return InvalidModelFileError(f"cannot load {label!r}: {why}")


class _Budget:
    """The weights a config may make fastconv allocate, bounded by the weights it comes with:
    each layer is charged its parameter count before it is built, and a config asking for more
    than the file can hold (at 2 bytes a value, float16) is refused before anything is
    allocated."""

    def __init__(self, max_params: int | None, label: str):
        self.left = max_params
        self.label = label

    def charge(self, layer, input_shape) -> None:
        if self.left is None:
            return
        count = _param_count(layer, input_shape)
        self.left -= count
        if self.left < 0:
            raise _error(self.label, f"layer '{layer.name}' ({type(layer).__name__}) would hold "
                                     f"{count:,} weights, more than the file's weights can "
                                     f"fill: the file is corrupted or not what it claims")


def _param_count(layer, input_shape) -> int:
    """An upper bound of the weights ``layer`` makes for ``input_shape`` (Keras's formulas)."""
    cls = type(layer).__name__
    if not isinstance(input_shape, tuple) or not input_shape:
        return 0
    channels = input_shape[-1] or 0
    taps = 1
    for k in getattr(layer, "kernel_size", ()):
        taps *= k
    if cls in ("Conv1D", "Conv2D", "Conv2DTranspose"):
        return (taps * channels + 1) * layer.filters
    if cls == "DepthwiseConv2D":
        return (taps + 1) * channels * layer.depth_multiplier
    if cls == "SeparableConv2D":
        return (taps + layer.filters) * channels * layer.depth_multiplier + layer.filters
    if cls == "Dense":
        return (channels + 1) * layer.units
    if cls == "BatchNormalization":
        return 4 * channels
    if cls == "LayerNormalization":
        axes = (layer.axis,) if isinstance(layer.axis, int) else tuple(layer.axis)
        size = 1
        for a in axes:
            size *= (input_shape[a] or 0) if -len(input_shape) <= a < len(input_shape) else 0
        return 2 * size
    return 0


def model_from_keras_config(spec: dict, label: str = "<config>", max_params: int | None = None):
    """A fastconv model for the Keras model description ``spec`` (``{"class_name": ...,
    "config": ...}``, as in ``config.json`` or an ``.h5`` file's ``model_config``).
    ``max_params``: refuse (InvalidModelFileError) a model with more weights than that, before
    allocating them."""
    try:
        return _model(spec, label, _Budget(max_params, label))
    except InvalidModelFileError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise _error(label, f"its model config is malformed ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None


def _model(spec, label, budget):
    if not isinstance(spec, dict):
        raise _error(label, "its model description is not a JSON object")
    class_name, config = spec.get("class_name"), spec.get("config")
    if class_name not in _MODEL_CLASSES:
        raise _error(label, f"the model class {class_name!r} is not supported (fastconv reads "
                            f"{', '.join(_MODEL_CLASSES[:2])} models)")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise _error(label, "its model config lists no layers")
    model = (_sequential if class_name == "Sequential" else _functional)(config, label, budget)
    if config.get("trainable") is False:  # a frozen (nested) model
        model.trainable = False
    return model


def _layer(entry, label, budget):
    if not isinstance(entry, dict):
        raise _error(label, f"a layer entry is not a JSON object: {str(entry)[:80]!r}")
    class_name = entry.get("class_name")
    if class_name in _MODEL_CLASSES:
        return _model(entry, label, budget)
    return layer_from_keras(class_name, entry.get("config"), label)


def _sequential(config, label, budget):
    from ..models import Sequential

    name = config.get("name")
    model = Sequential(name=name if isinstance(name, str) and name else None)
    layers = [_layer(entry, label, budget) for entry in config["layers"]]
    build_shape = config.get("build_input_shape")
    shape = None
    if layers and getattr(layers[0], "batch_input_shape", None) is not None:
        shape = tuple(layers[0].batch_input_shape)
    elif isinstance(build_shape, list):
        shape = tuple(build_shape)
    for layer in layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if shape is not None and type(layer).__name__ not in _MODEL_CLASSES:
            budget.charge(layer, shape)
            try:
                shape = tuple(layer.compute_output_shape((None, *shape[1:])))
            except (TypeError, ValueError) as exc:
                raise _error(label, f"layer '{layer.name}' does not fit the model: "
                                    f"{exc}") from None
        elif shape is not None:
            shape = tuple(layer.output_shape)
    for layer in layers:
        try:
            model.add(layer)
        except (TypeError, ValueError) as exc:
            raise _error(label, f"layer '{layer.name}' does not fit the model: {exc}") from None
    if not model.built and isinstance(build_shape, list):
        try:
            model.build(tuple(build_shape))
        except (TypeError, ValueError) as exc:
            raise _error(label, f"the model cannot be built for {build_shape}: {exc}") from None
    return model


# -- Functional ---------------------------------------------------------------------------------

def _history(obj, label):
    """(layer name, node index, tensor index) of one serialised tensor reference."""
    history = obj
    if isinstance(obj, dict):
        config = obj.get("config")
        history = config.get("keras_history") if isinstance(config, dict) else None
    if (not isinstance(history, (list, tuple)) or len(history) < 3
            or not isinstance(history[0], str)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                       for i in history[1:3])):
        raise _error(label, f"malformed tensor reference {str(obj)[:80]!r}")
    return history[0], history[1], history[2]


def _node_inputs(node, label):
    """The inputs of one inbound node: a reference, or a list of references."""
    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args"), node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise _error(label, f"malformed inbound node {str(node)[:80]!r}")
        for key, value in kwargs.items():
            if value is not None and key != "training":
                raise _error(label, f"call argument {key}={str(value)[:40]!r} is not supported")
        if len(args) != 1:
            raise _error(label, f"a layer call with {len(args)} positional arguments is not "
                                f"supported")
        arg = args[0]
        if isinstance(arg, list):
            return [_history(a, label) for a in arg]
        return _history(arg, label)
    if isinstance(node, list) and node:  # Keras 2: [[name, node, tensor, kwargs], ...]
        refs = [_history(ref, label) for ref in node]
        return refs[0] if len(refs) == 1 else refs
    raise _error(label, f"malformed inbound node {str(node)[:80]!r}")


def _refs(value, label):
    """``input_layers`` / ``output_layers``: one reference or a list of them."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_history(value, label)]
    if isinstance(value, list):
        return [_history(v, label) for v in value]
    raise _error(label, f"malformed model inputs or outputs {str(value)[:80]!r}")


def _functional(config, label, budget):
    from ..models import Model

    tensors: dict[tuple, object] = {}
    pending = []
    for entry in config["layers"]:
        if not isinstance(entry, dict):
            raise _error(label, "a layer entry is not a JSON object")
        if entry.get("class_name") == "InputLayer":
            layer = _layer(entry, label, budget)
            tensors[(layer.name, 0, 0)] = layer.output
            continue
        nodes = entry.get("inbound_nodes")
        if not isinstance(nodes, list):
            raise _error(label, f"layer {entry.get('name')!r} has no inbound_nodes")
        pending.append((_layer(entry, label, budget), [_node_inputs(n, label) for n in nodes]))
    # Layers are listed in call order as a rule; shared layers may need a few passes.
    while pending:
        progress, rest = False, []
        for layer, nodes in pending:
            done = 0
            for index, refs in enumerate(nodes):
                key = (layer.name, index, 0)
                if key in tensors:
                    done += 1
                    continue
                flat = refs if isinstance(refs, list) else [refs]
                if not all(r in tensors for r in flat):
                    break
                args = ([tensors[r] for r in refs] if isinstance(refs, list)
                        else tensors[refs])
                if not isinstance(refs, list) and type(layer).__name__ not in _MODEL_CLASSES:
                    budget.charge(layer, tuple(args.shape))
                try:
                    tensors[key] = layer(args)
                except (TypeError, ValueError) as exc:
                    raise _error(label, f"layer '{layer.name}' cannot be applied to its "
                                        f"inputs: {exc}") from None
                done += 1
                progress = True
            if done < len(nodes):
                rest.append((layer, nodes))
        if not progress:
            missing = ", ".join(layer.name for layer, _ in rest)
            raise _error(label, f"the inputs of layer(s) {missing} are never produced")
        pending = rest
    inputs = [_lookup(tensors, r, label) for r in _refs(config.get("input_layers"), label)]
    outputs = [_lookup(tensors, r, label) for r in _refs(config.get("output_layers"), label)]
    name = config.get("name")
    try:
        return Model(inputs=inputs[0] if len(inputs) == 1 else inputs,
                     outputs=outputs[0] if len(outputs) == 1 else outputs,
                     name=name if isinstance(name, str) and name else None)
    except (TypeError, ValueError) as exc:
        raise _error(label, f"the model cannot be assembled: {exc}") from None


def _lookup(tensors, ref, label):
    try:
        return tensors[ref]
    except KeyError:
        raise _error(label, f"the model refers to tensor {list(ref)}, which no layer "
                            f"produces") from None


# -- writing ------------------------------------------------------------------------------------

def _entry(layer, module="keras.layers") -> dict:
    entry = {"module": module, "class_name": type(layer).__name__,
             "config": keras_layer_config(layer), "registered_name": None}
    if layer.built and layer.input_shape is not None and type(layer).__name__ != "InputLayer":
        entry["build_config"] = {"input_shape": _list_shape(layer.input_shape)}
    return entry


def _list_shape(shape):
    if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
        return [list(s) for s in shape]
    return list(shape)


def keras_model_config(model) -> dict:
    """The ``config.json`` Keras 3 rebuilds ``model`` from."""
    if type(model).__name__ == "Sequential":
        return _sequential_config(model)
    return _functional_config(model)


def _sequential_config(model) -> dict:
    shape = model.input_shape
    input_layer = getattr(model, "_input_layer", None)
    layers = [{"module": "keras.layers", "class_name": "InputLayer",
               "config": {"batch_shape": list(shape), "dtype": model.dtype,
                          "name": input_layer.name if input_layer is not None
                          else "input_layer"},
               "registered_name": None}]
    for layer in model.layers:
        if type(layer).__name__ in _MODEL_CLASSES:
            layers.append(keras_model_config(layer))
        else:
            layers.append(_entry(layer))
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": model.name, "trainable": _trainable(model), "dtype": model.dtype,
                       "layers": layers, "build_input_shape": list(shape)},
            "registered_name": None, "build_config": {"input_shape": list(shape)}}


def _functional_config(model) -> dict:
    """Functional models: every layer with the tensors it was called on."""
    nodes = model_graph(model)
    layers = []
    for layer, calls in nodes:
        if type(layer).__name__ in _MODEL_CLASSES:
            entry = keras_model_config(layer)
            entry["name"] = layer.name
        else:
            entry = _entry(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [_keras_node(call) for call in calls]
        layers.append(entry)
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": model.name, "trainable": _trainable(model), "layers": layers,
                       "input_layers": _refs_config(graph_inputs(model)),
                       "output_layers": _refs_config(graph_outputs(model))},
            "registered_name": "Functional", "build_config": {"input_shape": None}}


def _ref(ref):
    return [ref[0], ref[1], ref[2]]


def _refs_config(refs):
    """Keras writes one input or output as a flat reference: a list of them makes the model
    return a list."""
    return _ref(refs[0]) if len(refs) == 1 else [_ref(r) for r in refs]


def _trainable(model) -> bool:
    return bool(getattr(model, "trainable", True))


def _keras_tensor(ref, shape):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(shape), "dtype": "float32", "keras_history": _ref(ref)}}


def _keras_node(call):
    refs, shapes = call
    if isinstance(refs, list):
        arg = [_keras_tensor(r, s) for r, s in zip(refs, shapes)]
    else:
        arg = _keras_tensor(refs, shapes)
    return {"args": [arg], "kwargs": {}}


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _model_nodes(model) -> list:
    """The nodes of ``model``'s graph, inputs first: Keras's depth-first walk from each output
    (``keras.src.ops.function._build_map``)."""
    order, finished = [], set()

    def walk(node):
        if id(node) in finished:
            return
        for parent in node.parent_nodes:
            walk(parent)
        finished.add(id(node))
        order.append(node)

    for tensor in _as_list(model.outputs):
        walk(_node_of(tensor))
    return order


def keras_layer_order(model) -> list:
    """The layers of a model in the order Keras lists them (``model.layers``): a functional
    model's ``layers`` already follow Keras's order (by decreasing depth, ties in depth-first
    visiting order). A ``.weights.h5`` file names its groups after this order, so fastconv
    writes and reads in it."""
    return list(model.layers)


def _node_of(tensor):
    history = tensor._keras_history
    return history.layer._inbound_nodes[history.node_index]


def model_graph(model):
    """[(layer, [(refs, shapes) per call])] for a functional fastconv model, in the order Keras
    lists layers; node indices count only this model's calls of each layer."""
    nodes = _model_nodes(model)
    index: dict[int, int] = {}
    calls: dict[int, list] = {}
    for node in nodes:
        layer = node.layer
        calls.setdefault(id(layer), [])
        index[id(node)] = len(calls[id(layer)])
        if node.is_input:
            continue
        refs = [_tensor_ref(t, index) for t in node.input_tensors]
        shapes = [t.shape for t in node.input_tensors]
        if node.multi:
            calls[id(layer)].append((refs, shapes))
        else:
            calls[id(layer)].append((refs[0], shapes[0]))
    return [(layer, calls[id(layer)]) for layer in keras_layer_order(model)]


def _tensor_ref(tensor, index):
    history = tensor._keras_history
    return (history.layer.name, index[id(_node_of(tensor))], history.tensor_index)


def graph_inputs(model):
    inputs = _as_list(model.inputs)
    return [(t._keras_history.layer.name, 0, t._keras_history.tensor_index) for t in inputs]


def graph_outputs(model):
    nodes = _model_nodes(model)
    index: dict[int, int] = {}
    counts: dict[int, int] = {}
    for node in nodes:
        index[id(node)] = counts.get(id(node.layer), 0)
        counts[id(node.layer)] = index[id(node)] + 1
    outputs = _as_list(model.outputs)
    return [_tensor_ref(t, index) for t in outputs]
