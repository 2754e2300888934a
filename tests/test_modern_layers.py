"""The layers of modern classification networks: the activations swish/silu, gelu, hard_sigmoid,
hard_swish/hard_silu, elu, selu, softplus, relu6 and leaky_relu; erf and the Elementwise layer;
LayerNormalization; the broadcasting merge layers Multiply, Subtract, Average, Maximum, Minimum and
Divide. Each against a float64 NumPy formula, central finite differences (tests/test_gradients.py's
``check_backward``) and Keras 3 itself (``KERAS_BACKEND=torch``) on the same weights and data, on
every backend; their inference steps, configs, errors, and files (.fcm, .keras, .h5,
.weights.h5) both ways."""

from __future__ import annotations

import math
import os
import pickle
import warnings

import numpy as np
import pytest

import fastconv.functional as F
from fastconv import Tensor, activations
from fastconv import layers as L
from fastconv.layers.base import layer_class
from fastconv.models import Model, Sequential, load_model

from .test_gradients import check_backward

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _np(t):
    """A Keras output (a torch tensor under KERAS_BACKEND=torch) as a NumPy array."""
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848, 1.0507009873554804934

#: float64 formulas of every activation, as keras.activations documents them
ORACLES = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": _softmax,
    "swish": lambda x: x / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "hard_sigmoid": lambda x: _relu6(x + 3) / 6,
    "hard_swish": lambda x: x * _relu6(x + 3) / 6,
    "hard_silu": lambda x: x * _relu6(x + 3) / 6,
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "relu6": _relu6,
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
}
NEW_ACTIVATIONS = ("swish", "silu", "gelu", "hard_sigmoid", "hard_swish", "hard_silu", "elu",
                   "selu", "softplus", "relu6", "leaky_relu")
#: where each activation's derivative jumps
KINKS = {"hard_sigmoid": (-3, 3), "hard_swish": (-3, 3), "hard_silu": (-3, 3), "selu": (0,),
         "relu6": (0, 6), "leaky_relu": (0,)}


def away_from(rng, shape, kinks, low=-7.0, high=7.0, margin=0.05):
    """Uniform values in [low, high], none within ``margin`` of a kink."""
    x = rng.uniform(low, high, shape)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + margin * np.where(x[near] >= k, 2.0, -2.0)
    return x


def _on(backend, a):
    return backend.asarray(np.asarray(a))


# -- activations ----------------------------------------------------------------------------------


def test_activation_names_and_aliases():
    assert set(ORACLES) - {"silu", "hard_silu"} == set(activations.names())
    assert activations.canonical("silu") == "swish" and activations.canonical(F.silu) == "swish"
    assert activations.canonical("hard_silu") == "hard_swish"
    assert L.Activation("silu").get_config()["activation"] == "swish"
    with pytest.raises(ValueError, match="'act'.*unknown activation 'mish'.*gelu.*hard_silu"):
        L.Activation("mish", name="act")
    with pytest.raises(ValueError, match="'d'.*unknown activation 'gelu_tanh'"):
        L.Dense(2, activation="gelu_tanh", name="d")


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_activations_match_the_float64_formula(backend, rng, name):
    """The function, the Activation layer, its inference step and Dense(activation=name) (call
    and inference plan) against the formula, in float64 and float32."""
    x = rng.uniform(-8, 8, (3, 7))
    x[0, :3] = (-3.0, 0.0, 3.0)  # the kinks themselves
    want = ORACLES[name](x)
    got = activations.get(name)(Tensor(_on(backend, x))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    layer = L.Activation(name, dtype="float64")
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-14, atol=1e-15)
    step = layer.inference_step((None, 7), backend)
    np.testing.assert_allclose(backend.to_host(step(_on(backend, x))), want, rtol=1e-14,
                               atol=1e-15)
    x32 = x.astype(np.float32)
    got32 = L.Activation(name)(x32).numpy()
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ORACLES[name](x32.astype(np.float64)), rtol=2e-6,
                               atol=2e-6)
    dense = L.Dense(4, activation=name, dtype="float64")
    model = Sequential([L.Input((7,), dtype="float64"), dense])
    kernel, bias = rng.standard_normal((7, 4)), rng.standard_normal(4)
    dense.set_weights([kernel, bias])
    want = ORACLES[name](x @ kernel + bias)
    np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["sigmoid", "swish", "gelu", "hard_sigmoid", "hard_swish",
                                  "relu6", "tanh"])
