"""Normalisation ops: batch normalisation (training and inference forms) and local response
normalisation across channels, each a primitive of every backend (``batch_norm_*``,
``lrn_*``); layer normalisation over chosen axes (array code of ``backend.xp``); and
:func:`fold_batch_norm`, which folds an inference-mode batch normalisation into the convolution
or dense layer before it."""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Function, Tensor
from .base import as_tensor, same_backend, same_dtype


def _rows(xp, a, axis: int):
    """``a`` as a C-contiguous (rows, channels) array, channels taken from ``axis``."""
    if axis != a.ndim - 1:
        a = xp.moveaxis(a, axis, -1)
    return xp.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _unrows(xp, a2, shape: tuple, axis: int):
    """The inverse of :func:`_rows` for an array of ``shape``."""
    if axis == len(shape) - 1:
        return a2.reshape(shape)
    moved = (*shape[:axis], *shape[axis + 1:], shape[axis])
    return xp.ascontiguousarray(xp.moveaxis(a2.reshape(moved), -1, axis))


class BatchNormOp(Function):
    """``y = (x - mean) * gamma / sqrt(var + eps) + beta`` per channel (the ``axis`` of x).
    ``training``: mean and var are x's own batch statistics, and the backward pass
    differentiates through them; otherwise they are constants (the moving statistics)."""

    def forward(self, x, gamma, beta, *, mean, var, eps, training, axis):
        be, xp = self.backend, self.backend.xp
        x2 = _rows(xp, x, axis)
        self.x2, self.gamma, self.mean, self.var = x2, gamma, mean, var
        self.eps, self.training, self.axis, self.shape = eps, training, axis, x.shape
        return _unrows(xp, be.batch_norm_forward(x2, gamma, beta, mean, var, eps), x.shape, axis)

    def backward(self, dy):
        be, xp = self.backend, self.backend.xp
        dx, dgamma, dbeta = be.batch_norm_backward(
            _rows(xp, dy, self.axis), self.x2, self.gamma, self.mean, self.var, self.eps,
            self.training)
        return _unrows(xp, dx, self.shape, self.axis), dgamma, dbeta


def _bn_args(op: str, x, gamma, beta, axis, epsilon):
    x = as_tensor(x, f"{op} input")
    if not isinstance(axis, numbers.Integral) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis!r} is out of range for a {x.ndim}D input "
                         f"{x.shape}")
    if not isinstance(epsilon, numbers.Real) or not epsilon > 0:
        raise ValueError(f"{op}: epsilon must be a positive number, got {epsilon!r}")
    ax = int(axis) % x.ndim
    channels = x.shape[ax]
    xp = x._backend.xp
    out = []
    for name, t, fill in (("gamma", gamma, 1.0), ("beta", beta, 0.0)):
        if t is None:  # scale=False / center=False: a constant, no gradient
            t = Tensor(xp.full(channels, fill, dtype=x.dtype), backend=x._backend)
        t = as_tensor(t, f"{op} {name}")
        if t.shape != (channels,):
            raise ValueError(f"{op}: {name} must have shape ({channels},) (the size of axis "
                             f"{axis} of the input {x.shape}), got {t.shape}")
        out.append(t)
    same_dtype(op, input=x, gamma=out[0], beta=out[1])
    return x, out[0], out[1], ax, float(epsilon)


def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon: float = 1e-3,
               axis: int = -1) -> Tensor:
    """Batch normalisation with given statistics (inference, Keras's moving mean and
    variance): ``(x - mean) * gamma / sqrt(variance + epsilon) + beta`` along ``axis``.
    ``gamma``/``beta`` None: 1 and 0. Gradients flow to x, gamma and beta, not to the
    statistics."""
    x, gamma, beta, ax, eps = _bn_args("batch_norm", x, gamma, beta, axis, epsilon)
    be = x._backend
    stats = []
    for name, s in (("mean", mean), ("variance", variance)):
        s = s.data if isinstance(s, Tensor) else s
        s = be.asarray(s, dtype=x.dtype)
        if s.shape != (x.shape[ax],):
            raise ValueError(f"batch_norm: {name} must have shape ({x.shape[ax]},), got "
                             f"{tuple(s.shape)}")
        stats.append(s)
    return BatchNormOp.apply(x, gamma, beta, mean=stats[0], var=stats[1], eps=eps,
                             training=False, axis=ax)


def batch_norm_training(x, gamma=None, beta=None, epsilon: float = 1e-3,
                        axis: int = -1) -> tuple[Tensor, Tensor, Tensor]:
    """Batch normalisation with the batch's own statistics (training) -> ``(y, mean,
    variance)``: the per-channel mean and biased variance over every axis but ``axis`` come
    back (without gradients) for the caller's moving averages."""
    x, gamma, beta, ax, eps = _bn_args("batch_norm_training", x, gamma, beta, axis, epsilon)
    if x.size == 0:
        raise ValueError(f"batch_norm_training: the batch is empty (input shape {x.shape})")
    be = x._backend
    mean, var = be.batch_norm_statistics(_rows(be.xp, x.data, ax))
    y = BatchNormOp.apply(x, gamma, beta, mean=mean, var=var, eps=eps, training=True, axis=ax)
    return y, Tensor(mean, backend=be), Tensor(var, backend=be)


