"""Grouped and depthwise convolution kernels: G groups, each a convolution of C/G input channels
into O/G output channels, all of one NHWC input into one NHWC output, in one launch per pass.

Shapes: x (N, H, W, C), w (KH, KW, C/G, O) (Keras's ``Conv2D(groups=G)`` kernel: output channel
``oc`` belongs to group ``oc // (O/G)`` and sees input channels ``grp*C/G ... (grp+1)*C/G - 1``),
y and dy (N, OH, OW, O). Depthwise convolution is G == C: w is (KH, KW, 1, C*M) and output
channel ``ch*M + m`` sees input channel ``ch`` only (depth multiplier M = O/C >= 1).

``g`` is ``ConvGeometry.astuple()`` of the whole convolution (``c`` = C, ``o`` = O, int32);
``groups`` is G. With ``cg = C/G``, ``og = O/G`` and ``(ih, iw) = (oy*sh - pt + i*dh,
ox*sw - pl + j*dw)`` (outside the input: zero padding):

    y[n, oy, ox, oc]  = act(b[oc] + sum_{i, j, ci < cg} x[n, ih, iw, (oc // og)*cg + ci]
                                                         * w[i, j, ci, oc])
    dx[n, ih, iw, ch] = sum over the taps (i, j) reaching (ih, iw) from an output pixel
                        (oy, ox) of sum_{k < og} dy[n, oy, ox, (ch // cg)*og + k]
                                                 * w[i, j, ch % cg, (ch // cg)*og + k]
                        (a gather: no atomics)
    dw[i, j, ci, oc]  = sum_{n, oy, ox} x[n, ih, iw, (oc // og)*cg + ci] * dy[n, oy, ox, oc]

One thread per output element (forward, o fastest: neighbouring threads read neighbouring
weights and write neighbouring outputs), per input element (backward-data) and per kernel
element (backward-weight, a loop over all N*OH*OW pixels in a fixed order: deterministic),
grid-stride loops.

A faster version would put channels in lanes (a warp over 32 consecutive channels of one pixel,
coalesced x, w and y accesses), keep a spatial tile of the input (with its halo) and the
group's weights in shared memory so that each input element is read once per block rather than
once per tap and output channel, give each thread several output pixels along a row (register
blocking, the KH x KW weights held in registers for depthwise), and split backward-weight's
reduction over the pixels across blocks (a block reduction per kernel element, or partial sums
added in a second pass to stay deterministic).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..derived import DerivedCache
from . import launch
from .conv import _operands
from .conv_direct import ACTIVATION_CODES, RELU
from .launch import CONV_GEOM, I32, array


@launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), array(dt, 1), I32, I32, CONV_GEOM,
                           array(dt, 4)))
def grouped_conv_forward(x, w, bias, act, groups, g, y):
    """y[n, oy, ox, oc] = act(bias[oc] + sum over (i, j, ci) of x[n, ih, iw, grp*cg + ci] *
    w[i, j, ci, oc]), grp = oc // og; one thread per output element (oc fastest)."""
    nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    cg = c // groups
    og = o // groups
    total = nb * oh * ow * o
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        oc = idx % o
        t = idx // o
        ox = t % ow
        t //= ow
        oy = t % oh
        n = t // oh
        c0 = (oc // og) * cg
        acc = bias[oc]
        for i in range(kh_):
            ih = oy * sh - pt + i * dh
            if ih < 0 or ih >= h:
                continue
            for j in range(kw_):
                iw = ox * sw - pl + j * dw
                if iw < 0 or iw >= wd:
                    continue
                for ci in range(cg):
                    acc += x[n, ih, iw, c0 + ci] * w[i, j, ci, oc]
        if act == RELU and acc < 0:
            y[n, oy, ox, oc] = 0
        else:
            y[n, oy, ox, oc] = acc


@launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), I32, CONV_GEOM, array(dt, 4)))
def grouped_conv_backward_data(dy, w, groups, g, dx):
    """dx[n, ih, iw, ch] = sum over the taps (i, j) that reach (ih, iw) from an output pixel
    (oy, ox) of sum_k dy[n, oy, ox, grp*og + k] * w[i, j, ch - grp*cg, grp*og + k],
    grp = ch // cg; one thread per input element (ch fastest)."""
    nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    cg = c // groups
    og = o // groups
    total = nb * h * wd * c
    acc = cuda.local.array(1, dx.dtype)
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        ch = idx % c
        t = idx // c
        iw = t % wd
        t //= wd
        ih = t % h
        n = t // h
        grp = ch // cg
        ci = ch - grp * cg
        o0 = grp * og
        acc[0] = 0
        for i in range(kh_):
            ty = ih + pt - i * dh  # = oy * sh
            if ty < 0 or ty % sh != 0 or ty // sh >= oh:
                continue
            oy = ty // sh
            for j in range(kw_):
                tx = iw + pl - j * dw  # = ox * sw
                if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                    continue
                ox = tx // sw
                for k in range(og):
                    acc[0] += dy[n, oy, ox, o0 + k] * w[i, j, ci, o0 + k]
        dx[n, ih, iw, ch] = acc[0]


@launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), I32, CONV_GEOM, array(dt, 4)))
def grouped_conv_backward_weight(x, dy, groups, g, dw_out):
    """dw[i, j, ci, oc] = sum over (n, oy, ox) of x[n, ih, iw, grp*cg + ci] * dy[n, oy, ox, oc],
    grp = oc // og; one thread per kernel element (oc fastest), the pixels summed in order."""
    nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    cg = c // groups
    og = o // groups
    total = kh_ * kw_ * cg * o
    acc = cuda.local.array(1, dw_out.dtype)
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        oc = idx % o
        t = idx // o
        ci = t % cg
        t //= cg
        j = t % kw_
        i = t // kw_
        ch = (oc // og) * cg + ci
        acc[0] = 0
        for n in range(nb):
            for oy in range(oh):
                ih = oy * sh - pt + i * dh
                if ih < 0 or ih >= h:
                    continue
                for ox in range(ow):
                    iw = ox * sw - pl + j * dw
                    if 0 <= iw < wd:
                        acc[0] += x[n, ih, iw, ch] * dy[n, oy, ox, oc]
        dw_out[i, j, ci, oc] = acc[0]


def _launch_1d(kernel, total, dtype, *args):
    kernel[launch.blocks_for(total)](dtype, *args)


def forward(be, x, w, bias, g, groups, activation):
    """y = act(grouped_conv(x, w) + bias); ``bias`` is a device vector of O values (zeros when
    the layer has none); w is (KH, KW, C/G, O)."""
    y = be.empty(g.y_shape, x.dtype)
    _launch_1d(grouped_conv_forward, g.n * g.oh * g.ow * g.o, x.dtype, x, w, bias,
               np.int32(_activation_code(activation)), np.int32(groups),
               launch.geometry(g.astuple()), y)
    return y


def backward_data(be, dy, w, g, groups):
    dx = be.empty(g.x_shape, dy.dtype)
    _launch_1d(grouped_conv_backward_data, g.n * g.h * g.w * g.c, dy.dtype, dy, w,
               np.int32(groups), launch.geometry(g.astuple()), dx)
    return dx


def backward_weight(be, x, dy, g, groups):
    dw = be.empty((g.kh, g.kw, g.c // groups, g.o), x.dtype)
    _launch_1d(grouped_conv_backward_weight, g.kh * g.kw * (g.c // groups) * g.o, x.dtype, x,
               dy, np.int32(groups), launch.geometry(g.astuple()), dw)
    return dw


# -- the backend's grouped primitives ------------------------------------------------------------

def _check_groups(g, groups):
    groups = int(groups)
    if groups < 1 or g.c % groups or g.o % groups:
        raise ValueError(f"numba-cuda grouped convolution: {g.c} input and {g.o} output "
                         f"channels do not split into groups={groups}")
    return groups


def _activation_code(activation):
    try:
        return ACTIVATION_CODES[activation]
    except KeyError:
        raise ValueError(f"numba-cuda grouped convolution: no fused activation "
                         f"{activation!r} (one of {', '.join(ACTIVATION_CODES)})") from None


def _w_shape(g, groups):
    return (g.kh, g.kw, g.c // groups, g.o)


def _weights(be, what, w, b, g, groups):
    """The grouped kernel and the bias (zeros when there is none) as device arrays."""
    if b is None:
        (w,) = _operands(be, what, (w, _w_shape(g, groups)))
        return w, be.zeros((g.o,), w.dtype)
    return tuple(_operands(be, what, (w, _w_shape(g, groups)), (b, (g.o,))))


def _same_dtype(what, a, b):
    if a.dtype != b.dtype:
        raise TypeError(f"numba-cuda {what}: expects operands of one dtype, got input {a.dtype} "
                        f"and kernel {b.dtype}")


def grouped_forward(be, x, w, b, g, groups, activation):
    """``grouped_conv2d_forward``: operands checked and made device arrays, one launch."""
    what = "grouped convolution"
    groups = _check_groups(g, groups)
    _activation_code(activation)
    (x,) = _operands(be, what, (x, g.x_shape))
    w, b = _weights(be, what, w, b, g, groups)
    _same_dtype(what, x, w)
    return forward(be, x, w, b, g, groups, activation)


def prepare_grouped_forward(be, g, groups, activation):
    """``run(x, w, b, weights_key)`` for inference: the kernel and bias as device arrays once
    per ``weights_key``, then one launch per call."""
    what = "grouped convolution"
    groups = _check_groups(g, groups)
    _activation_code(activation)
    cache = DerivedCache()

    def prepared(w, b):  # w and b kept so that their ids in the key stay theirs
        return (w, b, *_weights(be, what, w, b, g, groups))

    def run(x, w, b, weights_key):
        _, _, w_dev, b_dev = cache.get(weights_key, lambda: prepared(w, b))
        (x,) = _operands(be, what, (x, g.x_shape))
        _same_dtype(what, x, w_dev)
        return forward(be, x, w_dev, b_dev, g, groups, activation)

    return run


def grouped_backward_data(be, dy, w, g, groups):
    groups = _check_groups(g, groups)
    dy, w = _operands(be, "grouped convolution backward-data", (dy, g.y_shape),
                      (w, _w_shape(g, groups)))
    return backward_data(be, dy, w, g, groups)


def grouped_backward_weight(be, x, dy, g, groups):
    groups = _check_groups(g, groups)
    x, dy = _operands(be, "grouped convolution backward-weight", (x, g.x_shape),
                      (dy, g.y_shape))
    return backward_weight(be, x, dy, g, groups)
