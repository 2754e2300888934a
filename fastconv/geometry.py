"""Output-shape and padding arithmetic shared by layers, ops and every backend.

Layout: activations NHWC, convolution weights HWIO ``(kh, kw, in, out)``.

Padding follows Keras/TensorFlow:

* ``valid``: no padding, ``out = floor((in - k_eff) / s) + 1`` with ``k_eff = (k - 1) * d + 1``.
* ``same``: ``out = ceil(in / s)``; the total padding ``max((out - 1) * s + k_eff - in, 0)`` is
  split with the smaller half before (top/left) and the larger half after (bottom/right).
* explicit: an int, a pair ``(ph, pw)`` or ``((top, bottom), (left, right))``.

Geometries are frozen dataclasses of plain ints: kernels receive these ints, and the objects are
hashable keys for the algorithm autotuner.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


#: The largest size, stride, dilation or padding a geometry holds: kernels index with 32-bit
#: integers (CUDA) and Numba freezes the geometry as machine ints.
MAX_EXTENT = 2**31 - 1
#: The most pixels the padded plane of one image may hold along both spatial axes: the
#: backends that pad explicitly allocate it, and kernels index it with 32-bit integers.
MAX_PADDED_PIXELS = 2**31 - 1


def normalize_tuple(value, n: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints, each ``>= minimum`` and at most ``MAX_EXTENT``, as a
    tuple of ``n`` ints."""
    if _is_int(value):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a tuple of {n} ints, got {value!r}"
            ) from None
        if len(values) != n or not all(_is_int(v) for v in values):
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
        values = tuple(int(v) for v in values)
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if any(v > MAX_EXTENT for v in values):
        raise ValueError(f"{name} must be at most {MAX_EXTENT}, got {value!r}")
    return values


def check_padded_plane(where: str, spatial, kernel, strides, dilation, padding,
                       channels: int | None, itemsize: int = 4) -> None:
    """Refuse a layer whose padded input plane (one image) would exceed ``MAX_PADDED_PIXELS``:
    a 'same' padding with a huge dilation, or a huge explicit padding. ``where`` names the
    layer; the message gives the plane and its bytes."""
    if any(d is None for d in spatial):
        return
    if len(spatial) == 1:
        spatial, kernel, strides, dilation = ((1, *spatial), (1, *kernel), (1, *strides),
                                              (1, *dilation))
        if not isinstance(padding, str):
            padding = ((0, 0), tuple(padding))
    pads = resolve_padding(padding, tuple(kernel), tuple(strides), tuple(dilation),
                           tuple(spatial))
    if isinstance(pads, str):
        return
    hp, wp = spatial[0] + pads[0] + pads[1], spatial[1] + pads[2] + pads[3]
    if hp * wp > MAX_PADDED_PIXELS:
        nbytes = hp * wp * (channels or 1) * itemsize
        raise ValueError(f"{where}: padding {padding!r} with a {kernel[0]}x{kernel[1]} window "
                         f"dilated {dilation[0]}x{dilation[1]} pads each {spatial[0]}x{spatial[1]} "
                         f"input to {hp}x{wp} pixels ({nbytes} bytes per image), more than the "
                         f"{MAX_PADDED_PIXELS} pixels fastconv's kernels address")


def effective_kernel(k: int, dilation: int) -> int:
    """Extent of a dilated kernel: ``(k - 1) * d + 1``."""
    return (k - 1) * dilation + 1