class LayerNormOp(Function):
    """Layer normalisation over ``axes`` (sorted, non-negative) of each sample, Keras 3's
    ``ops.layer_normalization``; ``gamma`` and ``beta`` have the shape of those axes::

        mean, var = mean and biased variance of x over axes
        r = 1 / sqrt(var + eps)
        xhat = (x - mean) * r      (rms=False)
        xhat = x * r               (rms=True: Keras's rms_scaling, x scaled by its variance)
        y = xhat * gamma + beta

    Backward, with ``g = dy * gamma`` and means over ``axes``::

        dx = r * (g - mean(g) - xhat * mean(g * xhat))          (rms=False)
        dx = r * g - r^3 * (x - mean) * mean(g * x)             (rms=True)
        dgamma = sum(dy * xhat), dbeta = sum(dy) over the other axes
    """

    def forward(self, x, gamma, beta, *, axes, eps, rms):
        xp = self.backend.xp
        shape = [1] * x.ndim
        for a in axes:
            shape[a] = x.shape[a]
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        r = 1 / xp.sqrt(var + x.dtype.type(eps))
        xhat = (x if rms else xc) * r
        g = gamma.reshape(shape)
        self.xhat, self.r, self.g, self.axes, self.rms = xhat, r, g, axes, rms
        self.others = tuple(i for i in range(x.ndim) if i not in axes)
        self.param_shape = gamma.shape
        if rms:
            self.x, self.xc = x, xc
        return xhat * g + beta.reshape(shape)

    def backward(self, dy):
        axes, need = self.axes, self.needs_input_grad
        dx = dgamma = dbeta = None
        if need[0]:
            g = dy * self.g
            if self.rms:
                dx = self.r * g - self.r ** 3 * self.xc * (g * self.x).mean(axis=axes,
                                                                             keepdims=True)
            else:
                dx = self.r * (g - g.mean(axis=axes, keepdims=True)
                               - self.xhat * (g * self.xhat).mean(axis=axes, keepdims=True))
        if need[1]:
            dgamma = (dy * self.xhat).sum(axis=self.others).reshape(self.param_shape)
        if need[2]:
            dbeta = dy.sum(axis=self.others).reshape(self.param_shape)
        return dx, dgamma, dbeta


def layer_norm_axes(axis, ndim: int, where: str = "layer_norm") -> tuple[int, ...]:
    """``axis`` (an int or a list of ints, negative counting from the end) as sorted
    non-negative axes of a ``ndim``-D input; duplicates and axes out of range are refused."""
    given = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not given or any(not isinstance(a, numbers.Integral) or isinstance(a, bool)
                        for a in given):
        raise ValueError(f"{where}: axis must be an int or a non-empty list of ints, got "
                         f"{axis!r}")
    if any(not -ndim <= a < ndim for a in given):
        raise ValueError(f"{where}: axis {axis!r} is out of range for {ndim}D inputs")
    axes = sorted(int(a) % ndim for a in given)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{where}: axis {axis!r} names an axis twice")
    return tuple(axes)


def layer_norm(x, gamma=None, beta=None, axis=-1, epsilon: float = 1e-3,
               rms_scaling: bool = False) -> Tensor:
    """Layer normalisation of ``x`` over ``axis`` (an int or a list of ints), as Keras 3's
    ``keras.ops.layer_normalization``: ``(x - mean) / sqrt(var + epsilon) * gamma + beta``
    with the mean and biased variance over those axes. ``gamma`` and ``beta`` have the sizes of
    the normalised axes in increasing axis order (None: 1 and 0). ``rms_scaling=True`` is
    Keras's (deprecated) variant ``x / sqrt(var + epsilon) * gamma``, which takes no beta."""
    x = as_tensor(x, "layer_norm input")
    axes = layer_norm_axes(axis, x.ndim)
    if not isinstance(epsilon, numbers.Real) or isinstance(epsilon, bool) or not epsilon >= 0:
        raise ValueError(f"layer_norm: epsilon must be a number >= 0, got {epsilon!r}")
    if rms_scaling and beta is not None:
        raise ValueError("layer_norm: rms_scaling=True takes no beta (Keras's rms_scaling "
                         "computes x / sqrt(var + epsilon) * gamma)")
    shape = tuple(x.shape[a] for a in axes)
    xp = x._backend.xp
    params = []
    for name, t, fill in (("gamma", gamma, 1.0), ("beta", beta, 0.0)):
        if t is None:  # scale=False / center=False: a constant, no gradient
            t = Tensor(xp.full(shape, fill, dtype=x.dtype), backend=x._backend)
        t = as_tensor(t, f"layer_norm {name}")
        if t.shape != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape} (the sizes of axes "
                             f"{list(axes)} of the input {x.shape}), got {t.shape}")
        params.append(t)
    same_dtype("layer_norm", input=x, gamma=params[0], beta=params[1])
    same_backend("layer_norm", input=x, gamma=params[0], beta=params[1])
    return LayerNormOp.apply(x, params[0], params[1], axes=axes, eps=float(epsilon),
                             rms=bool(rms_scaling))


