"""Conv2D, Conv1D, DepthwiseConv2D and SeparableConv2D: thin layers over
``fastconv.functional.conv2d`` (``groups`` for grouped and depthwise convolution) and
``conv1d``; Conv2DTranspose over ``fastconv.ops.conv2d_transpose``."""

from __future__ import annotations

from .. import activations, initializers
from .. import functional as F
from ..backends import FUSED_ACTIVATIONS, algorithms
from ..geometry import check_padded_plane, conv_geometry, normalize_tuple, output_length_for
from ..ops.conv import (
    Conv2DTransposeOp,
    check_groups,
    conv1d_padding,
    conv2d_transpose,
    conv_transpose_geometry,
    conv_transpose_padding,
    grouped_geometry,
)
from ..ops.normalization import fold_batch_norm
from .base import Layer, register
from .core import apply_activation, positive_int, unsupported


def check_data_format(layer: str, data_format) -> None:
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' (NHWC) is supported, got "
                         f"{data_format!r}")


def check_padding(layer: str, padding) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{layer}: padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def _one_of(options) -> str:
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _prepared_conv(backend, geom, groups: int, dtype, activation: str):
    """The backend's prepared forward pass (``run(x, w, b, weights_key)``) of a convolution with
    ``groups`` groups (1: dense, with the algorithm the current setting resolves to)."""
    if groups > 1:
        return backend.prepare_grouped_conv2d_forward(geom, groups, activation)
    algo = algorithms.resolve(backend, geom, dtype, "forward")
    return backend.prepare_conv2d_forward(geom, algo, activation)


def step_weights(backend, kernel, bias, terms=None, shape=None):
    """A function returning ``(kernel, bias, key)`` as an inference step uses them: the arrays
    of the Variables ``kernel`` and ``bias`` (None: no bias), the kernel reshaped to ``shape``
    where given, or with ``terms`` (a normalisation's ``folded_norm_terms``) their folding with
    it, folded again whenever one of the weights changes; ``key`` names the values (ids and
    versions), for the backend's cache of packed kernels."""

    def own():
        # each array read once, before its version: the key never names other values
        w, b = kernel.data, None if bias is None else bias.data
        key = (id(w), kernel.version) + (() if bias is None else (id(b), bias.version))
        return (w if shape is None else w.reshape(shape)), b, key

    if terms is None:
        return own
    *terms, eps = terms
    named = [(name, t) for name, t in zip(("gamma", "beta", "mean", "var"), terms)
             if t is not None]
    last = [None]  # (key, kernel, bias) of the latest folding: one entry, swapped whole

    def folded():
        w, b, key = own()
        arrays = [t.data for _, t in named]  # read once, before their versions
        key += tuple(x for (_, t), d in zip(named, arrays) for x in (id(d), t.version))
        entry = last[0]
        if entry is None or entry[0] != key:
            host = {name: backend.to_host(d) for (name, _), d in zip(named, arrays)}
            fw, fb = fold_batch_norm(backend.to_host(w),
                                     None if b is None else backend.to_host(b),
                                     host.get("gamma"), host.get("beta"), host["mean"],
                                     host["var"], eps)
            entry = last[0] = (key, backend.asarray(fw), backend.asarray(fb))
        return entry[1], entry[2], entry[0]

    return folded


def _output_size_2d(layer, input_shape) -> tuple:
    """(batch, out rows, out columns) of a 2D convolution layer (``kernel_size``, ``strides``,
    ``dilation_rate``, ``padding``) on ``input_shape``; a ValueError naming the layer when the
    kernel does not fit."""
    n, h, w, channels = input_shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    check_padded_plane(layer._where(), (h, w), layer.kernel_size, layer.strides,
                       layer.dilation_rate, layer.padding, channels)
    oh = output_length_for(h, kh, sh, dh, layer.padding)
    ow = output_length_for(w, kw, sw, dw, layer.padding)
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        raise ValueError(
            f"{type(layer).__name__} layer '{layer.name}': the {kh}x{kw} kernel does not fit "
            f"the {h}x{w} input with padding '{layer.padding}' (input shape "
            f"{tuple(input_shape)})")
    return n, oh, ow


