"""Pooling ops: 2D max and average pooling as primitives; 1D and global pooling built on them."""

from __future__ import annotations

from ..geometry import PoolGeometry, normalize_tuple, pool_geometry, resolve_padding
from ..tensor import Function, Tensor
from .base import as_tensor
from .shape import reshape, zero_pad2d


class MaxPool2DOp(Function):
    def forward(self, x, *, geom):
        y, self.argmax = self.backend.max_pool2d_forward(x, geom)
        self.geom = geom
        return y

    def backward(self, dy):
        return (self.backend.max_pool2d_backward(dy, self.argmax, self.geom),)


class AvgPool2DOp(Function):
    def forward(self, x, *, geom):
        self.geom = geom
        return self.backend.avg_pool2d_forward(x, geom)

    def backward(self, dy):
        return (self.backend.avg_pool2d_backward(dy, self.geom),)


def is_explicit_padding(padding) -> bool:
    """Whether ``padding`` is ``((top, bottom), (left, right))`` (pooling's explicit form)."""
    try:
        pairs = [tuple(p) for p in padding]
    except TypeError:
        return False
    return len(pairs) == 2 and all(len(p) == 2 for p in pairs)


def _ceil_extra(size: int, k: int, s: int, before: int, after: int) -> int:
    """Padding added after an axis so that the output length rounds up (ONNX's and PyTorch's
    ``ceil_mode``): ``ceil((size + before + after - k) / s) + 1`` windows, less the last one
    when it would start past the input and its leading padding."""
    span = size + before + after - k
    out = -(-span // s) + 1
    if (out - 1) * s >= size + before:
        out -= 1
    return max((out - 1) * s + k - (size + before + after), 0)


def pool2d_plan(x_shape, pool_size=(2, 2), strides=None, padding="valid", ceil_mode=False,
                count_include_pad=False, op: str = "pool2d"):
    """``(pre_pads, geom)`` of a 2D pooling: ``pre_pads`` (top, bottom, left, right) are zeros
    added to the input before pooling (average pooling that counts the padding), None when
    there are none; ``geom`` the pooling of the (padded) input, whose own padding never counts.

    ``padding`` is 'valid', 'same' (Keras's) or ``((top, bottom), (left, right))``;
    ``ceil_mode`` rounds the output length up by padding after each axis.
    """
    if len(x_shape) != 4:
        raise ValueError(f"{op} expects a 4D NHWC input, got shape {tuple(x_shape)}")
    if isinstance(padding, str) and not ceil_mode:
        return None, pool_geometry(x_shape, pool_size, strides, padding, op=op)
    if not isinstance(padding, str) and not is_explicit_padding(padding):
        raise ValueError(f"{op}: padding must be 'valid' or 'same', or explicit as "
                         f"((top, bottom), (left, right)); got {padding!r}")
    n, h, w, c = (int(v) for v in x_shape)
    ph, pw = normalize_tuple(pool_size, 2, f"{op}: pool_size")
    sh, sw = normalize_tuple(pool_size if strides is None else strides, 2, f"{op}: strides")
    pads = resolve_padding(padding, (ph, pw), (sh, sw), (1, 1), (h, w), f"{op}: padding")
    t, b, left, r = pads
    if t >= ph or b >= ph or left >= pw or r >= pw:
        raise ValueError(f"{op}: padding {padding!r} must be smaller than the pool "
                         f"{ph}x{pw} on each side")
    if h + t + b < ph or w + left + r < pw:
        raise ValueError(f"{op}: the pool {ph}x{pw} is larger than the padded "
                         f"{h + t + b}x{w + left + r} input (input shape {tuple(x_shape)})")
    eb = _ceil_extra(h, ph, sh, t, b) if ceil_mode else 0
    er = _ceil_extra(w, pw, sw, left, r) if ceil_mode else 0
    if count_include_pad and any(pads):
        return pads, PoolGeometry(n, h + t + b, w + left + r, c, ph, pw, sh, sw, 0, eb, 0, er)
    return None, PoolGeometry(n, h, w, c, ph, pw, sh, sw, t, b + eb, left, r + er)


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid", ceil_mode=False) -> Tensor:
    """Max pooling over NHWC (Keras semantics; ``strides`` defaults to ``pool_size``).
    ``padding`` may also be explicit (``((top, bottom), (left, right))``, never a maximum);
    ``ceil_mode`` rounds the output size up, as ONNX's and PyTorch's."""
    x = as_tensor(x, "max_pool2d input")
    _, geom = pool2d_plan(x.shape, pool_size, strides, padding, ceil_mode, op="max_pool2d")
    return MaxPool2DOp.apply(x, geom=geom)


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid", ceil_mode=False,
               count_include_pad=False) -> Tensor:
    """Average pooling over NHWC; by default only in-bounds elements are averaged (Keras's
    'same'). ``padding`` may be explicit, ``ceil_mode`` rounds the output size up, and
    ``count_include_pad`` counts the explicit padding as zeros (ONNX's and PyTorch's option;
    the positions ``ceil_mode`` adds are never counted)."""
    x = as_tensor(x, "avg_pool2d input")
    pre, geom = pool2d_plan(x.shape, pool_size, strides, padding, ceil_mode, count_include_pad,
                            op="avg_pool2d")
    if pre is not None:
        x = zero_pad2d(x, ((pre[0], pre[1]), (pre[2], pre[3])))
    return AvgPool2DOp.apply(x, geom=geom)


def _global_pool2d(pool2d, op, x) -> Tensor:
    """``pool2d`` over the whole of H and W: (N, H, W, C) -> (N, C)."""
    x = as_tensor(x, f"{op} input")
    if x.ndim != 4:
        raise ValueError(f"{op} expects a 4D NHWC input, got shape {x.shape}")
    n, h, w, c = x.shape
    return reshape(pool2d(x, (h, w)), (n, c))


def global_avg_pool2d(x) -> Tensor:
    """Mean over H and W: (N, H, W, C) -> (N, C)."""
    return _global_pool2d(avg_pool2d, "global_avg_pool2d", x)


def global_max_pool2d(x) -> Tensor:
    """Maximum over H and W: (N, H, W, C) -> (N, C)."""
    return _global_pool2d(max_pool2d, "global_max_pool2d", x)


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


def _global_pool1d(pool2d, op, x) -> Tensor:
    """``pool2d`` over the whole of the steps: (N, steps, C) -> (N, C)."""
    x = as_tensor(x, f"{op} input")
    if x.ndim != 3:
        raise ValueError(f"{op} expects a 3D (batch, steps, channels) input, got shape {x.shape}")
    n, steps, c = x.shape
    return reshape(pool2d(reshape(x, (n, 1, steps, c)), (1, steps)), (n, c))


def global_avg_pool1d(x) -> Tensor:
    """Mean over the steps: (N, steps, C) -> (N, C)."""
    return _global_pool1d(avg_pool2d, "global_avg_pool1d", x)


def global_max_pool1d(x) -> Tensor:
    """Maximum over the steps: (N, steps, C) -> (N, C)."""
    return _global_pool1d(max_pool2d, "global_max_pool1d", x)