class LocalResponseNormOp(Function):
    """Local response normalisation over the last axis; see
    :func:`local_response_normalization`."""

    def forward(self, x, *, radius, bias, alpha, beta):
        be = self.backend
        x2 = be.xp.ascontiguousarray(x).reshape(-1, x.shape[-1])
        y2, scale = be.lrn_forward(x2, radius, bias, alpha, beta)
        self.x2, self.y2, self.scale = x2, y2, scale
        self.params = (radius, alpha, beta)
        return y2.reshape(x.shape)

    def backward(self, dy):
        radius, alpha, beta = self.params
        dy2 = self.backend.xp.ascontiguousarray(dy).reshape(self.x2.shape)
        dx = self.backend.lrn_backward(dy2, self.x2, self.y2, self.scale, radius, alpha, beta)
        return (dx.reshape(dy.shape),)


def local_response_normalization(x, depth_radius: int = 5, bias: float = 1.0,
                                 alpha: float = 1.0, beta: float = 0.5) -> Tensor:
    """TensorFlow's ``tf.nn.local_response_normalization`` over the last (channel) axis::

        sqr_sum[c] = sum(x[c']^2 for c - depth_radius <= c' <= c + depth_radius)
        out[c] = x[c] / (bias + alpha * sqr_sum[c]) ** beta

    (the window is clipped at the first and last channel). ONNX's and PyTorch's LRN divide
    their alpha by the window size: ``size = 2 * depth_radius + 1``, ``alpha_onnx = alpha *
    size``, same ``beta`` and ``bias`` (ONNX's ``bias``, PyTorch's ``k``)."""
    x = as_tensor(x, "local_response_normalization input")
    if not isinstance(depth_radius, numbers.Integral) or depth_radius < 0:
        raise ValueError(f"local_response_normalization: depth_radius must be an int >= 0, "
                         f"got {depth_radius!r}")
    for name, v in (("bias", bias), ("alpha", alpha), ("beta", beta)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"local_response_normalization: {name} must be a number, got "
                            f"{v!r}")
    if x.ndim < 1 or x.size == 0:
        raise ValueError(f"local_response_normalization: needs a non-empty input with a "
                         f"channel axis, got shape {x.shape}")
    return LocalResponseNormOp.apply(x, radius=int(depth_radius), bias=float(bias),
                                     alpha=float(alpha), beta=float(beta))


def fold_batch_norm(kernel, bias, gamma, beta, mean, var, eps: float = 1e-3):
    """Fold an inference-mode batch normalisation that follows a convolution or dense layer
    into that layer's kernel and bias: ``bn(conv(x, k) + b) == conv(x, k') + b'`` with

        s = gamma / sqrt(var + eps),   k' = k * s (over the output axis, the last),
        b' = (b - mean) * s + beta.

    Pure arithmetic on host arrays: ``kernel`` is HWIO (convolution) or (in, out) (dense);
    ``bias`` None means zeros, ``gamma`` None ones, ``beta`` None zeros (Keras's
    ``use_bias=False``, ``scale=False``, ``center=False``). Computed in float64 and returned
    as ``(kernel', bias')`` in the kernel's dtype (float64 for integer kernels)."""
    kernel = np.asarray(kernel)
    dtype = kernel.dtype if kernel.dtype.kind == "f" else np.dtype(np.float64)
    out = kernel.shape[-1]

    def vec(v, fill, name):
        v = np.full(out, fill) if v is None else np.asarray(v, dtype=np.float64)
        if v.shape != (out,):
            raise ValueError(f"fold_batch_norm: {name} must have shape ({out},) (the kernel's "
                             f"last axis, kernel shape {kernel.shape}), got {v.shape}")
        return v

    bias, gamma, beta = vec(bias, 0.0, "bias"), vec(gamma, 1.0, "gamma"), vec(beta, 0.0, "beta")
    mean, var = vec(mean, 0.0, "mean"), vec(var, 1.0, "var")
    scale = gamma / np.sqrt(var + eps)
    folded = kernel.astype(np.float64) * scale
    return folded.astype(dtype), ((bias - mean) * scale + beta).astype(dtype)