class _Conv(Layer):
    """What Conv1D and Conv2D share: Keras's arguments, the weights, the config, the call and the
    inference step. A subclass gives its rank, its padding modes, its op and its convolution as
    a 2D one (``_geometry``)."""

    rank = 2
    padding_modes = ("valid", "same")
    _op = staticmethod(F.conv2d)

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} layer '{self.name}'"
        unsupported(where, kernel_regularizer=kernel_regularizer,
                    bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                    kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        check_data_format(where, data_format)
        self.filters = positive_int(filters, f"{where}: filters")
        self.groups = check_groups(groups, where)
        if self.filters % self.groups:
            raise ValueError(f"{where}: grouped convolution needs filters divisible by groups, "
                             f"got filters={self.filters} and groups={self.groups}")
        self.kernel_size = normalize_tuple(kernel_size, self.rank, f"{where}: kernel_size")
        self.strides = normalize_tuple(strides, self.rank, f"{where}: strides")
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, f"{where}: dilation_rate")
        ones = (1,) * self.rank
        if self.strides != ones and self.dilation_rate != ones:
            raise ValueError(f"{where}: strides > 1 together with dilation_rate > 1 is not "
                             f"supported (as in Keras)")
        mode = padding.lower() if isinstance(padding, str) else None
        if mode not in self.padding_modes:
            raise ValueError(f"{where}: padding must be {_one_of(self.padding_modes)}, got "
                             f"{padding!r}")
        self.padding = mode
        self.activation = activations.canonical(activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, where)
        self.bias_initializer = initializers.check(bias_initializer, where)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} layer '{self.name}' needs a known channel "
                             f"axis, got {input_shape}")
        if channels % self.groups:
            raise ValueError(f"{type(self).__name__} layer '{self.name}': grouped convolution "
                             f"needs input channels divisible by groups, got {channels} channels "
                             f"and groups={self.groups} (input shape {tuple(input_shape)})")
        self.compute_output_shape(input_shape)  # raises if the kernel does not fit
        self.kernel = self.add_weight(
            "kernel", (*self.kernel_size, channels // self.groups, self.filters),
            self.kernel_initializer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer)
                     if self.use_bias else None)

    def call(self, x, training=False):
        fused = self.activation in FUSED_ACTIVATIONS
        y = self._op(x, self.kernel, self.bias, self.strides, self.padding, self.dilation_rate,
                     activation=self.activation if fused else None, groups=self.groups)
        return apply_activation(y, self.activation, fused)

    def _geometry(self, input_shape):
        """The convolution of an input of ``input_shape`` as a 2D one (NHWC, HWIO)."""
        raise NotImplementedError

    def absorbs_norm(self, norm, input_shape) -> bool:
        """A convolution without an activation takes the batch normalisation after it into its
        kernel and bias (``fastconv.ops.fold_batch_norm``)."""
        output_shape = self.compute_output_shape(input_shape)
        return self.activation == "linear" and norm.folded_norm_terms(output_shape) is not None

    def inference_step(self, input_shape, backend, norm=None):
        """With ``norm`` (see ``absorbs_norm``), the step computes ``norm(conv(x))`` with the
        folded kernel and bias, folded again whenever one of the six weights changes."""
        geom = self._geometry(input_shape)
        act = self.activation
        fused = act in FUSED_ACTIVATIONS
        run = _prepared_conv(backend, geom, self.groups, self.kernel.dtype,
                             act if fused else "linear")
        as_image = self.rank == 1  # (batch, steps, channels) runs as (batch, 1, steps, channels)
        weights = self._step_weights(backend, norm, input_shape)

        def step(a):
            w, b, key = weights()
            if as_image:
                a, w = a.reshape(a.shape[0], 1, *a.shape[1:]), w.reshape(1, *w.shape)
            y = run(a, w, b, key)
            if as_image:
                y = y.reshape(y.shape[0], y.shape[2], y.shape[3])
            return y if fused else activations.on_array(act, backend, y)

        return step

    def pooled_inference_step(self, input_shape, backend, pool, norm=None):
        """A 2D convolution whose activation the kernels fuse takes a pooling without
        overlap or padding after it, where the backend's algorithm for it has such a pass."""
        window = getattr(pool, "fusable_window", None)
        if (self.rank != 2 or self.groups != 1 or self.activation not in FUSED_ACTIVATIONS
                or window is None):
            return None
        found = window(self.compute_output_shape(input_shape))
        if found is None:
            return None
        kind, pool_geom = found
        geom = self._geometry(input_shape)
        algo = algorithms.resolve(backend, geom, self.kernel.dtype, "forward")
        run = backend.prepare_conv2d_pool_forward(geom, algo, self.activation, pool_geom, kind)
        if run is None:
            return None
        weights = self._step_weights(backend, norm, input_shape)

        def step(a):
            w, b, key = weights()
            return run(a, w, b, key)

        return step

    def _step_weights(self, backend, norm, input_shape):
        """``step_weights`` of the layer's kernel and bias (folded with ``norm``)."""
        terms = (None if norm is None
                 else norm.folded_norm_terms(self.compute_output_shape(input_shape)))
        return step_weights(backend, self.kernel, self.bias, terms)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


