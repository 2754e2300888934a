"""Learning-rate schedules with Keras's names, arguments and formulas
(``keras.optimizers.schedules``): an optimizer given one as ``learning_rate`` uses
``schedule(iterations)`` at each step, ``iterations`` counting the steps taken before it.

Values are computed in float64; Keras computes them in float32, so they agree to float32's
precision.
"""

from __future__ import annotations

import math
import numbers

#: the module name Keras writes into a serialized schedule
KERAS_MODULE = "keras.optimizers.schedules"


def _number(owner: str, name: str, value, *, positive: bool = False,
            allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        bound = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value!r}")
    return value


class LearningRateSchedule:
    """A learning rate as a function of the optimizer's step count."""

    def __call__(self, step) -> float:
        raise NotImplementedError(f"learning-rate schedule {type(self).__name__} must define "
                                  f"__call__(step)")

    def get_config(self) -> dict:
        raise NotImplementedError(f"learning-rate schedule {type(self).__name__} must define "
                                  f"get_config() to be saved")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase`` the
    exponent is rounded down, so the rate drops every ``decay_steps`` steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = _number("ExponentialDecay", "initial_learning_rate",
                                             initial_learning_rate)
        self.decay_steps = _number("ExponentialDecay", "decay_steps", decay_steps,
                                   positive=True)
        self.decay_rate = _number("ExponentialDecay", "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step) -> float:
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) * float(self.decay_rate) ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i - 1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if not isinstance(boundaries, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise TypeError(f"PiecewiseConstantDecay: boundaries and values must be lists, got "
                            f"{type(boundaries).__name__} and {type(values).__name__}")
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"PiecewiseConstantDecay: boundaries must have one entry fewer than "
                             f"values, got {len(boundaries)} boundaries and {len(values)} values")
        for b in boundaries:
            _number("PiecewiseConstantDecay", "each boundary", b)
        for v in values:
            _number("PiecewiseConstantDecay", "each value", v)
        if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must increase, got "
                             f"{list(boundaries)}")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return float(value)
        return float(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay (Loshchilov & Hutter, SGDR) from ``initial_learning_rate`` (or, after a
    linear warm-up of ``warmup_steps`` steps, from ``warmup_target``) to ``alpha`` times that
    rate over ``decay_steps`` steps, then constant:
    ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)``.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _number("CosineDecay", "initial_learning_rate",
                                             initial_learning_rate)
        self.decay_steps = _number("CosineDecay", "decay_steps", decay_steps, positive=True)
        self.alpha = _number("CosineDecay", "alpha", alpha)
        self.name = name
        self.warmup_target = _number("CosineDecay", "warmup_target", warmup_target,
                                     allow_none=True)
        self.warmup_steps = _number("CosineDecay", "warmup_steps", warmup_steps)
        if self.warmup_steps < 0:
            raise ValueError(f"CosineDecay: warmup_steps must be >= 0, got {warmup_steps!r}")

    def _decay(self, step: float, start: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return start * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> float:
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), float(self.initial_learning_rate))
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            start = float(self.initial_learning_rate)
            return (self.warmup_target - start) * step / self.warmup_steps + start
        return self._decay(step - self.warmup_steps, float(self.warmup_target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay,
                                            CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """A schedule as Keras serializes it: ``{"module", "class_name", "config",
    "registered_name"}``."""
    return {"module": KERAS_MODULE, "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config: dict) -> LearningRateSchedule:
    """A schedule from :func:`serialize`'s output (or any ``{"class_name", "config"}``)."""
    if not isinstance(config, dict):
        raise TypeError(f"a serialized learning-rate schedule must be a dict, got "
                        f"{str(config)[:60]!r}")
    name = config.get("class_name")
    cls = _SCHEDULES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule {str(name)[:60]!r}; fastconv has "
                         f"{', '.join(_SCHEDULES)}")
    args = config.get("config") or {}
    if not isinstance(args, dict):
        raise TypeError(f"the config of schedule {name} must be a dict, got {str(args)[:60]!r}")
    return cls.from_config(args)
