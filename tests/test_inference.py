"""Inference plans: predict runs a precomputed plan of backend calls; it must give exactly what
the graph path gives, follow weight changes, and be rebuilt when the model changes.

The models compared get random biases and batch-norm statistics away from 0 and 1
(tests/weights.py) and images with more rows than columns, so that a dropped bias or a transposed
image cannot give the graph path's numbers by chance."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.layers import (
    Activation,
    AveragePooling1D,
    AveragePooling2D,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPooling2D,
    Reshape,
)
from fastconv.models import Sequential
from fastconv.tensor import no_grad

from .devices import EMULATED
from .weights import randomize_weights


def every_layer_model():
    """Specialised steps (Conv2D, pooling, Dense, Flatten, Dropout) and generic ones
    (tanh, sigmoid and softmax activations, Reshape, 1D and global pooling)."""
    return Sequential([
        Input((9, 10, 2)),
        Conv2D(4, 3, padding="same", activation="relu"),
        MaxPooling2D((2, 2), padding="same"),
        Conv2D(6, (2, 3), strides=(1, 2), activation="tanh"),
        AveragePooling2D((2, 1)),
        Conv2D(5, 1),
        Reshape((-1, 5)),
        AveragePooling1D(2),
        Reshape((2, -1, 5)),
        GlobalAveragePooling2D(),
        Dropout(0.5),
        Dense(7, activation="sigmoid"),
        Flatten(),
        Dense(3),
        Activation("softmax"),
    ])


def graph_outputs(model, x):
    with no_grad():
        return model(fastconv.functional.as_tensor(x), training=False).numpy()


def test_predict_matches_the_graph_path(backend, rng):
    model = randomize_weights(every_layer_model(), rng)
    x = rng.standard_normal((13, 9, 10, 2)).astype(np.float32)
    expected = graph_outputs(model, x)
    np.testing.assert_allclose(model.predict(x, batch_size=5, verbose=0), expected, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-5, atol=1e-6)


def test_large_batches_run_in_chunks(backend, rng, monkeypatch):
    """A batch larger than the cache-sized chunk is split; the result is the same."""
    model = randomize_weights(every_layer_model(), rng)
    x = rng.standard_normal((40, 9, 10, 2)).astype(np.float32)
    expected = graph_outputs(model, x)
    monkeypatch.setattr(type(backend), "inference_chunk_bytes", 9 * 10 * 4 * 4 * 3)
    got = model.predict_on_batch(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    shapes = {key[0] for key in model._plans}
    assert len(shapes) >= 2 and max(s[0] for s in shapes) < 40  # several chunk shapes ran


def test_plans_follow_weight_changes(backend, rng):
    model = randomize_weights(every_layer_model(), rng)
    x = rng.standard_normal((4, 9, 10, 2)).astype(np.float32)
    before = model.predict_on_batch(x)
    model.set_weights([w * 1.5 for w in model.get_weights()])
    after = model.predict_on_batch(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, graph_outputs(model, x), rtol=1e-5, atol=1e-6)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], epochs=1, verbose=0)
    np.testing.assert_allclose(model.predict_on_batch(x), graph_outputs(model, x), rtol=1e-5,
                               atol=1e-6)


def test_plans_are_rebuilt_when_layers_change(backend, rng):
    """After add() and pop() the plan computes the new stack of layers, checked by value against
    NumPy on the layers' own weights (random biases), not only by its output shape."""
    model = randomize_weights(Sequential([Input((5,)), Dense(4, activation="relu")]), rng)
    x = rng.standard_normal((3, 5)).astype(np.float32)

    def expected(layers):
        h = x.astype(np.float64)
        for layer in layers:
            kernel, bias = layer.get_weights()
            h = h @ kernel + bias
            if layer.get_config()["activation"] == "relu":
                h = np.maximum(h, 0)
        return h

    first = model.layers[0]
    np.testing.assert_allclose(model.predict_on_batch(x), expected([first]), rtol=1e-5,
                               atol=1e-6)
    model.add(Dense(2))
    randomize_weights(model, rng)
    np.testing.assert_allclose(model.predict_on_batch(x), expected(model.layers), rtol=1e-5,
                               atol=1e-6)
    assert model.predict_on_batch(x).shape == (3, 2)
    model.pop()
    np.testing.assert_allclose(model.predict_on_batch(x), expected([first]), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("algo", ["direct", "im2col", "winograd", "winograd4"])
def test_plans_use_the_current_algorithm(backend, rng, algo):
    model = randomize_weights(Sequential([Input((7, 6, 3)), Conv2D(4, 3, activation="relu")]),
                              rng)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    with fastconv.use_conv_algo(algo):
        got = model.predict_on_batch(x)
    np.testing.assert_allclose(got, graph_outputs(model, x), rtol=1e-4, atol=1e-5)
    assert any(key[2] == algo for key in model._plans)


def test_in_place_weight_changes_are_seen_after_changed(backend, rng):
    """Plans keep prepared (packed) kernels per weight version; writing into a weight's array
    and calling ``changed()`` makes the next prediction use the new values."""
    model = randomize_weights(Sequential([Input((7, 6, 2)), Conv2D(3, 3, activation="relu"),
                                          Flatten(), Dense(4, activation="relu")]), rng)
    x = rng.standard_normal((2, 7, 6, 2)).astype(np.float32)
    before = model.predict_on_batch(x)
    for var in model.weights:
        var.data[...] = var.data * 2 + 0.1
        var.changed()
    after = model.predict_on_batch(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, graph_outputs(model, x), rtol=1e-5, atol=1e-6)


def graph_model():
    """Two inputs, a residual Add, a Concatenate, a nested Sequential and two outputs."""
    from fastconv.layers import Add, Concatenate
    from fastconv.models import Model

    image = Input((7, 6, 2), name="image")
    side = Input((4,), name="side")
    conv = Conv2D(2, 3, padding="same", activation="relu", name="conv")(image)
    res = Add(name="res")([image, conv])
    tower = Sequential([Conv2D(3, 3, activation="tanh"), MaxPooling2D(), Flatten()],
                       name="tower")
    features = tower(res)
    joined = Concatenate(name="join")([features, Dense(5, name="side_fc")(side)])
    scores = Dense(3, activation="softmax", name="scores")(joined)
    aux = Dense(2, name="aux")(GlobalAveragePooling2D(name="gap")(res))
    return Model([image, side], [scores, aux])


def test_graph_plans_match_the_graph_path(backend, rng):
    model = randomize_weights(graph_model(), rng)
    image = rng.standard_normal((9, 7, 6, 2)).astype(np.float32)
    side = rng.standard_normal((9, 4)).astype(np.float32)
    with no_grad():
        expected = [t.numpy() for t in model([image, side], training=False)]
    got = model.predict([image, side], batch_size=4, verbose=0)
    assert [g.shape for g in got] == [(9, 3), (9, 2)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    plan = model.inference_plan([(9, 7, 6, 2), (9, 4)])
    assert plan.output_shape == [(9, 3), (9, 2)]
    # Every intermediate slot is released after its last reader; the outputs are kept.
    released = [i for *_, release in plan.steps for i in release]
    assert len(released) == len(set(released)) == plan.n_slots - len(plan.output_slots)
    assert not set(released) & set(plan.output_slots)


def test_graph_plans_chunk_large_batches(backend, rng, monkeypatch):
    model = randomize_weights(graph_model(), rng)
    image = rng.standard_normal((30, 7, 6, 2)).astype(np.float32)
    side = rng.standard_normal((30, 4)).astype(np.float32)
    whole = model.predict_on_batch([image, side])
    monkeypatch.setattr(type(backend), "inference_chunk_bytes", 7 * 6 * 4 * 4 * 4)
    model._forget_plans()
    chunked = model.predict_on_batch([image, side])
    for c, w in zip(chunked, whole):
        np.testing.assert_allclose(c, w, rtol=1e-6, atol=1e-7)
    assert len(model._plans) >= 2 and all(key[0][0][0] < 30 for key in model._plans)


def test_sequential_plans_stay_chains(backend):
    """The Sequential fast path: one callable per layer, each fed the previous one's array."""
    model = every_layer_model()
    plan = model.inference_plan((1, 9, 10, 2))
    assert plan.run == plan.__call__
    assert len(plan.steps) == len(model.layers) and all(callable(s) for s in plan.steps)


def test_functional_chains_run_as_chains(backend, rng):
    """A functional model without branches gets the Sequential fast path: plain steps."""
    from fastconv.models import Model

    x = Input((7, 6, 2))
    y = Dense(3)(Flatten()(MaxPooling2D()(Conv2D(4, 3, activation="relu")(x))))
    model = randomize_weights(Model(x, y), rng)
    plan = model.inference_plan((2, 7, 6, 2))
    assert plan.run == plan.__call__ and len(plan.steps) == 4
    data = rng.standard_normal((2, 7, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(data, verbose=0), graph_outputs(model, data),
                               rtol=1e-5, atol=1e-6)


def test_changing_a_nested_model_rebuilds_the_outer_models_plans(backend, rng):
    inner = Sequential([Input((5,)), Dense(4, name="d1"), Dense(4, name="d2")])
    outer = randomize_weights(Sequential([inner, Dense(3, name="head")]), rng)
    x = rng.standard_normal((6, 5)).astype("float32")
    outer.predict(x, verbose=0)
    inner.pop()
    inner.add(Dense(4, activation="relu", name="d3"))
    randomize_weights(inner.layers[-1], rng)
    expected = outer(x).numpy()
    np.testing.assert_allclose(outer.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)


def random_norm_statistics(model, rng):
    """Non-trivial gamma, beta and moving statistics for every BatchNormalization."""
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.2, 2.0, c)])


