"""Differentiable ops. Each primitive op keeps its forward and backward side by side in one
Function; composite ops (flatten, 1D pooling, global pooling) are built from primitives and define
no backward of their own. Ops validate and normalise arguments; the array work goes to the current
backend's primitives or its array module (``backend.xp``), never to NumPy directly.

Layouts: NHWC activations, HWIO convolution kernels, (in, out) dense kernels.
"""

from __future__ import annotations

import numbers

import numpy as np

from .backends import FUSED_ACTIVATIONS, get_backend
from .backends import algorithms as algos
from .geometry import conv_geometry, normalize_tuple, pool_geometry
from .tensor import Function, Tensor, is_grad_enabled

# -- argument handling --------------------------------------------------------------------------


def as_tensor(x, name: str = "input", dtype=None) -> Tensor:
    """A Tensor from a Tensor or array-like of numbers (non-float numbers become float32)."""
    if isinstance(x, Tensor):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {x.dtype}")
        return x
    backend = get_backend()
    if isinstance(x, backend.xp.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if kind == "f" else np.float32
    return Tensor(backend.asarray(arr, dtype=dtype), backend=backend)


def _same_dtype(op: str, **tensors: Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise TypeError(f"{op}: dtypes differ ({listed}); cast them to one dtype")


def _check_activation(op: str, activation) -> str:
    activation = "linear" if activation is None else activation
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(
            f"{op}: the fused activation must be one of {', '.join(FUSED_ACTIVATIONS)} or None, "
            f"got {activation!r}; apply other activations as separate ops")
    return activation


# -- convolution --------------------------------------------------------------------------------


class Conv2D(Function):
    """y = act(conv(x, w) + b). Backward: through the activation (from y), then the bias sum,
    backward-data and backward-weight, each pass with its own algorithm."""

    def forward(self, x, w, b=None, *, geom, algo, activation):
        be = self.backend
        self.geom, self.algo, self.activation = geom, algo, activation
        chosen = algos.resolve(be, geom, x.dtype, "forward", algo)
        y = be.conv2d_forward(x, w, b, geom, chosen, activation)
        self.x, self.w = x, w
        self.y = y if activation != "linear" else None
        return y

    def backward(self, dy):
        be, g = self.backend, self.geom
        need = self.needs_input_grad
        dz, db = be.epilogue_backward(dy, self.y, self.activation, len(need) > 2 and need[2])
        dx = dw = None
        if need[0]:
            dx = be.conv2d_backward_data(
                dz, self.w, g, algos.resolve(be, g, dz.dtype, "backward_data", self.algo))
        if need[1]:
            dw = be.conv2d_backward_weight(
                self.x, dz, g, algos.resolve(be, g, dz.dtype, "backward_weight", self.algo))
        return dx, dw, db


def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation=1, activation=None,
           algo: str | None = None) -> Tensor:
    """2D convolution (cross-correlation, as in Keras) of NHWC ``x`` with an HWIO ``kernel``.

    ``padding``: ``'valid'``, ``'same'`` (TensorFlow's split), an int, ``(ph, pw)`` or
    ``((top, bottom), (left, right))``. ``activation``: None/``'linear'`` or ``'relu'``, fused
    into the kernel's epilogue. ``algo``: None (current setting), ``'auto'``, ``'direct'``,
    ``'im2col'``, ``'winograd'`` or ``'winograd4'``.
    """
    x = as_tensor(x, "conv2d input")
    kernel = as_tensor(kernel, "conv2d kernel")
    bias = None if bias is None else as_tensor(bias, "conv2d bias")
    _same_dtype("conv2d", input=x, kernel=kernel, bias=bias)
    geom = conv_geometry(x.shape, kernel.shape, strides, padding, dilation)
    if bias is not None and bias.shape != (geom.o,):
        raise ValueError(f"conv2d: bias must have shape ({geom.o},), got {bias.shape}")
    activation = _check_activation("conv2d", activation)
    algo = algos.current_conv_algo() if algo is None else algo
    args = (x, kernel) if bias is None else (x, kernel, bias)
    return Conv2D.apply(*args, geom=geom, algo=algo, activation=activation)


# -- dense --------------------------------------------------------------------------------------


class Dense(Function):
    """y = act(x @ w + b) over the last axis of x."""

    def forward(self, x, w, b=None, *, activation):
        be = self.backend
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])
        y = be.bias_activation(be.matmul(x2, w), b, activation)
        self.x2, self.w, self.activation = x2, w, activation
        self.y = y if activation != "linear" else None
        return y.reshape(*x.shape[:-1], w.shape[1])

    def backward(self, dy):
        be = self.backend
        need = self.needs_input_grad
        dz, db = be.epilogue_backward(dy.reshape(-1, dy.shape[-1]), self.y, self.activation,
                                      len(need) > 2 and need[2])
        dx = be.matmul(dz, self.w, trans_b=True).reshape(self.x_shape) if need[0] else None
        dw = be.matmul(self.x2, dz, trans_a=True) if need[1] else None
        return dx, dw, db


