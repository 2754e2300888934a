"""Every backend x every convolution algorithm against the naive float64 oracle (tests/naive.py):
forward (with bias and fused ReLU), backward-data and backward-weight, on awkward geometries.

The primitives are called directly (``backend.conv2d_forward`` ...), so a failure points at a
kernel rather than at the autograd layer above it.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv.backends import algorithms
from fastconv.geometry import conv_geometry

from . import naive
from .devices import emulated_subset


@dataclass(frozen=True)
class Case:
    name: str
    x_shape: tuple
    w_shape: tuple
    strides: object = 1
    padding: object = "valid"
    dilation: object = 1

    def pair(self, v):
        return (v, v) if isinstance(v, int) else tuple(v)

    @property
    def explicit_padding(self):
        """The padding as (top, bottom, left, right), computed by the oracle's own rules."""
        p = self.padding
        if isinstance(p, str):
            return naive.conv_padding(p, self.x_shape, self.w_shape, self.pair(self.strides),
                                      self.pair(self.dilation))
        if isinstance(p, int):
            return (p, p, p, p)
        (t, b), (left, r) = p
        return (t, b, left, r)

    def geometry(self):
        return conv_geometry(self.x_shape, self.w_shape, self.strides, self.padding,
                             self.dilation)


FIXED_CASES = [
    Case("3x3-same", (2, 7, 6, 3), (3, 3, 3, 4), 1, "same"),
    Case("batch1-one-in-channel", (1, 5, 5, 1), (3, 3, 1, 2)),
    Case("one-out-channel", (2, 6, 5, 3), (3, 3, 3, 1), 1, "same"),
    Case("one-in-one-out", (1, 4, 7, 1), (3, 3, 1, 1), 1, "same"),
    Case("odd-non-square", (2, 9, 7, 2), (3, 3, 2, 3)),
    Case("explicit-asymmetric", (2, 6, 7, 2), (3, 3, 2, 3), 1, ((0, 2), (1, 0))),
    Case("pad-beyond-kernel-3x3", (1, 4, 5, 2), (3, 3, 2, 2), 1, ((3, 4), (2, 5))),
    Case("pad-beyond-kernel-2x2", (2, 3, 4, 2), (2, 2, 2, 3), 1, 3),
    Case("pad-pair", (1, 5, 4, 2), (3, 3, 2, 2), 1, ((2, 2), (0, 0))),
    Case("stride2-same", (2, 9, 8, 3), (3, 3, 3, 2), 2, "same"),
    Case("stride3-valid", (1, 10, 11, 2), (3, 3, 2, 2), 3),
    Case("stride-non-square", (2, 8, 9, 2), (3, 2, 2, 3), (2, 3), "same"),
    Case("stride-beyond-kernel", (1, 9, 9, 2), (2, 2, 2, 2), 3),
    Case("stride2-big-padding", (1, 5, 5, 2), (3, 3, 2, 2), 2, 3),
    Case("dilation2-same", (1, 9, 8, 2), (3, 3, 2, 2), 1, "same", 2),
    Case("dilation-non-square", (1, 9, 10, 2), (2, 3, 2, 2), 1, "valid", (2, 3)),
    Case("dilation-asymmetric-pad", (1, 7, 7, 2), (3, 3, 2, 2), 1, ((1, 3), (2, 0)), 2),
    # horizontal dilation with 16+ channels: im2col's forward reads one run per tap
    Case("dilation-wide-channels", (1, 6, 7, 17), (2, 3, 17, 3), 1, "same", (1, 2)),
    Case("kernel-as-large-as-input", (2, 5, 4, 3), (5, 4, 3, 2)),
    Case("3x3-kernel-on-3x3-input", (2, 3, 3, 2), (3, 3, 2, 3)),
    Case("3x3-same-on-1x1-input", (2, 1, 1, 3), (3, 3, 3, 2), 1, "same"),
    Case("3x3-same-on-2x7-input", (1, 2, 7, 2), (3, 3, 2, 2), 1, "same"),
    Case("1x1", (2, 5, 6, 4), (1, 1, 4, 3)),
    Case("1x1-stride2", (1, 7, 6, 3), (1, 1, 3, 2), 2),
    Case("5x5-same", (1, 8, 7, 2), (5, 5, 2, 3), 1, "same"),
    Case("1x3-same", (2, 5, 6, 2), (1, 3, 2, 2), 1, "same"),
    Case("4x4-stride2-same", (2, 7, 8, 2), (4, 4, 2, 2), 2, "same"),
    Case("more-channels", (1, 6, 6, 8), (3, 3, 8, 8), 1, "same"),
    Case("3x3-large-tiles", (1, 13, 11, 2), (3, 3, 2, 2), 1, "same"),
    Case("many-channels-1x1-stride2", (2, 5, 5, 9), (1, 1, 9, 10), 2),
]