def test_float32_inference_forms_match_the_float64_formula(backend, name):
    """Inference plans evaluate these in a few vectorised passes (GELU with a float32 erf):
    within float32 rounding of the float64 formula, from deep in either tail through the kinks,
    without overflow warnings."""
    x = np.concatenate([np.linspace(-12, 12, 241), [-200.0, -100.0, -89.0, -88.0, 88.0, 89.0,
                                                    200.0, -3.0, 3.0, 0.0, -0.0, 1e-30]])
    want = ORACLES[name](x) if name in ORACLES else {
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[name](x)
    step = L.Activation(name).inference_step((None, x.size), backend)
    got = backend.to_host(step(_on(backend, x.astype(np.float32)[None])))[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NEW_ACTIVATIONS)
def test_activation_gradients(backend, rng, name):
    x = away_from(rng, (3, 5), KINKS.get(name, ()))
    check_backward(backend, activations.get(name), [x])


def test_functional_forms_with_parameters(backend, rng):
    """F.hard_sigmoid with ONNX's alpha and beta, F.elu with alpha, F.gelu's tanh form, F.erf:
    values and gradients."""
    x = away_from(rng, (4, 5), (-2.5, 2.5))
    t = Tensor(_on(backend, x))
    np.testing.assert_allclose(F.hard_sigmoid(t, 0.2, 0.5).numpy(),
                               np.clip(0.2 * x + 0.5, 0, 1), rtol=1e-15, atol=1e-16)
    check_backward(backend, lambda a: F.hard_sigmoid(a, 0.2, 0.5), [x])
    np.testing.assert_allclose(F.elu(t, 0.5).numpy(), np.where(x > 0, x, 0.5 * np.expm1(x)),
                               rtol=1e-14, atol=1e-15)
    check_backward(backend, lambda a: F.elu(a, 0.5), [away_from(rng, (3, 4), (0,))])
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(t, approximate=True).numpy(), tanh_form, rtol=1e-14,
                               atol=1e-15)
    check_backward(backend, lambda a: F.gelu(a, approximate=True), [x])
    for bad, call in (("alpha", lambda: F.hard_sigmoid(t, "big")),
                      ("approximate", lambda: F.gelu(t, approximate="tanh"))):
        with pytest.raises(ValueError, match=bad):
            call()


def test_erf_to_the_last_digits(backend):
    """erf and erfc (through gelu's far negative tail) against math.erf/math.erfc over every
    branch: the Taylor piece, the Chebyshev piece, far tails, infinities and NaN."""
    x = np.concatenate([np.linspace(-7, 7, 2801), [0.0, 1.0, -1.0, np.nextafter(1.0, 0),
                                                   1e-300, 30.0, -45.0, np.inf, -np.inf]])
    got = F.erf(Tensor(_on(backend, x))).numpy()
    np.testing.assert_allclose(got, _erf(x), rtol=5e-16, atol=2.5e-16)
    assert np.isnan(F.erf(Tensor(_on(backend, [np.nan]))).numpy()[0])
    got32 = F.erf(Tensor(_on(backend, x.astype(np.float32)))).numpy()
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, _erf(x.astype(np.float32).astype(np.float64)), rtol=0,
                               atol=2.5e-7)
    # gelu(x) = x * erfc(-x / sqrt 2) / 2: tiny, not 0; erfc's condition number there is about
    # x^2, so a rounding of the argument costs x^2 ulp
    tail = -np.linspace(1.5, 37, 60)
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in tail])
    got = F.gelu(Tensor(_on(backend, tail))).numpy()
    assert np.all(np.abs(got - want) <= 1e-15 * (1 + tail ** 2) * np.abs(want))
    check_backward(backend, F.erf, [np.linspace(-3, 3, 13).reshape(1, 13)])


