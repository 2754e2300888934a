"""The GPU backends' own grouped and depthwise convolution kernels (numba-cuda's
``conv_grouped``, the cupy backend's ``kernels/conv_grouped.cu``) against the float64 oracle on
the geometries they index differently: depth multipliers, strides with dilation, non-square
kernels, and outputs, inputs and kernels larger than one launch's threads (the emulated launch
sizes: 8 threads x 4 blocks in the simulator, 32 x 4 in the CUDA C emulation), so that every
grid-stride loop and the backward-weight block reduction wrap around. Every backend runs these
cases; the GPU backends are also checked to launch their own kernels rather than the per-group
composition, and to compute backward-weight deterministically.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastconv.backends.base as base

from . import naive
from .test_grouped_conv import Case, assert_close

CASES = [
    # depthwise, depth multiplier 2, stride 2 with dilation 2 and 'same' padding
    Case("dw-m2-stride2-dilation2", (1, 9, 8, 3), 3, 6, strides=2, padding="same", dilation=2),
    # depthwise, multiplier 3, a non-square kernel and strides (2, 1)
    Case("dw-m3-3x2-stride-2x1", (2, 6, 5, 2), 2, 6, kernel=(3, 2), strides=(2, 1),
         padding="same"),
    # grouped, 2 input and 3 output channels per group, stride 2 with dilation (2, 1)
    Case("g3-cg2-stride2-dilation", (1, 9, 9, 6), 3, 9, strides=2, padding="same",
         dilation=(2, 1)),
    # more outputs, inputs, kernel elements and pixels than an emulated launch has threads
    Case("g2-crosses-blocks", (2, 7, 6, 6), 2, 4, padding="same"),
    # one output pixel: backward-weight's reduction over fewer pixels than threads
    Case("g2-one-pixel", (1, 3, 3, 4), 2, 2),
]
BY_NAME = {c.name: c for c in CASES}
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
DEVICE = ("numba-cuda", "cupy")


def _reference(case: Case, dtype: str):
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.out).astype(dtype)
    args = case.oracle_args()
    y = naive.grouped_conv2d_forward(x, w, None, *args)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return {
        "x": x, "w": w, "b": b, "dy": dy,
        "y_bias_relu": naive.grouped_conv2d_forward(x, w, b, *args, "relu"),
        "dx": naive.grouped_conv2d_backward_data(dy, w, case.x_shape, *args),
        "dw": naive.grouped_conv2d_backward_weight(x, dy, case.w_shape, *args),
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(BY_NAME))
def test_grouped_kernels_match_oracle(backend, name, dtype):
    case, ref = BY_NAME[name], _reference(BY_NAME[name], dtype)
    rtol = TOLERANCE[dtype]
    be, geom, groups = backend, case.geometry(), case.groups
    x, w, b, dy = (be.asarray(ref[k]) for k in ("x", "w", "b", "dy"))
    y = be.grouped_conv2d_forward(x, w, b, geom, groups, "relu")
    assert str(y.dtype) == dtype
    assert_close(be.to_host(y), ref["y_bias_relu"], rtol, f"{name} forward")
    run = be.prepare_grouped_conv2d_forward(geom, groups, "relu")
    assert_close(be.to_host(run(x, w, b, ("w", 0))), ref["y_bias_relu"], rtol,
                 f"{name} prepared forward")
    dx = be.grouped_conv2d_backward_data(dy, w, geom, groups)
    assert_close(be.to_host(dx), ref["dx"], rtol, f"{name} backward-data")
    dw = be.grouped_conv2d_backward_weight(x, dy, geom, groups)
    assert str(dw.dtype) == dtype
    assert_close(be.to_host(dw), ref["dw"], rtol, f"{name} backward-weight")


@pytest.fixture
def no_per_group(monkeypatch):
    """The per-group composition of ``fastconv.backends.base`` made to fail if called."""
    def refuse(*args, **kwargs):
        raise AssertionError("the per-group composition ran instead of the grouped kernels")

    for fn in ("per_group_conv2d_forward", "per_group_conv2d_backward_data",
               "per_group_conv2d_backward_weight"):
        monkeypatch.setattr(base, fn, refuse)


@pytest.mark.device
def test_device_backends_launch_their_grouped_kernels(backend, no_per_group):
    """One case through all four entry points with the per-group fallback disabled, and
    backward-weight bit-identical from one call to the next."""
    if backend.name not in DEVICE:
        pytest.skip("a GPU backend's kernels")
    case = BY_NAME["dw-m2-stride2-dilation2"]
    ref = _reference(case, "float32")
    be, geom, groups = backend, case.geometry(), case.groups
    x, w, b, dy = (be.asarray(ref[k]) for k in ("x", "w", "b", "dy"))
    assert_close(be.to_host(be.grouped_conv2d_forward(x, w, b, geom, groups, "relu")),
                 ref["y_bias_relu"], 1e-5, "forward")
    run = be.prepare_grouped_conv2d_forward(geom, groups, "relu")
    assert_close(be.to_host(run(x, w, b, ("w", 1))), ref["y_bias_relu"], 1e-5, "prepared")
    assert_close(be.to_host(be.grouped_conv2d_backward_data(dy, w, geom, groups)), ref["dx"],
                 1e-5, "backward-data")
    first = be.to_host(be.grouped_conv2d_backward_weight(x, dy, geom, groups))
    second = be.to_host(be.grouped_conv2d_backward_weight(x, dy, geom, groups))
    assert_close(first, ref["dw"], 1e-5, "backward-weight")
    np.testing.assert_array_equal(first, second)


@pytest.mark.device
def test_device_grouped_kernels_refuse_bad_operands(backend):
    if backend.name not in DEVICE:
        pytest.skip("a GPU backend's kernels")
    case = BY_NAME["g2-one-pixel"]
    ref = _reference(case, "float32")
    be, geom = backend, case.geometry()
    x, w = be.asarray(ref["x"]), be.asarray(ref["w"])
    with pytest.raises(ValueError, match="groups=3"):
        be.grouped_conv2d_forward(x, w, None, geom, 3)
    with pytest.raises(ValueError, match="shape"):
        be.grouped_conv2d_forward(x, be.asarray(ref["w"][:, :, :1]), None, geom, 2)
    with pytest.raises(TypeError):
        be.grouped_conv2d_forward(x, be.asarray(ref["w"].astype("float64")), None, geom, 2)
    with pytest.raises(ValueError):
        be.grouped_conv2d_forward(x, w, None, geom, 2, "swish")
