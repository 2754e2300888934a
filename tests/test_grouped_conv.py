"""Grouped and depthwise convolution: every backend's primitives against the naive float64
oracle (tests/naive.py) on awkward geometries, both numba-cpu kernel variants (serial and
parallel), gradients by central differences, PyTorch's ``conv2d(groups=)``, the op's argument
errors, and the layers (Conv2D(groups=), DepthwiseConv2D, SeparableConv2D): config round trips,
predict, .fcm files, training, and Keras on the same weights.

The primitives are called directly (``backend.grouped_conv2d_forward`` ...), so a failure
points at a kernel rather than at the autograd layer above it.
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv import Tensor
from fastconv.layers import (
    Conv1D,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    GlobalAveragePooling2D,
    Input,
    SeparableConv2D,
)
from fastconv.models import Model, Sequential
from fastconv.ops.conv import grouped_geometry
from fastconv.saving import load_model

from . import naive
from .devices import emulated_subset
from .test_gradients import check_backward


@dataclass(frozen=True)
class Case:
    """A grouped convolution: input ``x_shape`` (NHWC), ``groups``, ``out`` channels and a
    ``kernel`` (kh, kw); the kernel is (kh, kw, C/groups, out)."""

    name: str
    x_shape: tuple
    groups: int
    out: int
    kernel: tuple = (3, 3)
    strides: object = 1
    padding: object = "valid"
    dilation: object = 1

    @staticmethod
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    @property
    def w_shape(self):
        return (*self.kernel, self.x_shape[3] // self.groups, self.out)

    @property
    def pads(self):
        p = self.padding
        if isinstance(p, str):
            return naive.conv_padding(p, self.x_shape, self.w_shape, self.pair(self.strides),
                                      self.pair(self.dilation))
        if isinstance(p, int):
            return (p,) * 4
        (t, b), (left, r) = p
        return (t, b, left, r)

    def geometry(self):
        return grouped_geometry(self.x_shape, self.w_shape, self.groups, self.strides,
                                self.padding, self.dilation)

    def oracle_args(self):
        return self.groups, self.pair(self.strides), self.pads, self.pair(self.dilation)


CASES = [
    # depthwise (groups == C): the numba-cpu direct kernel, its 3x3 register path and borders
    Case("dw-3x3-same", (2, 7, 6, 4), 4, 4, padding="same"),
    Case("dw-batch1-stride2-same", (1, 9, 8, 3), 3, 3, strides=2, padding="same"),
    Case("dw-multiplier2", (2, 6, 7, 3), 3, 6, padding="same"),
    Case("dw-multiplier2-stride2", (1, 7, 7, 2), 2, 4, strides=2, padding="same"),
    Case("dw-dilation2-same", (1, 9, 8, 2), 2, 2, padding="same", dilation=2),
    Case("dw-5x5-asymmetric-pad", (1, 8, 7, 3), 3, 3, kernel=(5, 5), padding=((1, 3), (2, 0))),
    Case("dw-3x2-stride-2x1", (2, 7, 9, 4), 4, 4, kernel=(3, 2), strides=(2, 1)),
    Case("dw-same-on-1x1-input", (2, 1, 1, 3), 3, 3, padding="same"),
    Case("dw-one-channel", (1, 5, 6, 1), 1, 1, padding="same"),
    Case("dw-pad-beyond-kernel", (1, 4, 5, 2), 2, 2, padding=((3, 4), (2, 5))),
    # more channels than a vector (16 float32 / 8 float64 lanes) and a remainder: the 3x3
    # sweeps, masked at the borders
    Case("dw-21-channels-same", (2, 6, 7, 21), 21, 21, padding="same"),
    Case("dw-21-channels-stride2", (1, 9, 8, 21), 21, 21, strides=2, padding="same"),
    Case("dw-21-channels-dilation2", (1, 9, 8, 21), 21, 21, padding="same", dilation=2),
    Case("dw-24-pad-beyond-kernel", (1, 4, 5, 24), 24, 24, padding=((3, 4), (2, 5))),
    Case("dw-16-stride-2x1-valid", (2, 7, 9, 16), 16, 16, strides=(2, 1)),
    # grouped (1 < groups < C): the numba-cpu micro-kernel, panels of 8 (4 in float64) columns
    Case("g2-cg3-same", (2, 7, 6, 6), 2, 4, padding="same"),
    Case("g4-cg3-stride2", (1, 9, 8, 12), 4, 8, strides=2, padding="same"),
    Case("g2-cg1-4-out", (2, 6, 5, 2), 2, 4, padding="same"),  # C/G == 1, groups < outputs
    Case("g4-cg1-dilation2", (1, 9, 8, 4), 4, 8, dilation=2),
    Case("g4-one-output-per-group", (2, 5, 6, 8), 4, 4, padding="same"),
    Case("g2-11-outputs-per-group", (1, 6, 7, 4), 2, 22, padding="same"),
    Case("g2-explicit-asymmetric", (2, 6, 7, 6), 2, 6, padding=((0, 2), (1, 0))),
    Case("g3-stride3-1x1", (1, 7, 8, 9), 3, 6, kernel=(1, 1), strides=3),
    Case("g2-dilation-non-square", (1, 9, 10, 4), 2, 4, kernel=(2, 3), dilation=(2, 3)),
    Case("g2-kernel-as-large-as-input", (2, 5, 4, 4), 2, 2, kernel=(5, 4)),
    Case("g8-wide-channels", (1, 6, 5, 40), 8, 24, padding="same"),
]
BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES)

#: Large enough for numba-cpu's automatic choice to take its parallel kernels (2 MFLOP of work)
PARALLEL_CASES = [
    Case("dw-parallel", (2, 32, 32, 64), 64, 64, padding="same"),
    Case("g8-parallel", (1, 16, 16, 64), 8, 64, padding="same"),
]
BY_NAME.update({c.name: c for c in PARALLEL_CASES})

TOLERANCE = {"float64": 1e-12, "float32": 1e-5}

#: What an emulated device run keeps (the per-group composition of its dense kernels):
#: depthwise with a multiplier and strides, grouped with C/G == 3 and 'same' padding
EMULATED_CASES = {"dw-multiplier2-stride2", "g2-cg3-same"}


@functools.cache
def reference(name: str, dtype: str):
    """Inputs (rounded to ``dtype``) and the oracle's float64 answers for one case."""
    case = BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.out).astype(dtype)
    args = case.oracle_args()
    y = naive.grouped_conv2d_forward(x, w, None, *args)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return {
        "x": x, "w": w, "b": b, "dy": dy, "y": y,
        "y_bias_relu": naive.grouped_conv2d_forward(x, w, b, *args, "relu"),
        "dx": naive.grouped_conv2d_backward_data(dy, w, case.x_shape, *args),
        "dw": naive.grouped_conv2d_backward_weight(x, dy, case.w_shape, *args),
    }


