"""Keras compile settings <-> fastconv's ``compile``: optimizer (SGD, Adam, AdamW, Nadam,
Adagrad, RMSprop with their Keras arguments, weight decay, gradient clipping and the
learning-rate schedules of ``fastconv.optimizers.schedules``), loss and metrics (by Keras name,
or as Keras metric objects with their configs).

Settings fastconv cannot honour (another optimizer or schedule, EMA, loss scaling, gradient
accumulation, a custom loss or metric, a loss option such as another reduction) leave a loaded
model uncompiled, as Keras does when it cannot compile; ``load_model`` then logs why and the
caller compiles it. Optimizer state (Adam's moments) is neither read nor written: training
resumes with fresh moments.
"""

from __future__ import annotations

import logging
import numbers

from ..layers.base import snake_case

log = logging.getLogger("fastconv.keras_io")

_COMMON_ARGS = ("learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue")
#: fastconv optimizer name -> the Keras arguments it takes
_OPTIMIZER_ARGS = {
    "adam": (*_COMMON_ARGS, "beta_1", "beta_2", "epsilon", "amsgrad"),
    "adamw": (*_COMMON_ARGS, "beta_1", "beta_2", "epsilon", "amsgrad"),
    "nadam": (*_COMMON_ARGS, "beta_1", "beta_2", "epsilon"),
    "adagrad": (*_COMMON_ARGS, "initial_accumulator_value", "epsilon"),
    "sgd": (*_COMMON_ARGS, "momentum", "nesterov"),
    "rmsprop": (*_COMMON_ARGS, "rho", "momentum", "epsilon", "centered"),
}
#: Keras's class name of each fastconv optimizer
_OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "nadam": "Nadam", "adagrad": "Adagrad",
                      "sgd": "SGD", "rmsprop": "RMSprop"}
#: Keras optimizer options fastconv has no counterpart for, with their neutral value (the EMA's
#: momentum and overwrite frequency do nothing without use_ema)
_OPTIMIZER_NEUTRAL = {"use_ema": False, "loss_scale_factor": None,
                      "gradient_accumulation_steps": None, "decay": 0.0}
_OPTIMIZER_INERT = ("name", "ema_momentum", "ema_overwrite_frequency")
#: Keras loss options and the values fastconv implements (for every loss)
_LOSS_NEUTRAL = {"reduction": ("sum_over_batch_size", None), "axis": (-1, None),
                 "label_smoothing": (0, 0.0, None), "ignore_class": (None,)}


class NotCompilable(ValueError):
    """The file's compile settings have no fastconv equivalent."""


def _optimizer(spec):
    from .. import optimizers

    if isinstance(spec, str):
        name, config = spec.lower(), {}
    elif isinstance(spec, dict):
        name, config = str(spec.get("class_name", "")).lower(), spec.get("config") or {}
    else:
        raise NotCompilable(f"optimizer {str(spec)[:60]!r} is not a Keras optimizer")
    if name not in _OPTIMIZER_ARGS or not isinstance(config, dict):
        raise NotCompilable(f"optimizer {name!r} is not supported (fastconv has "
                            f"{', '.join(_OPTIMIZER_ARGS)})")
    kwargs = {}
    for key, value in config.items():
        key = "learning_rate" if key == "lr" else key  # Keras 2's name
        if key == "learning_rate" and isinstance(value, dict):
            try:
                kwargs[key] = optimizers.schedules.deserialize(value)
            except (TypeError, ValueError) as exc:
                raise NotCompilable(f"learning_rate: {exc}") from None
        elif key in _OPTIMIZER_ARGS[name]:
            if value is not None and not isinstance(value, (numbers.Real, bool)):
                raise NotCompilable(f"optimizer option {key}={str(value)[:60]!r} is not "
                                    f"supported")
            kwargs[key] = value
        elif key in _OPTIMIZER_NEUTRAL:
            if value not in (_OPTIMIZER_NEUTRAL[key], None):
                raise NotCompilable(f"optimizer option {key}={value!r} is not supported")
        elif key not in _OPTIMIZER_INERT:
            raise NotCompilable(f"optimizer option {key}={str(value)[:60]!r} is not supported")
    try:
        return optimizers.get({"name": name, "config": kwargs})
    except (TypeError, ValueError) as exc:
        raise NotCompilable(str(exc)) from None


