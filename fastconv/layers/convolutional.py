"""Conv2D and Conv1D: thin layers over ``fastconv.functional.conv2d`` and ``conv1d``."""

from __future__ import annotations

from .. import activations, initializers
from .. import functional as F
from ..backends import FUSED_ACTIVATIONS, algorithms
from ..geometry import conv_geometry, normalize_tuple, output_length_for
from ..ops.conv import conv1d_padding
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
        if groups != 1:
            raise ValueError(f"{where}: grouped convolution is not supported (groups={groups!r})")
        check_data_format(where, data_format)
        self.filters = positive_int(filters, f"{where}: filters")
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
        self.compute_output_shape(input_shape)  # raises if the kernel does not fit
        self.kernel = self.add_weight("kernel", (*self.kernel_size, channels, self.filters),
                                      self.kernel_initializer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer)
                     if self.use_bias else None)

    def call(self, x, training=False):
        fused = self.activation in FUSED_ACTIVATIONS
        y = self._op(x, self.kernel, self.bias, self.strides, self.padding, self.dilation_rate,
                     activation=self.activation if fused else None)
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
        algo = algorithms.resolve(backend, geom, self.kernel.dtype, "forward")
        act = self.activation
        fused = act in FUSED_ACTIVATIONS
        run = backend.prepare_conv2d_forward(geom, algo, act if fused else "linear")
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
        if self.rank != 2 or self.activation not in FUSED_ACTIVATIONS or window is None:
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
        """A function returning ``(kernel, bias, key)`` as the step uses them: the layer's own
        arrays, or with ``norm`` their folding with it; ``key`` names the values (ids and
        versions), for the backend's cache of packed kernels."""
        kernel, bias = self.kernel, self.bias

        def own():
            # each array read once, before its version: the key never names other values
            w, b = kernel.data, None if bias is None else bias.data
            return w, b, (id(w), kernel.version) + (
                () if bias is None else (id(b), bias.version))

        if norm is None:
            return own
        *terms, eps = norm.folded_norm_terms(self.compute_output_shape(input_shape))
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

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


@register
class Conv2D(_Conv):
    """2D convolution over NHWC inputs with an HWIO kernel, as Keras's Conv2D."""

    input_ndim = 4

    def _geometry(self, input_shape):
        return conv_geometry(input_shape, self.kernel.shape, self.strides, self.padding,
                             self.dilation_rate)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        oh = output_length_for(h, self.kernel_size[0], self.strides[0], self.dilation_rate[0],
                               self.padding)
        ow = output_length_for(w, self.kernel_size[1], self.strides[1], self.dilation_rate[1],
                               self.padding)
        if (oh is not None and oh < 1) or (ow is not None and ow < 1):
            raise ValueError(
                f"Conv2D layer '{self.name}': the {self.kernel_size[0]}x{self.kernel_size[1]} "
                f"kernel does not fit the {h}x{w} input with padding '{self.padding}' (input "
                f"shape {tuple(input_shape)})")
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
        return conv_geometry((n, 1, steps, c), (1, *self.kernel.shape), (1, *self.strides),
                             self._padding_2d(), (1, *self.dilation_rate))

    def compute_output_shape(self, input_shape):
        n, steps, _ = input_shape
        k, s, d = self.kernel_size[0], self.strides[0], self.dilation_rate[0]
        pad = self._padding_2d()
        out = output_length_for(steps, k, s, d, pad if isinstance(pad, str) else pad[1])
        if out is not None and out < 1:
            raise ValueError(
                f"Conv1D layer '{self.name}': the kernel of size {k} (dilation {d}) does not fit "
                f"{steps} steps with padding '{self.padding}' (input shape {tuple(input_shape)})")
        return (n, out, self.filters)