def assert_close(got, want, rtol, what):
    """Error relative to the largest reference value (entries near zero do not blow up)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def check_primitives(be, name: str, dtype: str) -> None:
    """The three grouped primitives of ``be`` (and the prepared forward) against the oracle;
    inputs stay unmodified."""
    case, ref = BY_NAME[name], reference(name, dtype)
    rtol = TOLERANCE[dtype]
    geom, groups = case.geometry(), case.groups
    x, w, b, dy = (be.asarray(ref[k].copy()) for k in ("x", "w", "b", "dy"))

    y = be.grouped_conv2d_forward(x, w, b, geom, groups, "relu")
    assert str(y.dtype) == dtype
    assert_close(be.to_host(y), ref["y_bias_relu"], rtol, f"{name} forward (bias, relu)")
    y = be.grouped_conv2d_forward(x, w, None, geom, groups)
    assert_close(be.to_host(y), ref["y"], rtol, f"{name} forward")
    run = be.prepare_grouped_conv2d_forward(geom, groups, "relu")
    for _ in range(2):  # the second call reuses what the first prepared
        assert_close(be.to_host(run(x, w, b, ("w", 0))), ref["y_bias_relu"], rtol,
                     f"{name} prepared forward")
    dx = be.grouped_conv2d_backward_data(dy, w, geom, groups)
    assert str(dx.dtype) == dtype
    assert_close(be.to_host(dx), ref["dx"], rtol, f"{name} backward-data")
    dw = be.grouped_conv2d_backward_weight(x, dy, geom, groups)
    assert str(dw.dtype) == dtype
    assert_close(be.to_host(dw), ref["dw"], rtol, f"{name} backward-weight")
    for key, arr in (("x", x), ("w", w), ("b", b), ("dy", dy)):
        np.testing.assert_array_equal(be.to_host(arr), ref[key], err_msg=f"{key} was modified")


PARAMS = emulated_subset(
    [pytest.param(c.name, dtype, id=f"{c.name}-{dtype}") for c in CASES
     for dtype in ("float64", "float32")],
    {f"{name}-{dtype}" for name in EMULATED_CASES for dtype in ("float64", "float32")})


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_grouped_primitives_match_oracle(backend, case, dtype):
    # every backend computes in both dtypes ops accept; ops never consult ``backend.dtypes``,
    # so a backend without one would be handed its arrays anyway: a failure, not a skip
    assert dtype in backend.dtypes, f"backend {backend.name!r} declares no {dtype} support"
    check_primitives(backend, case, dtype)


@pytest.mark.host_only("numba-cpu's own kernel variants")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["dw-3x3-same", "dw-multiplier2-stride2", "dw-21-channels-same",
                                  "dw-24-pad-beyond-kernel", "dw-5x5-asymmetric-pad",
                                  "g4-cg3-stride2", "g2-11-outputs-per-group",
                                  "g2-explicit-asymmetric"])
def test_numba_cpu_serial_and_parallel_kernels(kernel_mode, case, dtype):
    """Both compilations of every numba-cpu grouped kernel, whatever the problem size."""
    check_primitives(fastconv.get_backend("numba-cpu"), case, dtype)


@pytest.mark.host_only("large shapes: the CPU backends' automatic thread policy")
@pytest.mark.parametrize("dtype", ["float32"])
@pytest.mark.parametrize("case", [c.name for c in PARALLEL_CASES])
def test_large_problems_take_the_parallel_kernels(monkeypatch, case, dtype):
    """The size policy picks the parallel kernels for 2 MFLOP problems (the machine's load is
    left out of the choice: FASTCONV_ADAPTIVE_THREADS=0)."""
    from fastconv.backends.numba_cpu import conv_grouped
    from fastconv.backends.numba_cpu.jit import SizedKernel

    monkeypatch.setenv("FASTCONV_ADAPTIVE_THREADS", "0")
    chosen = []
    for name in ("depthwise_forward", "grouped_forward", "backward_data", "backward_weight"):
        kernel = getattr(conv_grouped, name)
        monkeypatch.setattr(kernel, "parallel", _recording(kernel.parallel, chosen, name))
    assert SizedKernel.mode == "auto"
    check_primitives(fastconv.get_backend("numba-cpu"), case, dtype)
    forward = "depthwise_forward" if case.startswith("dw") else "grouped_forward"
    assert {forward, "backward_data", "backward_weight"} <= set(chosen)


def _recording(dispatcher, calls, name):
    def run(*args):
        calls.append(name)
        return dispatcher(*args)

    return run


# -- the op ---------------------------------------------------------------------------------------


def test_conv2d_groups_matches_oracle_and_ignores_the_algorithm(backend, conv_algo):
    """``conv2d(groups=)`` runs the grouped primitives under every algorithm setting (Winograd
    included: the grouped kernels have one algorithm)."""
    case = BY_NAME["g2-cg3-same"]
    ref = reference(case.name, "float64")
    y = F.conv2d(ref["x"], ref["w"], ref["b"], case.strides, case.padding, case.dilation,
                 activation="relu", groups=case.groups)
    assert_close(y.numpy(), ref["y_bias_relu"], 1e-12, conv_algo)


@pytest.mark.parametrize("x_shape, w_shape, groups, match", [
    ((1, 5, 5, 6), (3, 3, 3, 5), 2, r"conv2d: the kernel's 5 output channels do not split "
                                    r"into groups=2"),
    ((1, 5, 5, 5), (3, 3, 2, 4), 2, r"conv2d: the input's 5 channels do not split into "
                                    r"groups=2"),
    ((1, 5, 5, 6), (3, 3, 6, 4), 2, r"with groups=2 the kernel must have 3 input channels"),
    ((1, 5, 5, 6), (3, 3, 3, 4), 0, r"conv2d: groups must be a positive int, got 0"),
    ((1, 5, 5, 6), (3, 3, 3, 4), True, r"groups must be a positive int, got True"),
    ((1, 5, 5, 6), (3, 3, 3, 4), 2.0, r"groups must be a positive int, got 2.0"),
    ((1, 2, 5, 6), (3, 3, 3, 4), 2, r"does not fit"),
    ((5, 5, 6), (3, 3, 3, 4), 2, r"4D NHWC input"),
])
def test_conv2d_groups_argument_errors(x_shape, w_shape, groups, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(np.ones(x_shape), np.ones(w_shape), groups=groups)


def test_conv2d_groups_other_errors():
    x, w = np.ones((1, 5, 5, 4)), np.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match=r"unknown convolution algorithm 'fft'"):
        F.conv2d(x, w, groups=2, algo="fft")
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        F.conv2d(x, w, np.ones(2), groups=2)


# -- gradients ------------------------------------------------------------------------------------


def _grouped_inputs(rng, case, margin=1e-2):
    """x, w, b whose pre-activations all lie at least ``margin`` away from ReLU's kink."""
    for _ in range(100):
        x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
        b = rng.standard_normal(case.out)
        z = naive.grouped_conv2d_forward(x, w, b, *case.oracle_args())
        if np.abs(z).min() > margin and (z > 0).any() and (z < 0).any():
            return x, w, b
    raise AssertionError("could not draw inputs away from the ReLU kink")