def _loss(spec):
    from .. import losses

    if isinstance(spec, dict):  # {"class_name": "CategoricalCrossentropy", "config": {...}}
        name = snake_case(str(spec.get("class_name", "")))
        config = spec.get("config") or {}
        if not isinstance(config, dict):
            raise NotCompilable(f"loss config {str(config)[:60]!r} is not a mapping")
        kwargs = {}
        for key, value in config.items():
            if key == "from_logits" and "crossentropy" in name:
                kwargs[key] = bool(value)
            elif key == "label_smoothing" and name == "binary_crossentropy":
                kwargs[key] = value
            elif key in _LOSS_NEUTRAL and value not in _LOSS_NEUTRAL[key]:
                raise NotCompilable(f"loss option {key}={str(value)[:60]!r} of {name} is not "
                                    f"supported")
        spec = {"name": name, "config": kwargs}
    try:
        return losses.get(spec)
    except (TypeError, ValueError) as exc:
        raise NotCompilable(f"loss: {exc}") from None


def _metrics(spec) -> list:
    from .. import metrics

    if spec is None:
        return []
    if not isinstance(spec, list):
        raise NotCompilable(f"metrics {str(spec)[:60]!r} are not a list")
    out = []
    for m in spec:
        if isinstance(m, dict):
            try:
                m = metrics.get(m, None)
            except (TypeError, ValueError) as exc:
                raise NotCompilable(f"metric: {exc}") from None
        elif not isinstance(m, str):
            raise NotCompilable(f"metric {str(m)[:60]!r} is not supported")
        out.append(m)
    return out


def compile_from_keras(model, settings: dict | None, label: str) -> bool:
    """Compile ``model`` with Keras compile settings (``compile_config`` of a ``.keras``
    archive, or a legacy ``.h5`` file's ``training_config``). Returns whether it did."""
    if not settings or not isinstance(settings, dict):
        return False
    try:
        optimizer = settings.get("optimizer", settings.get("optimizer_config"))
        if optimizer is None:
            return False
        model.compile(optimizer=_optimizer(optimizer), loss=_loss(settings.get("loss")),
                      metrics=_metrics(settings.get("metrics")))
    except (NotCompilable, TypeError, ValueError) as exc:
        log.warning("%s: the model is returned uncompiled, its compile settings have no fastconv "
                    "equivalent (%s); compile it before training", label, exc)
        return False
    return True


def _keras_loss(loss):
    config = loss.get_config()
    if not any(config.values()):
        return loss.name
    return {"module": "keras.losses",
            "class_name": "".join(p.capitalize() for p in loss.name.split("_")),
            "config": config, "registered_name": None}


def _keras_metric(metric):
    from .. import metrics

    spec = metrics.serialize(metric)
    if isinstance(spec, str):
        return spec
    return {"module": "keras.metrics", "class_name": spec["class_name"],
            "config": {**spec["config"], "dtype": "float32"}, "registered_name": None}


def keras_compile_config(model) -> dict | None:
    """Keras's ``compile_config`` for a compiled single-output model, or None."""
    if not getattr(model, "compiled", False):
        return None
    losses_ = getattr(model, "_losses", [model.loss])
    if len(losses_) != 1:
        return None
    optimizer, loss = model.optimizer, losses_[0]
    if optimizer.name not in _OPTIMIZER_ARGS:
        return None
    config = {"name": optimizer.name, **optimizer.get_config()}
    return {"optimizer": {"module": "keras.optimizers",
                          "class_name": _OPTIMIZER_CLASSES[optimizer.name],
                          "config": config, "registered_name": None},
            "loss": _keras_loss(loss), "loss_weights": None,
            "metrics": [_keras_metric(m) for m in model._metrics] or None,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}