def _random_cases(count: int = 20, seed: int = 7) -> list[Case]:
    """Seeded random geometries; every third one is a 3x3 stride-1 convolution (Winograd's)."""
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(count):
        if k % 3 == 0:
            kh = kw = 3
            strides, dilation = (1, 1), (1, 1)
        else:
            kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
            strides = tuple(int(v) for v in rng.integers(1, 4, size=2))
            dilation = (1, 1) if strides != (1, 1) else tuple(
                int(v) for v in rng.integers(1, 3, size=2))
        keh, kew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
        h = keh + int(rng.integers(0, 7))
        w = kew + int(rng.integers(0, 7))
        choice = rng.integers(0, 3)
        if choice == 0:
            padding = "valid"
        elif choice == 1:
            padding = "same"
        else:
            t, b, left, r = (int(v) for v in rng.integers(0, 5, size=4))
            padding = ((t, b), (left, r))
        n, c, o = (int(v) for v in rng.integers(1, 4, size=3))
        cases.append(Case(f"random{k}", (n, h, w, c), (kh, kw, c, o), strides, padding,
                          dilation))
    return cases


CASES = FIXED_CASES + _random_cases()
CASES_BY_NAME = {c.name: c for c in CASES}
assert len(CASES_BY_NAME) == len(CASES)

#: (case, algorithm, dtype) for every algorithm that can compute the case's geometry.
PARAMS = [pytest.param(c.name, a, dtype, id=f"{c.name}-{a}-{dtype}") for c in CASES
          for a, spec in algorithms.ALGORITHMS.items() if spec.supports(c.geometry())
          for dtype in ("float64", "float32")]

#: What the emulated device run keeps (about a millisecond per simulated thread, 40 ms per
#: block; the simulator runs the same Python for both dtypes, the PTX check types them): every
#: direct case (one thread per element, cheap); for im2col stride 2 with asymmetric 'same'
#: padding, batch 2 and 3 channels, dilation 2 with explicit asymmetric padding, 1x1 with
#: stride 2, and more channels than a simulator GEMM tile (8 x 8 x 4) in every GEMM
#: dimension; for Winograd 3x3 'same' with batch 2, 3 channels and cropped edge tiles.
EMULATED_PARAMS = {
    *(f"{c.name}-direct-{dtype}" for c in CASES for dtype in ("float64", "float32")),
    "stride2-same-im2col-float64", "stride2-same-im2col-float32",
    "dilation-asymmetric-pad-im2col-float64", "1x1-stride2-im2col-float64",
    "many-channels-1x1-stride2-im2col-float64",
    "3x3-same-winograd-float64", "3x3-same-winograd4-float64", "3x3-same-winograd4-float32",
}
PARAMS = emulated_subset(PARAMS, EMULATED_PARAMS)