def dense(x, kernel, bias=None, activation=None) -> Tensor:
    """Fully connected layer over the last axis: ``act(x @ kernel + bias)``."""
    x = as_tensor(x, "dense input")
    kernel = as_tensor(kernel, "dense kernel")
    bias = None if bias is None else as_tensor(bias, "dense bias")
    _same_dtype("dense", input=x, kernel=kernel, bias=bias)
    if kernel.ndim != 2:
        raise ValueError(f"dense: kernel must be 2D (in, out), got shape {kernel.shape}")
    if x.ndim < 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"dense: input shape {x.shape} does not match kernel shape {kernel.shape} "
            f"(expected last axis {kernel.shape[0]})")
    if bias is not None and bias.shape != (kernel.shape[1],):
        raise ValueError(f"dense: bias must have shape ({kernel.shape[1]},), got {bias.shape}")
    activation = _check_activation("dense", activation)
    args = (x, kernel) if bias is None else (x, kernel, bias)
    return Dense.apply(*args, activation=activation)


# -- pooling ------------------------------------------------------------------------------------


class MaxPool2D(Function):
    def forward(self, x, *, geom):
        y, self.argmax = self.backend.max_pool2d_forward(x, geom)
        self.geom = geom
        return y

    def backward(self, dy):
        return (self.backend.max_pool2d_backward(dy, self.argmax, self.geom),)


class AvgPool2D(Function):
    def forward(self, x, *, geom):
        self.geom = geom
        return self.backend.avg_pool2d_forward(x, geom)

    def backward(self, dy):
        return (self.backend.avg_pool2d_backward(dy, self.geom),)


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid") -> Tensor:
    """Max pooling over NHWC (Keras semantics; ``strides`` defaults to ``pool_size``)."""
    x = as_tensor(x, "max_pool2d input")
    geom = pool_geometry(x.shape, pool_size, strides, padding, op="max_pool2d")
    return MaxPool2D.apply(x, geom=geom)


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid") -> Tensor:
    """Average pooling over NHWC; with ``same`` padding only in-bounds elements are averaged."""
    x = as_tensor(x, "avg_pool2d input")
    geom = pool_geometry(x.shape, pool_size, strides, padding, op="avg_pool2d")
    return AvgPool2D.apply(x, geom=geom)


def global_avg_pool2d(x) -> Tensor:
    """Mean over H and W: (N, H, W, C) -> (N, C)."""
    x = as_tensor(x, "global_avg_pool2d input")
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool2d expects a 4D NHWC input, got shape {x.shape}")
    n, h, w, c = x.shape
    return reshape(avg_pool2d(x, (h, w)), (n, c))


def _pool1d(pool2d, op, x, pool_size, strides, padding):
    x = as_tensor(x, f"{op} input")
    if x.ndim != 3:
        raise ValueError(f"{op} expects a 3D (batch, steps, channels) input, got shape {x.shape}")
    (p,) = normalize_tuple(pool_size, 1, "pool_size")
    (s,) = normalize_tuple(p if strides is None else strides, 1, "strides")
    n, steps, c = x.shape
    y = pool2d(reshape(x, (n, 1, steps, c)), (1, p), (1, s), padding)
    return reshape(y, (n, y.shape[2], c))


