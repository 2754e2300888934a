"""A convolution and the pooling after it in one pass (numba-cpu, inference plans): the same
numbers as the two passes apart, bit for bit, on awkward geometries; plans use it only where
the pooling neither overlaps nor pads and nothing else reads the convolution's output."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry, pool_geometry
from fastconv.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    Input,
    MaxPooling2D,
)
from fastconv.models import Model, Sequential

from . import naive
from .test_inference import random_norm_statistics

pytestmark = pytest.mark.skipif(
    fastconv.available_backends()["numba-cpu"] is not None,
    reason=f"numba-cpu unavailable: {fastconv.available_backends()['numba-cpu']}")

# (x shape, kernel (KH, KW, O), conv strides, padding, dilation, pool, pool strides)
CASES = [
    ((2, 28, 28, 1), (3, 3, 8), 1, "valid", 1, (2, 2), None),     # lesson conv1 (row segments)
    ((3, 13, 13, 5), (3, 3, 40), 1, "valid", 1, (2, 2), None),    # odd: a row and column unread
    ((1, 11, 9, 3), (5, 3, 6), 1, "same", 1, (3, 2), None),       # padded, O < one panel
    ((2, 17, 15, 20), (3, 3, 33), 2, "same", 1, (2, 2), (3, 3)),  # strided, gaps between windows
    ((2, 12, 12, 2), (3, 3, 7), 1, "valid", 2, (2, 2), None),     # dilated, few channels (packed)
    ((1, 12, 14, 17), (2, 3, 16), 1, "valid", (2, 1), (1, 3), None),  # dilated, tap segments
    ((1, 6, 6, 4), (3, 3, 12), 1, "valid", 1, (4, 4), None),      # one window per image
]


def _case_id(case):
    xs, (kh, kw, o), s, pad, d, pool, ps = case
    return f"{xs[0]}x{xs[1]}x{xs[2]}x{xs[3]}-k{kh}x{kw}o{o}-s{s}-{pad}-d{d}-p{pool}s{ps}"


def _two_passes(be, x, w, b, g, activation, pg, kind):
    y = be.conv2d_forward(x, w, b, g, "im2col", activation)
    if kind == "max":
        return be.max_pool2d_forward(y, pg, with_argmax=False)[0]
    return be.avg_pool2d_forward(y, pg)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_pooled_forward_equals_the_two_passes(case, kind, dtype, kernel_mode, rng):
    be = fastconv.get_backend("numba-cpu")
    xs, (kh, kw, o), s, pad, d, pool, ps = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((kh, kw, xs[3], o)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    g = conv_geometry(x.shape, w.shape, s, pad, d)
    pg = pool_geometry(g.y_shape, pool, ps)
    for activation, bias in (("relu", b), ("linear", None)):
        run = be.prepare_conv2d_pool_forward(g, "im2col", activation, pg, kind)
        y = run(x, w, bias, ("key", activation))
        assert y.shape == pg.y_shape and y.dtype == x.dtype
        np.testing.assert_array_equal(y, _two_passes(be, x, w, bias, g, activation, pg, kind))
    # and against the float64 oracles
    dil = (d, d) if isinstance(d, int) else d
    strides = (s, s)
    ref = naive.conv2d_forward(x, w, b, strides,
                               naive.conv_padding(pad, xs, w.shape, strides, dil), dil, "relu")
    pool_strides = pool if ps is None else ps
    ref = (naive.max_pool2d_forward(ref, pool, pool_strides)[0] if kind == "max"
           else naive.avg_pool2d_forward(ref, pool, pool_strides))
    y = be.prepare_conv2d_pool_forward(g, "im2col", "relu", pg, kind)(x, w, b, "oracle")
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_pooled_max_keeps_nan_as_the_pooling_kernel_does(rng):
    be = fastconv.get_backend("numba-cpu")
    x = rng.standard_normal((2, 10, 10, 3)).astype("float32")
    x[0, 4, 4, 1] = np.nan
    x[1, 0, 0, 0] = np.inf
    w = rng.standard_normal((3, 3, 3, 5)).astype("float32")
    g = conv_geometry(x.shape, w.shape, 1, "valid")
    pg = pool_geometry(g.y_shape, 2)
    y = be.prepare_conv2d_pool_forward(g, "im2col", "linear", pg, "max")(x, w, None, 0)
    expected = _two_passes(be, x, w, None, g, "linear", pg, "max")
    assert np.isnan(y).any()
    np.testing.assert_array_equal(y, expected)


def test_only_im2col_on_numba_cpu_has_the_pooled_pass():
    g = conv_geometry((1, 8, 8, 3), (3, 3, 3, 4))
    pg = pool_geometry(g.y_shape, 2)
    be = fastconv.get_backend("numba-cpu")
    for algo in ("direct", "winograd", "winograd4"):
        assert be.prepare_conv2d_pool_forward(g, algo, "relu", pg, "max") is None
    assert fastconv.get_backend("numpy").prepare_conv2d_pool_forward(
        g, "im2col", "relu", pg, "max") is None


def _lesson_like():
    return Sequential([Input((18, 18, 1)), Conv2D(8, 3, activation="relu"), MaxPooling2D(),
                       Conv2D(6, 3, use_bias=False), BatchNormalization(), MaxPooling2D(),
                       Conv2D(4, 2, activation="relu"), AveragePooling2D(),
                       Conv2D(4, 1), MaxPooling2D(3, strides=1, padding="same"),
                       Flatten(), Dense(3)])


@pytest.mark.parametrize("backend_name", ["numba-cpu", "numpy"])
def test_sequential_plans_pool_inside_the_convolution(backend_name, rng):
    """conv+pool, conv+norm+pool and conv+average pool are one step each on numba-cpu; the
    overlapping 'same' pooling is not; numpy runs them apart. Same outputs as the graph."""
    with fastconv.use_backend(backend_name), fastconv.use_conv_algo("im2col"):
        model = _lesson_like()
        random_norm_statistics(model, rng)
        x = rng.standard_normal((5, 18, 18, 1)).astype("float32")
        expected = model(x).numpy()
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
        plan = model.inference_plan(x.shape)
        fused = 3 if backend_name == "numba-cpu" else 0
        assert (plan.pooled, plan.folded) == (fused, 1)
        assert len(plan.steps) == len(model.layers) - 1 - fused
        # training in between: the fused steps read the new weights
        model.layers[0].kernel.assign(model.layers[0].kernel.numpy() * -0.5)
        np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=1e-5,
                                   atol=1e-5)


def test_graph_plans_pool_inside_the_convolution_only_where_it_feeds_the_pool_alone(rng):
    from fastconv.layers import Add

    with fastconv.use_backend("numba-cpu"), fastconv.use_conv_algo("im2col"):
        inp = Input((12, 12, 3))
        a = MaxPooling2D()(Conv2D(4, 3, padding="same", activation="relu", name="a")(inp))
        b_conv = Conv2D(4, 3, padding="same", name="b")(inp)  # read by the pool and the sum
        b = MaxPooling2D()(b_conv)
        c = MaxPooling2D()(BatchNormalization(name="c_norm")(Conv2D(4, 1, name="c")(inp)))
        summed = Add()([a, b, c, MaxPooling2D()(Activation("relu")(b_conv))])
        model = Model(inp, Flatten()(summed))
        random_norm_statistics(model, rng)
        x = rng.standard_normal((3, 12, 12, 3)).astype("float32")
        np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=1e-5,
                                   atol=1e-5)
        plan = model.inference_plan(x.shape)
        assert (plan.pooled, plan.folded) == (2, 1)  # a and c; not b


@pytest.mark.parametrize("backend_name", ["numba-cpu", "numpy"])
def test_chunks_are_sized_by_the_arrays_the_plan_makes(backend_name):
    """A pooled convolution's output is not made, so on numba-cpu the chunk of a large batch
    is sized by the pooled array: 4x the images of a plan that makes the convolution's."""
    from fastconv.inference import chunk_size

    with fastconv.use_backend(backend_name) as be, fastconv.use_conv_algo("im2col"):
        model = Sequential([Input((12, 12, 1)), Conv2D(8, 3, activation="relu"),
                            MaxPooling2D(), Flatten(), Dense(2)])
        largest = 5 * 5 * 8 if backend_name == "numba-cpu" else 10 * 10 * 8
        assert chunk_size(model, (12, 12, 1), be) == be.inference_chunk_bytes // (largest * 4)


def test_sizing_chunks_counts_no_autotuning_use(monkeypatch):
    """The plan chunk_size makes for one image is never run: it leaves no choice, no use and
    no 'already compiled' mark behind in autotuning."""
    from fastconv.backends import algorithms, autotune
    from fastconv.inference import chunk_size

    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    algorithms.clear_memory()
    be = fastconv.get_backend("numba-cpu")
    model = Sequential([Input((12, 12, 3)), Conv2D(8, 3, activation="relu"), MaxPooling2D(),
                        Conv2D(8, 3), Flatten(), Dense(2)])
    assert chunk_size(model, (12, 12, 3), be) > 0
    assert (algorithms.choices(), autotune._states, autotune._ran) == ([], {}, set())
