"""Activation functions by Keras name."""

from __future__ import annotations

from . import functional as F

_ACTIVATIONS = {
    "linear": F.linear,
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": F.softmax,
}


def names() -> tuple[str, ...]:
    return tuple(_ACTIVATIONS)


def canonical(activation, where: str = "activation") -> str:
    """The name of an activation given as None, a name, or one of this module's functions."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{where}: unknown activation {activation!r}; valid activations: "
                             f"{', '.join(_ACTIVATIONS)}")
        return activation
    for name, fn in _ACTIVATIONS.items():
        if activation is fn:
            return name
    raise ValueError(f"{where}: activation must be a name ({', '.join(_ACTIVATIONS)}) or None, "
                     f"got {activation!r}")


def get(activation, where: str = "activation"):
    """The function for an activation name (None means linear)."""
    return _ACTIVATIONS[canonical(activation, where)]


#: Activations as array functions for inference plans: (Function, keyword arguments); the
#: fused ones (linear, relu) are applied by the epilogue instead.
_ON_ARRAYS = {
    "sigmoid": (F.SigmoidOp, {}),
    "tanh": (F.TanhOp, {}),
    "softmax": (F.SoftmaxOp, {"axis": -1}),
}


def on_array(activation: str, backend, a):
    """``activation`` applied to a backend array (no graph)."""
    if activation == "linear":
        return a
    if activation == "relu":
        return backend.bias_activation(a.copy(), None, "relu")
    fn, kwargs = _ON_ARRAYS[activation]
    return fn.evaluate(backend, a, **kwargs)
