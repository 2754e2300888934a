"""Reliability: concurrency, numerics that must not fall off a cliff, and the corner cases that
a hostile user found (stale predictions after ``set_weights``, max-pool backward over windows of
``-inf``, denormal inputs)."""

from __future__ import annotations

import contextvars
import threading

import numpy as np
import pytest

from fastconv.geometry import pool_geometry
from fastconv.layers import Conv2D, Dense, Flatten
from fastconv.models import Sequential

from . import naive


def _threads(n, fn):
    """Run ``fn(i)`` in ``n`` threads started together, each in a copy of the caller's context
    (so ``use_backend`` applies); re-raise the first exception."""
    barrier = threading.Barrier(n)
    contexts = [contextvars.copy_context() for _ in range(n)]
    results, errors = [None] * n, []

    def body(i):
        try:
            barrier.wait()
            results[i] = contexts[i].run(fn, i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _dense_model():
    return Sequential([Dense(2048, input_shape=(2048,)), Dense(16)])


def _conv_model():
    return Sequential([Conv2D(256, 3, padding="same", input_shape=(8, 8, 256)), Flatten(),
                       Dense(4)])


@pytest.mark.parametrize("make", [_dense_model, _conv_model], ids=["dense", "conv2d"])
def test_predict_in_threads_right_after_set_weights_uses_the_new_weights(backend, make):
    """8 threads predicting at once after each ``set_weights`` all see the new weights (the
    packed-kernel caches of inference plans must not hand out the previous packing)."""
    model = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, *model.input_shape[1:])).astype(np.float32)
    for round_ in range(4):
        old = model.get_weights()
        new = [rng.standard_normal(w.shape).astype(np.float32) for w in old]
        model.set_weights(new)
        expected = model.predict(x, verbose=0)  # serial: the reference for this round
        model.set_weights(old)
        model.predict(x, verbose=0)  # the plan holds kernels packed from the old weights
        model.set_weights(new)
        got = _threads(8, lambda i: model.predict(x, verbose=0))
        stale = sum(not np.array_equal(g, expected) for g in got)
        assert stale == 0, f"round {round_}: {stale} of 8 threads got stale predictions"


# -- max pooling over windows of -inf ------------------------------------------------------------

@pytest.mark.parametrize("pool,strides", [((3, 3), (1, 1)), ((2, 2), (1, 1)), ((3, 3), (2, 2)),
                                          ((2, 3), (1, 2))])
def test_max_pool_backward_over_windows_of_minus_inf_matches_oracle(backend, pool, strides):
    """'same' padding over an input of -inf with one finite value: a window holding only -inf
    sends its gradient to its first in-bounds element (as the oracle and PyTorch do), never to
    tap 0 when tap 0 is padding, nor to the finite value of another window."""
    rng = np.random.default_rng(3)
    for _ in range(6):
        h, w = rng.integers(2, 7, size=2)
        x = np.full((1, h, w, 2), -np.inf)
        x[0, rng.integers(h), rng.integers(w), :] = 1.5
        g = pool_geometry(x.shape, pool, strides, "same")
        pads = (g.pt, g.pb, g.pl, g.pr)
        dy = rng.uniform(1, 2, size=g.y_shape)
        y_ref, arg_ref = naive.max_pool2d_forward(x, pool, strides, pads)
        y, argmax = backend.max_pool2d_forward(backend.asarray(x), g)
        np.testing.assert_array_equal(backend.to_host(y), y_ref)
        np.testing.assert_array_equal(backend.to_host(argmax), arg_ref)
        dx = backend.max_pool2d_backward(backend.asarray(dy), argmax, g)
        np.testing.assert_allclose(backend.to_host(dx),
                                   naive.max_pool2d_backward(x, dy, pool, strides, pads))
