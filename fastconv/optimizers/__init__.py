"""Optimizers with Keras's names, defaults and update rules: SGD (momentum, Nesterov), Adam
(AMSGrad), AdamW, Nadam, Adagrad and RMSprop.

Every optimizer takes Keras's common options: ``weight_decay`` (decoupled, Loshchilov & Hutter:
``w -= w * weight_decay * lr`` before the update), and one of ``clipnorm`` (each gradient's L2
norm clipped), ``global_clipnorm`` (all gradients scaled together) and ``clipvalue`` (each
element clipped). ``learning_rate`` is a number or a schedule from
:mod:`fastconv.optimizers.schedules`, evaluated at the step count before each step. Keras's
other options (EMA, loss scaling, gradient accumulation) are refused by name.

Updates run in place on the backend's arrays, outside the graph.
"""

from __future__ import annotations

import math
import numbers
import re

import numpy as np

from . import schedules
from .schedules import LearningRateSchedule

#: Keras optimizer options fastconv does not implement, with the value that leaves them off
UNSUPPORTED_OPTIONS = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                       "loss_scale_factor": None, "gradient_accumulation_steps": None}


def _positive(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    if not ok or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _optional_positive(name: str, value) -> float | None:
    return None if value is None else _positive(name, value)


def _beta(owner: str, name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
    return float(value)


class Optimizer:
    """The step common to every optimizer: clip the gradients, decay the weights, then run the
    optimizer's own ``update`` on each variable with a gradient."""

    name = "optimizer"
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, **options):
        owner = type(self).__name__
        for key, value in options.items():
            if key not in UNSUPPORTED_OPTIONS:
                raise TypeError(f"{owner}: unknown argument {key!r}")
            if value != UNSUPPORTED_OPTIONS[key]:
                raise ValueError(f"{owner}: {key}={value!r} is not supported by fastconv "
                                 f"(only the default, {UNSUPPORTED_OPTIONS[key]!r})")
        self._learning_rate = None
        self.learning_rate = learning_rate
        self.iterations = 0
        self.weight_decay = None if weight_decay is None else _positive(
            f"{owner}: weight_decay", weight_decay, allow_zero=True)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError(f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can "
                             f"be set, got clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.clipnorm, self.clipvalue, self.global_clipnorm = (
            _optional_positive(f"{owner}: {k}", v) for k, v in clips.items())
        self._exclude_ids: set[int] = set()
        self._exclude_pattern = None
        # id(variable) -> (variable, {slot: array}); keyed by the object, so that an optimizer
        # shared by two models never mixes their moments even where layer names repeat.
        self._slots: dict[int, tuple[object, dict[str, object]]] = {}
        self._lr_now = 0.0  # the learning rate of the step being applied

    # -- learning rate -------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step: the number set, or the schedule evaluated at
        ``iterations``."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return float(lr(self.iterations))
        return lr

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(f"{type(self).__name__}: this optimizer was created with a "
                            f"learning-rate schedule ({type(self._learning_rate).__name__}), so "
                            f"its learning rate cannot be set; create it with a number as "
                            f"learning_rate to change the rate during training")
        if callable(value):
            raise TypeError(f"{type(self).__name__}: learning_rate must be a number or a "
                            f"fastconv.optimizers.schedules.LearningRateSchedule, got "
                            f"{type(value).__name__}")
        self._learning_rate = _positive(f"{type(self).__name__}: learning_rate", value)

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The learning-rate schedule, or None for a constant rate."""
        lr = self._learning_rate
        return lr if isinstance(lr, LearningRateSchedule) else None

    # -- weight decay --------------------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Keep weight decay off the variables in ``var_list`` and off every variable whose
        own name (``kernel``, ``bias``, ...) contains one of the strings in ``var_names``
        (a regular expression each, as Keras)."""
        self._exclude_ids = {id(v) for v in var_list or ()}
        names = list(var_names or ())
        self._exclude_pattern = re.compile("|".join(names)) if names else None

    def _decays(self, var) -> bool:
        if id(var) in self._exclude_ids:
            return False
        own_name = str(var.name).rpartition("/")[2]
        return self._exclude_pattern is None or self._exclude_pattern.search(own_name) is None

    # -- state ---------------------------------------------------------------------------------
    def slots(self, var) -> dict:
        """Per-variable state (moments), created on first use."""
        entry = self._slots.get(id(var))
        if entry is None or entry[0] is not var:
            entry = self._slots[id(var)] = (var, {
                key: self._initial_slot(var, key) for key in self.slot_names})
        return entry[1]

    def _initial_slot(self, var, key: str):
        return var._backend.xp.zeros_like(var.data)

    def move_state(self, var, backend) -> None:
        """Copy ``var``'s state (moments) to ``backend``, which ``var`` is moving to
        (``Model.to``); call it while ``var`` is still on its old backend."""
        entry = self._slots.get(id(var))
        if entry is None or entry[0] is not var or backend is var._backend:
            return
        slots = entry[1]
        for key, value in slots.items():
            slots[key] = backend.asarray(var._backend.to_host(value), dtype=var.dtype)

    # -- one step ------------------------------------------------------------------------------
    def apply(self, variables) -> None:
        """One step on every variable that has a gradient."""
        pairs = [(var, var.grad) for var in variables if var.grad is not None]
        lr = self._lr_now = self.learning_rate
        grads = self._clip(pairs)
        self._prepare_step()
        decay = self.weight_decay * lr if self.weight_decay else 0.0
        for (var, _), grad in zip(pairs, grads):
            if decay and self._decays(var):
                var.data -= var.data * decay
            self.update(var, grad)
            var.changed()
        self.iterations += 1

    def _prepare_step(self) -> None:
        """Per-step constants (bias corrections), computed before the updates; ``iterations``
        still counts the steps before this one."""

    def _clip(self, pairs) -> list:
        """The gradients clipped as Keras clips them (``_clip_gradients``)."""
        grads = [g for _, g in pairs]
        if not grads or not (self.clipnorm or self.global_clipnorm or self.clipvalue):
            return grads
        xp = pairs[0][0]._backend.xp
        with np.errstate(all="ignore"):  # a non-finite gradient gives NaN, as in Keras
            if self.clipnorm:
                c = self.clipnorm
                return [g * c / xp.maximum(xp.sqrt((g * g).sum()), c) for g in grads]
            if self.global_clipnorm:
                c = self.global_clipnorm
                norm = xp.sqrt(sum((g * g).sum() for g in grads))
                scale = c / xp.maximum(norm, c) + (norm - norm)
                return [g * scale.astype(g.dtype) for g in grads]
            v = self.clipvalue
            return [xp.clip(g, -v, v) for g in grads]

    def update(self, var, grad) -> None:
        raise NotImplementedError

    # -- configuration -------------------------------------------------------------------------
    def get_config(self) -> dict:
        lr = self._learning_rate
        return {"learning_rate": schedules.serialize(lr) if isinstance(
                    lr, LearningRateSchedule) else lr,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config: dict) -> Optimizer:
        """An optimizer from ``get_config``'s output, or from a Keras optimizer's config
        (its ``name`` is dropped; its learning-rate schedule is rebuilt)."""
        config = dict(config)
        config.pop("name", None)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        if "lr" in config:  # Keras 2's name
            config["learning_rate"] = config.pop("lr")
        if config.pop("decay", None) not in (None, 0, 0.0):
            raise ValueError(f"{cls.__name__}: Keras 2's decay option is not supported; use a "
                             f"learning-rate schedule")
        return cls(**config)

    def get_state(self, variables=None) -> dict:
        """Iterations and slot arrays (backend arrays), keyed ``<path>/<slot>``: ``variables``
        maps each weight's path to the weight (``model.weight_paths()``), so the state follows
        the weights by name, whatever their order or trainable flag. Without it, the keys are
        the variables' own names. Weights the optimizer never updated have no state."""
        if variables is None:
            named = [(var.name, var) for var, _ in self._slots.values()]
        else:
            named = [(path, var) for path, var in variables.items() if id(var) in self._slots
                     and self._slots[id(var)][0] is var]
        arrays = {}
        for path, var in named:
            for slot, value in self._slots[id(var)][1].items():
                arrays[f"{path}/{slot}"] = value
        return {"iterations": self.iterations, "arrays": arrays}

    def set_state(self, state: dict, variables) -> None:
        """Restore ``get_state``'s output; ``variables`` maps paths to weights (or is a list of
        weights, looked up by their names). The optimizer keeps its own copies of the arrays."""
        by_name = dict(variables) if isinstance(variables, dict) else {
            v.name: v for v in variables}
        updates = []
        for key, value in state["arrays"].items():
            path, _, slot = key.rpartition("/")
            var = by_name.get(path)
            if var is None or slot not in self.slot_names or tuple(value.shape) != var.shape:
                raise ValueError(f"optimizer state {key!r} does not match the model")
            updates.append((var, slot, value))
        self.iterations = int(state["iterations"])
        for var, slot, value in updates:
            # a copy: updates run in place and must never write into the caller's arrays
            self.slots(var)[slot] = var._backend.asarray(value, dtype=var.dtype).copy()


class SGD(Optimizer):
    """``v = momentum * v - lr * g``; ``w += v`` (Nesterov: ``w += momentum * v - lr * g``)."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **options):
        super().__init__(learning_rate, **options)
        self.momentum = _positive("SGD: momentum", momentum, allow_zero=True)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    def update(self, var, grad):
        lr = self._lr_now
        if not self.momentum:
            var.data -= lr * grad
            return
        m = self.slots(var)["momentum"]
        m *= self.momentum
        m -= lr * grad
        if self.nesterov:
            var.data += self.momentum * m - lr * grad
        else:
            var.data += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Kingma & Ba; Keras's form with the bias correction folded into the step size:
    ``m += (g - m)(1 - b1)``; ``v += (g^2 - v)(1 - b2)``;
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. With ``amsgrad`` (Reddi et
    al.) ``v`` in the step is the running maximum ``v_hat = max(v_hat, v)``."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **options):
        super().__init__(learning_rate, **options)
        owner = type(self).__name__
        self.beta_1 = _beta(owner, "beta_1", beta_1)
        self.beta_2 = _beta(owner, "beta_2", beta_2)
        self.epsilon = _positive(f"{owner}: epsilon", epsilon)
        self.amsgrad = bool(amsgrad)
        self.slot_names = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _prepare_step(self):
        t = self.iterations + 1
        self._lr_t = self._lr_now * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)

    def update(self, var, grad):
        s = self.slots(var)
        if not self.amsgrad:
            var._backend.adam_update(var.data, grad, s["m"], s["v"], self._lr_t, self.beta_1,
                                     self.beta_2, self.epsilon)
            return
        xp = var._backend.xp
        m, v, v_hat = s["m"], s["v"], s["v_hat"]
        m += (grad - m) * (1 - self.beta_1)
        v += (grad * grad - v) * (1 - self.beta_2)
        xp.maximum(v_hat, v, out=v_hat)
        var.data -= m * self._lr_t / (xp.sqrt(v_hat) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), Keras's ``AdamW``: the same
    update, ``weight_decay`` 0.004 by default."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **options):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay, **options)


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2016), Keras's form with the momentum schedule
    ``u_t = b1 (1 - 0.5 * 0.96^t)``:
    ``m_hat = u_{t+1} m / (1 - prod_{i<=t+1} u_i) + (1 - u_t) g / (1 - prod_{i<=t} u_i)``,
    ``v_hat = v / (1 - b2^t)``, ``w -= lr m_hat / (sqrt(v_hat) + eps)``."""

    name = "nadam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 **options):
        super().__init__(learning_rate, **options)
        self.beta_1 = _beta("Nadam", "beta_1", beta_1)
        self.beta_2 = _beta("Nadam", "beta_2", beta_2)
        self.epsilon = _positive("Nadam: epsilon", epsilon)
        self._u_product = (0, 1.0)  # (steps, product of u_1 .. u_steps)

    def _u(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** t)

    def _prepare_step(self):
        t = self.iterations + 1
        steps, product = self._u_product
        if steps > t - 1:  # the iteration count was set back (a restored state)
            steps, product = 0, 1.0
        while steps < t:
            steps += 1
            product *= self._u(steps)
        self._u_product = (steps, product)
        u_t, u_next = self._u(t), self._u(t + 1)
        self._m_scale = u_next / (1 - product * u_next)
        self._g_scale = (1 - u_t) / (1 - product)
        self._v_scale = 1 / (1 - self.beta_2 ** t)

    def update(self, var, grad):
        xp = var._backend.xp
        s = self.slots(var)
        m, v = s["m"], s["v"]
        m += (grad - m) * (1 - self.beta_1)
        v += (grad * grad - v) * (1 - self.beta_2)
        m_hat = m * self._m_scale + grad * self._g_scale
        var.data -= m_hat * self._lr_now / (xp.sqrt(v * self._v_scale) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Adagrad(Optimizer):
    """Duchi et al.: ``a += g^2``; ``w -= lr g / sqrt(a + eps)``, the accumulator ``a``
    starting at ``initial_accumulator_value``."""

    name = "adagrad"
    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **options):
        super().__init__(learning_rate, **options)
        self.initial_accumulator_value = _positive("Adagrad: initial_accumulator_value",
                                                   initial_accumulator_value, allow_zero=True)
        self.epsilon = _positive("Adagrad: epsilon", epsilon)

    def _initial_slot(self, var, key):
        return var._backend.xp.full_like(var.data, self.initial_accumulator_value)

    def update(self, var, grad):
        xp = var._backend.xp
        a = self.slots(var)["accumulator"]
        a += grad * grad
        var.data -= self._lr_now * grad / xp.sqrt(a + self.epsilon)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """``v = rho v + (1 - rho) g^2``; ``w -= lr g / sqrt(v + eps)`` (centred: subtract the mean
    gradient's square; with momentum: accumulate the steps)."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **options):
        super().__init__(learning_rate, **options)
        self.rho = _beta("RMSprop", "rho", rho)
        self.momentum = _positive("RMSprop: momentum", momentum, allow_zero=True)
        self.epsilon = _positive("RMSprop: epsilon", epsilon)
        self.centered = bool(centered)
        self.slot_names = ("velocity",) + (("average_gradient",) if self.centered else ()) + (
            ("momentum",) if self.momentum else ())

    def update(self, var, grad):
        xp = var._backend.xp
        s = self.slots(var)
        v = s["velocity"]
        v *= self.rho
        v += (1 - self.rho) * grad * grad
        denominator = v
        if self.centered:
            avg = s["average_gradient"]
            avg *= self.rho
            avg += (1 - self.rho) * grad
            denominator = v - avg * avg
        increment = self._lr_now * grad / xp.sqrt(denominator + self.epsilon)
        if self.momentum:
            m = s["momentum"]
            m *= self.momentum
            m += increment
            var.data -= m
        else:
            var.data -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "nadam": Nadam, "adagrad": Adagrad,
               "rmsprop": RMSprop}
#: Keras's class names and the names its configs carry, for the same classes
_ALIASES = {"adam_w": "adamw"}


def _lookup(name) -> type | None:
    if not isinstance(name, str):
        return None
    key = name.lower()
    return _OPTIMIZERS.get(_ALIASES.get(key, key))


def get(identifier) -> Optimizer:
    """An optimizer from a Keras name ('adam', 'adamw', 'nadam', 'adagrad', 'sgd', 'rmsprop'),
    an instance, or a config (``{"name", "config"}`` as :func:`serialize` writes it, or Keras's
    ``{"class_name", "config"}``)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        cls = _lookup(identifier.get("name", identifier.get("class_name")))
        if cls is None:
            raise ValueError(f"unknown optimizer config {identifier!r}; valid optimizers: "
                             f"{', '.join(_OPTIMIZERS)}")
        return cls.from_config(identifier.get("config") or {})
    cls = _lookup(identifier)
    if cls is not None:
        return cls()
    raise ValueError(f"unknown optimizer {identifier!r}; valid optimizers: "
                     f"{', '.join(_OPTIMIZERS)} or an Optimizer instance")


def serialize(opt: Optimizer) -> dict:
    return {"name": opt.name, "config": opt.get_config()}


__all__ = ["Adagrad", "Adam", "AdamW", "Nadam", "Optimizer", "RMSprop", "SGD", "get",
           "schedules", "serialize"]