TOLERANCE = {
    ("float64", "direct"): 1e-12, ("float64", "im2col"): 1e-12,
    ("float64", "winograd"): 1e-9, ("float64", "winograd4"): 1e-9,
    ("float32", "direct"): 1e-5, ("float32", "im2col"): 1e-5,
    ("float32", "winograd"): 1e-4, ("float32", "winograd4"): 1e-4,
}


@functools.cache
def reference(name: str, dtype: str):
    """Inputs (rounded to ``dtype``) and the oracle's float64 answers for one case."""
    case = CASES_BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    strides, dilation = case.pair(case.strides), case.pair(case.dilation)
    pads = case.explicit_padding
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.w_shape[3]).astype(dtype)
    y_shape = naive.conv_output_shape(case.x_shape, case.w_shape, strides, pads, dilation)
    dy = rng.standard_normal(y_shape).astype(dtype)
    return {
        "x": x, "w": w, "b": b, "dy": dy, "pads": pads, "y_shape": y_shape,
        "y": naive.conv2d_forward(x, w, None, strides, pads, dilation),
        "y_bias_relu": naive.conv2d_forward(x, w, b, strides, pads, dilation, "relu"),
        "dx": naive.conv2d_backward_data(dy, w, case.x_shape, strides, pads, dilation),
        "dw": naive.conv2d_backward_weight(x, dy, case.w_shape, strides, pads, dilation),
    }