def test_activations_match_keras(backend, rng):
    """keras.activations by the same names, on the same data (float64 under the torch
    backend), and Keras's Dense with the same weights."""
    x = rng.uniform(-8, 8, (4, 6))
    for name in NEW_ACTIVATIONS:
        want = _np(keras.activations.get(name)(x))
        got = activations.get(name)(Tensor(_on(backend, x))).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14, err_msg=name)
    x32 = x.astype(np.float32)
    for name in NEW_ACTIVATIONS:
        theirs = keras.layers.Dense(3, activation=name)
        want = _np(theirs(x32))
        ours = L.Dense(3, activation=name)
        ours.ensure_built((None, 6))
        ours.set_weights([_np(v.value) for v in theirs.weights])
        np.testing.assert_allclose(ours(x32).numpy(), want, rtol=2e-5, atol=2e-5,
                                   err_msg=name)


# -- Elementwise ----------------------------------------------------------------------------------

UNARY = {
    "sqrt": (np.sqrt, (0.2, 3.0)), "square": (np.square, (-3.0, 3.0)),
    "exp": (np.exp, (-3.0, 3.0)), "log": (np.log, (0.2, 3.0)),
    "abs": (np.abs, (-3.0, 3.0)), "neg": (np.negative, (-3.0, 3.0)),
    "reciprocal": (np.reciprocal, (0.3, 3.0)), "erf": (_erf, (-3.0, 3.0)),
}


@pytest.mark.parametrize("function", [*UNARY, "pow"])
def test_elementwise_layer(backend, rng, function):
    exponent = 1.7 if function == "pow" else None
    formula, (low, high) = UNARY.get(function, (lambda v: v ** 1.7, (0.2, 3.0)))
    x = rng.uniform(low, high, (2, 3, 4))
    if function == "abs":
        x = away_from(rng, x.shape, (0,), low, high)
    layer = L.Elementwise(function, exponent, dtype="float64")
    np.testing.assert_allclose(layer(x).numpy(), formula(x), rtol=1e-14, atol=1e-15)
    step = layer.inference_step((None, 3, 4), backend)
    np.testing.assert_allclose(backend.to_host(step(_on(backend, x))), formula(x), rtol=1e-14,
                               atol=1e-15)
    check_backward(backend, lambda a: L.Elementwise(function, exponent, dtype="float64")(a),
                   [x])
    config = layer.get_config()
    assert config["function"] == function and config["exponent"] == exponent
    clone = layer_class("Elementwise").from_config(config)
    assert clone.get_config() == config


def test_elementwise_pow_exponents(backend, rng):
    x = rng.uniform(-2, 2, (3, 4))
    for p in (2, 3.0, -1, 0):
        got = L.Elementwise("pow", p, dtype="float64")(x).numpy()
        np.testing.assert_allclose(got, x ** float(p), rtol=1e-14)
    check_backward(backend, lambda a: F.power(a, 3), [x])
    check_backward(backend, lambda a: F.elementwise(a, "pow", exponent=0), [x])


@pytest.mark.parametrize("kwargs, message", [
    ({"function": "cbrt"}, "'e'.*unknown function 'cbrt'; valid functions: sqrt, square"),
    ({"function": "pow"}, "'e'.*'pow' needs a finite number as exponent, got None"),
    ({"function": "pow", "exponent": "2"}, "'e'.*needs a finite number"),
    ({"function": "pow", "exponent": True}, "'e'.*needs a finite number"),
    ({"function": "exp", "exponent": 2}, "'e'.*exponent is only used by function 'pow'"),
])
def test_elementwise_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.Elementwise(name="e", **kwargs)


# -- merge layers ---------------------------------------------------------------------------------