def test_batch_norm_after_a_convolution_is_folded_in_sequential_plans(backend, rng):
    model = Sequential([Input((9, 7, 3)), Conv2D(8, 3, padding="same"), BatchNormalization(),
                        Activation("relu"), Conv2D(4, 3, use_bias=False), BatchNormalization(),
                        Conv2D(4, 1, activation="relu"), BatchNormalization(), Flatten(),
                        Dense(3)])
    randomize_weights(model, rng)
    random_norm_statistics(model, rng)
    x = rng.standard_normal((2 if EMULATED else 5, 9, 7, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=2e-5,
                               atol=2e-5)
    # the two linear convolutions absorb their normalisation; the ReLU one cannot
    assert model.inference_plan(x.shape).folded == 2
    assert len(model.inference_plan(x.shape).steps) == len(model.layers) - 2
    # new statistics after a prediction are folded again
    random_norm_statistics(model, rng)
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=2e-5,
                               atol=2e-5)


def test_batch_norm_is_folded_in_graph_plans_only_where_the_convolution_feeds_it_alone(
        backend, rng):
    from fastconv.layers import Add
    from fastconv.models import Model

    inp = Input((8, 6, 4))
    a = Conv2D(4, 3, padding="same", name="a")(inp)
    a_norm = BatchNormalization(name="a_norm")(a)
    b = Conv2D(4, 1, name="b")(inp)  # its output feeds a normalisation and the sum
    b_norm = BatchNormalization(name="b_norm")(b)
    out = Add()([Activation("relu")(a_norm), b_norm, b])
    c = Conv1D(3, 2, name="c")(Reshape((48, 4))(out))
    model = Model(inp, BatchNormalization(name="c_norm")(c))
    randomize_weights(model, rng)
    random_norm_statistics(model, rng)
    x = rng.standard_normal((3, 8, 6, 4)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x).numpy(), rtol=2e-5,
                               atol=2e-5)
    assert model.inference_plan(x.shape).folded == 2  # a and c, not b
