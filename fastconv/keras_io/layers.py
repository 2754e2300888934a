"""Keras layer configs <-> fastconv layers.

fastconv's layers take Keras's class names and argument names, so the mapping is mostly a
filter: Keras options that do not change inference (initializers, dtype policies, seeds) are
dropped; options fastconv does not implement must sit at their neutral value, or the layer is
refused with an error naming it. Only the classes in ``KERAS_CLASSES`` that fastconv registers
are read; nothing in a file can name code to run (``Lambda`` and custom objects are refused).
"""

from __future__ import annotations

import re

from ..saving import InvalidModelFileError

#: Keras layer classes fastconv can stand in for (read and written), when fastconv has a layer
#: of that name registered.
KERAS_CLASSES = (
    "InputLayer", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Flatten",
    "Reshape", "Dropout", "Activation",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization", "ZeroPadding2D",
    "Add", "Concatenate", "Rescaling", "LayerNormalization", "Multiply", "Subtract", "Average",
    "Maximum", "Minimum",
    "Conv2DTranspose", "UpSampling2D", "Cropping1D", "Cropping2D", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "SpatialDropout2D", "LeakyReLU",
)

#: Options dropped on reading: they do not change what the layer computes from given weights.
_DROPPED = {
    "kernel_initializer", "bias_initializer", "beta_initializer", "gamma_initializer",
    "depthwise_initializer", "pointwise_initializer",
    "moving_mean_initializer", "moving_variance_initializer", "seed", "sparse", "ragged",
    "optional", "quantization_config", "lora_rank", "lora_alpha", "renorm_momentum",
    "autocast", "input_dtype",
}

#: Options fastconv has no counterpart for: accepted only at their neutral value.
_NEUTRAL = {
    "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
    "kernel_constraint": None, "bias_constraint": None, "beta_regularizer": None,
    "depthwise_regularizer": None, "pointwise_regularizer": None,
    "depthwise_constraint": None, "pointwise_constraint": None,
    "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
    "synchronized": False, "renorm": False, "renorm_clipping": None, "noise_shape": None,
    "data_format": "channels_last",
}

_CODE_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda")


def keras_snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: how a ``.weights.h5`` file names a layer's group."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def supported_classes() -> list[str]:
    from ..layers.base import _LAYER_CLASSES

    return [name for name in KERAS_CLASSES if name in _LAYER_CLASSES]


def _unsupported_class(class_name, name, label) -> InvalidModelFileError:
    if class_name in _CODE_CLASSES:
        why = (f"layer {name!r} is a Keras {class_name} layer, which holds Python code; fastconv "
               f"never runs code from a file, so it cannot load this model")
    else:
        why = (f"layer {name!r} has Keras class {class_name!r}, which fastconv does not "
               f"support; supported layer classes: {', '.join(supported_classes())}")
    return InvalidModelFileError(f"cannot load {label!r}: {why}")


def _dtype_name(value, where: str) -> str:
    if isinstance(value, dict):  # Keras 3 DTypePolicy
        config = value.get("config")
        value = config.get("name") if isinstance(config, dict) else None
    if value is None:
        return "float32"
    if value not in ("float32", "float64"):
        raise ValueError(f"{where}: dtype policy {value!r} is not supported (fastconv computes "
                         f"in float32 or float64)")
    return value


def _activation_name(value, where: str):
    if isinstance(value, dict):  # a serialised function: {"class_name": "function", ...}
        config = value.get("config")
        if value.get("module") not in (None, "keras.activations") or not isinstance(config, str):
            raise ValueError(f"{where}: activation {value!r} is not a Keras built-in activation")
        return config
    return value


def _shape(value, where: str):
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a shape, got {value!r}")
    return tuple(value)


def fastconv_kwargs(class_name: str, config: dict, where: str) -> dict:
    """The keyword arguments of the fastconv layer standing in for Keras layer ``config``."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: its config is not a dict")
    kwargs = {}
    for key, value in config.items():
        if key in _DROPPED:
            continue
        if key in _NEUTRAL:
            if value != _NEUTRAL[key]:
                raise ValueError(f"{where}: Keras option {key}={value!r} is not supported by "
                                 f"fastconv (only {_NEUTRAL[key]!r})")
            continue
        if key == "dtype":
            kwargs["dtype"] = _dtype_name(value, where)
        elif key == "activation":
            kwargs["activation"] = _activation_name(value, where)
        elif key in ("batch_shape", "batch_input_shape"):
            kwargs["batch_input_shape"] = _shape(value, where)
        elif key == "input_shape":
            kwargs["input_shape"] = _shape(value, where)
        else:
            kwargs[key] = value
    if class_name == "LeakyReLU" and "alpha" in kwargs:  # Keras 2's name for the slope
        kwargs["negative_slope"] = kwargs.pop("alpha")
    if class_name == "InputLayer":
        kwargs.pop("batch_size", None)
        if "batch_input_shape" not in kwargs and "shape" in kwargs:
            kwargs["batch_input_shape"] = (None, *_shape(kwargs.pop("shape"), where))
        kwargs.pop("shape", None)
    return kwargs


def layer_from_keras(class_name, config, label: str):
    """A fastconv layer (unbuilt) for the Keras layer ``class_name`` with ``config``."""
    from ..layers.base import layer_class

    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(class_name, str) or class_name not in supported_classes():
        raise _unsupported_class(class_name, name, label)
    where = f"layer {name!r} ({class_name})"
    try:
        kwargs = fastconv_kwargs(class_name, config, where)
        return layer_class(class_name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidModelFileError(f"cannot load {label!r}: {where} cannot be rebuilt: "
                                    f"{exc}") from None


# -- writing ------------------------------------------------------------------------------------

#: fastconv config keys Keras does not know (fastconv-only extras).
_FASTCONV_ONLY = {"batch_input_shape", "input_shape"}


def keras_layer_config(layer) -> dict:
    """The ``config`` Keras's ``from_config`` rebuilds ``layer`` from."""
    class_name = type(layer).__name__
    if class_name not in supported_classes():
        raise ValueError(f"cannot save layer '{layer.name}' ({class_name}) in a Keras file: Keras "
                         f"has no such layer; layers Keras files can hold: "
                         f"{', '.join(supported_classes())} (save to a .fcm file instead)")
    config = {k: v for k, v in layer.get_config().items() if k not in _FASTCONV_ONLY}
    if class_name == "InputLayer":
        config = {"batch_shape": list(layer.batch_input_shape), "dtype": layer.dtype,
                  "name": layer.name}
    for key, value in list(config.items()):
        if isinstance(value, tuple):
            config[key] = list(value)
    return config
