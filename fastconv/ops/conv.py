"""Convolution ops: conv2d (a primitive with its three passes; grouped and depthwise with
``groups``) and conv1d built on it."""

from __future__ import annotations

import numbers

from ..backends import algorithms as algos
from ..geometry import conv_geometry, normalize_tuple
from ..tensor import Function, Tensor
from .base import as_tensors, check_activation
from .shape import reshape


class Conv2DOp(Function):
    """y = act(conv(x, w) + b). Backward: through the activation (from y), then the bias sum,
    backward-data and backward-weight, each pass with its own algorithm.

    With ``groups`` > 1 (``geom`` the whole convolution, w of shape (kh, kw, C_in/groups,
    C_out)) the passes are the backend's grouped primitives, which have one algorithm each."""

    def forward(self, x, w, b=None, *, geom, algo, activation, groups=1):
        be = self.backend
        self.geom, self.algo, self.activation, self.groups = geom, algo, activation, groups
        if groups == 1:
            chosen = algos.resolve(be, geom, x.dtype, "forward", algo)
            y = be.conv2d_forward(x, w, b, geom, chosen, activation)
        else:
            y = be.grouped_conv2d_forward(x, w, b, geom, groups, activation)
        self.x, self.w = x, w
        self.y = y if activation != "linear" else None
        return y

    def backward(self, dy):
        be, g, groups = self.backend, self.geom, self.groups
        need = self.needs_input_grad
        dz, db = be.epilogue_backward(dy, self.y, self.activation, len(need) > 2 and need[2])
        dx = dw = None
        if need[0]:
            dx = (be.conv2d_backward_data(
                dz, self.w, g, algos.resolve(be, g, dz.dtype, "backward_data", self.algo))
                if groups == 1 else be.grouped_conv2d_backward_data(dz, self.w, g, groups))
        if need[1]:
            dw = (be.conv2d_backward_weight(
                self.x, dz, g, algos.resolve(be, g, dz.dtype, "backward_weight", self.algo))
                if groups == 1 else be.grouped_conv2d_backward_weight(self.x, dz, g, groups))
        return dx, dw, db


def check_groups(groups, where: str = "conv2d") -> int:
    """``groups`` as a positive int, or a ValueError naming ``where``."""
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{where}: groups must be a positive int, got {groups!r}")
    return int(groups)


def grouped_geometry(x_shape, w_shape, groups: int, strides=1, padding="valid", dilation=1,
                     where: str = "conv2d"):
    """The geometry of a convolution of an NHWC input of ``x_shape`` with a grouped HWIO kernel
    of ``w_shape`` = (kh, kw, C_in / groups, C_out), as the whole convolution (``c`` = C_in,
    ``o`` = C_out); a ValueError naming ``where`` when the channels do not split into
    ``groups``."""
    groups = check_groups(groups, where)
    if len(x_shape) != 4:
        raise ValueError(f"{where} expects a 4D NHWC input, got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{where} expects a 4D HWIO kernel, got shape {tuple(w_shape)}")
    c, (kh, kw, ci, o) = int(x_shape[3]), (int(v) for v in w_shape)
    if c % groups:
        raise ValueError(f"{where}: the input's {c} channels do not split into groups={groups} "
                         f"(input shape {tuple(x_shape)})")
    if o % groups:
        raise ValueError(f"{where}: the kernel's {o} output channels do not split into "
                         f"groups={groups} (kernel shape {tuple(w_shape)})")
    if ci * groups != c:
        raise ValueError(
            f"{where}: with groups={groups} the kernel must have {c // groups} input channels "
            f"(C_in / groups), got kernel shape {tuple(w_shape)} for input shape "
            f"{tuple(x_shape)}")
    return conv_geometry(x_shape, (kh, kw, c, o), strides, padding, dilation)


