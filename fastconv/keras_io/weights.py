"""Reading and writing Keras weights: the Keras 3 layout and the legacy HDF5 layout.

* Keras 3 (``.weights.h5``, and ``model.weights.h5`` inside a ``.keras`` archive):
  ``layers/<group>/vars/<i>``, one group per layer, named by Keras after the layer's class
  (``conv2d``, ``conv2d_1`` ...) in the model's layer order; Keras 3.x also writes the layer's
  own name as the ``name`` attribute of ``vars``. A nested model's group holds ``layers/`` again.
* Legacy (Keras 2 ``save_weights`` and the files keras.applications downloads, also the
  ``model_weights`` group of a legacy ``.h5`` model): a ``layer_names`` attribute, and per layer
  group a ``weight_names`` attribute giving the datasets in the layer's weight order.

The readers work on an ``H5Reader`` (``fastconv.io.hdf5.HDF5File``): the file already parsed and
validated, in memory. Every array is checked against the layer before any weight is assigned, so a
file that does not fit leaves the model as it was.
"""

from __future__ import annotations

import numpy as np

from ..saving import InvalidModelFileError
from ._h5 import H5Reader, require_h5py
from .graph import keras_layer_order
from .layers import keras_snake_case


def _keras_class(layer) -> str:
    name = type(layer).__name__
    return "Functional" if name == "Model" else name


def model_layers(model, inputs: bool = False) -> list:
    """The model's layers in Keras's order, without its InputLayers unless ``inputs``."""
    return [layer for layer in keras_layer_order(model)
            if inputs or type(layer).__name__ != "InputLayer"]


def _is_container(layer) -> bool:
    return hasattr(layer, "layers") and not isinstance(layer, type)


def assign(pairs, label: str) -> None:
    """``pairs``: (layer, [arrays]) for each layer with weights. Check every shape, then assign."""
    for layer, arrays in pairs:
        variables = layer.weights
        where = f"layer '{layer.name}' ({type(layer).__name__})"
        if len(arrays) != len(variables):
            raise InvalidModelFileError(
                f"cannot load {label!r} into {where}: the file holds {len(arrays)} weight arrays "
                f"for it, the layer has {len(variables)} "
                f"({', '.join(v.name for v in variables) or 'none'})")
        for var, value in zip(variables, arrays):
            if tuple(value.shape) != tuple(var.shape):
                raise InvalidModelFileError(
                    f"cannot load {label!r}: {where} weight '{var.name}' expects shape "
                    f"{tuple(var.shape)}, the file has shape {tuple(value.shape)}")
    for layer, arrays in pairs:
        for var, value in zip(layer.weights, arrays):
            var.assign(np.asarray(value, dtype=var.dtype))


# -- Keras 3 layout -----------------------------------------------------------------------------

def _keras3_pairs(reader: H5Reader, group, model, path: str) -> list:
    """(layer, arrays) for every layer of ``model`` with weights, from ``group`` (holding
    ``layers/``)."""
    layers_group = reader.group("layers", group)
    if layers_group is None:
        raise reader.error(f"it has no {path}layers group: not a Keras 3 weights file")
    by_name, by_path = {}, {}
    for key in layers_group:
        sub = reader.group(key, layers_group)
        if sub is None:
            continue
        by_path[key] = sub
        vars_group = reader.group("vars", sub)
        if vars_group is not None:
            name = reader.attr(vars_group, "name")
            if isinstance(name, str):
                by_name[name] = sub
    counters: dict[str, int] = {}
    pairs = []
    for layer in model_layers(model):
        base = keras_snake_case(_keras_class(layer))
        count = counters.get(base, 0)
        counters[base] = count + 1
        key = base if count == 0 else f"{base}_{count}"
        if not layer.weights:
            continue
        sub = by_name.get(layer.name, by_path.get(key))
        if sub is None:
            raise reader.error(f"it holds no weights for layer '{layer.name}' "
                               f"({type(layer).__name__}); looked for a group named after it or "
                               f"{path}layers/{key}")
        if _is_container(layer):
            pairs += _keras3_pairs(reader, sub, layer, f"{path}layers/{key}/")
            continue
        vars_group = reader.group("vars", sub)
        arrays = []
        if vars_group is not None:
            count_vars = len([k for k in vars_group if k.isdigit()])
            arrays = [reader.array(vars_group, str(i)) for i in range(count_vars)]
        pairs.append((layer, arrays))
    return pairs


