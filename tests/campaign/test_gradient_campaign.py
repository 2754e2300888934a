"""Gradient campaign: every differentiable op of ``fastconv.functional`` against central finite
differences in float64 (``tests/test_gradients.check_backward``), on shapes and arguments drawn
by hypothesis, on every backend; convolutions with every algorithm that supports the drawn
geometry. Inputs are kept away from kinks (ReLU near 0, max-pool near-ties).

``FASTCONV_CAMPAIGN_EXAMPLES`` sets the cases per op and backend (CI: the default sample).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.functional as F
from fastconv.backends import algorithms
from fastconv.geometry import conv_geometry

from ..test_gradients import away_from_zero, check_backward, distinct

EXAMPLES = int(os.environ.get("FASTCONV_CAMPAIGN_EXAMPLES", "12"))
CAMPAIGN = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

dims = st.integers(1, 5)


def _conv(draw, rng, backend):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["valid", "same", 1, ((0, 2), (1, 0))]))
    x_shape = (draw(st.integers(1, 2)), (k[0] - 1) * d[0] + draw(dims),
               (k[1] - 1) * d[1] + draw(dims), draw(st.integers(1, 4)))
    w_shape = (*k, x_shape[3], draw(st.integers(1, 4)))
    geom = conv_geometry(x_shape, w_shape, s, padding, d)
    algo = draw(st.sampled_from(algorithms.supported_algorithms(backend, geom)))
    x, w, b = (rng.standard_normal(x_shape), rng.standard_normal(w_shape),
               rng.standard_normal(w_shape[3]))
    return (lambda x_, w_, b_: F.conv2d(x_, w_, b_, s, padding, d, algo=algo), [x, w, b])


def _conv1d(draw, rng, backend):
    k, c, o = draw(st.integers(1, 4)), draw(dims), draw(dims)
    dil = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    x = rng.standard_normal((draw(st.integers(1, 2)), (k - 1) * dil + draw(dims), c))
    w, b = rng.standard_normal((k, c, o)), rng.standard_normal(o)
    stride = draw(st.integers(1, 2))
    return (lambda x_, w_, b_: F.conv1d(x_, w_, b_, stride, padding, dil), [x, w, b])


def _dense(draw, rng, backend):
    lead = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    k, u = draw(dims), draw(dims)
    return (lambda x_, w_, b_: F.dense(x_, w_, b_), [rng.standard_normal((*lead, k)),
                                                     rng.standard_normal((k, u)),
                                                     rng.standard_normal(u)])


def _pool(op):
    def make(draw, rng, backend):
        pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = draw(st.sampled_from(["valid", "same"]))
        shape = (draw(st.integers(1, 2)), pool[0] + draw(dims) - 1, pool[1] + draw(dims) - 1,
                 draw(dims))
        fn = F.max_pool2d if op == "max" else F.avg_pool2d
        return (lambda x_: fn(x_, pool, strides, padding), [distinct(rng, shape)])
    return make


def _pool1d(op):
    def make(draw, rng, backend):
        pool, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        padding = draw(st.sampled_from(["valid", "same"]))
        shape = (draw(st.integers(1, 2)), pool + draw(dims) - 1, draw(dims))
        fn = F.max_pool1d if op == "max" else F.avg_pool1d
        return (lambda x_: fn(x_, pool, stride, padding), [distinct(rng, shape)])
    return make


def _shape(draw, low=1, high=4):
    return tuple(draw(st.lists(dims, min_size=low, max_size=high)))


def _unary(fn, kink=False):
    def make(draw, rng, backend):
        shape = _shape(draw)
        x = away_from_zero(rng, shape) if kink else rng.standard_normal(shape)
        return fn, [x]
    return make


def _broadcast(fn, positive_second=False):
    """Two operands whose shapes broadcast; either order (the divisor stays positive)."""
    def make(draw, rng, backend):
        shape = _shape(draw, 1, 3)
        other = tuple(d if draw(st.booleans()) else 1 for d in shape)
        other = other[draw(st.integers(0, len(other) - 1)):]
        a = rng.standard_normal(shape)
        b = rng.uniform(0.5, 2.0, other) if positive_second else rng.standard_normal(other)
        if not positive_second and draw(st.booleans()):
            return fn, [b, a]
        return fn, [a, b]
    return make


def _clip(draw, rng, backend):
    low = draw(st.floats(-1.5, 0.0))
    high = low + draw(st.floats(0.2, 2.0))
    x = rng.standard_normal(_shape(draw)) * 2
    for bound in (low, high):  # no value at a bound, where the slope jumps
        x[np.abs(x - bound) < 0.05] += 0.1
    return (lambda x_: F.clip(x_, low, high)), [x]


def _transpose(draw, rng, backend):
    shape = _shape(draw, 1, 4)
    axes = tuple(draw(st.permutations(range(len(shape)))))
    return (lambda x_: F.transpose(x_, axes)), [rng.standard_normal(shape)]


def _matmul(draw, rng, backend):
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    m, k, n = draw(dims), draw(dims), draw(dims)
    return F.matmul, [rng.standard_normal((*batch, m, k)), rng.standard_normal((k, n))]


def _reshape(draw, rng, backend):
    shape = _shape(draw, 2, 4)
    size = int(np.prod(shape))
    return (lambda x_: F.reshape(x_, (size,))), [rng.standard_normal(shape)]


def _flatten(draw, rng, backend):
    return F.flatten, [rng.standard_normal((draw(dims), *_shape(draw, 1, 3)))]


def _concatenate(draw, rng, backend):
    shape = list(_shape(draw, 1, 3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    other = list(shape)
    other[axis] = draw(dims)
    return (lambda a_, b_: F.concatenate([a_, b_], axis=axis)), [rng.standard_normal(shape),
                                                                 rng.standard_normal(other)]


def _reduction(fn):
    def make(draw, rng, backend):
        return fn, [rng.standard_normal(_shape(draw))]
    return make


def _softmax(draw, rng, backend):
    shape = _shape(draw, 1, 3)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return (lambda x_: F.softmax(x_, axis=axis)), [rng.standard_normal(shape)]


def _cross_entropy(kind):
    def make(draw, rng, backend):
        n, c = draw(dims), draw(st.integers(2, 5))
        labels = rng.integers(0, c, n)
        sparse = draw(st.booleans())
        y = labels if sparse else np.eye(c)[labels]
        if kind == "logits":
            return (lambda z_: F.cross_entropy(z_, y, sparse=sparse, from_logits=True),
                    [rng.standard_normal((n, c))])
        if kind == "softmax_cross_entropy":
            return (lambda z_: F.softmax_cross_entropy(z_, y, sparse=sparse),
                    [rng.standard_normal((n, c))])
        p = rng.uniform(0.1, 1.0, (n, c))
        return (lambda p_: F.cross_entropy(p_, y, sparse=sparse)), [p / p.sum(1, keepdims=True)]
    return make


def _mse(draw, rng, backend):
    shape = _shape(draw, 1, 3)
    target = rng.standard_normal(shape)
    return (lambda p_: F.mean_squared_error(p_, target)), [rng.standard_normal(shape)]


def _zero_pad(draw, rng, backend):
    pad = draw(st.sampled_from([1, (1, 2), ((0, 2), (3, 1))]))
    return (lambda x_: F.zero_pad2d(x_, pad)), [rng.standard_normal(
        (draw(st.integers(1, 2)), draw(dims), draw(dims), draw(dims)))]


def _global(fn):
    def make(draw, rng, backend):
        return fn, [distinct(rng, (draw(st.integers(1, 2)), draw(dims), draw(dims), draw(dims)))]
    return make


def _batch_norm(training):
    def make(draw, rng, backend):
        shape = _shape(draw, 2, 4)
        if training and int(np.prod(shape)) // shape[-1] < 2:
            shape = (2, *shape[1:])
        axis = -1
        c = shape[axis]
        x = rng.standard_normal(shape) * 2 + 0.5
        g, b = rng.standard_normal(c), rng.standard_normal(c)
        if training:
            return (lambda x_, g_, b_: F.batch_norm_training(x_, g_, b_, axis=axis)[0],
                    [x, g, b])
        mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
        return (lambda x_, g_, b_: F.batch_norm(x_, mean, var, g_, b_, axis=axis), [x, g, b])
    return make


def _lrn(draw, rng, backend):
    radius = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(dims), draw(dims), draw(st.integers(1, 9)))
    return (lambda x_: F.local_response_normalization(x_, radius, 2.0, 1e-1, 0.75),
            [rng.standard_normal(shape)])


def _ramp(fn):
    """A hard sigmoid's ramp (-3, 3), away from its kinks."""
    def make(draw, rng, backend):
        return fn, [rng.uniform(-2.8, 2.8, _shape(draw))]
    return make