def assert_close(got, want, rtol, what):
    """Error relative to the largest reference value (entries near zero do not blow up)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_geometry_matches_oracle(case):
    c = CASES_BY_NAME[case]
    geom = c.geometry()
    ref = reference(case, "float64")
    assert (geom.pt, geom.pb, geom.pl, geom.pr) == ref["pads"]
    assert geom.y_shape == ref["y_shape"]
    assert geom.x_shape == c.x_shape and geom.w_shape == c.w_shape


@pytest.mark.parametrize("case, algo, dtype", PARAMS)
def test_conv_matches_oracle(backend, case, algo, dtype):
    # every backend computes in both dtypes ops accept; ops never consult ``backend.dtypes``,
    # so a backend without one would be handed its arrays anyway: a failure, not a skip
    assert dtype in backend.dtypes, f"backend {backend.name!r} declares no {dtype} support"
    c = CASES_BY_NAME[case]
    ref = reference(case, dtype)
    rtol = TOLERANCE[dtype, algo]
    be = fastconv.get_backend()
    assert be is backend
    geom = c.geometry()
    x, w, b, dy = (be.asarray(ref[k].copy()) for k in ("x", "w", "b", "dy"))

    y = be.conv2d_forward(x, w, b, geom, algo, "relu")
    assert str(y.dtype) == dtype
    assert_close(be.to_host(y), ref["y_bias_relu"], rtol, f"{algo} forward (bias, relu)")
    y = be.conv2d_forward(x, w, None, geom, algo)
    assert_close(be.to_host(y), ref["y"], rtol, f"{algo} forward")
    dx = be.conv2d_backward_data(dy, w, geom, algo)
    assert str(dx.dtype) == dtype
    assert_close(be.to_host(dx), ref["dx"], rtol, f"{algo} backward-data")
    dw = be.conv2d_backward_weight(x, dy, geom, algo)
    assert str(dw.dtype) == dtype
    assert_close(be.to_host(dw), ref["dw"], rtol, f"{algo} backward-weight")

    for key, arr in (("x", x), ("w", w), ("b", b), ("dy", dy)):  # inputs are read only
        np.testing.assert_array_equal(be.to_host(arr), ref[key], err_msg=f"{key} was modified")


def test_random_cases_cover_every_algorithm():
    covered = {a for c in _random_cases() for a, s in algorithms.ALGORITHMS.items()
               if s.supports(c.geometry())}
    assert covered == set(algorithms.ALGORITHMS)


@pytest.mark.parametrize("case", emulated_subset(["3x3-same", "pad-beyond-kernel-3x3",
                                                   "stride2-same", "dilation2-same", "1x1"],
                                                  keep={0, 4}))
def test_functional_conv2d_uses_current_algorithm(backend, conv_algo, case):
    """``conv2d(algo=None)`` follows ``use_conv_algo``; Winograd refuses what it cannot do."""
    c = CASES_BY_NAME[case]
    ref = reference(case, "float64")
    args = (ref["x"], ref["w"], ref["b"], c.strides, c.padding, c.dilation)
    if not algorithms.ALGORITHMS[conv_algo].supports(c.geometry()):
        with pytest.raises(ValueError, match="3x3 kernels with stride 1"):
            F.conv2d(*args, activation="relu")
        return
    y = F.conv2d(*args, activation="relu")
    assert_close(y.numpy(), ref["y_bias_relu"], TOLERANCE["float64", conv_algo], conv_algo)


@pytest.mark.parametrize("algo", ["winograd", "winograd4"])
@pytest.mark.parametrize("w_shape, strides, dilation, what", [
    ((5, 5, 2, 2), 1, 1, "5x5 convolution with stride 1x1"),
    ((3, 3, 2, 2), 2, 1, "3x3 convolution with stride 2x2"),
    ((3, 3, 2, 2), (1, 2), 1, "3x3 convolution with stride 1x2"),
    ((3, 3, 2, 2), 1, 2, "dilation 2x2"),
    ((1, 1, 2, 2), 1, 1, "1x1 convolution"),
])
def test_forcing_winograd_on_unsupported_geometry_is_an_error(backend, algo, w_shape, strides,
                                                              dilation, what):
    x = np.ones((1, 9, 9, 2))
    w = np.ones(w_shape)
    with pytest.raises(ValueError, match=r"3x3 kernels with stride 1 and dilation 1") as info:
        F.conv2d(x, w, strides=strides, dilation=dilation, padding="same", algo=algo)
    message = str(info.value)
    assert algo in message and what in message
    assert "direct" in message and "im2col" in message  # the algorithms that would work
    # and the same request through use_conv_algo
    with fastconv.use_conv_algo(algo), pytest.raises(ValueError, match="3x3 kernels"):
        F.conv2d(x, w, strides=strides, dilation=dilation, padding="same")


def test_unknown_algorithm_is_an_error(backend):
    with pytest.raises(ValueError, match="unknown convolution algorithm 'fft'.*im2col"):
        F.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), algo="fft")


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 5, 5, 2), (3, 3, 3, 4), {}, "input has 2 channels but the kernel expects 3"),
    ((1, 2, 5, 1), (3, 3, 1, 1), {}, "does not fit"),
    ((1, 5, 5, 1), (3, 3, 1, 1), {"padding": -1}, "must not be negative"),
    ((1, 5, 5, 1), (3, 3, 1, 1), {"padding": "full"}, "padding must be 'valid', 'same'"),
    ((1, 5, 5, 1), (3, 3, 1, 1), {"strides": 0}, "strides must be >= 1"),
    ((1, 5, 5, 1), (3, 3, 1, 1), {"dilation": (1, 0)}, "dilation_rate must be >= 1"),
    ((5, 5, 1), (3, 3, 1, 1), {}, "4D NHWC input"),
    ((1, 5, 5, 1), (3, 3, 1), {}, "4D HWIO kernel"),
])
def test_conv2d_argument_errors(backend, x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(np.ones(x_shape), np.ones(w_shape), **kwargs)


def test_conv2d_type_errors(backend):
    with pytest.raises(TypeError, match="dtypes differ"):
        F.conv2d(np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 1), np.float64))
    with pytest.raises(TypeError, match="numbers"):
        F.conv2d(np.full((1, 4, 4, 1), "a"), np.ones((3, 3, 1, 1)))
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 2)), np.ones(3))
    with pytest.raises(ValueError, match="fused activation"):
        F.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 2)), activation="tanh")