MERGES = {
    "Add": lambda xs: sum(xs[1:], xs[0]),
    "Multiply": lambda xs: np.prod(np.broadcast_arrays(*xs), axis=0),
    "Subtract": lambda xs: xs[0] - xs[1],
    "Divide": lambda xs: xs[0] / xs[1],
    "Average": lambda xs: sum(xs[1:], xs[0]) / len(xs),
    "Maximum": lambda xs: np.max(np.broadcast_arrays(*xs), axis=0),
    "Minimum": lambda xs: np.min(np.broadcast_arrays(*xs), axis=0),
}
#: squeeze-and-excitation's gate, a full tensor, and a third input broadcast along another axis
SHAPES = [(2, 1, 1, 3), (2, 3, 2, 3), (2, 3, 1, 1)]


def _merge_inputs(rng, cls_name, count):
    xs = [rng.standard_normal(s) for s in SHAPES[:count]]
    if cls_name == "Divide":
        xs[1] = np.sign(xs[1]) * (np.abs(xs[1]) + 0.5)
    return xs


@pytest.mark.parametrize("cls_name", sorted(MERGES))
def test_merge_layers_broadcast(backend, rng, cls_name):
    """Values, the inference step and gradients (summed over broadcast axes) of each merge
    layer, on (N, 1, 1, C) with (N, H, W, C) [and (N, H, 1, 1)]."""
    cls = getattr(L, cls_name)
    count = 2 if cls_name in ("Subtract", "Divide") else 3
    for n in sorted({2, count}):
        xs = _merge_inputs(rng, cls_name, n)
        if n == 2:
            xs = xs[::-1]  # the full tensor first, the gate second
        want = MERGES[cls_name](xs)
        layer = cls(dtype="float64")
        np.testing.assert_allclose(layer(xs).numpy(), want, rtol=1e-14, atol=1e-15)
        assert layer.compute_output_shape([(None, *s[1:]) for s in SHAPES[:n]]) == (
            None, 3, 2, 3)
        step = layer.inference_step([(None, *x.shape[1:]) for x in xs], backend)
        arrays = [_on(backend, x) for x in xs]
        np.testing.assert_allclose(backend.to_host(step(arrays)), want, rtol=1e-14, atol=1e-15)
        for a, x in zip(arrays, xs):  # the step leaves its inputs alone
            np.testing.assert_array_equal(backend.to_host(a), x)
        check_backward(backend, lambda *ts: cls(dtype="float64")(list(ts)), xs)


@pytest.mark.parametrize("cls_name", ["Add", "Multiply", "Average", "Maximum"])
def test_merge_steps_when_a_later_input_widens_the_result(backend, rng, cls_name):
    xs = [rng.standard_normal(s) for s in [(2, 1, 3), (2, 1, 3), (2, 4, 3), (2, 4, 1)]]
    step = getattr(L, cls_name)().inference_step([(None, *x.shape[1:]) for x in xs], backend)
    got = backend.to_host(step([_on(backend, x) for x in xs]))
    np.testing.assert_allclose(got, MERGES[cls_name](xs), rtol=1e-14, atol=1e-15)