GRADIENT_CASES = emulated_subset([
    Case("dw-multiplier2-stride2-same", (2, 6, 5, 2), 2, 4, strides=2, padding="same"),
    Case("g2-cg3-dilation2", (1, 7, 8, 6), 2, 4, padding="same", dilation=2),
    Case("g3-cg1-explicit-pad", (2, 5, 6, 3), 3, 3, kernel=(2, 3), padding=((1, 0), (2, 1))),
], keep={0})


@pytest.mark.parametrize("case", GRADIENT_CASES, ids=lambda c: c.name)
def test_grouped_conv2d_gradient(backend, rng, case):
    x, w, b = _grouped_inputs(rng, case)

    def fn(x_, w_, b_):
        return F.conv2d(x_, w_, b_, case.strides, case.padding, case.dilation, activation="relu",
                        groups=case.groups)

    check_backward(backend, fn, [x, w, b])


def test_separable_composition_gradient(backend, rng):
    """Depthwise (Keras's (kh, kw, C, M) kernel through a reshape), then pointwise."""
    x = rng.standard_normal((2, 6, 5, 3))
    dk, pk = rng.standard_normal((3, 3, 3, 2)), rng.standard_normal((1, 1, 6, 4))

    def fn(x_, dk_, pk_):
        z = F.conv2d(x_, F.reshape(dk_, (3, 3, 1, 6)), padding="same", groups=3)
        return F.conv2d(z, pk_)

    check_backward(backend, fn, [x, dk, pk])