def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation=1, activation=None,
           algo: str | None = None, groups: int = 1) -> Tensor:
    """2D convolution (cross-correlation, as in Keras) of NHWC ``x`` with an HWIO ``kernel``.

    ``padding``: ``'valid'``, ``'same'`` (TensorFlow's split), an int, ``(ph, pw)`` or
    ``((top, bottom), (left, right))``. ``activation``: None/``'linear'`` or ``'relu'``, fused
    into the kernel's epilogue. ``algo``: None (current setting), ``'auto'``, ``'direct'``,
    ``'im2col'``, ``'winograd'`` or ``'winograd4'``.

    ``groups`` > 1: grouped convolution (Keras's ``Conv2D(groups=g)``, PyTorch's ``groups``):
    the kernel is (kh, kw, C_in / groups, C_out) and output channels ``k*C_out/groups ...
    (k+1)*C_out/groups - 1`` see only input channels ``k*C_in/groups ... (k+1)*C_in/groups - 1``.
    ``groups == C_in`` is depthwise convolution (Keras's ``DepthwiseConv2D`` kernel
    (kh, kw, C_in, M) reshaped to (kh, kw, 1, C_in*M)). Grouped convolutions run the backend's
    grouped kernels, whatever ``algo`` says.
    """
    x, kernel, bias = as_tensors("conv2d", input=x, kernel=kernel, bias=bias)
    groups = check_groups(groups)
    if groups == 1:
        geom = conv_geometry(x.shape, kernel.shape, strides, padding, dilation)
    else:
        geom = grouped_geometry(x.shape, kernel.shape, groups, strides, padding, dilation)
    if bias is not None and bias.shape != (geom.o,):
        raise ValueError(f"conv2d: bias must have shape ({geom.o},), got {bias.shape}")
    activation = check_activation("conv2d", activation)
    algo = algos.current_conv_algo() if algo is None else algo
    if groups > 1 and algo not in algos.CHOICES:  # an unknown name is an error here too
        algos.resolve(x._backend, geom, x.dtype, "forward", algo)
    args = (x, kernel) if bias is None else (x, kernel, bias)
    return Conv2DOp.apply(*args, geom=geom, algo=algo, activation=activation, groups=groups)


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
           algo: str | None = None, groups: int = 1) -> Tensor:
    """1D convolution of ``x`` (batch, steps, channels) with a ``(k, in, out)`` kernel (Keras's
    layouts), as :func:`conv2d` over a (batch, 1, steps, channels) image with a (1, k, in, out)
    kernel, so that every algorithm of every backend serves it. ``padding``: ``'valid'``,
    ``'same'`` or ``'causal'``; ``groups`` as in :func:`conv2d` (kernel (k, in / groups,
    out))."""
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
               (1, s), pads, (1, d), activation, algo, groups)
    return reshape(y, (n, y.shape[2], y.shape[3]))


class Conv2DTransposeOp(Function):
    """y = act(conv_transpose(x, w) + b), the transpose of the convolution ``geom``: its forward
    pass is that convolution's backward-data pass, x (N, H, W, C_in) being the convolution's
    output gradient (``geom.y_shape``) and y (N, OH, OW, filters) its input (``geom.x_shape``,
    then ``extra`` (bottom, right) rows and columns of zeros that no input reaches), w the
    convolution's HWIO kernel (kh, kw, filters, C_in), Keras's Conv2DTranspose layout.

    Backward: through the activation (from y) and the bias sum; then dx is the convolution's
    forward pass of dz, dw its backward-weight pass with dz as input and x as output gradient."""

    def forward(self, x, w, b=None, *, geom, algo, activation, extra=(0, 0)):
        be = self.backend
        self.geom, self.algo, self.activation, self.extra = geom, algo, activation, extra
        y = be.conv2d_backward_data(x, w, geom, algos.resolve(be, geom, x.dtype,
                                                              "backward_data", algo))
        if any(extra):
            full = be.xp.zeros((geom.n, geom.h + extra[0], geom.w + extra[1], geom.c),
                               dtype=y.dtype)
            full[:, :geom.h, :geom.w, :] = y
            y = full
        y = be.bias_activation(y, b, activation)
        self.x, self.w = x, w
        self.y = y if activation != "linear" else None
        return y

    def backward(self, dy):
        be, g, need = self.backend, self.geom, self.needs_input_grad
        dz, db = be.epilogue_backward(dy, self.y, self.activation, len(need) > 2 and need[2])
        if any(self.extra):
            dz = be.xp.ascontiguousarray(dz[:, :g.h, :g.w, :])
        dx = dw = None
        if need[0]:
            dx = be.conv2d_forward(dz, self.w, None, g,
                                   algos.resolve(be, g, dz.dtype, "forward", self.algo))
        if need[1]:
            dw = be.conv2d_backward_weight(
                dz, self.x, g, algos.resolve(be, g, dz.dtype, "backward_weight", self.algo))
        return dx, dw, db