def _positive(fn):
    def make(draw, rng, backend):
        return fn, [rng.uniform(0.3, 3.0, _shape(draw))]
    return make


def _layer_norm(draw, rng, backend):
    shape = _shape(draw, 2, 4)
    first = draw(st.integers(1, len(shape) - 1))
    axes = tuple(range(first, len(shape)))
    params = tuple(shape[a] for a in axes)
    x = rng.standard_normal(shape) * 2 + 1
    return (lambda x_, g, b: F.layer_norm(x_, g, b, axes, 1e-3),
            [x, rng.standard_normal(params), rng.standard_normal(params)])


def _slice_axis(draw, rng, backend):
    shape = _shape(draw, 2, 4)
    axis = draw(st.integers(1, len(shape) - 1))
    n = shape[axis]
    start, stop = draw(st.integers(0, n - 1)), draw(st.integers(0, n))
    step = draw(st.sampled_from([1, 2, -1]))
    if not len(range(*slice(start, stop, step).indices(n))):
        start, stop, step = 0, n, 1
    return (lambda x_: F.slice_axis(x_, axis, start, stop, step), [rng.standard_normal(shape)])


def _binary_crossentropy(draw, rng, backend):
    shape = _shape(draw, 1, 3)
    logits = draw(st.booleans())
    target = rng.uniform(0, 1, shape)
    x = rng.standard_normal(shape) * 2 if logits else rng.uniform(0.05, 0.95, shape)
    return (lambda x_: F.binary_crossentropy(x_, target, from_logits=logits), [x])