# -- PyTorch --------------------------------------------------------------------------------------


TORCH_CASES = emulated_subset(["dw-batch1-stride2-same", "dw-multiplier2", "dw-dilation2-same",
                               "g4-cg3-stride2", "g2-explicit-asymmetric", "g8-wide-channels"],
                              keep={1, 3})


@pytest.mark.parametrize("case", TORCH_CASES)
def test_grouped_conv_matches_pytorch(backend, case):
    """float32 forward and both gradients against ``torch.nn.functional.conv2d(groups=)``."""
    import torch

    c = BY_NAME[case]
    ref = reference(case, "float32")
    x, w, b, dy = ref["x"], ref["w"], ref["b"], ref["dy"]
    pt, pb, pl, pr = c.pads
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    yt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (pl, pr, pt, pb)), wt,
                                    torch.tensor(b), c.pair(c.strides), 0, c.pair(c.dilation),
                                    c.groups)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    want_y = yt.detach().numpy().transpose(0, 2, 3, 1).astype(np.float64)
    want_dx = xt.grad.numpy().transpose(0, 2, 3, 1).astype(np.float64)
    want_dw = wt.grad.numpy().transpose(2, 3, 1, 0).astype(np.float64)

    be = backend
    geom = c.geometry()
    args = [be.asarray(a) for a in (x, w, b, dy)]
    y = be.grouped_conv2d_forward(args[0], args[1], args[2], geom, c.groups)
    assert_close(be.to_host(y), want_y, 2e-5, "forward")
    assert_close(be.to_host(be.grouped_conv2d_backward_data(args[3], args[1], geom, c.groups)),
                 want_dx, 2e-5, "backward-data")
    assert_close(be.to_host(be.grouped_conv2d_backward_weight(args[0], args[3], geom, c.groups)),
                 want_dw, 2e-5, "backward-weight")


# -- layers ---------------------------------------------------------------------------------------


