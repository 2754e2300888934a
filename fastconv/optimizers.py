"""Optimizers with Keras's names, defaults and update rules: SGD (momentum, Nesterov), Adam and
RMSprop. Updates run in place on the backend's arrays, outside the graph."""

from __future__ import annotations

import math
import numbers


def _positive(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    if not ok or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


class Optimizer:
    name = "optimizer"

    def __init__(self, learning_rate: float):
        self.learning_rate = _positive(f"{type(self).__name__}: learning_rate", learning_rate)
        self.iterations = 0
        # id(variable) -> (variable, {slot: array}); keyed by the object, so that an optimizer
        # shared by two models never mixes their moments even where layer names repeat.
        self._slots: dict[int, tuple[object, dict[str, object]]] = {}

    def slots(self, var) -> dict:
        """Per-variable state (moments), created on first use."""
        entry = self._slots.get(id(var))
        if entry is None or entry[0] is not var:
            entry = self._slots[id(var)] = (var, {
                key: var._backend.xp.zeros_like(var.data) for key in self.slot_names})
        return entry[1]

    slot_names: tuple[str, ...] = ()

    def move_state(self, var, backend) -> None:
        """Copy ``var``'s state (moments) to ``backend``, which ``var`` is moving to
        (``Model.to``); call it while ``var`` is still on its old backend."""
        entry = self._slots.get(id(var))
        if entry is None or entry[0] is not var or backend is var._backend:
            return
        slots = entry[1]
        for key, value in slots.items():
            slots[key] = backend.asarray(var._backend.to_host(value), dtype=var.dtype)

    def apply(self, variables) -> None:
        """One step on every variable that has a gradient."""
        self.iterations += 1
        for var in variables:
            if var.grad is not None:
                self.update(var, var.grad)
                var.changed()

    def update(self, var, grad) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate}

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

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _positive("SGD: momentum", momentum, allow_zero=True)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    def update(self, var, grad):
        lr = self.learning_rate
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
    """Kingma & Ba; Keras's form with the bias correction folded into the step size."""

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not isinstance(beta, numbers.Real) or not 0 <= beta < 1:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {beta!r}")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = _positive("Adam: epsilon", epsilon)

    def apply(self, variables):
        t = self.iterations + 1
        self._lr_t = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        super().apply(variables)

    def update(self, var, grad):
        s = self.slots(var)
        var._backend.adam_update(var.data, grad, s["m"], s["v"], self._lr_t, self.beta_1,
                                 self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """``v = rho v + (1 - rho) g^2``; ``w -= lr g / sqrt(v + eps)`` (centred: subtract the mean
    gradient's square; with momentum: accumulate the steps)."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(learning_rate)
        if not isinstance(rho, numbers.Real) or not 0 <= rho < 1:
            raise ValueError(f"RMSprop: rho must be in [0, 1), got {rho!r}")
        self.rho = float(rho)
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
        increment = self.learning_rate * grad / xp.sqrt(denominator + self.epsilon)
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


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def get(identifier) -> Optimizer:
    """An optimizer from a Keras name ('adam', 'sgd', 'rmsprop'), an instance or a config."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        cls = _OPTIMIZERS.get(str(identifier.get("name", "")).lower())
        if cls is None:
            raise ValueError(f"unknown optimizer config {identifier!r}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str) and identifier.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; valid optimizers: "
                     f"{', '.join(_OPTIMIZERS)} or an Optimizer instance")


def serialize(opt: Optimizer) -> dict:
    return {"name": opt.name, "config": opt.get_config()}
