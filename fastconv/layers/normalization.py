"""Normalisation layers: BatchNormalization and LayerNormalization (Keras's) and
LocalResponseNormalization (TensorFlow's ``tf.nn.local_response_normalization`` as a layer, alias
``LRN``)."""

from __future__ import annotations

import numbers

from .. import functional as F
from .. import initializers
from ..ops.normalization import LayerNormOp, layer_norm_axes
from .base import Layer, register
from .core import unsupported


def _number(value, where: str, *, positive: bool = False, unit: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{where} must be a number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{where} must be > 0, got {value!r}")
    if unit and not 0 <= value <= 1:
        raise ValueError(f"{where} must be in [0, 1], got {value!r}")
    return float(value)


@register
class BatchNormalization(Layer):
    """Batch normalisation over the ``axis`` channel (Ioffe & Szegedy 2015), as Keras's layer.

    Training (``training=True`` and the layer trainable): each channel is normalised with the
    batch's mean and biased variance, and the moving statistics follow them,
    ``moving = moving * momentum + batch * (1 - momentum)``. Otherwise (inference, or a frozen
    layer, as in Keras) the moving statistics are used:
    ``(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta``.

    Weights in Keras's order: gamma (``scale=True``), beta (``center=True``), moving_mean,
    moving_variance; the moving statistics are non-trainable, and every update bumps their
    ``version``.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        where = f"BatchNormalization layer '{self.name}'"
        unsupported(where, beta_regularizer=beta_regularizer,
                    gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                    gamma_constraint=gamma_constraint, renorm_clipping=renorm_clipping)
        if renorm:
            raise ValueError(f"{where}: batch renormalisation (renorm=True) is not supported")
        if synchronized:
            raise ValueError(f"{where}: synchronized=True (statistics across devices) is not "
                             f"supported")
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]  # Keras's older configs write [3]
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise ValueError(f"{where}: axis must be an int (one channel axis), got {axis!r}")
        self.axis = int(axis)
        self.momentum = _number(momentum, f"{where}: momentum", unit=True)
        self.epsilon = _number(epsilon, f"{where}: epsilon", positive=True)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.check(beta_initializer, where)
        self.gamma_initializer = initializers.check(gamma_initializer, where)
        self.moving_mean_initializer = initializers.check(moving_mean_initializer, where)
        self.moving_variance_initializer = initializers.check(moving_variance_initializer,
                                                              where)
        self.renorm_momentum = renorm_momentum  # kept for configs; unused without renorm

    def _channel_axis(self, input_shape) -> int:
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim or self.axis % ndim == 0:
            raise ValueError(f"BatchNormalization layer '{self.name}': axis {self.axis} is not "
                             f"a feature axis of inputs of shape {tuple(input_shape)}")
        return self.axis % ndim

    def build(self, input_shape):
        channels = input_shape[self._channel_axis(input_shape)]
        if channels is None:
            raise ValueError(f"BatchNormalization layer '{self.name}' needs a known size on "
                             f"axis {self.axis}, got input shape {tuple(input_shape)}")
        self.gamma = (self.add_weight("gamma", (channels,), self.gamma_initializer)
                      if self.scale else None)
        self.beta = (self.add_weight("beta", (channels,), self.beta_initializer)
                     if self.center else None)
        self.moving_mean = self.add_weight("moving_mean", (channels,),
                                           self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (channels,),
                                               self.moving_variance_initializer, trainable=False)

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freezing or unfreezing the layer never makes the moving statistics trainable."""
        Layer.trainable.fset(self, value)
        for w in getattr(self, "_weights", ()):
            if w is getattr(self, "moving_mean", None) or w is getattr(self, "moving_variance",
                                                                       None):
                w.trainable = False

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        self._channel_axis(shape)

    def call(self, x, training=False):
        axis = self._channel_axis(x.shape)
        if training and self.trainable:
            y, mean, var = F.batch_norm_training(x, self.gamma, self.beta, self.epsilon, axis)
            m = self.momentum
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
                moving.data *= moving.dtype.type(m)
                moving.data += batch.data * moving.dtype.type(1 - m)
                moving.changed()
            return y
        return F.batch_norm(x, self.moving_mean, self.moving_variance, self.gamma, self.beta,
                            self.epsilon, axis)

    def folded_norm_terms(self, input_shape):
        if self._channel_axis(input_shape) != len(input_shape) - 1:
            return None
        return (self.gamma, self.beta, self.moving_mean, self.moving_variance, self.epsilon)

    def inference_step(self, input_shape, backend):
        axis = self._channel_axis(input_shape)
        if axis != len(input_shape) - 1:
            return super().inference_step(input_shape, backend)
        xp, eps = backend.xp, self.epsilon
        gamma, beta, mean, var = self.gamma, self.beta, self.moving_mean, self.moving_variance
        channels = mean.shape[0]

        def step(a):
            g = xp.ones(channels, a.dtype) if gamma is None else gamma.data
            b = xp.zeros(channels, a.dtype) if beta is None else beta.data
            y = backend.batch_norm_forward(a.reshape(-1, channels), g, b, mean.data, var.data,
                                           eps)
            return y.reshape(a.shape)

        return step

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer,
                "moving_mean_initializer": self.moving_mean_initializer,
                "moving_variance_initializer": self.moving_variance_initializer}