def max_pool1d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    """Max pooling over time series (batch, steps, channels)."""
    return _pool1d(max_pool2d, "max_pool1d", x, pool_size, strides, padding)


def avg_pool1d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    """Average pooling over time series (batch, steps, channels)."""
    return _pool1d(avg_pool2d, "avg_pool1d", x, pool_size, strides, padding)


# -- activations --------------------------------------------------------------------------------


class ReLU(Function):
    def forward(self, x):
        self.y = self.backend.bias_activation(x.copy(), None, "relu")
        return self.y

    def backward(self, dy):
        return (self.backend.epilogue_backward(dy, self.y, "relu", False)[0],)


class Sigmoid(Function):
    def forward(self, x):
        xp = self.backend.xp
        # 1 / (1 + exp(-x)), written so that neither branch overflows.
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.y

    def backward(self, dy):
        return (dy * self.y * (1 - self.y),)


class Tanh(Function):
    def forward(self, x):
        self.y = self.backend.xp.tanh(x)
        return self.y

    def backward(self, dy):
        return (dy * (1 - self.y * self.y),)


class Softmax(Function):
    def forward(self, x, *, axis):
        xp = self.backend.xp
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        return self.y

    def backward(self, dy):
        y = self.y
        return (y * (dy - (dy * y).sum(axis=self.axis, keepdims=True)),)


def relu(x) -> Tensor:
    return ReLU.apply(as_tensor(x, "relu input"))


def sigmoid(x) -> Tensor:
    return Sigmoid.apply(as_tensor(x, "sigmoid input"))


def tanh(x) -> Tensor:
    return Tanh.apply(as_tensor(x, "tanh input"))


def softmax(x, axis: int = -1) -> Tensor:
    """Softmax along ``axis``; the result remembers its logits so that a following
    cross-entropy is computed stably from them (as Keras does)."""
    x = as_tensor(x, "softmax input")
    y = Softmax.apply(x, axis=axis)
    if x.ndim and axis % x.ndim == x.ndim - 1:  # cross-entropy's class axis is the last one
        y._logits = x
    return y


def linear(x) -> Tensor:
    return as_tensor(x, "linear input")


# -- shape --------------------------------------------------------------------------------------


class Reshape(Function):
    def forward(self, x, *, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, dy):
        return (dy.reshape(self.in_shape),)


def reshape(x, shape) -> Tensor:
    x = as_tensor(x, "reshape input")
    shape = tuple(int(s) for s in shape)
    known = int(np.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or any(s < -1 or s == 0 for s in shape) or (
            -1 not in shape and known != x.size) or (-1 in shape and x.size % known):
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} values) to {shape}")
    return Reshape.apply(x, shape=shape)


def flatten(x) -> Tensor:
    """(N, ...) -> (N, prod(...))."""
    x = as_tensor(x, "flatten input")
    return reshape(x, (x.shape[0], -1))


# -- regularisation and combination -------------------------------------------------------------


class Dropout(Function):
    def forward(self, x, *, rate):
        keep = self.backend.random_uniform(x.shape, x.dtype) >= rate
        self.mask = keep * x.dtype.type(1.0 / (1.0 - rate))
        return x * self.mask

    def backward(self, dy):
        return (dy * self.mask,)


def dropout(x, rate: float, training: bool = True) -> Tensor:
    """Inverted dropout: zero each value with probability ``rate`` and scale the rest by
    1 / (1 - rate) while training; the identity otherwise."""
    if not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate!r}")
    x = as_tensor(x, "dropout input")
    if not training or rate == 0:
        return x
    return Dropout.apply(x, rate=float(rate))


