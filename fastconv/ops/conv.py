"""Convolution ops: conv2d (a primitive with its three passes) and conv1d built on it."""

from __future__ import annotations

from ..backends import algorithms as algos
from ..geometry import conv_geometry, normalize_tuple
from ..tensor import Function, Tensor
from .base import as_tensors, check_activation
from .shape import reshape


class Conv2DOp(Function):
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
    x, kernel, bias = as_tensors("conv2d", input=x, kernel=kernel, bias=bias)
    geom = conv_geometry(x.shape, kernel.shape, strides, padding, dilation)
    if bias is not None and bias.shape != (geom.o,):
        raise ValueError(f"conv2d: bias must have shape ({geom.o},), got {bias.shape}")
    activation = check_activation("conv2d", activation)
    algo = algos.current_conv_algo() if algo is None else algo
    args = (x, kernel) if bias is None else (x, kernel, bias)
    return Conv2DOp.apply(*args, geom=geom, algo=algo, activation=activation)


def conv1d_padding(padding, kernel_size: int, dilation: int, name: str = "padding"):
    """Conv1D's ``padding`` as conv2d padding over a (1, steps) image: ``'valid'`` and
    ``'same'`` as they are; ``'causal'`` puts all ``dilation * (kernel_size - 1)`` zeros before
    the first step, so that output t sees inputs up to t only (WaveNet; Keras's ``causal``)."""
    mode = padding.lower() if isinstance(padding, str) else None
    if mode in ("valid", "same"):
        return mode
    if mode == "causal":
        return ((0, 0), (dilation * (kernel_size - 1), 0))
    raise ValueError(f"{name} must be 'valid', 'same' or 'causal', got {padding!r}")


def conv1d(x, kernel, bias=None, strides=1, padding="valid", dilation=1, activation=None,
           algo: str | None = None) -> Tensor:
    """1D convolution of ``x`` (batch, steps, channels) with a ``(k, in, out)`` kernel (Keras's
    layouts), as :func:`conv2d` over a (batch, 1, steps, channels) image with a (1, k, in, out)
    kernel, so that every algorithm of every backend serves it. ``padding``: ``'valid'``,
    ``'same'`` or ``'causal'``."""
    x, kernel = as_tensors("conv1d", input=x, kernel=kernel)
    if x.ndim != 3:
        raise ValueError(f"conv1d expects a 3D (batch, steps, channels) input, got shape "
                         f"{x.shape}")
    if kernel.ndim != 3:
        raise ValueError(f"conv1d: kernel must be 3D (k, in, out), got shape {kernel.shape}")
    (s,) = normalize_tuple(strides, 1, "conv1d: strides")
    (d,) = normalize_tuple(dilation, 1, "conv1d: dilation")
    pads = conv1d_padding(padding, kernel.shape[0], d, "conv1d: padding")
    n, steps, c = x.shape
    y = conv2d(reshape(x, (n, 1, steps, c)), reshape(kernel, (1, *kernel.shape)), bias,
               (1, s), pads, (1, d), activation, algo)
    return reshape(y, (n, y.shape[2], y.shape[3]))
