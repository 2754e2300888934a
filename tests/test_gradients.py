"""Analytic backward of every differentiable op in fastconv.functional against central finite
differences in float64, on every backend (Chainer's ``check_backward``): for a random output
weighting ``gy`` and random input directions ``d``,

    sum_i <dL/dx_i, d_i>  ==  (L(x + eps d) - L(x - eps d)) / (2 eps),   L(x) = <f(x), gy>.

Each case also checks the op's forward values against a plain NumPy (or tests/naive.py)
formula, since a gradient check alone would pass on a wrong but self-consistent forward.
Inputs stay away from kinks: ReLU inputs and pre-activations away from 0, max-pool windows
without near-ties.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastconv.functional as F
from fastconv import Tensor, no_grad
from fastconv.utils import set_random_seed

from . import naive
from .devices import EMULATED

EPS = 1e-6


def check_backward(backend, fn, inputs, *, directions: int = 2, rtol: float = 1e-6,
                   seed: int = 0, before_call=None) -> None:
    """Compare the analytic gradient of ``fn`` (Tensors -> Tensor) with central differences
    along ``directions`` random directions. ``before_call`` runs before every evaluation (to
    fix a dropout mask by reseeding)."""
    rng = np.random.default_rng(seed)
    inputs = [np.asarray(a, dtype=np.float64) for a in inputs]

    def run(arrays, requires_grad):
        if before_call is not None:
            before_call()
        tensors = [Tensor(backend.asarray(a.copy()), requires_grad=requires_grad)
                   for a in arrays]
        return tensors, fn(*tensors)

    tensors, out = run(inputs, True)
    assert out.requires_grad, "the op did not record a graph"
    y = out.numpy()
    gy = rng.standard_normal(y.shape)
    out.backward(backend.asarray(gy))
    grads = []
    for t, a in zip(tensors, inputs):
        assert t.grad is not None, "an input got no gradient"
        g = backend.to_host(t.grad)
        assert g.shape == a.shape and g.dtype == np.float64
        grads.append(g)

    def objective(arrays):
        with no_grad():
            _, o = run(arrays, False)
        return float(np.sum(o.numpy() * gy))

    for _ in range(directions):
        d = [rng.standard_normal(a.shape) for a in inputs]
        analytic = sum(float(np.sum(g * di)) for g, di in zip(grads, d))
        plus = objective([a + EPS * di for a, di in zip(inputs, d)])
        minus = objective([a - EPS * di for a, di in zip(inputs, d)])
        numeric = (plus - minus) / (2 * EPS)
        scale = max(abs(numeric), abs(analytic), 1.0)
        assert abs(analytic - numeric) <= rtol * scale, (
            f"directional derivative: analytic {analytic!r}, numeric {numeric!r}")


# -- inputs away from kinks -----------------------------------------------------------------------


def away_from_zero(rng, shape, low=0.2):
    return rng.uniform(low, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def distinct(rng, shape):
    """Values at least 0.05 apart: no max-pool window has a near-tie."""
    size = int(np.prod(shape))
    return ((rng.permutation(size) + 0.5 * rng.random(size)) * 0.1 - size * 0.05).reshape(shape)


def conv_inputs(rng, x_shape, w_shape, strides, padding, dilation, margin=1e-2):
    """x, w, b whose pre-activations all lie at least ``margin`` away from 0 (ReLU's kink)."""
    pads = naive.conv_padding(padding, x_shape, w_shape, (strides,) * 2, (dilation,) * 2)
    for _ in range(100):
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = rng.standard_normal(w_shape[3])
        z = naive.conv2d_forward(x, w, b, (strides,) * 2, pads, (dilation,) * 2)
        if np.abs(z).min() > margin and (z > 0).any() and (z < 0).any():
            return x, w, b, pads
    raise AssertionError("could not draw inputs away from the ReLU kink")


def dense_inputs(rng, x_shape, units, margin=1e-2):
    for _ in range(100):
        x, w = rng.standard_normal(x_shape), rng.standard_normal((x_shape[-1], units))
        b = rng.standard_normal(units)
        z = x @ w + b
        if np.abs(z).min() > margin and (z > 0).any() and (z < 0).any():
            return x, w, b
    raise AssertionError("could not draw inputs away from the ReLU kink")


def softmax_np(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_np(z):
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


# -- the cases: (fn, inputs, NumPy forward) --------------------------------------------------------

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def _conv_case(rng, x_shape, w_shape, strides, padding, dilation, activation="relu",
               bias=True):
    x, w, b, pads = conv_inputs(rng, x_shape, w_shape, strides, padding, dilation)
    s, d = (strides,) * 2, (dilation,) * 2
    if bias:
        def fn(x_, w_, b_):
            return F.conv2d(x_, w_, b_, strides, padding, dilation, activation=activation)
        return fn, [x, w, b], lambda: naive.conv2d_forward(x, w, b, s, pads, d, activation)

    def fn(x_, w_):
        return F.conv2d(x_, w_, None, strides, padding, dilation, activation=activation)
    return fn, [x, w], lambda: naive.conv2d_forward(x, w, None, s, pads, d, activation)


@case
def conv2d_bias_relu_same(rng):
    return _conv_case(rng, (2, 5, 6, 3), (3, 3, 3, 2), 1, "same", 1)


@case
def conv2d_stride2_padding(rng):
    return _conv_case(rng, (2, 7, 6, 2), (3, 2, 2, 3), 2, ((1, 2), (0, 1)), 1)


@case
def conv2d_dilation2(rng):
    return _conv_case(rng, (1, 7, 8, 2), (3, 3, 2, 2), 1, "same", 2)


@case
def conv2d_stride3_linear_no_bias(rng):
    return _conv_case(rng, (2, 8, 7, 2), (2, 2, 2, 3), 3, "valid", 1, "linear", bias=False)


@case
def dense_bias_relu(rng):
    x, w, b = dense_inputs(rng, (4, 5), 3)
    return (lambda x_, w_, b_: F.dense(x_, w_, b_, activation="relu"), [x, w, b],
            lambda: np.maximum(x @ w + b, 0))


@case
def dense_3d_input_no_bias(rng):
    x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    return lambda x_, w_: F.dense(x_, w_), [x, w], lambda: x @ w


@case
def max_pool2d_valid(rng):
    x = distinct(rng, (2, 6, 5, 3))
    return (lambda x_: F.max_pool2d(x_, (2, 2)), [x],
            lambda: naive.max_pool2d_forward(x, (2, 2), (2, 2))[0])


@case
def max_pool2d_same_overlapping(rng):
    x = distinct(rng, (2, 5, 6, 2))
    pads = naive.pool_padding("same", x.shape, (3, 3), (2, 1))
    return (lambda x_: F.max_pool2d(x_, (3, 3), (2, 1), "same"), [x],
            lambda: naive.max_pool2d_forward(x, (3, 3), (2, 1), pads)[0])


@case
def avg_pool2d_valid(rng):
    x = rng.standard_normal((2, 6, 7, 2))
    return (lambda x_: F.avg_pool2d(x_, (2, 3), (2, 2)), [x],
            lambda: naive.avg_pool2d_forward(x, (2, 3), (2, 2)))


@case
def avg_pool2d_same(rng):
    x = rng.standard_normal((2, 5, 5, 2))
    pads = naive.pool_padding("same", x.shape, (3, 3), (2, 2))
    return (lambda x_: F.avg_pool2d(x_, (3, 3), (2, 2), "same"), [x],
            lambda: naive.avg_pool2d_forward(x, (3, 3), (2, 2), pads))


@case
def global_avg_pool2d(rng):
    x = rng.standard_normal((2, 4, 3, 5))
    return F.global_avg_pool2d, [x], lambda: x.mean(axis=(1, 2))


@case
def max_pool1d(rng):
    x = distinct(rng, (2, 7, 3))
    return (lambda x_: F.max_pool1d(x_, 3, 2, "same"), [x],
            lambda: naive.max_pool2d_forward(
                x[:, None], (1, 3), (1, 2), naive.pool_padding("same", x[:, None].shape, (1, 3),
                                                               (1, 2)))[0][:, 0])


@case
def avg_pool1d(rng):
    x = rng.standard_normal((2, 7, 3))
    return (lambda x_: F.avg_pool1d(x_, 2), [x],
            lambda: naive.avg_pool2d_forward(x[:, None], (1, 2), (1, 2))[:, 0])


@case
def relu(rng):
    x = away_from_zero(rng, (3, 4))
    return F.relu, [x], lambda: np.maximum(x, 0)


@case
def leaky_relu(rng):
    x = away_from_zero(rng, (3, 4))
    return (lambda x_: F.leaky_relu(x_, 0.2), [x],
            lambda: np.where(x >= 0, x, 0.2 * x))


_ERF = np.vectorize(math.erf)
_SELU = (1.6732632423543772848170429916717, 1.0507009873554804934193349852946)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@case
def swish_op(rng):
    x = rng.standard_normal((3, 4)) * 2
    return (F.swish, [x], lambda: x * _sigmoid(x))


@case
def silu_op(rng):
    x = rng.standard_normal((2, 5))
    return (F.silu, [x], lambda: x * _sigmoid(x))


@case
def gelu_op(rng):
    x = rng.standard_normal((3, 4)) * 2
    return (F.gelu, [x], lambda: 0.5 * x * (1 + _ERF(x / np.sqrt(2))))


@case
def hard_sigmoid_op(rng):
    x = rng.uniform(-2.5, 2.5, (3, 4))  # inside the ramp (x in (-3, 3)): no kink
    return (F.hard_sigmoid, [x], lambda: np.clip(x / 6 + 0.5, 0, 1))


@case
def hard_swish_op(rng):
    x = rng.uniform(-2.5, 2.5, (3, 4))
    return (F.hard_swish, [x], lambda: x * np.clip(x / 6 + 0.5, 0, 1))


@case
def hard_silu_op(rng):
    x = rng.uniform(-2.5, 2.5, (2, 3))
    return (F.hard_silu, [x], lambda: x * np.clip(x / 6 + 0.5, 0, 1))


@case
def elu_op(rng):
    x = away_from_zero(rng, (3, 4))
    return (F.elu, [x], lambda: np.where(x > 0, x, np.expm1(x)))


@case
def selu_op(rng):
    x = away_from_zero(rng, (3, 4))
    alpha, scale = _SELU
    return (F.selu, [x], lambda: scale * np.where(x > 0, x, alpha * np.expm1(x)))


@case
def softplus_op(rng):
    x = rng.standard_normal((3, 4)) * 3
    return (F.softplus, [x], lambda: np.log1p(np.exp(x)))


@case
def relu6_op(rng):
    x = rng.uniform(0.2, 5.8, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    return (F.relu6, [x], lambda: np.clip(x, 0, 6))


@case
def erf_op(rng):
    x = rng.standard_normal((3, 4)) * 1.5
    return (F.erf, [x], lambda: _ERF(x))


@case
def sqrt_op(rng):
    x = rng.uniform(0.5, 3.0, (3, 4))
    return (F.sqrt, [x], lambda: np.sqrt(x))


@case
def square_op(rng):
    x = rng.standard_normal((3, 4))
    return (F.square, [x], lambda: x * x)


@case
def exp_op(rng):
    x = rng.standard_normal((3, 4))
    return (F.exp, [x], lambda: np.exp(x))


@case
def log_op(rng):
    x = rng.uniform(0.5, 3.0, (3, 4))
    return (F.log, [x], lambda: np.log(x))


@case
def abs_op(rng):
    x = away_from_zero(rng, (3, 4))
    return (F.abs, [x], lambda: np.abs(x))


@case
def reciprocal_op(rng):
    x = away_from_zero(rng, (3, 4), low=0.5)
    return (F.reciprocal, [x], lambda: 1 / x)


@case
def power_op(rng):
    x = rng.uniform(0.5, 2.0, (3, 4))
    return (lambda x_: F.power(x_, 2.5), [x], lambda: x ** 2.5)


@case
def elementwise_op(rng):
    x = rng.uniform(0.5, 2.0, (3, 4))
    return (lambda x_: F.elementwise(x_, "pow", exponent=-1.5), [x], lambda: x ** -1.5)


@case
def maximum_op(rng):
    a, b = distinct(rng, (2, 1, 4)), distinct(rng, (2, 3, 4)) + 0.025  # broadcast, no ties
    return (F.maximum, [a, b], lambda: np.maximum(a, b))


@case
def minimum_op(rng):
    a, b = distinct(rng, (2, 3, 4)), distinct(rng, (1, 3, 1)) + 0.025
    return (F.minimum, [a, b], lambda: np.minimum(a, b))


@case
def slice_axis_op(rng):
    x = rng.standard_normal((2, 5, 3))
    return (lambda x_: F.slice_axis(x_, 1, 4, 0, -2), [x], lambda: x[:, 4:0:-2])


@case
def binary_crossentropy_op(rng):
    p, t = rng.uniform(0.1, 0.9, (4, 3)), rng.integers(0, 2, (4, 3)).astype(float)
    return (lambda p_: F.binary_crossentropy(p_, t), [p],
            lambda: np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


@case
def binary_crossentropy_logits(rng):
    z, t = rng.standard_normal((4, 3)) * 2, rng.uniform(0, 1, (4, 3))
    return (lambda z_: F.binary_crossentropy(z_, t, from_logits=True), [z],
            lambda: np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))


@case
def layer_norm_op(rng):
    x = rng.standard_normal((2, 3, 4)) * 2 + 1
    gamma, beta = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))

    def forward():
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = x.var(axis=(1, 2), keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-3) * gamma + beta

    return (lambda x_, g, b: F.layer_norm(x_, g, b, (1, 2), 1e-3), [x, gamma, beta], forward)


@case
def clip(rng):
    x = rng.standard_normal((3, 4)) * 2
    x[np.abs(x - 0.5) < 0.05] += 0.1  # no value at a bound, where the slope jumps
    x[np.abs(x + 1.0) < 0.05] += 0.1
    return lambda x_: F.clip(x_, -1.0, 0.5), [x], lambda: np.clip(x, -1.0, 0.5)


@case
def transpose(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    return (lambda x_: F.transpose(x_, (0, 3, 1, 2)), [x],
            lambda: np.transpose(x, (0, 3, 1, 2)))


@case
def sigmoid(rng):
    x = rng.standard_normal((3, 4)) * 3
    return F.sigmoid, [x], lambda: 1 / (1 + np.exp(-x))


@case
def tanh(rng):
    x = rng.standard_normal((3, 4))
    return F.tanh, [x], lambda: np.tanh(x)


@case
def softmax_last_axis(rng):
    x = rng.standard_normal((3, 5)) * 2
    return F.softmax, [x], lambda: softmax_np(x)


@case
def softmax_axis0(rng):
    x = rng.standard_normal((4, 3, 2))
    return lambda x_: F.softmax(x_, axis=0), [x], lambda: softmax_np(x, axis=0)


@case
def linear(rng):
    x = rng.standard_normal((3, 4))
    return F.linear, [x], lambda: x


@case
def reshape(rng):
    x = rng.standard_normal((2, 3, 4))
    return lambda x_: F.reshape(x_, (4, -1)), [x], lambda: x.reshape(4, 6)


@case
def flatten(rng):
    x = rng.standard_normal((2, 3, 2, 2))
    return F.flatten, [x], lambda: x.reshape(2, 12)


@case
def add_broadcast(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 1))
    return F.add, [a, b], lambda: a + b


@case
def add_broadcast_leading(rng):
    a, b = rng.standard_normal((1, 4)), rng.standard_normal((3, 1, 1))
    return F.add, [a, b], lambda: a + b


@case
def add_operator(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    return lambda a_, b_: a_ + b_, [a, b], lambda: a + b


@case
def concatenate(rng):
    a, b, c = (rng.standard_normal((2, k, 3)) for k in (1, 3, 2))
    return (lambda *t: F.concatenate(t, axis=1), [a, b, c],
            lambda: np.concatenate([a, b, c], axis=1))


@case
def concatenate_last_axis(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    return (lambda *t: F.concatenate(t), [a, b], lambda: np.concatenate([a, b], axis=-1))


@case
def sum_all(rng):
    x = rng.standard_normal((3, 4))
    return F.sum, [x], lambda: x.sum()


@case
def mean(rng):
    x = rng.standard_normal((3, 4, 2))
    return F.mean, [x], lambda: x.mean()


@case
def softmax_cross_entropy_one_hot(rng):
    z = rng.standard_normal((5, 4)) * 2
    y = softmax_np(rng.standard_normal((5, 4)))  # soft labels are allowed too
    return (lambda z_: F.softmax_cross_entropy(z_, y), [z],
            lambda: -(y * log_softmax_np(z)).sum(axis=1).mean())


@case
def softmax_cross_entropy_sparse(rng):
    z = rng.standard_normal((6, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2, 3])
    return (lambda z_: F.softmax_cross_entropy(z_, labels, sparse=True), [z],
            lambda: -log_softmax_np(z)[np.arange(6), labels].mean())


@case
def cross_entropy_probabilities(rng):
    p = softmax_np(rng.standard_normal((5, 4)))
    y = np.eye(4)[[0, 2, 3, 1, 2]]
    return (lambda p_: F.cross_entropy(p_, y), [p],
            lambda: -(y * np.log(p)).sum(axis=1).mean())


@case
def cross_entropy_probabilities_sparse(rng):
    p = softmax_np(rng.standard_normal((5, 4)))
    labels = np.array([[0], [2], [3], [1], [2]])  # Keras also takes (n, 1) ids
    return (lambda p_: F.cross_entropy(p_, labels, sparse=True), [p],
            lambda: -np.log(p[np.arange(5), labels[:, 0]]).mean())


@case
def cross_entropy_of_softmax_output(rng):
    """A softmax output carries its logits: the loss and its gradient use them (stable)."""
    z = rng.standard_normal((5, 4)) * 3
    y = np.eye(4)[[1, 0, 3, 3, 2]]
    return (lambda z_: F.cross_entropy(F.softmax(z_), y), [z],
            lambda: -(y * log_softmax_np(z)).sum(axis=1).mean())


@case
def cross_entropy_of_softmax_over_batch_axis(rng):
    """A softmax over another axis is not the class distribution's: the probabilities are used
    as they are (the logits shortcut would compute a different loss)."""
    z = rng.standard_normal((3, 3))
    y = np.eye(3)[[2, 0, 1]]
    return (lambda z_: F.cross_entropy(F.softmax(z_, axis=0), y), [z],
            lambda: -(y * np.log(softmax_np(z, axis=0))).sum(axis=1).mean())


@case
def cross_entropy_from_logits(rng):
    z = rng.standard_normal((5, 4)) * 3
    labels = np.array([1, 0, 3, 3, 2])
    return (lambda z_: F.cross_entropy(z_, labels, sparse=True, from_logits=True), [z],
            lambda: -log_softmax_np(z)[np.arange(5), labels].mean())


@case
def mean_squared_error(rng):
    p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    return (lambda p_: F.mean_squared_error(p_, t), [p], lambda: ((p - t) ** 2).mean())


@case
def mean_squared_error_flat_targets(rng):
    p, t = rng.standard_normal((4, 1)), rng.standard_normal(4)
    return (lambda p_: F.mean_squared_error(p_, t), [p],
            lambda: ((p[:, 0] - t) ** 2).mean())


@case
def composite_network(rng):
    """conv -> pool -> flatten -> dense -> softmax cross-entropy, as a layer stack builds it."""
    x, w, b, _ = conv_inputs(rng, (2, 6, 6, 1), (3, 3, 1, 2), 1, "valid", 1)
    w2 = rng.standard_normal((8, 3))
    labels = np.array([2, 0])

    def fn(x_, w_, b_, w2_):
        h = F.max_pool2d(F.conv2d(x_, w_, b_, activation="relu"), 2)
        return F.softmax_cross_entropy(F.dense(F.flatten(h), w2_), labels, sparse=True)

    def forward():
        h = naive.max_pool2d_forward(naive.conv2d_forward(x, w, b, activation="relu"), (2, 2),
                                     (2, 2))[0]
        return -log_softmax_np(h.reshape(2, -1) @ w2)[np.arange(2), labels].mean()
    return fn, [x, w, b, w2], forward



# -- arithmetic operators ---------------------------------------------------------------------


@case
def subtract_broadcast(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 1))
    return F.subtract, [a, b], lambda: a - b


@case
def multiply_broadcast(rng):
    a, b = rng.standard_normal((2, 1, 4)), rng.standard_normal((3, 1))
    return F.multiply, [a, b], lambda: a * b


@case
def divide_broadcast(rng):
    a, b = rng.standard_normal((2, 3, 4)), away_from_zero(rng, (4,), 0.5)
    return F.divide, [a, b], lambda: a / b


@case
def divide_by_broadcast_numerator(rng):
    a, b = rng.standard_normal((1, 4)), away_from_zero(rng, (3, 4), 0.5)
    return F.divide, [a, b], lambda: a / b


@case
def negative(rng):
    x = rng.standard_normal((3, 4))
    return F.negative, [x], lambda: -x


@case
def matmul_2d(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    return F.matmul, [a, b], lambda: a @ b


@case
def matmul_batched_broadcast(rng):
    a, b = rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((3, 4, 2))
    return F.matmul, [a, b], lambda: a @ b


@case
def multiply_operators_with_numbers(rng):
    """Every Tensor operator, reflected ones with plain numbers and NumPy arrays included."""
    a, b = rng.standard_normal((2, 3)), away_from_zero(rng, (2, 3), 0.5)
    c = rng.standard_normal((3, 2))
    k = rng.standard_normal(3)

    def fn(a_, b_, c_):
        return (2.0 - a_ * b_ + k * a_) / b_ @ c_ - 1.5 / b_ @ c_ + (-a_) @ (0.5 * c_) + 3.0

    def forward():
        return (2.0 - a * b + k * a) / b @ c - 1.5 / b @ c + (-a) @ (0.5 * c) + 3.0
    return fn, [a, b, c], forward


# -- ops of the new layers ---------------------------------------------------------------------


@case
def conv1d_valid_bias(rng):
    x, w, b = rng.standard_normal((2, 9, 3)), rng.standard_normal((3, 3, 4)), \
        rng.standard_normal(4)
    return (lambda x_, w_, b_: F.conv1d(x_, w_, b_), [x, w, b],
            lambda: naive.conv1d_forward(x, w, b))


@case
def conv1d_same_stride2(rng):
    x, w = rng.standard_normal((2, 8, 2)), rng.standard_normal((4, 2, 3))
    pads = naive.same_padding(8, 4, 2)
    return (lambda x_, w_: F.conv1d(x_, w_, strides=2, padding="same"), [x, w],
            lambda: naive.conv1d_forward(x, w, None, 2, pads))


@case
def conv1d_causal_dilation2(rng):
    x, w, b = rng.standard_normal((1, 7, 2)), rng.standard_normal((3, 2, 2)), \
        rng.standard_normal(2)
    return (lambda x_, w_, b_: F.conv1d(x_, w_, b_, padding="causal", dilation=2), [x, w, b],
            lambda: naive.conv1d_forward(x, w, b, 1, (4, 0), 2))


@case
def zero_pad2d_int(rng):
    x = rng.standard_normal((2, 3, 4, 2))
    return lambda x_: F.zero_pad2d(x_, 1), [x], lambda: naive.zero_pad2d(x, 1, 1, 1, 1)


@case
def zero_pad2d_asymmetric(rng):
    x = rng.standard_normal((1, 3, 2, 3))
    return (lambda x_: F.zero_pad2d(x_, ((0, 2), (3, 1))), [x],
            lambda: naive.zero_pad2d(x, 0, 2, 3, 1))


@case
def global_max_pool2d(rng):
    x = distinct(rng, (2, 4, 3, 5))
    return F.global_max_pool2d, [x], lambda: x.max(axis=(1, 2))


def _bn_case(rng, shape, axis, training, affine=True):
    x = rng.standard_normal(shape) * 2 + 0.5
    c = shape[axis]
    g, b = rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    if training:
        mean, var = naive.batch_norm_statistics(x, axis)
    ones, zeros = np.ones(c), np.zeros(c)

    def forward():
        return naive.batch_norm(x, mean, var, g if affine else ones, b if affine else zeros,
                                1e-3, axis)
    if training:
        if affine:
            return (lambda x_, g_, b_: F.batch_norm_training(x_, g_, b_, axis=axis)[0],
                    [x, g, b], forward)
        return lambda x_: F.batch_norm_training(x_, axis=axis)[0], [x], forward
    if affine:
        return (lambda x_, g_, b_: F.batch_norm(x_, mean, var, g_, b_, axis=axis), [x, g, b],
                forward)
    return lambda x_: F.batch_norm(x_, mean, var, axis=axis), [x], forward


@case
def batch_norm_nhwc(rng):
    return _bn_case(rng, (2, 3, 4, 5), -1, training=False)


@case
def batch_norm_axis1_no_affine(rng):
    return _bn_case(rng, (3, 4, 2), 1, training=False, affine=False)


@case
def batch_norm_training_nhwc(rng):
    return _bn_case(rng, (2, 3, 4, 5), -1, training=True)


@case
def batch_norm_training_dense(rng):
    return _bn_case(rng, (6, 3), 1, training=True)


@case
def batch_norm_training_axis1_no_affine(rng):
    return _bn_case(rng, (3, 4, 2, 2), 1, training=True, affine=False)


@case
def local_response_normalization_defaults(rng):
    x = rng.standard_normal((2, 3, 2, 13))
    return (F.local_response_normalization, [x],
            lambda: naive.local_response_normalization(x, 5, 1.0, 1.0, 0.5))


@case
def local_response_normalization_alexnet(rng):
    x = rng.standard_normal((2, 2, 3, 7)) * 2
    return (lambda x_: F.local_response_normalization(x_, 2, 2.0, 1e-1, 0.75), [x],
            lambda: naive.local_response_normalization(x, 2, 2.0, 1e-1, 0.75))


IDS = sorted(CASES)

#: Names in fastconv.functional.__all__ that are not differentiable ops.
NOT_OPS = {"as_tensor", "is_grad_enabled"}
#: Ops checked by their own test below rather than by a CASES entry.
CHECKED_SEPARATELY = {"dropout"}


def test_every_functional_op_is_checked():
    """A new op in fastconv.functional must get a case here."""
    ops = set(F.__all__) - NOT_OPS - CHECKED_SEPARATELY
    missing = {op for op in ops if not any(c == op or c.startswith(f"{op}_") for c in CASES)}
    assert not missing, f"no gradient check for {sorted(missing)}"


@pytest.mark.parametrize("name", IDS)
def test_forward_values(backend, rng, name):
    fn, inputs, forward = CASES[name](rng)
    out = fn(*[Tensor(backend.asarray(np.array(a, dtype=np.float64))) for a in inputs])
    want = np.asarray(forward())
    assert out.shape == want.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", IDS)
def test_gradient(backend, rng, name):
    fn, inputs, _ = CASES[name](rng)
    check_backward(backend, fn, inputs)


def test_conv2d_gradient_every_algorithm(backend, conv_algo, rng):
    """The backward passes of every algorithm (Winograd's shared ones included), through the
    op, on the geometry all of them support (a smaller input in the emulated device run: fewer
    simulated blocks, the same padding)."""
    x_shape = (2, 3, 3, 3) if EMULATED else (2, 6, 5, 3)
    fn, inputs, _ = _conv_case(rng, x_shape, (3, 3, 3, 2), 1, ((2, 1), (0, 3)), 1)
    check_backward(backend, fn, inputs)


def test_dropout_gradient_with_a_fixed_mask(backend, rng):
    x = rng.standard_normal((6, 7))
    rate = 0.4

    def fix_mask():
        set_random_seed(99)

    check_backward(backend, lambda x_: F.dropout(x_, rate), [x], before_call=fix_mask)
    fix_mask()
    y = F.dropout(x, rate).numpy()
    kept = y != 0
    assert 0 < kept.sum() < x.size  # the mask drops some values and keeps others
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15)


def test_dropout_identity_when_not_training(backend, rng):
    x = Tensor(backend.asarray(rng.standard_normal((3, 4))))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        F.dropout(x, 1.0)


# -- the autograd walk itself -------------------------------------------------------------------


def test_gradients_accumulate_over_uses(backend):
    x = Tensor(backend.asarray(np.array([1.0, -2.0, 3.0])), requires_grad=True)
    y = F.sum(F.add(F.add(x, x), F.relu(x)))  # d/dx = 2 + (x > 0)
    y.backward()
    np.testing.assert_array_equal(backend.to_host(x.grad), [3.0, 2.0, 3.0])
    F.sum(x).backward()  # a second graph adds to the leaf's .grad
    np.testing.assert_array_equal(backend.to_host(x.grad), [4.0, 3.0, 4.0])


def test_backward_twice_through_a_freed_graph_is_an_error(backend):
    x = Tensor(backend.asarray(np.ones(3)), requires_grad=True)
    y = F.sum(F.sigmoid(x))
    y.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_backward_errors(backend):
    x = Tensor(backend.asarray(np.ones((2, 2))), requires_grad=True)
    with pytest.raises(ValueError, match="needs a scalar"):
        F.relu(x).backward()
    with pytest.raises(RuntimeError, match="does not require gradients"):
        Tensor(backend.asarray(np.ones(2))).backward()


def test_no_grad_records_nothing(backend):
    x = Tensor(backend.asarray(np.ones(3)), requires_grad=True)
    with no_grad():
        y = F.tanh(x)
    assert not y.requires_grad and y._node is None
    z = F.tanh(x)
    assert z.requires_grad and z._node is not None
    w = F.tanh(Tensor(backend.asarray(np.ones(3))))  # no input needs a gradient
    assert not w.requires_grad


def test_deep_graph_does_not_recurse(backend):
    x = Tensor(backend.asarray(np.array([0.5])), requires_grad=True)
    y = x
    for _ in range(3000):
        y = F.add(y, x)
    F.sum(y).backward()
    np.testing.assert_array_equal(backend.to_host(x.grad), [3001.0])


def test_only_inputs_that_need_it_get_gradients(backend, rng):
    x = Tensor(backend.asarray(rng.standard_normal((1, 4, 4, 2))))
    w = Tensor(backend.asarray(rng.standard_normal((3, 3, 2, 2))), requires_grad=True)
    F.sum(F.conv2d(x, w)).backward()
    assert x.grad is None and w.grad is not None