def _separable_model(dtype="float32"):
    inp = Input((9, 8, 4), dtype=dtype)
    x = DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw",
                        dtype=dtype)(inp)
    x = SeparableConv2D(6, 3, strides=2, padding="same", activation="relu", name="sep",
                        dtype=dtype)(x)
    x = Conv2D(4, 3, groups=2, padding="same", activation="relu", name="grouped",
               dtype=dtype)(x)
    x = GlobalAveragePooling2D(name="gap", dtype=dtype)(x)
    return Model(inp, Dense(3, activation="softmax", name="out", dtype=dtype)(x))


def test_layer_weights_and_shapes_follow_keras():
    model = _separable_model()
    shapes = {w.name: tuple(w.shape) for w in model.weights}
    assert shapes["dw/depthwise_kernel"] == (3, 3, 4, 2) and shapes["dw/bias"] == (8,)
    assert [w.name for w in model.get_layer("sep").weights] == [
        "sep/depthwise_kernel", "sep/pointwise_kernel", "sep/bias"]
    assert shapes["sep/depthwise_kernel"] == (3, 3, 8, 1)
    assert shapes["sep/pointwise_kernel"] == (1, 1, 8, 6) and shapes["sep/bias"] == (6,)
    assert shapes["grouped/kernel"] == (3, 3, 3, 4) and shapes["grouped/bias"] == (4,)
    assert model.get_layer("dw").kernel is model.get_layer("dw").depthwise_kernel
    assert model.get_layer("dw").output_shape == (None, 9, 8, 8)
    assert model.get_layer("sep").output_shape == (None, 5, 4, 6)


@pytest.mark.parametrize("layer", [
    Conv2D(6, (3, 2), strides=2, padding="same", groups=3, activation="relu", use_bias=False,
           name="c"),
    DepthwiseConv2D((3, 5), strides=(1, 2), padding="same", depth_multiplier=3,
                    activation="tanh", use_bias=False, depthwise_initializer="he_normal",
                    name="d"),
    SeparableConv2D(5, 3, dilation_rate=2, depth_multiplier=2, activation="relu",
                    pointwise_initializer="lecun_uniform", bias_initializer="ones", name="s"),
], ids=["Conv2D", "DepthwiseConv2D", "SeparableConv2D"])
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(0).standard_normal((2, 11, 10, 6)).astype("float32")
    y = layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), y.numpy())
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]


def test_conv1d_groups_matches_oracle():
    """Conv1D(groups=) runs as a grouped convolution over a (batch, 1, steps, channels) image;
    its kernel is (k, C/groups, filters), and 'causal' padding keeps working."""
    layer = Conv1D(4, 3, groups=2, padding="causal", dilation_rate=2, dtype="float64")
    x = np.random.default_rng(4).standard_normal((2, 9, 6))
    model = Sequential([Input((9, 6), dtype="float64"), layer])
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 3, 4) and layer.get_config()["groups"] == 2
    want = naive.grouped_conv2d_forward(x[:, None], kernel[None], bias, 2, (1, 1), (0, 0, 4, 0),
                                        (1, 2))[:, 0]
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-12, atol=1e-12)


def test_predict_matches_the_oracle_and_the_functional_forward():
    """model.predict (inference plans) == the layers called on Tensors == tests/naive.py."""
    model = _separable_model("float64")
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape) * 0.5 for w in model.get_weights()])
    x = rng.standard_normal((3, 9, 8, 4))
    dk, db, sdk, spk, sb, gk, gb, dense_k, dense_b = model.get_weights()
    same = naive.conv_padding("same", x.shape, (3, 3, 4, 8))
    z = naive.depthwise_conv2d_forward(x, dk, db, padding=same, activation="relu")
    same2 = naive.conv_padding("same", z.shape, (3, 3, 8, 8), (2, 2))
    z = naive.depthwise_conv2d_forward(z, sdk, None, (2, 2), same2)
    z = naive.conv2d_forward(z, spk, sb, activation="relu")
    z = naive.grouped_conv2d_forward(z, gk, gb, 2, padding=(1, 1, 1, 1), activation="relu")
    logits = z.mean(axis=(1, 2)) @ dense_k + dense_b
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-10, atol=1e-12)