def same_padding(size: int, k_eff: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``same`` padding (before, after) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, kernel: tuple[int, int], strides: tuple[int, int],
                    dilation: tuple[int, int], spatial: tuple[int | None, int | None],
                    name: str = "padding") -> tuple[int, int, int, int] | str:
    """Padding as explicit ``(top, bottom, left, right)``.

    Returns the string ``'same'`` when the padding is ``same`` and a spatial size is unknown
    (layers computing shapes before they see data).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            if spatial[0] is None or spatial[1] is None:
                return "same"
            th, bh = same_padding(spatial[0], effective_kernel(kernel[0], dilation[0]), strides[0])
            lw, rw = same_padding(spatial[1], effective_kernel(kernel[1], dilation[1]), strides[1])
            return (th, bh, lw, rw)
        raise ValueError(
            f"{name} must be 'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right)); "
            f"got {padding!r}"
        )
    if _is_int(padding):
        p = int(padding)
        pads = (p, p, p, p)
    else:
        try:
            parts = tuple(padding)
        except TypeError:
            raise TypeError(
                f"{name} must be a string, an int or a tuple, got {padding!r}") from None
        if len(parts) == 2 and all(_is_int(p) for p in parts):
            pads = (int(parts[0]), int(parts[0]), int(parts[1]), int(parts[1]))
        elif (len(parts) == 2 and all(not _is_int(p) and len(tuple(p)) == 2 for p in parts)
              and all(_is_int(v) for p in parts for v in p)):
            (t, b), (left, r) = parts
            pads = (int(t), int(b), int(left), int(r))
        else:
            raise ValueError(
                f"{name} must be 'valid', 'same', an int, (ph, pw) or ((top, bottom), "
                f"(left, right)); got {padding!r}"
            )
    if any(p < 0 for p in pads):
        raise ValueError(f"{name} must not be negative, got {padding!r}")
    return pads


def output_length(size: int | None, k_eff: int, stride: int, pad_before: int,
                  pad_after: int) -> int | None:
    """Number of window positions along one axis (None when the size is unknown)."""
    if size is None:
        return None
    return (size + pad_before + pad_after - k_eff) // stride + 1


def output_length_for(size: int | None, kernel: int, stride: int, dilation: int,
                      padding) -> int | None:
    """Output length for a padding *mode* (used by layers' shape inference)."""
    if size is None:
        return None
    k_eff = effective_kernel(kernel, dilation)
    if isinstance(padding, str) and padding.lower() == "same":
        return -(-size // stride)
    if isinstance(padding, str):
        return output_length(size, k_eff, stride, 0, 0)
    before, after = padding
    return output_length(size, k_eff, stride, before, after)


#: The fields of ``ConvGeometry.astuple()``, the flat int tuple compiled kernels (CPU and CUDA)
#: take, in order; kernels read it as ``g[CONV_OH]`` (or unpack it whole in this order), never
#: by a bare position. Numba freezes these constants into compiled (and cached) kernels, so
#: the order never changes.
CONV_FIELDS = ("n", "h", "w", "c", "o", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pb", "pl",
               "pr", "oh", "ow")
CONV_N, CONV_H, CONV_W, CONV_C, CONV_O = 0, 1, 2, 3, 4
CONV_KH, CONV_KW, CONV_SH, CONV_SW, CONV_DH, CONV_DW = 5, 6, 7, 8, 9, 10
CONV_PT, CONV_PB, CONV_PL, CONV_PR, CONV_OH, CONV_OW = 11, 12, 13, 14, 15, 16

#: The fields of ``PoolGeometry.astuple()`` in order, read as ``g[POOL_OH]`` likewise.
POOL_FIELDS = ("n", "h", "w", "c", "ph", "pw", "sh", "sw", "pt", "pb", "pl", "pr", "oh", "ow")
POOL_N, POOL_H, POOL_W, POOL_C, POOL_PH, POOL_PW, POOL_SH = 0, 1, 2, 3, 4, 5, 6
POOL_SW, POOL_PT, POOL_PB, POOL_PL, POOL_PR, POOL_OH, POOL_OW = 7, 8, 9, 10, 11, 12, 13


@dataclass(frozen=True)
class ConvGeometry:
    """A 2D convolution NHWC x HWIO -> NHWC, everything as ints."""

    n: int
    h: int
    w: int
    c: int
    o: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0
    pb: int = 0
    pl: int = 0
    pr: int = 0

    @functools.cached_property
    def oh(self) -> int:
        return output_length(self.h, effective_kernel(self.kh, self.dh), self.sh, self.pt, self.pb)

    @functools.cached_property
    def ow(self) -> int:
        return output_length(self.w, effective_kernel(self.kw, self.dw), self.sw, self.pl, self.pr)

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.h, self.w, self.c)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.kh, self.kw, self.c, self.o)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.oh, self.ow, self.o)

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the direct algorithm (also used as 'effective' FLOPs)."""
        return 2 * self.n * self.oh * self.ow * self.o * self.kh * self.kw * self.c

    @property
    def is_3x3_unit(self) -> bool:
        """3x3 kernel, stride 1, dilation 1: the Winograd F(m x m, 3x3) case."""
        return (self.kh, self.kw, self.sh, self.sw, self.dh, self.dw) == (3, 3, 1, 1, 1, 1)

    def astuple(self) -> tuple[int, ...]:
        """Every size as a flat tuple of ints, the form compiled kernels take, in the order of
        ``CONV_FIELDS``: ``(n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow)``;
        kernels index it with the ``CONV_*`` constants."""
        return (self.n, self.h, self.w, self.c, self.o, self.kh, self.kw, self.sh, self.sw,
                self.dh, self.dw, self.pt, self.pb, self.pl, self.pr, self.oh, self.ow)

    def unpadded(self) -> ConvGeometry:
        """The same convolution on the explicitly padded input (same output size)."""
        return ConvGeometry(self.n, self.h + self.pt + self.pb, self.w + self.pl + self.pr,
                            self.c, self.o, self.kh, self.kw, self.sh, self.sw, self.dh, self.dw)

    def backward_data_as_forward(self) -> tuple[ConvGeometry, int, int] | None:
        """The stride-1 convolution that computes this convolution's input gradient.

        For stride 1 and no dilation, ``dx = conv(dy, w')`` with ``w'[i, j, o, c] =
        w[kh-1-i, kw-1-j, c, o]`` (the kernel flipped, in and out swapped) and padding
        ``k - 1 - p`` on each side. Where a forward padding exceeds ``k - 1`` that padding is 0
        and the result is cropped instead. Returns ``(geometry, crop_top, crop_left)``: ``dx`` is
        the ``h x w`` window of the result starting at ``(crop_top, crop_left)``. Returns None for
        strided or dilated convolutions.
        """
        if (self.sh, self.sw, self.dh, self.dw) != (1, 1, 1, 1):
            return None
        full = (self.kh - 1 - self.pt, self.kh - 1 - self.pb,
                self.kw - 1 - self.pl, self.kw - 1 - self.pr)
        pads = tuple(max(p, 0) for p in full)
        geom = ConvGeometry(self.n, self.oh, self.ow, self.o, self.c, self.kh, self.kw,
                            1, 1, 1, 1, *pads)
        return geom, max(-full[0], 0), max(-full[2], 0)


def conv_geometry(x_shape, w_shape, strides=1, padding="valid", dilation=1) -> ConvGeometry:
    """Validate a convolution's shapes and arguments and return its geometry."""
    if len(x_shape) != 4:
        raise ValueError(f"conv2d expects a 4D NHWC input, got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"conv2d expects a 4D HWIO kernel, got shape {tuple(w_shape)}")
    n, h, w, c = (int(v) for v in x_shape)
    kh, kw, ci, o = (int(v) for v in w_shape)
    if ci != c:
        raise ValueError(
            f"conv2d: the input has {c} channels but the kernel expects {ci} (kernel shape "
            f"{tuple(w_shape)}, input shape {tuple(x_shape)})"
        )
    sh, sw = normalize_tuple(strides, 2, "strides")
    dh, dw = normalize_tuple(dilation, 2, "dilation_rate")
    if min(kh, kw, o, c) < 1:
        raise ValueError(f"conv2d: kernel shape must be positive, got {tuple(w_shape)}")
    pads = resolve_padding(padding, (kh, kw), (sh, sw), (dh, dw), (h, w))
    geom = ConvGeometry(n, h, w, c, o, kh, kw, sh, sw, dh, dw, *pads)
    if geom.oh < 1 or geom.ow < 1:
        raise ValueError(
            f"conv2d: a {kh}x{kw} kernel (dilation {dh}x{dw}) does not fit the padded "
            f"{h + geom.pt + geom.pb}x{w + geom.pl + geom.pr} input (input shape "
            f"{tuple(x_shape)}, padding {padding!r})"
        )
    return geom


@dataclass(frozen=True)
class PoolGeometry:
    """A 2D pooling window over NHWC, everything as ints."""

    n: int
    h: int
    w: int
    c: int
    ph: int
    pw: int
    sh: int
    sw: int
    pt: int = 0
    pb: int = 0
    pl: int = 0
    pr: int = 0

    @functools.cached_property
    def oh(self) -> int:
        return output_length(self.h, self.ph, self.sh, self.pt, self.pb)

    @functools.cached_property
    def ow(self) -> int:
        return output_length(self.w, self.pw, self.sw, self.pl, self.pr)

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.h, self.w, self.c)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.oh, self.ow, self.c)

    def astuple(self) -> tuple[int, ...]:
        """``(n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow)`` (``POOL_FIELDS``): how
        kernels receive it; they index it with the ``POOL_*`` constants."""
        return (self.n, self.h, self.w, self.c, self.ph, self.pw, self.sh, self.sw, self.pt,
                self.pb, self.pl, self.pr, self.oh, self.ow)