OPS = {
    "conv2d": _conv, "conv1d": _conv1d, "dense": _dense,
    "max_pool2d": _pool("max"), "avg_pool2d": _pool("avg"),
    "max_pool1d": _pool1d("max"), "avg_pool1d": _pool1d("avg"),
    "global_avg_pool2d": _global(F.global_avg_pool2d),
    "global_max_pool2d": _global(F.global_max_pool2d),
    "relu": _unary(F.relu, kink=True), "sigmoid": _unary(F.sigmoid), "tanh": _unary(F.tanh),
    "linear": _unary(F.linear), "negative": _unary(F.negative), "softmax": _softmax,
    "add": _broadcast(F.add), "subtract": _broadcast(F.subtract),
    "multiply": _broadcast(F.multiply), "divide": _broadcast(F.divide, positive_second=True),
    "matmul": _matmul, "reshape": _reshape, "flatten": _flatten, "concatenate": _concatenate,
    "sum": _reduction(F.sum), "mean": _reduction(F.mean),
    "cross_entropy": _cross_entropy("probabilities"),
    "cross_entropy_from_logits": _cross_entropy("logits"),
    "softmax_cross_entropy": _cross_entropy("softmax_cross_entropy"),
    "mean_squared_error": _mse, "zero_pad2d": _zero_pad,
    "batch_norm": _batch_norm(False), "batch_norm_training": _batch_norm(True),
    "local_response_normalization": _lrn,
    "leaky_relu": _unary(lambda x_: F.leaky_relu(x_, 0.2), kink=True), "clip": _clip,
    "transpose": _transpose,
    "swish": _unary(F.swish), "silu": _unary(F.silu), "gelu": _unary(F.gelu),
    "hard_sigmoid": _ramp(F.hard_sigmoid), "hard_swish": _ramp(F.hard_swish),
    "hard_silu": _ramp(F.hard_silu), "elu": _unary(F.elu, kink=True),
    "selu": _unary(F.selu, kink=True), "softplus": _unary(F.softplus),
    "relu6": _unary(F.relu6, kink=True), "erf": _unary(F.erf), "sqrt": _positive(F.sqrt),
    "square": _unary(F.square), "exp": _unary(F.exp), "log": _positive(F.log),
    "abs": _unary(F.abs, kink=True), "reciprocal": _unary(F.reciprocal, kink=True),
    "power": _positive(lambda x_: F.power(x_, 1.5)),
    "elementwise": _positive(lambda x_: F.elementwise(x_, "pow", exponent=-0.5)),
    "maximum": _broadcast(F.maximum), "minimum": _broadcast(F.minimum),
    "layer_norm": _layer_norm, "slice_axis": _slice_axis,
    "binary_crossentropy": _binary_crossentropy,
}


def test_every_op_is_in_the_campaign():
    ops = set(F.__all__) - {"as_tensor", "is_grad_enabled", "dropout"}
    assert ops <= set(OPS), f"no campaign for {sorted(ops - set(OPS))}"


@pytest.mark.parametrize("op", sorted(OPS))
def test_gradient_campaign(backend, op):
    ran = []

    @CAMPAIGN
    @given(data=st.data(), seed=st.integers(0, 2**32 - 1))
    def run(data, seed):
        ran.append(1)
        rng = np.random.default_rng(seed)
        fn, inputs = OPS[op](data.draw, rng, backend)
        check_backward(backend, fn, inputs, rtol=1e-5, seed=seed)

    with fastconv.use_backend(backend.name):
        run()
    assert len(ran) >= EXAMPLES, f"{len(ran)} cases ran, {EXAMPLES} asked"

