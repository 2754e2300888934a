"""Keras compile settings <-> fastconv's ``compile``: optimizer (Adam, SGD, RMSprop with their
Keras arguments), loss and metrics by Keras name.

Settings fastconv cannot honour (another optimizer, a learning-rate schedule, weight decay,
gradient clipping, EMA, a custom loss) leave a loaded model uncompiled, as Keras does when it
cannot compile; ``load_model`` then logs why and the caller compiles it. Optimizer state
(Adam's moments) is neither read nor written: training resumes with fresh moments.
"""

from __future__ import annotations

import logging
import numbers

from ..layers.base import snake_case

log = logging.getLogger("fastconv.keras_io")

#: fastconv optimizer name -> the Keras arguments it takes
_OPTIMIZER_ARGS = {
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon", "centered"),
}
#: Keras optimizer options fastconv has no counterpart for, with their neutral value
_OPTIMIZER_NEUTRAL = {
    "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
    "use_ema": False, "loss_scale_factor": None, "gradient_accumulation_steps": None,
    "amsgrad": False, "decay": 0.0,
}


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
        if key in _OPTIMIZER_ARGS[name]:
            if not isinstance(value, (numbers.Real, bool)):
                raise NotCompilable(f"optimizer option {key}={str(value)[:60]!r} (a schedule?) "
                                    f"is not supported")
            kwargs[key] = value
        elif key in _OPTIMIZER_NEUTRAL and value not in (_OPTIMIZER_NEUTRAL[key], None):
            raise NotCompilable(f"optimizer option {key}={value!r} is not supported")
    try:
        return optimizers.get({"name": name, "config": kwargs})
    except (TypeError, ValueError) as exc:
        raise NotCompilable(str(exc)) from None


def _loss(spec):
    from .. import losses

    if isinstance(spec, dict):  # {"class_name": "CategoricalCrossentropy", "config": {...}}
        name = snake_case(str(spec.get("class_name", "")))
        config = spec.get("config") or {}
        kwargs = {"from_logits": bool(config.get("from_logits", False))} if isinstance(
            config, dict) and "crossentropy" in name else {}
        spec = {"name": name, "config": kwargs}
    try:
        return losses.get(spec)
    except (TypeError, ValueError) as exc:
        raise NotCompilable(f"loss: {exc}") from None


def _metrics(spec) -> list:
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise NotCompilable(f"metrics {str(spec)[:60]!r} are not a list")
    names = []
    for m in spec:
        if isinstance(m, dict):
            m = (m.get("config") or {}).get("name") or snake_case(str(m.get("class_name")))
        if not isinstance(m, str):
            raise NotCompilable(f"metric {str(m)[:60]!r} is not supported")
        names.append(m)
    return names


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
    loss_config = loss.get_config()
    if loss_config.get("from_logits"):
        loss_spec = {"module": "keras.losses",
                     "class_name": "".join(p.capitalize() for p in loss.name.split("_")),
                     "config": {"from_logits": True}, "registered_name": None}
    else:
        loss_spec = loss.name
    return {"optimizer": {"module": "keras.optimizers",
                          "class_name": {"adam": "Adam", "sgd": "SGD",
                                         "rmsprop": "RMSprop"}[optimizer.name],
                          "config": config, "registered_name": None},
            "loss": loss_spec, "loss_weights": None,
            "metrics": [m.name for m in model._metrics] or None,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}