def conv_transpose_padding(size, kernel: int, stride: int, dilation: int, padding: str,
                           output_padding: int | None):
    """One axis of a transposed convolution with Keras's semantics: ``(out, before, after,
    extra)``, where ``out`` is the output length (None when ``size`` is) and the transposed
    convolution is the backward-data pass of a convolution over ``out - extra`` positions with
    ``before`` and ``after`` zeros of padding, followed by ``extra`` zeros after it.

    With ``k = (kernel - 1) * dilation + 1``, the output is the input dilated by ``stride``,
    padded with ``left`` and ``right`` zeros and correlated with the flipped kernel (JAX's
    and Keras's definition): 'valid' pads ``k - 1`` and ``k - 1 + output_padding``
    (``output_padding`` defaults to ``max(k, stride) - k``); 'same' splits ``stride + k - 2``
    (or ``k + k % 2 - 2 + output_padding``) with the larger half first, at most ``k - 1``.
    The convolution's padding is what the full correlation crops: ``k - 1 - left`` and
    ``k - 1 - right`` (a negative one is the ``extra``)."""
    k = (kernel - 1) * dilation + 1
    if padding == "valid":
        op = max(k, stride) - k if output_padding is None else output_padding
        left, right = k - 1, k - 1 + op
    else:
        total = stride + k - 2 if output_padding is None else k + k % 2 - 2 + output_padding
        left = min(total // 2 + total % 2, k - 1)
        right = total - left
    before, after = k - 1 - left, k - 1 - right
    out = None if size is None else (size - 1) * stride + 1 + left + right - k + 1
    return out, before, max(after, 0), max(-after, 0)


def conv_transpose_geometry(x_shape, kernel_shape, strides=1, padding="valid",
                            output_padding=None, dilation=1, where: str = "conv2d_transpose"):
    """``(geom, extra)`` of a transposed convolution of an NHWC input of ``x_shape`` with a
    ``(kh, kw, filters, in)`` kernel: ``geom`` the convolution whose backward-data pass it is
    (input (N, OH - extra[0], OW - extra[1], filters), output ``x_shape``), ``extra`` the rows
    and columns of zeros after it (see :func:`conv_transpose_padding`). ValueErrors name
    ``where``."""
    if len(x_shape) != 4:
        raise ValueError(f"{where} expects a 4D NHWC input, got shape {tuple(x_shape)}")
    if len(kernel_shape) != 4:
        raise ValueError(f"{where}: kernel must be 4D (kh, kw, filters, in), got shape "
                         f"{tuple(kernel_shape)}")
    kh, kw, filters, c_in = (int(v) for v in kernel_shape)
    if c_in != x_shape[3]:
        raise ValueError(f"{where}: the input has {x_shape[3]} channels but the kernel "
                         f"(kh, kw, filters, in) {tuple(kernel_shape)} expects {c_in}")
    strides = normalize_tuple(strides, 2, f"{where}: strides")
    dilation = normalize_tuple(dilation, 2, f"{where}: dilation")
    out_pad = (None if output_padding is None else
               normalize_tuple(output_padding, 2, f"{where}: output_padding", minimum=0))
    mode = padding.lower() if isinstance(padding, str) else None
    if mode not in ("valid", "same"):
        raise ValueError(f"{where}: padding must be 'valid' or 'same', got {padding!r}")
    if out_pad is not None and any(p >= s for p, s in zip(out_pad, strides)):
        raise ValueError(f"{where}: output_padding {out_pad} must be smaller than the strides "
                         f"{strides}")
    (oh, t, b, eh), (ow, left, r, ew) = (
        conv_transpose_padding(int(size), k, s, d, mode, None if out_pad is None else p)
        for size, k, s, d, p in zip(x_shape[1:3], (kh, kw), strides, dilation,
                                    out_pad or (0, 0)))
    if oh < 1 or ow < 1:
        raise ValueError(f"{where}: input shape {tuple(x_shape)} gives an empty output (kernel "
                         f"{kh}x{kw}, strides {strides}, padding {mode!r}, output_padding "
                         f"{out_pad})")
    geom = conv_geometry((int(x_shape[0]), oh - eh, ow - ew, filters), (kh, kw, filters, c_in),
                         strides, ((t, b), (left, r)), dilation)
    if (geom.oh, geom.ow) != tuple(x_shape[1:3]):  # the padding above guarantees it
        raise AssertionError(f"{where}: geometry {geom} does not invert {tuple(x_shape)}")
    return geom, (eh, ew)


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", output_padding=None,
                     dilation=1, activation=None, algo: str | None = None) -> Tensor:
    """Transposed 2D convolution (Keras's Conv2DTranspose; the gradient of :func:`conv2d` with
    respect to its input) of NHWC ``x`` with a ``(kh, kw, filters, in)`` kernel, computed by
    the backends' convolution backward-data primitive. ``padding`` is 'valid' or 'same';
    ``output_padding`` (an int or a pair, each below its stride) sets the output size as
    Keras's does. ``activation`` and ``algo`` as for :func:`conv2d`."""
    x, kernel, bias = as_tensors("conv2d_transpose", input=x, kernel=kernel, bias=bias)
    geom, extra = conv_transpose_geometry(x.shape, kernel.shape, strides, padding,
                                          output_padding, dilation)
    if bias is not None and bias.shape != (geom.c,):
        raise ValueError(f"conv2d_transpose: bias must have shape ({geom.c},), got "
                         f"{bias.shape}")
    activation = check_activation("conv2d_transpose", activation)
    algo = algos.current_conv_algo() if algo is None else algo
    args = (x, kernel) if bias is None else (x, kernel, bias)
    return Conv2DTransposeOp.apply(*args, geom=geom, algo=algo, activation=activation,
                                   extra=extra)