def test_maximum_and_minimum_ties_go_to_the_first_input(backend):
    a = Tensor(_on(backend, [[1.0, 2.0, 3.0]]), requires_grad=True)
    b = Tensor(_on(backend, [[1.0, 5.0, 0.0]]), requires_grad=True)
    F.sum(L.Maximum(dtype="float64")([a, b])).backward()
    np.testing.assert_array_equal(backend.to_host(a.grad), [[1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(backend.to_host(b.grad), [[0.0, 1.0, 0.0]])
    a.grad = b.grad = None
    F.sum(F.minimum(a, b)).backward()
    np.testing.assert_array_equal(backend.to_host(a.grad), [[1.0, 1.0, 0.0]])
    np.testing.assert_array_equal(backend.to_host(b.grad), [[0.0, 0.0, 1.0]])


@pytest.mark.parametrize("cls_name", ["Multiply", "Subtract", "Average", "Maximum", "Minimum"])
def test_merge_layers_match_keras(backend, rng, cls_name):
    xs = [rng.standard_normal((2, 3, 2, 3)).astype("float32"),
          rng.standard_normal((2, 1, 1, 3)).astype("float32")]
    want = _np(getattr(keras.layers, cls_name)()(xs))
    np.testing.assert_allclose(getattr(L, cls_name)()(xs).numpy(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls_name, shapes, message", [
    ("Subtract", [(2, 3), (2, 3), (2, 3)], "takes exactly 2 inputs, got 3"),
    ("Divide", [(2, 3)], "takes exactly 2 inputs, got 1"),
    ("Multiply", [(2, 3, 4), (2, 2, 4)], r"sizes \[2, 3\] on axis 1"),
    ("Maximum", [(2, 3, 4), (2, 3)], "different ranks"),
])
def test_merge_layer_errors(backend, cls_name, shapes, message):
    with pytest.raises(ValueError, match=message) as info:
        getattr(L, cls_name)(name="m")([np.ones(s, np.float32) for s in shapes])
    assert f"{cls_name} layer 'm'" in str(info.value)


# -- LayerNormalization ---------------------------------------------------------------------------


def layer_norm_np(x, gamma, beta, axes, eps, rms=False):
    """Keras 3's layer normalisation in float64."""
    shape = [1] * x.ndim
    for a in axes:
        shape[a] = x.shape[a]
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x if rms else x - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)


LN_CASES = [  # (input shape, layer kwargs, normalised axes)
    ((3, 5), {}, (1,)),
    ((2, 3, 4, 5), {"axis": [1, 2, 3], "epsilon": 1e-5}, (1, 2, 3)),
    ((2, 3, 4, 5), {"axis": [-3, -1]}, (1, 3)),
    ((2, 4, 3), {"axis": 1, "center": False}, (1,)),
    ((2, 3, 4), {"axis": -1, "scale": False, "center": False}, (2,)),
    ((2, 3, 4), {"axis": [1, 2], "rms_scaling": True}, (1, 2)),
]


@pytest.mark.parametrize("shape, kwargs, axes", LN_CASES, ids=str)
def test_layer_normalization(backend, rng, shape, kwargs, axes):
    """Values of the layer and its inference step against the formula, gradients of x, gamma
    and beta by finite differences, and the weights Keras would make."""
    x = rng.standard_normal(shape) * 2 + 1
    layer = L.LayerNormalization(dtype="float64", **kwargs)
    layer.ensure_built((None, *shape[1:]))
    param_shape = tuple(shape[a] for a in axes)
    assert [tuple(w.shape) for w in layer.weights] == [param_shape] * len(layer.weights)
    values = [rng.standard_normal(param_shape) for _ in layer.weights]
    layer.set_weights(values)
    names = [w.name.split("/")[-1] for w in layer.weights]
    gamma = values[names.index("gamma")] if "gamma" in names else None
    beta = values[names.index("beta")] if "beta" in names else None
    eps = kwargs.get("epsilon", 1e-3)
    rms = kwargs.get("rms_scaling", False)
    want = layer_norm_np(x, gamma, beta, axes, eps, rms)
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-12, atol=1e-12)
    step = layer.inference_step((None, *shape[1:]), backend)
    np.testing.assert_allclose(backend.to_host(step(_on(backend, x))), want, rtol=1e-12,
                               atol=1e-12)
    params = [p for p in (gamma, beta) if p is not None]

    def fn(xt, *ps):
        given = dict(zip([n for n in ("gamma", "beta") if n in names], ps))
        return F.layer_norm(xt, given.get("gamma"), given.get("beta"), list(axes), eps, rms)

    check_backward(backend, fn, [x, *params])


@pytest.mark.parametrize("axis", [-1, [1, 2, 3], [-2, -1]], ids=str)
def test_layer_normalization_matches_keras(backend, rng, axis):
    x = (rng.standard_normal((2, 3, 4, 5)) * 3 + 2).astype("float32")
    theirs = keras.layers.LayerNormalization(axis=axis, epsilon=1e-4)
    theirs.build(x.shape)
    values = [rng.standard_normal(tuple(v.shape)).astype("float32") for v in theirs.weights]
    theirs.set_weights(values)
    ours = L.LayerNormalization(axis=axis, epsilon=1e-4)
    ours.ensure_built((None, 3, 4, 5))
    ours.set_weights(values)
    np.testing.assert_allclose(ours(x).numpy(), _np(theirs(x)), rtol=1e-5, atol=1e-5)
    keras_config, config = theirs.get_config(), ours.get_config()
    for key in ("epsilon", "center", "scale", "rms_scaling"):
        assert config[key] == keras_config[key]
    assert list(np.atleast_1d(config["axis"])) == list(np.atleast_1d(keras_config["axis"]))


@pytest.mark.parametrize("kwargs, message", [
    ({"axis": 0}, "includes the batch axis"),
    ({"axis": 3}, "out of range"),
    ({"axis": [1, -1]}, "mixes negative and non-negative"),
    ({"axis": [1, 1]}, "names an axis twice"),
    ({"axis": []}, "non-empty list of ints"),
    ({"axis": "last"}, "axis must be an int"),
    ({"epsilon": -1.0}, "epsilon must be >= 0"),
    ({"gamma_regularizer": "l2"}, "gamma_regularizer is not supported"),
    ({"beta_initializer": "nope"}, "unknown initializer"),
])
def test_layer_normalization_errors(backend, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        L.LayerNormalization(name="ln", **kwargs)(np.ones((2, 3, 4), np.float32))
    assert "'ln'" in str(info.value)


def test_layer_norm_function_errors(backend):
    x = Tensor(_on(backend, np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        F.layer_norm(x, np.ones(2))
    with pytest.raises(ValueError, match="rms_scaling=True takes no beta"):
        F.layer_norm(x, None, np.zeros(3), rms_scaling=True)


# -- configs, models and files --------------------------------------------------------------------


@pytest.mark.parametrize("cls_name, kwargs", [
    ("LayerNormalization", {"axis": [1, 2], "epsilon": 1e-5, "center": False}),
    ("LayerNormalization", {"rms_scaling": True}), ("Multiply", {}), ("Subtract", {}),
    ("Average", {}), ("Maximum", {}), ("Minimum", {}), ("Divide", {}),
    ("Elementwise", {"function": "pow", "exponent": 0.5}), ("Activation", {"activation": "gelu"}),
])
def test_configs_round_trip_through_the_registry(cls_name, kwargs):
    layer = getattr(L, cls_name)(**kwargs)
    config = layer.get_config()
    clone = layer_class(type(layer).__name__).from_config(config)
    assert type(clone) is type(layer) and clone.get_config() == config


def keras_compatible_model(rng):
    """Every new Keras layer and activation in one functional graph: a squeeze-and-excitation
    gate, layer normalisations, the element-wise merges."""
    inp = L.Input((4, 4, 3), name="image")
    h = L.Conv2D(4, 1, activation="swish", name="stem")(inp)
    gate = L.Dense(4, activation="hard_sigmoid", name="gate")(
        L.GlobalAveragePooling2D(keepdims=True)(h))
    h = L.LayerNormalization(axis=[1, 2, 3], name="ln_all")(L.Multiply()([h, gate]))
    a = L.Activation("gelu")(h)
    b = L.Activation("hard_silu")(h)
    c = L.Activation("leaky_relu")(L.Subtract()([a, b]))
    d = L.Average()([a, b, c])
    e = L.Minimum()([L.Maximum()([d, a]), L.Activation("relu6")(b)])
    e = L.LayerNormalization(epsilon=1e-5, center=False, name="ln_last")(e)
    z = L.Dense(5, activation="elu")(L.GlobalAveragePooling2D()(e))
    z = L.Dense(4, activation="softplus")(z)
    out = L.Dense(3, activation="selu", name="out")(z)
    model = Model(inp, out, name="modern")
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _relative_error(got, want) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want)))


def test_keras_files_both_ways(backend, rng, tmp_path):
    """fastconv's .keras and .weights.h5 load in Keras and predict the same; Keras's own
    .keras, legacy .h5 and .weights.h5 of the model load back in fastconv."""
    model = keras_compatible_model(rng)
    x = rng.random((3, 4, 4, 3)).astype("float32")
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(want, model(x).numpy(), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert _relative_error(_np(theirs(x)), want) < 1e-5
    theirs.set_weights([np.zeros(tuple(v.shape), "float32") for v in theirs.weights])
    theirs.load_weights(tmp_path / "m.weights.h5")
    assert _relative_error(_np(theirs(x)), want) < 1e-5
    with warnings.catch_warnings():
        # Keras 3.15 converts torch tensors with np.array(copy=False), which NumPy 2 deprecates,
        # and warns that .h5 is its legacy format
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        theirs.save(tmp_path / "k.keras")
        theirs.save(tmp_path / "k.h5")
        theirs.save_weights(tmp_path / "k.weights.h5")
    for path in ("k.keras", "k.h5"):
        again = load_model(tmp_path / path)
        assert _relative_error(again.predict(x, verbose=0), want) < 1e-5, path
    other = keras_compatible_model(np.random.default_rng(1))
    other.load_weights(tmp_path / "k.weights.h5")
    assert _relative_error(other.predict(x, verbose=0), want) < 1e-5


def test_fastconv_files_and_pickle_hold_every_new_layer(backend, rng, tmp_path):
    """Divide and Elementwise too: .fcm and pickle round trips predict the same; a Keras file
    refuses them, naming the layer."""
    inp = L.Input((3, 4), name="x")
    h = L.LayerNormalization(name="ln")(inp)
    h = L.Divide(name="div")([L.Elementwise("exp", name="ex")(h),
                              L.Elementwise("pow", 2, name="sq")(h)])
    h = L.Multiply()([L.Elementwise("erf")(h), L.Dense(1, activation="gelu")(h)])
    model = Model(inp, L.Dense(2, activation="hard_swish")(h))
    x = rng.standard_normal((2, 3, 4)).astype("float32")
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(want, model(x).numpy(), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.fcm")
    np.testing.assert_array_equal(load_model(tmp_path / "m.fcm").predict(x, verbose=0), want)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(x, verbose=0), want)
    with pytest.raises(ValueError, match=r"layer 'ex' \(Elementwise\).*Keras has no such"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    a, b = L.Input((3,)), L.Input((3,))
    ratio = Model([a, b], L.Divide(name="div")([a, b]))
    with pytest.raises(ValueError, match=r"layer 'div' \(Divide\).*Keras has no such layer"):
        ratio.save(tmp_path / "r.keras")
    assert not (tmp_path / "r.keras").exists()
    seq = Sequential([L.Input((3,)), L.Elementwise("abs", name="mag")])
    with pytest.raises(ValueError, match=r"layer 'mag' \(Elementwise\).*Keras has no such"):
        seq.save(tmp_path / "s.keras")


def test_leaky_relu_goes_both_ways_with_keras_files(tmp_path, rng):
    """LeakyReLU (negative_slope) in .keras files both ways; Keras 2's ``alpha`` reads too."""
    from fastconv.keras_io.layers import layer_from_keras

    model = Sequential([L.Input((4,)), L.Dense(3), L.LeakyReLU(0.2)])
    model.layers[0].set_weights([rng.standard_normal((4, 3)).astype(np.float32),
                                 rng.standard_normal(3).astype(np.float32)])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    want = model.predict(x, verbose=0)
    model.save(tmp_path / "lr.keras")
    theirs = keras.models.load_model(tmp_path / "lr.keras")
    assert type(theirs.layers[-1]).__name__ == "LeakyReLU"
    np.testing.assert_allclose(_np(theirs(x)), want, rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Keras's own saving on torch
        theirs.save(tmp_path / "back.keras")
    np.testing.assert_allclose(load_model(tmp_path / "back.keras").predict(x, verbose=0), want,
                               rtol=1e-6, atol=1e-6)
    legacy = layer_from_keras("LeakyReLU", {"name": "lr", "alpha": 0.1}, "legacy.h5")
    assert legacy.negative_slope == 0.1
