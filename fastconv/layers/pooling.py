"""Pooling layers: 2D and 1D max/average pooling, 2D and 1D global average and max pooling."""

from __future__ import annotations

from .. import functional as F
from ..geometry import check_padded_plane, normalize_tuple, output_length_for, resolve_padding
from ..ops.pool import (
    global_avg_pool1d,
    global_max_pool1d,
    is_explicit_padding,
    pool2d_plan,
)
from .base import Layer, register
from .convolutional import check_data_format, check_padding


class _Pooling(Layer):
    rank = 2
    op = None  # the functional op

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 ceil_mode=False, count_include_pad=False, **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} layer '{self.name}'"
        check_data_format(where, data_format)
        self.pool_size = normalize_tuple(pool_size, self.rank, f"{where}: pool_size")
        self.strides = normalize_tuple(self.pool_size if strides is None else strides, self.rank,
                                       f"{where}: strides")
        if self.rank == 2 and not isinstance(padding, str) and is_explicit_padding(padding):
            # explicit ((top, bottom), (left, right)) padding, as ONNX's and PyTorch's pooling
            t, b, left, r = resolve_padding(padding, self.pool_size, self.strides, (1, 1),
                                            (None, None), f"{where}: padding")
            if t >= self.pool_size[0] or b >= self.pool_size[0] or max(left, r) >= \
                    self.pool_size[1]:
                raise ValueError(f"{where}: padding {padding!r} must be smaller than the pool "
                                 f"{self.pool_size} on each side")
            self.padding = ((t, b), (left, r))
        else:
            self.padding = check_padding(where, padding)
        if (ceil_mode or count_include_pad) and self.rank != 2:
            raise ValueError(f"{where}: ceil_mode and count_include_pad are 2D pooling options")
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if self.count_include_pad and type(self).op is not F.avg_pool2d:
            raise ValueError(f"{where}: count_include_pad is an average pooling option")

    def _plan(self, input_shape):
        return pool2d_plan(input_shape, self.pool_size, self.strides, self.padding,
                           self.ceil_mode, self.count_include_pad,
                           op=f"{type(self).__name__} layer '{self.name}'")

    @property
    def _keras_semantics(self) -> bool:
        return isinstance(self.padding, str) and not self.ceil_mode

    @property
    def input_ndim(self):
        return self.rank + 2

    def compute_output_shape(self, input_shape):
        spatial = tuple(input_shape)[1:-1]
        check_padded_plane(f"{type(self).__name__} layer '{self.name}'", spatial,
                           self.pool_size, self.strides, (1,) * self.rank, self.padding,
                           input_shape[-1])
        if not self._keras_semantics:
            if any(d is None for d in spatial):
                return (input_shape[0], None, None, input_shape[-1])
            _, geom = self._plan((1, *spatial, 1))
            return (input_shape[0], geom.oh, geom.ow, input_shape[-1])
        out = []
        for size, p, s in zip(spatial, self.pool_size, self.strides):
            if size is not None and self.padding == "valid" and p > size:
                raise ValueError(
                    f"{type(self).__name__} layer '{self.name}': pool_size {self.pool_size} is "
                    f"larger than the input {spatial} (input shape {tuple(input_shape)})")
            out.append(output_length_for(size, p, s, 1, self.padding))
        return (input_shape[0], *out, input_shape[-1])

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def fusable_window(self, input_shape):
        """``(kind, geom)`` where an inference plan may pool inside the convolution before this
        layer: 2D windows that neither overlap nor pad ('max' or 'average', the PoolGeometry
        over an input of ``input_shape``); None otherwise."""
        if self.rank != 2:
            return None
        pre, geom = self._plan(input_shape)
        if pre is not None or geom.pt or geom.pb or geom.pl or geom.pr or \
                geom.sh < geom.ph or geom.sw < geom.pw:
            return None
        return ("max" if type(self).op is F.max_pool2d else "average"), geom

    def inference_step(self, input_shape, backend):
        if self.rank != 2:
            return super().inference_step(input_shape, backend)
        pre, geom = self._plan(input_shape)
        if type(self).op is F.max_pool2d:
            return lambda a: backend.max_pool2d_forward(a, geom, with_argmax=False)[0]
        if pre is None:
            return lambda a: backend.avg_pool2d_forward(a, geom)
        return lambda a: backend.avg_pool2d_forward(F.ZeroPad2DOp.evaluate(backend, a, pads=pre),
                                                    geom)

    def call(self, x, training=False):
        if self.rank != 2:
            return type(self).op(x, self.pool_size[0], self.strides[0], self.padding)
        if self.count_include_pad:
            return F.avg_pool2d(x, self.pool_size, self.strides, self.padding, self.ceil_mode,
                                True)
        if self.ceil_mode:
            return type(self).op(x, self.pool_size, self.strides, self.padding, self.ceil_mode)
        return type(self).op(x, self.pool_size, self.strides, self.padding)

    def get_config(self):
        padding = (self.padding if isinstance(self.padding, str)
                   else [list(p) for p in self.padding])
        config = {**super().get_config(), "pool_size": list(self.pool_size),
                  "strides": list(self.strides), "padding": padding}
        # fastconv's options beyond Keras's appear only when set, so Keras reads the rest
        if self.ceil_mode:
            config["ceil_mode"] = True
        if self.count_include_pad:
            config["count_include_pad"] = True
        return config