def _unbroadcast(g, shape):
    """Sum a broadcast gradient back to ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, s in enumerate(shape) if s == 1 and g.shape[i + extra] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, dy):
        return _unbroadcast(dy, self.shapes[0]), _unbroadcast(dy, self.shapes[1])


def add(a, b) -> Tensor:
    """Element-wise sum with NumPy broadcasting (residual connections). A plain number takes
    the other operand's dtype."""
    if isinstance(a, Tensor) and isinstance(b, numbers.Real):
        b = as_tensor(b, "add input", dtype=a.dtype)
    elif isinstance(b, Tensor) and isinstance(a, numbers.Real):
        a = as_tensor(a, "add input", dtype=b.dtype)
    a, b = as_tensor(a, "add input"), as_tensor(b, "add input")
    _same_dtype("add", a=a, b=b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"add: shapes {a.shape} and {b.shape} do not broadcast") from None
    return Add.apply(a, b)


class Concatenate(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return self.backend.xp.concatenate(arrays, axis=axis)

    def backward(self, dy):
        xp = self.backend.xp
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(dy, cuts, axis=self.axis))


def concatenate(tensors, axis: int = -1) -> Tensor:
    tensors = [as_tensor(t, "concatenate input") for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    ndim = tensors[0].ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"concatenate: axis {axis} is out of range for {ndim}D tensors")
    ax = axis % ndim
    for t in tensors[1:]:
        if t.ndim != ndim or any(s != r for i, (s, r) in enumerate(zip(t.shape, tensors[0].shape))
                                 if i != ax):
            raise ValueError(
                f"concatenate: shapes {[t.shape for t in tensors]} differ outside axis {axis}")
    _same_dtype("concatenate", **{f"input {i}": t for i, t in enumerate(tensors)})
    return Concatenate.apply(*tensors, axis=ax)


class Sum(Function):
    def forward(self, x):
        self.shape = x.shape
        return x.sum()

    def backward(self, dy):
        return (self.backend.xp.broadcast_to(dy, self.shape).copy(),)


def sum(x) -> Tensor:  # noqa: A001 - mirrors numpy's name inside this namespace
    return Sum.apply(as_tensor(x, "sum input"))


def mean(x) -> Tensor:
    x = as_tensor(x, "mean input")
    return Scale.apply(sum(x), factor=1.0 / x.size)


class Scale(Function):
    def forward(self, x, *, factor):
        self.factor = x.dtype.type(factor)
        return x * self.factor

    def backward(self, dy):
        return (dy * self.factor,)


# -- losses -------------------------------------------------------------------------------------


def _labels_array(backend, y_true, n: int, classes: int, sparse: bool, dtype):
    """Labels as a backend array: int class ids (sparse) or (n, classes) probabilities."""
    y = y_true.data if isinstance(y_true, Tensor) else y_true
    if sparse:
        y = backend.to_host(y) if not isinstance(y, np.ndarray) else y
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (n,):
            raise ValueError(f"sparse labels must have shape ({n},), got {y.shape}")
        if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and np.any(y != np.round(y))):
            raise TypeError(f"sparse labels must be integer class ids, got dtype {y.dtype}")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"sparse labels must lie in [0, {classes}), got values "
                             f"{int(y.min())}..{int(y.max())}")
        return backend.asarray(y)
    y = backend.asarray(y, dtype=dtype)
    if y.shape != (n, classes):
        raise ValueError(f"one-hot labels must have shape ({n}, {classes}), got {y.shape}")
    return y


class SoftmaxCrossEntropy(Function):
    """Mean over the batch of ``-sum(y * log_softmax(z))``, fused and stable (log-sum-exp).
    Backward: ``(softmax(z) - y) / N``."""

    def forward(self, z, *, labels, sparse):
        xp = self.backend.xp
        shifted = z - z.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        log_p = shifted - xp.log(s)
        n = z.shape[0]
        if sparse:
            loss = -log_p[xp.arange(n), labels].sum() / n
        else:
            loss = -(labels * log_p).sum() / n
        self.p, self.labels, self.sparse = e / s, labels, sparse
        return xp.asarray(loss, dtype=z.dtype)

    def backward(self, dy):
        xp = self.backend.xp
        n = self.p.shape[0]
        g = self.p.copy()
        if self.sparse:
            g[xp.arange(n), self.labels] -= 1
        else:
            g -= self.labels
        return (g * (dy / n),)


