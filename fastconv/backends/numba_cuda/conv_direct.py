"""Direct convolution: one thread per output element, grid-stride loops over NHWC / HWIO arrays.

``g`` is the geometry tuple (``CONV_FIELDS`` order, int32, unpacked whole). With
``(ih, iw) = (oy * sh - pt + kh * dh, ox * sw - pl + kw * dw)`` (outside the input: zero
padding):

    y[n, oy, ox, o]     = act(b[o] + sum_{kh, kw, c} x[n, ih, iw, c] * w[kh, kw, c, o])
    dx[n, ih, iw, c]    = sum_{kh, kw, o} dy[n, oy, ox, o] * w[kh, kw, c, o]
                          (over the taps whose (oy, ox) is integral and inside the output)
    dw[kh, kw, c, o]    = sum_{n, oy, ox} x[n, ih, iw, c] * dy[n, oy, ox, o]
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import launch
from .launch import CONV_GEOM, I32, array

#: Fused activations of the convolution epilogues, as the kernels receive them.
LINEAR, RELU = 0, 1
ACTIVATION_CODES = {"linear": LINEAR, "relu": RELU}


@launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), array(dt, 1), I32, CONV_GEOM,
                           array(dt, 4)))
def conv_direct_forward(x, w, bias, act, g, y):
    """y[n, oy, ox, o] = act(bias[o] + sum over (kh, kw, c) of x * w); one thread per output
    element (o fastest), grid-stride."""
    nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    total = nb * oh * ow * o
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        oc = idx % o
        t = idx // o
        ox = t % ow
        t //= ow
        oy = t % oh
        n = t // oh
        acc = bias[oc]
        for i in range(kh_):
            ih = oy * sh - pt + i * dh
            if ih < 0 or ih >= h:
                continue
            for j in range(kw_):
                iw = ox * sw - pl + j * dw
                if iw < 0 or iw >= wd:
                    continue
                for ci in range(c):
                    acc += x[n, ih, iw, ci] * w[i, j, ci, oc]
        if act == RELU and acc < 0:
            y[n, oy, ox, oc] = 0
        else:
            y[n, oy, ox, oc] = acc


@launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), CONV_GEOM, array(dt, 4)))
def conv_direct_backward_data(dy, w, g, dx):
    """dx[n, ih, iw, c] = sum over the taps (kh, kw) that reach (ih, iw) from an output pixel
    of dy[n, oy, ox, :] . w[kh, kw, c, :]; one thread per input element, grid-stride."""
    nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    total = nb * h * wd * c
    acc = cuda.local.array(1, dx.dtype)
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        ci = idx % c
        t = idx // c
        iw = t % wd
        t //= wd
        ih = t % h
        n = t // h
        acc[0] = 0
        for i in range(kh_):
            ty = ih + pt - i * dh  # = oy * sh
            if ty < 0 or ty % sh != 0 or ty // sh >= oh:
                continue
            oy = ty // sh
            for j in range(kw_):
                tx = iw + pl - j * dw
                if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                    continue
                ox = tx // sw
                for oc in range(o):
                    acc[0] += dy[n, oy, ox, oc] * w[i, j, ci, oc]
        dx[n, ih, iw, ci] = acc[0]


@launch.kernel(lambda dt: (array(dt, 4), array(dt, 4), CONV_GEOM, array(dt, 4)))
def conv_direct_backward_weight(x, dy, g, dw_out):
    """dw[kh, kw, c, o] = sum over (n, oy, ox) of x[n, ih, iw, c] * dy[n, oy, ox, o]; one
    thread per kernel element, grid-stride."""
    nb, h, wd, c, o, kh_, kw_, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow = g
    total = kh_ * kw_ * c * o
    acc = cuda.local.array(1, dw_out.dtype)
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        oc = idx % o
        t = idx // o
        ci = t % c
        t //= c
        j = t % kw_
        i = t // kw_
        acc[0] = 0
        for n in range(nb):
            for oy in range(oh):
                ih = oy * sh - pt + i * dh
                if ih < 0 or ih >= h:
                    continue
                for ox in range(ow):
                    iw = ox * sw - pl + j * dw
                    if 0 <= iw < wd:
                        acc[0] += x[n, ih, iw, ci] * dy[n, oy, ox, oc]
        dw_out[i, j, ci, oc] = acc[0]


def _launch_1d(kernel, total, dtype, *args):
    kernel[launch.blocks_for(total)](dtype, *args)


def forward(be, x, w, bias, g, activation):
    """y = act(conv(x, w) + bias); ``bias`` is a device vector (zeros when the layer has
    none)."""
    y = be.empty(g.y_shape, x.dtype)
    _launch_1d(conv_direct_forward, g.n * g.oh * g.ow * g.o, x.dtype, x, w, bias,
               np.int32(ACTIVATION_CODES[activation]), launch.geometry(g.astuple()), y)
    return y


def backward_data(be, dy, w, g):
    dx = be.empty(g.x_shape, dy.dtype)
    _launch_1d(conv_direct_backward_data, g.n * g.h * g.w * g.c, dy.dtype, dy, w,
               launch.geometry(g.astuple()), dx)
    return dx


def backward_weight(be, x, dy, g):
    dw = be.empty(g.w_shape, x.dtype)
    _launch_1d(conv_direct_backward_weight, g.kh * g.kw * g.c * g.o, x.dtype, x, dy,
               launch.geometry(g.astuple()), dw)
    return dw