@register
class Conv2D(_Conv):
    """2D convolution over NHWC inputs with an HWIO kernel, as Keras's Conv2D."""

    input_ndim = 4

    def _geometry(self, input_shape):
        if self.groups > 1:
            return grouped_geometry(input_shape, self.kernel.shape, self.groups, self.strides,
                                    self.padding, self.dilation_rate, self._where())
        return conv_geometry(input_shape, self.kernel.shape, self.strides, self.padding,
                             self.dilation_rate)

    def compute_output_shape(self, input_shape):
        n, oh, ow = _output_size_2d(self, input_shape)
        return (n, oh, ow, self.filters)


@register
class Conv1D(_Conv):
    """1D convolution over (batch, steps, channels) inputs with a (k, in, out) kernel, as
    Keras's Conv1D; ``padding`` 'valid', 'same' or 'causal'. Runs as a Conv2D over a
    (batch, 1, steps, channels) image, so every algorithm of every backend serves it."""

    input_ndim = 3
    rank = 1
    padding_modes = ("valid", "same", "causal")
    _op = staticmethod(F.conv1d)

    def _padding_2d(self):
        return conv1d_padding(self.padding, self.kernel_size[0], self.dilation_rate[0])

    def _geometry(self, input_shape):
        n, steps, c = input_shape
        if self.groups > 1:
            return grouped_geometry((n, 1, steps, c), (1, *self.kernel.shape), self.groups,
                                    (1, *self.strides), self._padding_2d(),
                                    (1, *self.dilation_rate), self._where())
        return conv_geometry((n, 1, steps, c), (1, *self.kernel.shape), (1, *self.strides),
                             self._padding_2d(), (1, *self.dilation_rate))

    def compute_output_shape(self, input_shape):
        n, steps, channels = input_shape
        k, s, d = self.kernel_size[0], self.strides[0], self.dilation_rate[0]
        pad = self._padding_2d()
        check_padded_plane(self._where(), (1, steps), (1, k), (1, s), (1, d), pad, channels)
        out = output_length_for(steps, k, s, d, pad if isinstance(pad, str) else pad[1])
        if out is not None and out < 1:
            raise ValueError(
                f"Conv1D layer '{self.name}': the kernel of size {k} (dilation {d}) does not fit "
                f"{steps} steps with padding '{self.padding}' (input shape {tuple(input_shape)})")
        return (n, out, self.filters)