def load_keras3(model, reader: H5Reader) -> None:
    assign(_keras3_pairs(reader, reader.file, model, ""), reader.label)


# -- legacy layout ------------------------------------------------------------------------------

def _flat_layers(model) -> list:
    return [layer for layer in model_layers(model) if layer.weights]


def legacy_pairs(reader: H5Reader, group, model) -> list:
    layer_names = reader.names_attr(group, "layer_names")
    if layer_names is None:
        raise reader.error("it has no 'layer_names' attribute: not a Keras weights file")
    stored = []
    for name in layer_names:
        sub = reader.group(name, group)
        if sub is None:
            raise reader.error(f"layer_names lists {name!r}, but the file has no such group")
        weight_names = reader.names_attr(sub, "weight_names")
        if weight_names is None:
            raise reader.error(f"layer group {name!r} has no 'weight_names' attribute")
        if weight_names:
            stored.append((name, sub, weight_names))
    layers = _flat_layers(model)
    if len(stored) != len(layers):
        raise reader.error(
            f"it holds weights for {len(stored)} layers ({', '.join(s[0] for s in stored)}), but "
            f"model '{model.name}' has {len(layers)} layers with weights "
            f"({', '.join(layer.name for layer in layers)})")
    # Keras matches layers by position; when every name matches, match by name instead, so that
    # a model whose layers were listed in another (equally valid) order still loads.
    names = {layer.name: layer for layer in layers}
    if {s[0] for s in stored} == set(names):
        order = [names[s[0]] for s in stored]
    else:
        order = layers
    return [(layer, [reader.array(sub, w) for w in weight_names])
            for layer, (_, sub, weight_names) in zip(order, stored)]


def load_legacy(model, reader: H5Reader, root: str = "") -> None:
    group = reader.group(root) if root else reader.file
    if group is None:
        raise reader.error(f"it has no {root!r} group")
    assign(legacy_pairs(reader, group, model), reader.label)


def h5_layout(reader: H5Reader) -> str:
    """'keras3-weights', 'legacy-weights' or 'legacy-model' for an HDF5 file."""
    root = reader.file
    if "model_config" in root.attrs:
        return "legacy-model"
    if "layer_names" in root.attrs:
        return "legacy-weights"
    if reader.group("layers") is not None:
        return "keras3-weights"
    raise reader.error("it is an HDF5 file, but neither a Keras model nor a Keras weights file")


# -- writing ------------------------------------------------------------------------------------

def _write_layers(h5group, model, include_inputs: bool) -> None:
    layers_group = h5group.create_group("layers")
    counters: dict[str, int] = {}
    for layer in model_layers(model, inputs=include_inputs):
        base = keras_snake_case(_keras_class(layer))
        count = counters.get(base, 0)
        counters[base] = count + 1
        sub = layers_group.create_group(base if count == 0 else f"{base}_{count}")
        if _is_container(layer):
            _write_layers(sub, layer, include_inputs=type(layer).__name__ != "Sequential")
            sub.create_group("vars").attrs["name"] = layer.name
            continue
        vars_group = sub.create_group("vars")
        vars_group.attrs["name"] = layer.name
        for i, var in enumerate(layer.weights):
            vars_group.create_dataset(str(i), data=var.numpy())


def write_keras3(model, fh) -> None:
    """Write ``model``'s weights in the Keras 3 layout to the binary file object ``fh``."""
    h5py = require_h5py()
    with h5py.File(fh, "w") as f:
        _write_layers(f, model, include_inputs=type(model).__name__ != "Sequential")
        f.create_group("vars").attrs["name"] = model.name
