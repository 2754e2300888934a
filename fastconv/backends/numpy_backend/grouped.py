"""NumPy grouped and depthwise convolution: the reference, written as tensor contractions.

``geom`` is the whole convolution (``c`` = C_in and ``o`` = C_out channels), ``w`` the grouped
HWIO kernel ``(KH, KW, C_in / G, C_out)``. With the patch matrix of im2col viewed as
``cols[p, i, j, g, c]`` (pixel p, tap (i, j), group g, channel c of the group) and the kernel as
``wg[i, j, c, g, o]`` (output channel ``g * O/G + o``):

    y[p, g, o]        = sum_{i, j, c} cols[p, i, j, g, c] * wg[i, j, c, g, o]
    dcols[p, i, j, g, c] = sum_o dy[p, g, o] * wg[i, j, c, g, o]     (scattered back: col2im)
    dw[i, j, c, g, o] = sum_p cols[p, i, j, g, c] * dy[p, g, o]
"""

from __future__ import annotations

import numpy as np

from .conv import im2col
from .taps import crop, tap


def _shapes(g, groups):
    return g.n * g.oh * g.ow, g.c // groups, g.o // groups


def _kernel(w, g, groups):
    """The kernel as ``wg[i, j, c, g, o]``."""
    _, cg, og = _shapes(g, groups)
    return w.reshape(g.kh, g.kw, cg, groups, og)


def forward(backend, x, w, b, g, groups, activation):
    p, cg, og = _shapes(g, groups)
    cols = im2col(x, g).reshape(p, g.kh, g.kw, groups, cg)
    y = np.einsum("pijgc,ijcgo->pgo", cols, _kernel(w, g, groups), optimize=True)
    y = np.ascontiguousarray(y).reshape(g.y_shape)
    return backend.bias_activation(y, b, activation)


def backward_data(dy, w, g, groups):
    p, cg, og = _shapes(g, groups)
    dcols = np.einsum("pgo,ijcgo->pijgc", dy.reshape(p, groups, og), _kernel(w, g, groups),
                      optimize=True).reshape(g.n, g.oh, g.ow, g.kh, g.kw, g.c)
    dxpad = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dtype=dy.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            tap(dxpad, i, j, g.oh, g.ow, g.sh, g.sw, g.dh, g.dw)[...] += dcols[:, :, :, i, j]
    return crop(dxpad, (g.pt, g.pb, g.pl, g.pr), g.h, g.w)


def backward_weight(x, dy, g, groups):
    p, cg, og = _shapes(g, groups)
    cols = im2col(x, g).reshape(p, g.kh, g.kw, groups, cg)
    dw = np.einsum("pijgc,pgo->ijcgo", cols, dy.reshape(p, groups, og), optimize=True)
    return np.ascontiguousarray(dw).reshape(g.kh, g.kw, cg, g.o)