class _DepthwiseBase(Layer):
    """What DepthwiseConv2D and SeparableConv2D share: Keras's arguments of the depthwise step,
    its (kh, kw, C, depth_multiplier) kernel and its convolution (groups == C)."""

    input_ndim = 4

    def _setup(self, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
               activation, use_bias, depthwise_initializer, bias_initializer, **off):
        where = f"{type(self).__name__} layer '{self.name}'"
        unsupported(where, **off)
        check_data_format(where, data_format)
        self.kernel_size = normalize_tuple(kernel_size, 2, f"{where}: kernel_size")
        self.strides = normalize_tuple(strides, 2, f"{where}: strides")
        self.dilation_rate = normalize_tuple(dilation_rate, 2, f"{where}: dilation_rate")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError(f"{where}: strides > 1 together with dilation_rate > 1 is not "
                             f"supported (as in Keras)")
        self.padding = check_padding(where, padding)
        self.depth_multiplier = positive_int(depth_multiplier, f"{where}: depth_multiplier")
        self.activation = activations.canonical(activation, where)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.check(depthwise_initializer, where)
        self.bias_initializer = initializers.check(bias_initializer, where)

    def _channels(self, input_shape) -> int:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} layer '{self.name}' needs a known channel "
                             f"axis, got {input_shape}")
        return channels

    def _add_depthwise_kernel(self, channels: int):
        self.depthwise_kernel = self.add_weight(
            "depthwise_kernel", (*self.kernel_size, channels, self.depth_multiplier),
            self.depthwise_initializer)

    def _grouped_shape(self, channels: int) -> tuple:
        """The depthwise kernel as a grouped HWIO kernel: (kh, kw, 1, C * depth_multiplier)."""
        return (*self.kernel_size, 1, channels * self.depth_multiplier)

    def _depthwise(self, x, bias, activation):
        """The depthwise convolution of Tensor ``x`` (fused activation or None)."""
        channels = x.shape[-1]
        kernel = F.reshape(self.depthwise_kernel, self._grouped_shape(channels))
        return F.conv2d(x, kernel, bias, self.strides, self.padding, self.dilation_rate,
                        activation=activation, groups=channels)

    def _depthwise_geometry(self, input_shape):
        channels = input_shape[-1]
        return grouped_geometry(input_shape, self._grouped_shape(channels), channels,
                                self.strides, self.padding, self.dilation_rate, self._where())

    def _depthwise_config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "depth_multiplier": self.depth_multiplier,
                "dilation_rate": list(self.dilation_rate), "activation": self.activation,
                "use_bias": self.use_bias, "depthwise_initializer": self.depthwise_initializer,
                "bias_initializer": self.bias_initializer}

    def absorbs_norm(self, norm, input_shape) -> bool:
        """Without an activation, the batch normalisation after the layer folds into its last
        kernel and bias (``fastconv.ops.fold_batch_norm``)."""
        output_shape = self.compute_output_shape(input_shape)
        return self.activation == "linear" and norm.folded_norm_terms(output_shape) is not None

    def _norm_terms(self, norm, input_shape):
        return (None if norm is None
                else norm.folded_norm_terms(self.compute_output_shape(input_shape)))