def test_batch_norm_folds_into_grouped_depthwise_and_separable():
    """A plan folds a batch normalisation after DepthwiseConv2D, SeparableConv2D and a grouped
    Conv2D into their kernels and biases."""
    from fastconv.inference import InferencePlan
    from fastconv.layers import BatchNormalization

    model = Sequential([Input((7, 6, 3)), DepthwiseConv2D(3, depth_multiplier=2),
                        BatchNormalization(), SeparableConv2D(4, 3, padding="same"),
                        BatchNormalization(), Conv2D(4, 3, groups=2, padding="same"),
                        BatchNormalization()])
    rng = np.random.default_rng(5)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in model.get_weights()])
    x = rng.standard_normal((2, 7, 6, 3)).astype("float32")
    assert InferencePlan(model, x.shape).folded == 3
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_save_and_load_fcm(tmp_path):
    model = _separable_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(1).standard_normal((4, 9, 8, 4)).astype("float32")
    path = tmp_path / "separable.fcm"
    model.save(path)
    loaded = load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]
    assert loaded.get_layer("sep").get_config() == model.get_layer("sep").get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_fit_lowers_the_loss():
    """A few epochs on random images whose class is the channel (of three) with the largest
    mean: every layer's weights move and the loss falls."""
    from fastconv.optimizers import Adam

    model = _separable_model()
    model.compile(optimizer=Adam(learning_rate=0.01), loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 9, 8, 4)).astype("float32")
    labels = rng.integers(0, 3, 32)
    x[np.arange(32), :, :, labels] += 1.0
    y = np.eye(3, dtype="float32")[labels]
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0, shuffle=False)
    loss = history.history["loss"]
    assert loss[-1] < loss[0] * 0.7, loss
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(3, 3, groups=2, name="c0"),
     r"Conv2D layer 'c0': grouped convolution needs filters divisible by groups, got filters=3 "
     r"and groups=2"),
    (lambda: Conv2D(4, 3, groups=0, name="c1"), r"Conv2D layer 'c1': groups must be a positive"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0, name="d0"),
     r"DepthwiseConv2D layer 'd0': depth_multiplier must be a positive int"),
    (lambda: DepthwiseConv2D(3, padding="causal", name="d1"), r"'d1': padding must be"),
    (lambda: DepthwiseConv2D(3, strides=2, dilation_rate=2, name="d2"), r"'d2': strides > 1"),
    (lambda: DepthwiseConv2D(3, depthwise_regularizer="l2", name="d3"),
     r"'d3': depthwise_regularizer is not supported"),
    (lambda: SeparableConv2D(0, 3, name="s0"), r"SeparableConv2D layer 's0': filters must be"),
    (lambda: SeparableConv2D(2, 3, pointwise_constraint="x", name="s1"),
     r"'s1': pointwise_constraint is not supported"),
    (lambda: SeparableConv2D(2, 3, data_format="channels_first", name="s2"),
     r"'s2'.*channels_last"),
])
def test_layer_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_layer_input_errors():
    with pytest.raises(ValueError, match=r"Conv2D layer 'g': grouped convolution needs input "
                                         r"channels divisible by groups, got 3 channels and "
                                         r"groups=2"):
        Sequential([Input((6, 6, 3)), Conv2D(4, 3, groups=2, name="g")])
    with pytest.raises(ValueError, match=r"DepthwiseConv2D layer 'd': the 5x5 kernel does not "
                                         r"fit the 4x4 input"):
        Sequential([Input((4, 4, 3)), DepthwiseConv2D(5, name="d")])


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


@pytest.mark.host_only("Keras's layers as a second opinion on the CPU backends")
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_layers_match_keras_on_the_same_weights():
    keras = _keras()
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()!r} here; the comparison is made "
                    f"with KERAS_BACKEND=torch")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 9, 8, 6)).astype("float32")
    pairs = [
        (keras.layers.Conv2D(4, 3, strides=2, padding="same", groups=2, activation="relu"),
         Conv2D(4, 3, strides=2, padding="same", groups=2, activation="relu")),
        (keras.layers.DepthwiseConv2D((3, 2), padding="same", depth_multiplier=2,
                                      dilation_rate=2),
         DepthwiseConv2D((3, 2), padding="same", depth_multiplier=2, dilation_rate=2)),
        (keras.layers.SeparableConv2D(5, 3, strides=2, depth_multiplier=2, activation="relu"),
         SeparableConv2D(5, 3, strides=2, depth_multiplier=2, activation="relu")),
    ]
    xk = keras.ops.convert_to_tensor(x)
    for theirs, ours in pairs:
        theirs(xk)
        ours(x)
        weights = [rng.standard_normal(w.shape).astype("float32") * 0.3
                   for w in theirs.get_weights()]
        theirs.set_weights(weights)
        want = keras.ops.convert_to_numpy(theirs(xk))
        ours.set_weights(weights)
        got = ours(Tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5,
                                   err_msg=type(ours).__name__)
        assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
