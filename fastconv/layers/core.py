"""Dense, Flatten, Dropout, Activation, Reshape, and the element-wise layers (LeakyReLU, Clip,
Elementwise) and Permute."""

from __future__ import annotations

import math
import numbers

from .. import activations, initializers
from .. import functional as F
from ..backends import FUSED_ACTIVATIONS
from ..ops.activation import ClipOp, LeakyReLUOp, clip, elementwise_op, leaky_relu
from ..ops.shape import TransposeOp, transpose
from .base import Layer, _identity, register


def positive_int(value, where: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where} must be a positive int, got {value!r}")
    return int(value)


def unsupported(layer: str, **options) -> None:
    """Keras options fastconv does not implement must stay at their 'off' value."""
    for key, value in options.items():
        if value is not None:
            raise ValueError(f"{layer}: {key} is not supported by fastconv (got {value!r})")


def apply_activation(x, activation: str, fused: bool):
    """Apply ``activation`` unless it was fused into the op that produced ``x``."""
    return x if fused else activations.get(activation)(x)


@register
class Dense(Layer):
    """``activation(x @ kernel + bias)`` over the last axis."""

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        where = f"Dense layer '{self.name}'"
        unsupported(where, kernel_regularizer=kernel_regularizer,
                    bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                    kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.units = positive_int(units, f"{where}: units")
        self.activation = activations.canonical(activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, where)
        self.bias_initializer = initializers.check(bias_initializer, where)

    def build(self, input_shape):
        last = input_shape[-1]
        if last is None:
            raise ValueError(f"Dense layer '{self.name}' needs a known last axis, got "
                             f"{input_shape}")
        self.kernel = self.add_weight("kernel", (last, self.units), self.kernel_initializer)
        self.bias = (self.add_weight("bias", (self.units,), self.bias_initializer)
                     if self.use_bias else None)

    def call(self, x, training=False):
        fused = self.activation in FUSED_ACTIVATIONS
        y = F.dense(x, self.kernel, self.bias, self.activation if fused else None)
        return apply_activation(y, self.activation, fused)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units)

    def inference_step(self, input_shape, backend):
        kernel, bias, act = self.kernel, self.bias, self.activation
        fused = act in FUSED_ACTIVATIONS
        matmul = backend.prepare_matmul()

        def step(a):
            w = kernel.data  # read once, before its version: the key never names other values
            y = matmul(a.reshape(-1, a.shape[-1]), w, (id(w), kernel.version))
            y = backend.bias_activation(y, None if bias is None else bias.data,
                                        act if fused else "linear")
            y = y.reshape(*a.shape[:-1], y.shape[-1])
            return y if fused else activations.on_array(act, backend, y)

        return step

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


def _flatten(a):
    return a.reshape(a.shape[0], -1)


@register
class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten layer '{self.name}': only data_format='channels_last' is "
                             f"supported, got {data_format!r}")

    def call(self, x, training=False):
        return F.flatten(x)

    def inference_step(self, input_shape, backend):
        return _flatten

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)