@register
class DepthwiseConv2D(_DepthwiseBase):
    """Depthwise 2D convolution over NHWC inputs, as Keras's DepthwiseConv2D: each input channel
    c convolved with its own ``depth_multiplier`` filters ``depthwise_kernel[:, :, c, m]`` into
    output channel ``c * depth_multiplier + m`` (a grouped convolution with groups == C)."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self._setup(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                    activation, use_bias, depthwise_initializer, bias_initializer,
                    depthwise_regularizer=depthwise_regularizer,
                    bias_regularizer=bias_regularizer,
                    activity_regularizer=activity_regularizer,
                    depthwise_constraint=depthwise_constraint, bias_constraint=bias_constraint)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.compute_output_shape(input_shape)  # raises if the kernel does not fit
        self._add_depthwise_kernel(channels)
        self.bias = (self.add_weight("bias", (channels * self.depth_multiplier,),
                                     self.bias_initializer) if self.use_bias else None)

    @property
    def kernel(self):
        """The depthwise kernel (Keras 3's name for it)."""
        return self.depthwise_kernel

    def call(self, x, training=False):
        fused = self.activation in FUSED_ACTIVATIONS
        y = self._depthwise(x, self.bias, self.activation if fused else None)
        return apply_activation(y, self.activation, fused)

    def compute_output_shape(self, input_shape):
        n, oh, ow = _output_size_2d(self, input_shape)
        channels = input_shape[-1]
        return (n, oh, ow, None if channels is None else channels * self.depth_multiplier)

    def inference_step(self, input_shape, backend, norm=None):
        """The backend's grouped forward pass (groups == C) on the kernel seen as (kh, kw, 1,
        C * depth_multiplier); with ``norm`` (see ``absorbs_norm``) its folding."""
        geom = self._depthwise_geometry(input_shape)
        act = self.activation
        fused = act in FUSED_ACTIVATIONS
        run = backend.prepare_grouped_conv2d_forward(geom, geom.c, act if fused else "linear")
        weights = step_weights(backend, self.depthwise_kernel, self.bias,
                               self._norm_terms(norm, input_shape),
                               shape=self._grouped_shape(geom.c))

        def step(a):
            w, b, key = weights()
            y = run(a, w, b, key)
            return y if fused else activations.on_array(act, backend, y)

        return step

    def get_config(self):
        return {**super().get_config(), **self._depthwise_config()}


@register
class SeparableConv2D(_DepthwiseBase):
    """Depthwise separable 2D convolution, as Keras's SeparableConv2D: a depthwise convolution
    (``depthwise_kernel`` (kh, kw, C, depth_multiplier), no bias) followed by a pointwise 1x1
    convolution (``pointwise_kernel`` (1, 1, C * depth_multiplier, filters)) with the bias and
    the activation."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} layer '{self.name}'"
        self.filters = positive_int(filters, f"{where}: filters")
        self._setup(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                    activation, use_bias, depthwise_initializer, bias_initializer,
                    depthwise_regularizer=depthwise_regularizer,
                    pointwise_regularizer=pointwise_regularizer,
                    bias_regularizer=bias_regularizer,
                    activity_regularizer=activity_regularizer,
                    depthwise_constraint=depthwise_constraint,
                    pointwise_constraint=pointwise_constraint, bias_constraint=bias_constraint)
        self.pointwise_initializer = initializers.check(pointwise_initializer, where)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.compute_output_shape(input_shape)  # raises if the kernel does not fit
        self._add_depthwise_kernel(channels)
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel", (1, 1, channels * self.depth_multiplier, self.filters),
            self.pointwise_initializer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer)
                     if self.use_bias else None)

    def call(self, x, training=False):
        fused = self.activation in FUSED_ACTIVATIONS
        z = self._depthwise(x, None, None)
        y = F.conv2d(z, self.pointwise_kernel, self.bias,
                     activation=self.activation if fused else None)
        return apply_activation(y, self.activation, fused)

    def compute_output_shape(self, input_shape):
        n, oh, ow = _output_size_2d(self, input_shape)
        return (n, oh, ow, self.filters)

    def inference_step(self, input_shape, backend, norm=None):
        """The depthwise step (the backend's grouped forward pass), then the pointwise one
        (its dense forward pass) with the bias and the activation; with ``norm`` (see
        ``absorbs_norm``) folded into the pointwise kernel and bias."""
        geom = self._depthwise_geometry(input_shape)
        act = self.activation
        fused = act in FUSED_ACTIVATIONS
        depthwise = backend.prepare_grouped_conv2d_forward(geom, geom.c, "linear")
        point_geom = conv_geometry(geom.y_shape, self.pointwise_kernel.shape)
        pointwise = _prepared_conv(backend, point_geom, 1, self.pointwise_kernel.dtype,
                                   act if fused else "linear")
        depthwise_weights = step_weights(backend, self.depthwise_kernel, None,
                                         shape=self._grouped_shape(geom.c))
        pointwise_weights = step_weights(backend, self.pointwise_kernel, self.bias,
                                         self._norm_terms(norm, input_shape))

        def step(a):
            w, _, key = depthwise_weights()
            z = depthwise(a, w, None, key)
            w, b, key = pointwise_weights()
            y = pointwise(z, w, b, key)
            return y if fused else activations.on_array(act, backend, y)

        return step

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, **self._depthwise_config(),
                "pointwise_initializer": self.pointwise_initializer}


@register
class Conv2DTranspose(Layer):
    """Transposed 2D convolution over NHWC inputs, as Keras's Conv2DTranspose: the kernel is
    (kh, kw, filters, in) and the output is what the backward-data pass of a convolution with
    that HWIO kernel makes of the input (``fastconv.ops.conv2d_transpose``); ``padding``
    'valid' or 'same' and ``output_padding`` with Keras's output sizes."""

    input_ndim = 4

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        where = f"Conv2DTranspose layer '{self.name}'"
        unsupported(where, kernel_regularizer=kernel_regularizer,
                    bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                    kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        check_data_format(where, data_format)
        self.filters = positive_int(filters, f"{where}: filters")
        self.kernel_size = normalize_tuple(kernel_size, 2, f"{where}: kernel_size")
        self.strides = normalize_tuple(strides, 2, f"{where}: strides")
        self.dilation_rate = normalize_tuple(dilation_rate, 2, f"{where}: dilation_rate")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError(f"{where}: strides > 1 together with dilation_rate > 1 is not "
                             f"supported (as in Keras)")
        self.output_padding = (None if output_padding is None else normalize_tuple(
            output_padding, 2, f"{where}: output_padding", minimum=0))
        if self.output_padding is not None and any(
                p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"{where}: output_padding {self.output_padding} must be smaller "
                             f"than the strides {self.strides} (as in Keras)")
        self.padding = check_padding(where, padding)
        self.activation = activations.canonical(activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, where)
        self.bias_initializer = initializers.check(bias_initializer, where)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"Conv2DTranspose layer '{self.name}' needs a known channel axis, "
                             f"got {input_shape}")
        self.compute_output_shape(input_shape)  # raises if the output would be empty
        self.kernel = self.add_weight("kernel", (*self.kernel_size, self.filters, channels),
                                      self.kernel_initializer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        out = []
        for size, k, s, d, p in zip((h, w), self.kernel_size, self.strides, self.dilation_rate,
                                    self.output_padding or (None, None)):
            length = conv_transpose_padding(size, k, s, d, self.padding, p)[0]
            if length is not None and length < 1:
                raise ValueError(
                    f"Conv2DTranspose layer '{self.name}': input shape {tuple(input_shape)} "
                    f"gives an empty output (kernel {self.kernel_size}, strides {self.strides}, "
                    f"padding '{self.padding}', output_padding {self.output_padding})")
            out.append(length)
        return (n, *out, self.filters)

    def _transpose(self, x, activation):
        return conv2d_transpose(x, self.kernel, self.bias, self.strides, self.padding,
                                self.output_padding, self.dilation_rate, activation)

    def call(self, x, training=False):
        fused = self.activation in FUSED_ACTIVATIONS
        y = self._transpose(x, self.activation if fused else None)
        return apply_activation(y, self.activation, fused)

    def inference_step(self, input_shape, backend):
        """``Conv2DTransposeOp`` (the backend's convolution backward-data pass) on the current
        weights, its geometry worked out once per input shape."""
        act = self.activation
        fused = act in FUSED_ACTIVATIONS
        kernel, bias = self.kernel, self.bias
        algo = algorithms.current_conv_algo()
        geometries = {}

        def step(a):
            if a.shape not in geometries:
                geometries[a.shape] = conv_transpose_geometry(
                    a.shape, kernel.shape, self.strides, self.padding, self.output_padding,
                    self.dilation_rate, f"Conv2DTranspose layer '{self.name}'")
            geom, extra = geometries[a.shape]
            y = Conv2DTransposeOp.evaluate(backend, a, kernel.data,
                                           None if bias is None else bias.data, geom=geom,
                                           algo=algo, activation=act if fused else "linear",
                                           extra=extra)
            return y if fused else activations.on_array(act, backend, y)

        return step

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding,
                "output_padding": (None if self.output_padding is None
                                   else list(self.output_padding)),
                "dilation_rate": list(self.dilation_rate), "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}
