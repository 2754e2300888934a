"""Window taps over NHWC arrays as strided views (no copies), shared by conv and pooling."""

from __future__ import annotations

import numpy as np


def pad_nhwc(x, pads, value=0.0):
    """Pad H and W by ``(top, bottom, left, right)`` with ``value``."""
    pt, pb, pl, pr = pads
    if not (pt or pb or pl or pr):
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def tap(xpad, i: int, j: int, oh: int, ow: int, sh: int, sw: int, dh: int = 1, dw: int = 1):
    """View of the input elements that kernel tap (i, j) meets: ``xpad[:, i*dh + r*sh,
    j*dw + c*sw, :]`` for output position (r, c); shape (n, oh, ow, channels)."""
    r0, c0 = i * dh, j * dw
    return xpad[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw, :]


def crop(xpad, pads, h: int, w: int):
    """Inverse of ``pad_nhwc``: the ``h x w`` interior."""
    pt, _, pl, _ = pads
    if xpad.shape[1] == h and xpad.shape[2] == w:
        return xpad
    return np.ascontiguousarray(xpad[:, pt:pt + h, pl:pl + w, :])