@register
class Reshape(Layer):
    """Reshape everything but the batch axis to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = tuple(target_shape)
        if (any(not isinstance(d, numbers.Integral) or (d < 1 and d != -1) for d in target)
                or target.count(-1) > 1):
            raise ValueError(f"Reshape layer '{self.name}': target_shape must hold positive "
                             f"ints and at most one -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target)

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        target = list(self.target_shape)
        if -1 in target:
            if any(d is None for d in rest):
                target[target.index(-1)] = None
            else:
                known = math.prod(d for d in target if d != -1)
                total = math.prod(rest)
                if total % known:
                    raise ValueError(f"Reshape layer '{self.name}': cannot reshape {rest} to "
                                     f"{self.target_shape}")
                target[target.index(-1)] = total // known
        elif not any(d is None for d in rest) and math.prod(rest) != math.prod(target):
            raise ValueError(f"Reshape layer '{self.name}': cannot reshape {rest} to "
                             f"{self.target_shape}")
        return (input_shape[0], *target)

    def call(self, x, training=False):
        return F.reshape(x, (x.shape[0], *self.target_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


@register
class Dropout(Layer):
    """Zero a ``rate`` fraction of values while training (scaled by 1/(1 - rate))."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        unsupported(f"Dropout layer '{self.name}'", noise_shape=noise_shape, seed=seed)
        if not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"Dropout layer '{self.name}': rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def call(self, x, training=False):
        return F.dropout(x, self.rate, training=training)

    def inference_step(self, input_shape, backend):
        return _identity

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@register
class Activation(Layer):
    """Apply an activation by its Keras name: linear, relu, sigmoid, tanh, softmax, swish (silu),
    gelu, hard_sigmoid, hard_swish (hard_silu), elu, selu, softplus, relu6, leaky_relu (see
    ``fastconv.activations``)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.canonical(activation, f"Activation layer '{self.name}'")

    def call(self, x, training=False):
        return activations.get(self.activation)(x)

    def inference_step(self, input_shape, backend):
        act = self.activation
        return lambda a: activations.on_array(act, backend, a)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


@register
class LeakyReLU(Layer):
    """``x`` where ``x >= 0``, ``negative_slope * x`` elsewhere (Keras's layer; ONNX's
    LeakyRelu)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
            raise ValueError(f"LeakyReLU layer '{self.name}': negative_slope must be a number, "
                             f"got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def call(self, x, training=False):
        return leaky_relu(x, self.negative_slope)

    def inference_step(self, input_shape, backend):
        slope = self.negative_slope
        return lambda a: LeakyReLUOp.evaluate(backend, a, negative_slope=slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@register
class Clip(Layer):
    """``x`` clipped to ``[min_value, max_value]`` (None: no bound on that side); ONNX's Clip
    (``Clip(0, 6)`` is ReLU6)."""

    def __init__(self, min_value=None, max_value=None, **kwargs):
        super().__init__(**kwargs)
        where = f"Clip layer '{self.name}'"
        for key, v in (("min_value", min_value), ("max_value", max_value)):
            if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, bool)
                                  or math.isnan(v)):
                raise ValueError(f"{where}: {key} must be a number or None, got {v!r}")
        if min_value is not None and max_value is not None and min_value > max_value:
            raise ValueError(f"{where}: min_value {min_value!r} is greater than max_value "
                             f"{max_value!r}")
        self.min_value = None if min_value is None else float(min_value)
        self.max_value = None if max_value is None else float(max_value)

    def call(self, x, training=False):
        return clip(x, self.min_value, self.max_value)

    def inference_step(self, input_shape, backend):
        low, high = self.min_value, self.max_value
        return lambda a: ClipOp.evaluate(backend, a, low=low, high=high)

    def get_config(self):
        return {**super().get_config(), "min_value": self.min_value,
                "max_value": self.max_value}


@register
class Permute(Layer):
    """Permute the non-batch axes (Keras's layer): ``dims`` numbers them from 1, e.g.
    ``Permute((3, 1, 2))`` takes NHWC to NCHW."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if (not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims)
                or sorted(dims) != list(range(1, len(dims) + 1))):
            raise ValueError(f"Permute layer '{self.name}': dims must be a permutation of "
                             f"1..{len(dims)}, got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    @property
    def input_ndim(self):
        return len(self.dims) + 1

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return (shape[0], *(shape[d] for d in self.dims))

    def call(self, x, training=False):
        return transpose(x, (0, *self.dims))

    def inference_step(self, input_shape, backend):
        axes = (0, *self.dims)
        return lambda a: TransposeOp.evaluate(backend, a, axes=axes)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


@register
class Elementwise(Layer):
    """An element-wise function of one tensor by name (fastconv's own layer, for ONNX's unary
    operators; Keras has no counterpart): ``sqrt``, ``square``, ``exp``, ``log`` (natural),
    ``abs``, ``neg`` (``-x``), ``reciprocal`` (``1 / x``), ``erf``, or ``pow``
    (``x ** exponent``, which needs a number as ``exponent``)."""

    def __init__(self, function, exponent=None, **kwargs):
        super().__init__(**kwargs)
        self._op, self._op_kwargs = elementwise_op(function, exponent,
                                                   f"Elementwise layer '{self.name}'")
        self.function = function
        self.exponent = self._op_kwargs.get("exponent")

    def call(self, x, training=False):
        return F.elementwise(x, self.function, self.exponent)

    def inference_step(self, input_shape, backend):
        op, kwargs = self._op, self._op_kwargs
        return lambda a: op.evaluate(backend, a, **kwargs)

    def get_config(self):
        return {**super().get_config(), "function": self.function, "exponent": self.exponent}