def softmax_cross_entropy(logits, y_true, sparse: bool = False) -> Tensor:
    """Cross-entropy between integer or one-hot labels and ``softmax(logits)``, batch mean."""
    logits = as_tensor(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy expects (batch, classes) logits, got "
                         f"{logits.shape}")
    labels = _labels_array(logits._backend, y_true, logits.shape[0], logits.shape[1], sparse,
                           logits.dtype)
    return SoftmaxCrossEntropy.apply(logits, labels=labels, sparse=sparse)


class ProbabilityCrossEntropy(Function):
    """Mean over the batch of ``-sum(y * log(clip(p, eps, 1 - eps)))`` (Keras, probabilities)."""

    def forward(self, p, *, labels, sparse, eps):
        xp = self.backend.xp
        n = p.shape[0]
        clipped = xp.clip(p, eps, 1 - eps)
        if sparse:
            picked = clipped[xp.arange(n), labels]
            loss = -xp.log(picked).sum() / n
        else:
            loss = -(labels * xp.log(clipped)).sum() / n
        self.p, self.clipped, self.labels, self.sparse, self.eps = p, clipped, labels, sparse, eps
        return xp.asarray(loss, dtype=p.dtype)

    def backward(self, dy):
        xp = self.backend.xp
        n = self.p.shape[0]
        inside = (self.p > self.eps) & (self.p < 1 - self.eps)
        if self.sparse:
            g = xp.zeros_like(self.p)
            g[xp.arange(n), self.labels] = -1 / self.clipped[xp.arange(n), self.labels]
        else:
            g = -self.labels / self.clipped
        return (g * inside * (dy / n),)


def cross_entropy(y_pred, y_true, sparse: bool = False, from_logits: bool = False,
                  eps: float = 1e-7) -> Tensor:
    """Categorical cross-entropy; uses the fused softmax form when ``y_pred`` are logits or the
    output of :func:`softmax`."""
    y_pred = as_tensor(y_pred, "predictions")
    if from_logits:
        return softmax_cross_entropy(y_pred, y_true, sparse)
    if y_pred._logits is not None:
        return softmax_cross_entropy(y_pred._logits, y_true, sparse)
    if y_pred.ndim != 2:
        raise ValueError(f"cross-entropy expects (batch, classes) predictions, got {y_pred.shape}")
    labels = _labels_array(y_pred._backend, y_true, y_pred.shape[0], y_pred.shape[1], sparse,
                           y_pred.dtype)
    return ProbabilityCrossEntropy.apply(y_pred, labels=labels, sparse=sparse, eps=eps)


class MeanSquaredError(Function):
    def forward(self, p, *, target):
        self.diff = p - target
        return (self.diff * self.diff).mean(dtype=p.dtype)

    def backward(self, dy):
        return (self.diff * (2 * dy / self.diff.size),)


def mean_squared_error(y_pred, y_true) -> Tensor:
    y_pred = as_tensor(y_pred, "predictions")
    target = y_true.data if isinstance(y_true, Tensor) else y_true
    target = y_pred._backend.asarray(target, dtype=y_pred.dtype)
    if target.shape != y_pred.shape:
        if target.size == y_pred.size:
            target = target.reshape(y_pred.shape)
        else:
            raise ValueError(f"mean_squared_error: targets of shape {target.shape} do not match "
                             f"predictions of shape {y_pred.shape}")
    return MeanSquaredError.apply(y_pred, target=target)


__all__ = [
    "as_tensor", "conv2d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "max_pool1d", "avg_pool1d", "relu", "sigmoid", "tanh", "softmax", "linear", "reshape",
    "flatten", "dropout", "add", "concatenate", "sum", "mean", "softmax_cross_entropy",
    "cross_entropy", "mean_squared_error", "is_grad_enabled",
]
