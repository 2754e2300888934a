"""Activation functions by Keras name.

Each name means what it means in Keras 3 (``keras.activations``): ``swish`` (alias ``silu``) is
``x * sigmoid(x)``; ``gelu`` the exact ``0.5 * x * (1 + erf(x / sqrt(2)))``; ``hard_sigmoid``
``relu6(x + 3) / 6``; ``hard_swish`` (alias ``hard_silu``) ``x * hard_sigmoid(x)``; ``elu``
with ``alpha = 1``; ``selu``; ``softplus``; ``relu6``; ``leaky_relu`` with Keras's activation
slope 0.2 (the LeakyReLU layer's default is 0.3).
"""

from __future__ import annotations

from . import functional as F
from .ops.activation import SELU_ALPHA, SELU_SCALE

#: the negative slope of Keras's ``leaky_relu`` activation
KERAS_LEAKY_RELU_SLOPE = 0.2


def _leaky_relu(x):
    """Keras's ``leaky_relu`` activation: negative slope 0.2."""
    return F.leaky_relu(x, KERAS_LEAKY_RELU_SLOPE)

_ACTIVATIONS = {
    "linear": F.linear,
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": F.softmax,
    "swish": F.swish,
    "gelu": F.gelu,
    "hard_sigmoid": F.hard_sigmoid,
    "hard_swish": F.hard_swish,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "relu6": F.relu6,
    "leaky_relu": _leaky_relu,
}

#: other names Keras accepts for the same functions
ALIASES = {"silu": "swish", "hard_silu": "hard_swish"}


def names() -> tuple[str, ...]:
    return tuple(_ACTIVATIONS)


def _valid() -> str:
    return ", ".join([*_ACTIVATIONS, *ALIASES])


def canonical(activation, where: str = "activation") -> str:
    """The name of an activation given as None, a name (an alias gives the name it stands
    for), or one of this module's functions."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        activation = ALIASES.get(activation, activation)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{where}: unknown activation {activation!r}; valid activations: "
                             f"{_valid()}")
        return activation
    for name, fn in _ACTIVATIONS.items():
        if activation is fn:
            return name
    raise ValueError(f"{where}: activation must be a name ({_valid()}) or None, got "
                     f"{activation!r}")


def get(activation, where: str = "activation"):
    """The function for an activation name (None means linear)."""
    return _ACTIVATIONS[canonical(activation, where)]


#: Activations as array functions for inference plans: (Function, keyword arguments); the
#: fused ones (linear, relu) are applied by the epilogue instead.
_ON_ARRAYS = {
    "sigmoid": (F.SigmoidOp, {}),
    "tanh": (F.TanhOp, {}),
    "softmax": (F.SoftmaxOp, {"axis": -1}),
    "swish": (F.SwishOp, {}),
    "gelu": (F.GELUOp, {"approximate": False}),
    "hard_sigmoid": (F.HardSigmoidOp, {"alpha": 1 / 6, "beta": 0.5}),
    "hard_swish": (F.HardSwishOp, {}),
    "elu": (F.ELUOp, {"alpha": 1.0, "scale": 1.0}),
    "selu": (F.ELUOp, {"alpha": SELU_ALPHA, "scale": SELU_SCALE}),
    "softplus": (F.SoftplusOp, {}),
    "relu6": (F.ClipOp, {"low": 0.0, "high": 6.0}),
    "leaky_relu": (F.LeakyReLUOp, {"negative_slope": KERAS_LEAKY_RELU_SLOPE}),
}


def on_array(activation: str, backend, a):
    """``activation`` applied to a backend array (no graph)."""
    activation = ALIASES.get(activation, activation)
    if activation == "linear":
        return a
    if activation == "relu":
        return backend.bias_activation(a.copy(), None, "relu")
    fn, kwargs = _ON_ARRAYS[activation]
    return fn.evaluate(backend, a, **kwargs)
