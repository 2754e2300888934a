"""Parity campaign: random convolution and pooling cases, shapes drawn by hypothesis, every
backend and every convolution algorithm, each pass (forward with bias and ReLU, backward-data,
backward-weight; pooling forward and backward) against the float64 oracle in ``tests/naive.py``.

``FASTCONV_CAMPAIGN_EXAMPLES`` sets the cases per test (per backend and algorithm; CI runs the
default sample, the campaign 10,000: see ``tests/campaign/README.md``). On ``numba-cpu`` each
case runs the serial or the parallel variant of the kernels, drawn with the case.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastconv.backends import algorithms
from fastconv.geometry import conv_geometry, pool_geometry

from .. import naive
from ..devices import EMULATED

EXAMPLES = int(os.environ.get("FASTCONV_CAMPAIGN_EXAMPLES", "12"))
#: the largest batch, input side and channel counts of the convolution cases; an emulated device
#: (its kernels run in Python) draws the same kinds of cases on smaller shapes
CONV_BATCH, CONV_SIDE, CONV_CHANNELS = (2, 8, 5) if EMULATED else (3, 14, 9)
CAMPAIGN = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
TOL = {"float32": 2e-4, "float64": 1e-10}


def _kernel_mode(backend, mode):
    """Context setting numba-cpu's serial/parallel choice (a no-op elsewhere)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        if backend.name != "numba-cpu":
            yield
            return
        from fastconv.backends.numba_cpu.jit import SizedKernel

        SizedKernel.mode = mode
        try:
            yield
        finally:
            SizedKernel.mode = "auto"

    return ctx()


def _close(got, want, dtype, what):
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    err = float(np.abs(got - want).max(initial=0)) / scale
    assert err <= TOL[dtype], f"{what}: relative error {err:.3g} > {TOL[dtype]}"


@st.composite
def conv_cases(draw, algo):
    unit3x3 = algo.startswith("winograd")
    k = (3, 3) if unit3x3 else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (1, 1) if unit3x3 else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (1, 1) if unit3x3 else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.tuples(
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.integers(0, 3), st.integers(0, 3)))))
    h = draw(st.integers(1, CONV_SIDE))
    w = draw(st.integers(1, CONV_SIDE))
    x_shape = (draw(st.integers(1, CONV_BATCH)), h, w, draw(st.integers(1, CONV_CHANNELS)))
    w_shape = (*k, x_shape[3], draw(st.integers(1, CONV_CHANNELS)))
    pads = naive.conv_padding(padding, x_shape, w_shape, s, d)
    oh, ow = naive.conv_output_shape(x_shape, w_shape, s, pads, d)[1:3]
    if oh < 1 or ow < 1:  # the kernel does not fit: make the input large enough
        x_shape = (x_shape[0], x_shape[1] + (k[0] - 1) * d[0], x_shape[2] + (k[1] - 1) * d[1],
                   x_shape[3])
        pads = naive.conv_padding(padding, x_shape, w_shape, s, d)
    return (x_shape, w_shape, s, padding, pads, d, draw(st.sampled_from(["float32", "float64"])),
            draw(st.sampled_from(["serial", "parallel"])), draw(st.integers(0, 2**32 - 1)))


@pytest.mark.parametrize("algo", list(algorithms.ALGORITHMS))
def test_conv2d_parity(backend, algo):
    if algo not in backend.conv_algorithms:
        # a backend may implement a subset of the algorithms (each lists its own): then asking
        # it for another one is refused by name, never answered by something else
        g = conv_geometry((1, 5, 5, 1), (3, 3, 1, 1), 1, "valid", 1)
        with pytest.raises(ValueError, match=f"does not implement the '{algo}' convolution"):
            algorithms.resolve(backend, g, "float32", "forward", algo)
        return

    ran = []

    @CAMPAIGN
    @given(case=conv_cases(algo))
    def run(case):
        ran.append(1)
        x_shape, w_shape, s, padding, pads, d, dtype, mode, seed = case
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[3]).astype(dtype)
        g = conv_geometry(x_shape, w_shape, s, padding, d)
        dy = rng.standard_normal(g.y_shape).astype(dtype)
        with _kernel_mode(backend, mode):
            y = backend.conv2d_forward(backend.asarray(x), backend.asarray(w),
                                       backend.asarray(b), g, algo, "relu")
            dx = backend.conv2d_backward_data(backend.asarray(dy), backend.asarray(w), g, algo)
            dw = backend.conv2d_backward_weight(backend.asarray(x), backend.asarray(dy), g,
                                                algo)
        _close(backend.to_host(y), naive.conv2d_forward(x, w, b, s, pads, d, "relu"), dtype,
               f"forward {case}")
        _close(backend.to_host(dx), naive.conv2d_backward_data(dy, w, x_shape, s, pads, d),
               dtype, f"backward-data {case}")
        _close(backend.to_host(dw), naive.conv2d_backward_weight(x, dy, w_shape, s, pads, d),
               dtype, f"backward-weight {case}")

    run()
    assert len(ran) >= EXAMPLES, f"{len(ran)} cases ran, {EXAMPLES} asked"


@st.composite
def pool_cases(draw):
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = draw(st.sampled_from(["valid", "same"]))
    x_shape = (draw(st.integers(1, 3)), draw(st.integers(pool[0], 13)),
               draw(st.integers(pool[1], 13)), draw(st.integers(1, 9)))
    return (x_shape, pool, strides, padding, draw(st.sampled_from(["float32", "float64"])),
            draw(st.sampled_from(["serial", "parallel"])), draw(st.sampled_from([0, 0, 0.3])),
            draw(st.integers(0, 2**32 - 1)))


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool2d_parity(backend, op):
    ran = []

    @CAMPAIGN
    @given(case=pool_cases())
    def run(case):
        ran.append(1)
        x_shape, pool, strides, padding, dtype, mode, minus_inf, seed = case
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(x_shape)
        if op == "max" and minus_inf:  # windows of -inf, and -inf beside finite values
            x[rng.random(x_shape) < minus_inf] = -np.inf
        x = x.astype(dtype)
        g = pool_geometry(x_shape, pool, strides, padding)
        pads = (g.pt, g.pb, g.pl, g.pr)
        dy = rng.standard_normal(g.y_shape).astype(dtype)
        with _kernel_mode(backend, mode):
            if op == "max":
                y, argmax = backend.max_pool2d_forward(backend.asarray(x), g)
                dx = backend.max_pool2d_backward(backend.asarray(dy), argmax, g)
                y_ref = naive.max_pool2d_forward(x, pool, strides, pads)[0]
                dx_ref = naive.max_pool2d_backward(x, dy, pool, strides, pads)
            else:
                y = backend.avg_pool2d_forward(backend.asarray(x), g)
                dx = backend.avg_pool2d_backward(backend.asarray(dy), g)
                y_ref = naive.avg_pool2d_forward(x, pool, strides, pads)
                dx_ref = naive.avg_pool2d_backward(dy, x_shape, pool, strides, pads)
        y = backend.to_host(y)
        finite = np.isfinite(y_ref)
        assert np.array_equal(np.isfinite(y), finite), f"forward {case}"
        _close(np.where(finite, y, 0), np.where(finite, y_ref, 0), dtype, f"forward {case}")
        _close(backend.to_host(dx), dx_ref, dtype, f"backward {case}")

    run()
    assert len(ran) >= EXAMPLES, f"{len(ran)} cases ran, {EXAMPLES} asked"
