"""Activation functions by Keras name.

Each name means what it means in Keras 3 (``keras.activations``): ``swish`` (alias ``silu``) is
``x * sigmoid(x)``; ``gelu`` the exact ``0.5 * x * (1 + erf(x / sqrt(2)))``; ``hard_sigmoid``
``relu6(x + 3) / 6``; ``hard_swish`` (alias ``hard_silu``) ``x * hard_sigmoid(x)``; ``elu``
with ``alpha = 1``; ``selu``; ``softplus``; ``relu6``; ``leaky_relu`` with Keras's activation
slope 0.2 (the LeakyReLU layer's default is 0.3).
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .ops.activation import SELU_ALPHA, SELU_SCALE, erf_float32_into

_SQRT_HALF = math.sqrt(0.5)

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


def _sigmoid_into(xp, a, y):
    """``y = 1 / (1 + exp(-a))``; exp overflows to inf for a < -88 (float32), giving 0."""
    xp.negative(a, out=y)
    xp.exp(y, out=y)
    y += 1
    return xp.reciprocal(y, out=y)


def _hard_sigmoid_into(xp, a, y):
    xp.multiply(a, 1 / 6, out=y)
    y += 0.5
    return xp.clip(y, 0, 1, out=y)


def _swish(xp, a, y):
    _sigmoid_into(xp, a, y)
    y *= a
    return y


def _hard_swish(xp, a, y):
    _hard_sigmoid_into(xp, a, y)
    y *= a
    return y


def _gelu_float32(xp, a, y):
    """``0.5 a (1 + erf(a / sqrt 2))`` with the float32 erf of ``erf_float32_into``."""
    z = xp.multiply(a, _SQRT_HALF)
    erf_float32_into(xp, z, y, xp.empty_like(a))
    y += 1
    y *= a
    y *= 0.5
    return y


#: Inference forms that write one new array in a few vectorised passes (the ops' forwards keep
#: what their backward needs and guard every branch): name -> f(xp, a, out); the float32-only
#: ones are keyed with the dtype's name too.
_INTO = {
    "sigmoid": _sigmoid_into,
    "swish": _swish,
    "hard_sigmoid": _hard_sigmoid_into,
    "hard_swish": _hard_swish,
    "relu6": lambda xp, a, y: xp.clip(a, 0, 6, out=y),
    "tanh": lambda xp, a, y: xp.tanh(a, out=y),
    ("gelu", "float32"): _gelu_float32,
}


def on_array(activation: str, backend, a):
    """``activation`` applied to a backend array (no graph)."""
    activation = ALIASES.get(activation, activation)
    if activation == "linear":
        return a
    if activation == "relu":
        return backend.bias_activation(a.copy(), None, "relu")
    into = _INTO.get(activation) or _INTO.get((activation, a.dtype.name))
    if into is not None:
        xp = backend.xp
        with np.errstate(over="ignore", under="ignore"):
            return into(xp, a, xp.empty_like(a))
    fn, kwargs = _ON_ARRAYS[activation]
    return fn.evaluate(backend, a, **kwargs)