@register
class LayerNormalization(Layer):
    """Layer normalisation (Ba et al. 2016) as Keras 3's layer: each sample is normalised over
    ``axis`` (an int or a list of ints; not the batch axis) with its own mean and biased
    variance::

        y = (x - mean) / sqrt(var + epsilon) * gamma + beta

    ``gamma`` (``scale=True``) and ``beta`` (``center=True``) have the sizes of the normalised
    axes, in increasing axis order (Keras's shapes and weight order). ``rms_scaling=True`` is
    Keras's deprecated variant ``x / sqrt(var + epsilon) * gamma``: x is not centred, there is
    no beta, and gamma is made even with ``scale=False``.
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        where = f"LayerNormalization layer '{self.name}'"
        unsupported(where, beta_regularizer=beta_regularizer,
                    gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                    gamma_constraint=gamma_constraint)
        if isinstance(axis, (list, tuple)):
            if not axis or any(not isinstance(a, numbers.Integral) or isinstance(a, bool)
                               for a in axis):
                raise ValueError(f"{where}: axis must be an int or a non-empty list of ints, "
                                 f"got {axis!r}")
            if any(a < 0 for a in axis) and any(a >= 0 for a in axis):
                raise ValueError(f"{where}: axis {list(axis)!r} mixes negative and non-negative "
                                 f"axes; give all of them counted from the start or all from "
                                 f"the end (Keras orders gamma and beta by the numbers as "
                                 f"given)")
            axis = sorted(int(a) for a in axis)
        elif not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise ValueError(f"{where}: axis must be an int or a non-empty list of ints, got "
                             f"{axis!r}")
        else:
            axis = int(axis)
        self.axis = axis
        self.epsilon = _number(epsilon, f"{where}: epsilon")
        if self.epsilon < 0:
            raise ValueError(f"{where}: epsilon must be >= 0, got {epsilon!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = initializers.check(beta_initializer, where)
        self.gamma_initializer = initializers.check(gamma_initializer, where)

    def _axes(self, input_shape) -> tuple[int, ...]:
        where = f"LayerNormalization layer '{self.name}'"
        axes = layer_norm_axes(self.axis, len(input_shape), where)
        if 0 in axes:
            raise ValueError(f"{where}: axis {self.axis!r} includes the batch axis of inputs of "
                             f"shape {tuple(input_shape)}; normalise over feature axes")
        return axes

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        self._axes(shape)

    def build(self, input_shape):
        axes = self._axes(input_shape)
        shape = tuple(input_shape[a] for a in axes)
        if (self.scale or self.rms_scaling or self.center) and None in shape:
            raise ValueError(f"LayerNormalization layer '{self.name}' needs known sizes on axis "
                             f"{self.axis!r}, got input shape {tuple(input_shape)}")
        self.gamma = (self.add_weight("gamma", shape, self.gamma_initializer)
                      if self.scale or self.rms_scaling else None)
        self.beta = (self.add_weight("beta", shape, self.beta_initializer)
                     if self.center and not self.rms_scaling else None)

    def call(self, x, training=False):
        return F.layer_norm(x, self.gamma, self.beta, self._axes(x.shape), self.epsilon,
                            self.rms_scaling)

    def inference_step(self, input_shape, backend):
        axes = self._axes(input_shape)
        gamma, beta, eps, rms = self.gamma, self.beta, self.epsilon, self.rms_scaling
        xp = backend.xp

        def step(a):
            shape = tuple(a.shape[i] for i in axes)
            g = xp.ones(shape, a.dtype) if gamma is None else gamma.data
            b = xp.zeros(shape, a.dtype) if beta is None else beta.data
            return LayerNormOp.evaluate(backend, a, g, b, axes=axes, eps=eps, rms=rms)

        return step

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer}


@register
class LocalResponseNormalization(Layer):
    """Local response normalisation across channels (the last axis), with the semantics and
    defaults of TensorFlow's ``tf.nn.local_response_normalization``::

        sqr_sum[c] = sum(x[c']^2 for c - depth_radius <= c' <= c + depth_radius)
        out[c] = x[c] / (bias + alpha * sqr_sum[c]) ** beta

    ONNX's ``LRN`` (and PyTorch's ``LocalResponseNorm``) divide alpha by the window size, so
    this layer equals ONNX LRN with ``size = 2 * depth_radius + 1``,
    ``alpha = alpha * size``, the same ``beta`` and ``bias`` (PyTorch: ``k = bias``). An ONNX
    LRN of odd ``size`` maps back with ``depth_radius = (size - 1) // 2`` and
    ``alpha = alpha_onnx / size``. Alias: ``LRN``.
    """

    def __init__(self, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5, **kwargs):
        super().__init__(**kwargs)
        where = f"LocalResponseNormalization layer '{self.name}'"
        if (not isinstance(depth_radius, numbers.Integral) or isinstance(depth_radius, bool)
                or depth_radius < 0):
            raise ValueError(f"{where}: depth_radius must be an int >= 0, got {depth_radius!r}")
        self.depth_radius = int(depth_radius)
        self.bias = _number(bias, f"{where}: bias")
        self.alpha = _number(alpha, f"{where}: alpha")
        self.beta = _number(beta, f"{where}: beta")

    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        if shape[-1] is None:
            raise ValueError(f"LocalResponseNormalization layer '{self.name}' needs a known "
                             f"channel axis, got input shape {tuple(shape)}")

    def call(self, x, training=False):
        return F.local_response_normalization(x, self.depth_radius, self.bias, self.alpha,
                                              self.beta)

    def inference_step(self, input_shape, backend):
        params = (self.depth_radius, self.bias, self.alpha, self.beta)

        def step(a):
            return backend.lrn_forward(a.reshape(-1, a.shape[-1]), *params)[0].reshape(a.shape)

        return step

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


LRN = LocalResponseNormalization