@register
class MaxPooling2D(_Pooling):
    op = staticmethod(F.max_pool2d)

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 ceil_mode=False, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, ceil_mode, **kwargs)


@register
class AveragePooling2D(_Pooling):
    """Average pooling; fastconv's options beyond Keras's: explicit ``padding``
    ``((top, bottom), (left, right))``, ``ceil_mode`` and ``count_include_pad`` (ONNX's and
    PyTorch's semantics)."""

    op = staticmethod(F.avg_pool2d)

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 ceil_mode=False, count_include_pad=False, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, ceil_mode, count_include_pad,
                         **kwargs)


@register
class MaxPooling1D(_Pooling):
    rank = 1
    op = staticmethod(F.max_pool1d)


@register
class AveragePooling1D(_Pooling):
    rank = 1
    op = staticmethod(F.avg_pool1d)


class _GlobalPooling2D(Layer):
    input_ndim = 4
    op = None  # the functional op, (N, H, W, C) -> (N, C)

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(f"{type(self).__name__} layer '{self.name}'", data_format)
        self.keepdims = bool(keepdims)

    def call(self, x, training=False):
        y = type(self).op(x)
        return F.reshape(y, (y.shape[0], 1, 1, y.shape[1])) if self.keepdims else y

    def compute_output_shape(self, input_shape):
        n, c = input_shape[0], input_shape[-1]
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


@register
class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over H and W: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True."""

    op = staticmethod(F.global_avg_pool2d)


@register
class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum over H and W: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True."""

    op = staticmethod(F.global_max_pool2d)

    def inference_step(self, input_shape, backend):
        keepdims = self.keepdims

        def step(a):
            return a.max(axis=(1, 2), keepdims=keepdims)

        return step


class _GlobalPooling1D(_GlobalPooling2D):
    input_ndim = 3
    op = None  # the pooling op, (N, steps, C) -> (N, C)
    reduce = None  # the array method of the inference step: "mean" or "max"

    def call(self, x, training=False):
        y = type(self).op(x)
        return F.reshape(y, (y.shape[0], 1, y.shape[1])) if self.keepdims else y

    def compute_output_shape(self, input_shape):
        n, c = input_shape[0], input_shape[-1]
        return (n, 1, c) if self.keepdims else (n, c)

    def inference_step(self, input_shape, backend):
        keepdims, reduce = self.keepdims, self.reduce

        def step(a):
            return getattr(a, reduce)(axis=1, keepdims=keepdims)

        return step


@register
class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the steps: (N, steps, C) -> (N, C), or (N, 1, C) with keepdims=True."""

    op = staticmethod(global_avg_pool1d)
    reduce = "mean"


@register
class GlobalMaxPooling1D(_GlobalPooling1D):
    """Maximum over the steps: (N, steps, C) -> (N, C), or (N, 1, C) with keepdims=True."""

    op = staticmethod(global_max_pool1d)
    reduce = "max"