def pool_geometry(x_shape, pool_size=2, strides=None, padding="valid",
                  op: str = "pool2d") -> PoolGeometry:
    """Validate a pooling's shapes and arguments and return its geometry."""
    if len(x_shape) != 4:
        raise ValueError(f"{op} expects a 4D NHWC input, got shape {tuple(x_shape)}")
    n, h, w, c = (int(v) for v in x_shape)
    ph, pw = normalize_tuple(pool_size, 2, "pool_size")
    sh, sw = normalize_tuple(pool_size if strides is None else strides, 2, "strides")
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{op}: padding must be 'valid' or 'same', got {padding!r}")
    pads = resolve_padding(padding, (ph, pw), (sh, sw), (1, 1), (h, w))
    if padding.lower() == "valid" and (ph > h or pw > w):
        raise ValueError(
            f"{op}: the pool {ph}x{pw} is larger than the {h}x{w} input (input shape "
            f"{tuple(x_shape)}); use a smaller pool_size or padding='same'"
        )
    return PoolGeometry(n, h, w, c, ph, pw, sh, sw, *pads)


__all__ = [
    "ConvGeometry", "PoolGeometry", "CONV_FIELDS", "POOL_FIELDS", "conv_geometry",
    "pool_geometry", "normalize_tuple",
    "resolve_padding", "same_padding", "effective_kernel", "output_length", "output_length_for",
]
