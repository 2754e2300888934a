"""Functional models: ``Input`` tensors, layers called on them, ``Model(inputs, outputs)`` with
several inputs and outputs; predict against a float64 oracle, summary against Keras's own text,
clear errors for graphs that cannot be models."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastconv import functional as F
from fastconv.layers import Add, Concatenate, Conv2D, Dense, Flatten, Input, InputLayer, Layer
from fastconv.layers.base import KerasTensor
from fastconv.models import Functional, Model, Sequential

from .devices import EMULATED


class PairSum(Layer):
    """A two-input element-wise sum: a stand-in for the merge layers, written against the
    multi-input contract (a list of shapes in, a list of tensors in)."""

    multi_input = True

    def build(self, input_shape):
        first = tuple(input_shape[0])
        for shape in input_shape[1:]:
            if tuple(shape)[1:] != first[1:]:
                raise ValueError(f"inputs must have equal shapes, got "
                                 f"{[tuple(s) for s in input_shape]}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def call(self, xs, training=False):
        out = xs[0]
        for x in xs[1:]:
            out = F.add(out, x)
        return out


def dense64(layer, x):
    """Naive float64 Dense (linear activation) from the layer's current weights."""
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    return x.astype(np.float64) @ kernel + bias


def two_branch_model():
    """a -> d1 -> add <- d2 <- b; add -> out; d1 -> out2 (Keras's summary example)."""
    a = Input((8,), name="a")
    b = Input((8,), name="b")
    x = Dense(4, name="d1")(a)
    y = Dense(4, name="d2")(b)
    s = Add(name="add")([x, y])
    out = Dense(2, name="out")(s)
    out2 = Dense(3, name="out2")(x)
    return Model(inputs=[a, b], outputs=[out, out2], name="two_branch")


def oracle_two_branch(model, a, b):
    d1, d2 = dense64(model.get_layer("d1"), a), dense64(model.get_layer("d2"), b)
    return dense64(model.get_layer("out"), d1 + d2), dense64(model.get_layer("out2"), d1)


# -- symbolic tensors and graph building ---------------------------------------------------------

def test_input_is_symbolic_and_layers_record_nodes():
    x = Input((5, 5, 3), name="img")
    assert isinstance(x, KerasTensor)
    assert x.shape == (None, 5, 5, 3) and x.dtype == "float32"
    source = x._keras_history.layer
    assert isinstance(source, InputLayer) and source.name == "img"
    conv = Conv2D(2, 3, name="c")
    y = conv(x)
    assert isinstance(y, KerasTensor) and y.shape == (None, 3, 3, 2)
    assert conv.built and len(conv.weights) == 2  # built by the symbolic call, as Keras
    assert y._keras_history == (conv, 0, 0)
    node = conv._inbound_nodes[0]
    assert node.input_tensors == [x] and node.outputs == [y]
    y2 = conv(x)  # a shared layer: a second node, the same weights
    assert y2._keras_history.node_index == 1 and len(conv.weights) == 2
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(y)


def test_model_constructor_makes_a_functional_model(backend):
    x = Input((6,))
    y = Dense(3)(x)
    model = Model(x, y)
    assert type(model) is Functional and isinstance(model, Model)
    assert model.name == "functional"
    assert Model(inputs=x, outputs=y, name="named").name == "named"
    assert model.input_shape == (None, 6) and model.output_shape == (None, 3)
    assert [type(la).__name__ for la in model.layers] == ["InputLayer", "Dense"]


def test_predict_several_inputs_and_outputs_matches_oracle(backend, rng):
    model = two_branch_model()
    assert [la.name for la in model.layers] == ["a", "b", "d1", "d2", "add", "out", "out2"]
    a = rng.standard_normal((7, 8)).astype("float32")
    b = rng.standard_normal((7, 8)).astype("float32")
    out, out2 = model.predict([a, b], batch_size=3, verbose=0)
    want, want2 = oracle_two_branch(model, a, b)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out2, want2, rtol=1e-5, atol=1e-5)
    # a dict by input name: the same computation (same batches), so the same bits; across
    # batch sizes the BLAS may block the sums differently (tolerances: the single-image case)
    by_name = model.predict({"b": b, "a": a}, batch_size=3, verbose=0)
    np.testing.assert_array_equal(by_name[0], out)
    np.testing.assert_array_equal(by_name[1], out2)
    # The plan and the training graph path agree.
    graph = model([a, b])
    np.testing.assert_allclose(graph[0].numpy(), out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(graph[1].numpy(), out2, rtol=1e-6, atol=1e-6)
    single = model.predict_on_batch([a[:1], b[:1]])
    np.testing.assert_allclose(single[0], out[:1], rtol=1e-5, atol=1e-6)


def test_diamond_graph_with_a_shared_layer(backend, rng):
    """One layer used twice (shared weights) and a tensor read by two layers."""
    x = Input((4,), name="x")
    shared = Dense(4, name="shared")
    h = shared(x)
    h2 = shared(h)
    out = PairSum(name="sum")([h, h2])  # a multi-input layer written against the contract only
    model = Model(x, out)
    assert [la.name for la in model.layers] == ["x", "shared", "sum"]
    data = rng.standard_normal((5, 4)).astype("float32")
    first = dense64(shared, data)
    want = first + dense64(shared, first)
    np.testing.assert_allclose(model.predict(data, verbose=0), want, rtol=1e-5, atol=1e-5)
    assert model.count_params() == 20


def test_residual_and_concatenate_graph_matches_oracle(backend, rng):
    """A residual block and a channel concatenation, through the real merge layers' steps."""
    x = Input((5, 5, 3), name="x")
    conv = Conv2D(3, 3, padding="same", name="conv")
    res = Add(name="res")([x, conv(x)])
    cat = Concatenate(name="cat")([res, x])
    model = Model(x, Dense(2, name="head")(Flatten(name="flat")(cat)))
    data = rng.standard_normal((4, 5, 5, 3)).astype("float32")
    kernel, bias = (w.astype(np.float64) for w in conv.get_weights())
    padded = np.pad(data.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv64 = np.zeros((4, 5, 5, 3)) + bias
    for i in range(3):
        for j in range(3):
            conv64 += np.einsum("nhwc,co->nhwo", padded[:, i:i + 5, j:j + 5], kernel[i, j])
    cat64 = np.concatenate([data + conv64, data], axis=-1).reshape(4, -1)
    want = dense64(model.get_layer("head"), cat64)
    np.testing.assert_allclose(model.predict(data, verbose=0), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model(data).numpy(), want, rtol=1e-4, atol=1e-5)


def test_output_that_is_an_input(backend, rng):
    x = Input((3,), name="x")
    model = Model(x, [x, Dense(2, name="d")(x)])
    data = rng.standard_normal((2, 3)).astype("float32")
    same, dense = model.predict(data, verbose=0)
    np.testing.assert_array_equal(same, data)
    np.testing.assert_allclose(dense, dense64(model.get_layer("d"), data), rtol=1e-5, atol=1e-6)


def test_get_layer():
    model = two_branch_model()
    assert model.get_layer("d2").name == "d2"
    assert model.get_layer(index=0).name == "a"
    assert model.get_layer(index=-1).name == "out2"
    with pytest.raises(ValueError, match="no layer named 'nope'.*d1"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="out of range"):
        model.get_layer(index=7)
    with pytest.raises(ValueError, match="either name"):
        model.get_layer()


# -- errors ----------------------------------------------------------------------------------

def test_non_symbolic_input_is_refused():
    with pytest.raises(TypeError, match=r"inputs must be symbolic tensors .* got ndarray"):
        Model(np.ones((2, 3)), Dense(2)(Input((3,))))
    x = Input((3,))
    with pytest.raises(TypeError, match="outputs must be symbolic tensors"):
        Model(x, Dense(2))
    h = Dense(2, name="hidden")(x)
    with pytest.raises(TypeError, match="inputs must come from Input.*'hidden'"):
        Model(h, Dense(1)(h))


def test_outputs_must_depend_on_the_inputs():
    x, other = Input((3,), name="x"), Input((3,), name="other")
    with pytest.raises(ValueError, match=r"depend on input 'other', which is not among the "
                                         r"model's inputs \('x'\)"):
        Model(x, Dense(2)(other))
    with pytest.raises(ValueError, match=r"input\(s\) \['other'\] are not used"):
        Model([x, other], Dense(2)(x))


def test_duplicated_layer_names_are_refused():
    x = Input((3,), name="x")
    y = Dense(2, name="twin")(Dense(3, name="twin")(x))
    with pytest.raises(ValueError, match='the name "twin" is used 2 times'):
        Model(x, y)


def test_merge_shape_errors_name_the_layer():
    a, b = Input((4,)), Input((5,))
    with pytest.raises(ValueError, match=r"Add layer 'plus': inputs of shapes \(None, 4\), "
                                         r"\(None, 5\) are incompatible"):
        Add(name="plus")([a, b])
    with pytest.raises(ValueError, match=r"Concatenate layer 'cat': .*\(None, 4, 1\), "
                                         r"\(None, 5, 1\) are incompatible"):
        Concatenate(name="cat")([Input((4, 1)), Input((5, 1))])
    with pytest.raises(ValueError, match=r"layer 'join' \(PairSum\) cannot take inputs of shapes "
                                         r"\(None, 4\), \(None, 5\): inputs must have equal"):
        PairSum(name="join")([a, b])
    with pytest.raises(TypeError, match="'join2' .*takes a list of inputs"):
        PairSum(name="join2")(a)
    with pytest.raises(TypeError, match="'fc' .*takes one input, got a list of 2"):
        Dense(2, name="fc")([a, b])
    with pytest.raises(TypeError, match="mix of symbolic and other inputs"):
        PairSum()([a, np.ones((1, 4))])
    x = Input((6, 6, 1))
    with pytest.raises(ValueError, match="'too_big'"):
        Conv2D(1, 7, name="too_big")(x)


def test_wrong_data_for_several_inputs(backend):
    model = two_branch_model()
    with pytest.raises(ValueError, match=r"the model has 2 inputs \(a, b\): pass x as a list of "
                                         r"2 arrays or a dict by name, got ndarray"):
        model.predict(np.ones((2, 8)), verbose=0)
    with pytest.raises(ValueError, match=r"x\[1\] has shape \(2, 7\), but the model's input "
                                         r"\(layer 'b'\) expects \(None, 8\)"):
        model.predict([np.ones((2, 8)), np.ones((2, 7))], verbose=0)
    with pytest.raises(ValueError, match=r"keys \['a', 'c'\].* named \['a', 'b'\]"):
        model.predict({"a": np.ones((2, 8)), "c": np.ones((2, 8))}, verbose=0)
    with pytest.raises(ValueError, match="different numbers of samples"):
        model.predict([np.ones((2, 8)), np.ones((3, 8))], verbose=0)


# -- summary -----------------------------------------------------------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


def _keras_summary(model, line_length):
    lines = []
    model.summary(line_length=line_length, print_fn=lambda text, **kw: lines.append(text))
    return "\n".join(lines).rstrip("\n").split("\n")


def _ours(model, line_length):
    lines = []
    model.summary(line_length=line_length, print_fn=lines.append)
    return "\n".join(lines).split("\n")


@pytest.mark.parametrize("line_length", [108, 90, 70])
def test_summary_matches_keras_for_a_graph(monkeypatch, line_length):
    monkeypatch.setenv("COLUMNS", "200")
    keras = _keras()
    L = keras.layers
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    x = L.Dense(4, name="d1")(a)
    s = L.Add(name="add")([x, L.Dense(4, name="d2")(b)])
    reference = keras.Model([a, b], [L.Dense(2, name="out")(s), L.Dense(3, name="out2")(x)],
                            name="two_branch")
    want = _keras_summary(reference, line_length)
    assert "Connected to" in want[2]
    assert _ours(two_branch_model(), line_length) == want


def test_summary_of_a_chain_graph_matches_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    keras = _keras()
    inp = keras.Input((6, 6, 2), name="image")
    out = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flat")(
        keras.layers.Conv2D(4, 3, name="conv")(inp)))
    want = _keras_summary(keras.Model(inp, out, name="chain"), None)
    x = Input((6, 6, 2), name="image")
    y = Dense(3, name="head")(Flatten(name="flat")(Conv2D(4, 3, name="conv")(x)))
    got = _ours(Model(x, y, name="chain"), None)
    assert "Connected to" not in want[2]
    assert got == want


def test_summary_of_a_shared_layer_matches_keras(monkeypatch):
    """A layer called three times: its row lists every call's input (node indices count)."""
    monkeypatch.setenv("COLUMNS", "200")
    keras = _keras()
    x = keras.Input((4,), name="x")
    shared = keras.layers.Dense(4, name="shared")
    out = keras.layers.Add(name="sum")([shared(x), shared(shared(x))])
    want = _keras_summary(keras.Model(x, out, name="shared_model"), 150)
    x = Input((4,), name="x")
    shared = Dense(4, name="shared")
    model = Model(x, Add(name="sum")([shared(x), shared(shared(x))]), name="shared_model")
    got = _ours(model, 150)
    assert any("x[0][0], x[0][0], shared[1][0]" in line for line in got)
    assert got == want


# -- training ----------------------------------------------------------------------------------

def _two_branch_data(rng, n=16):
    a = rng.standard_normal((n, 8)).astype("float32")
    b = rng.standard_normal((n, 8)).astype("float32")
    y1 = rng.standard_normal((n, 2)).astype("float32")
    y2 = rng.standard_normal((n, 3)).astype("float32")
    return a, b, y1, y2


def test_fit_several_outputs_sums_the_losses(backend, rng):
    """One SGD step on the summed loss moves the weights by -lr * d(sum of losses)/dw, with the
    gradient of each mean squared error taken from the float64 oracle."""
    model = two_branch_model()
    model.compile(optimizer="sgd", loss=["mse", "mse"], loss_weights=[1.0, 0.5])
    a, b, y1, y2 = _two_branch_data(rng, 8)
    before = {name: [w.astype(np.float64) for w in model.get_layer(name).get_weights()]
              for name in ("d1", "d2", "out")}
    p1, p2 = oracle_two_branch(model, a, b)
    want_losses = [((p1 - y1) ** 2).mean(), ((p2 - y2) ** 2).mean()]
    logs = model.train_on_batch([a, b], [y1, y2])
    np.testing.assert_allclose(logs, [want_losses[0] + 0.5 * want_losses[1], *want_losses],
                               rtol=1e-5)
    assert model.metrics_names == ["loss", "out_loss", "out2_loss"]
    # Only the first loss reaches the 'out' kernel: d/dW = (d1 + d2)^T 2 (p1 - y1) / size.
    d1 = a @ before["d1"][0] + before["d1"][1]
    d2 = b @ before["d2"][0] + before["d2"][1]
    grad_kernel = (d1 + d2).T @ (2 * (p1 - y1) / p1.size)
    new_kernel = model.get_layer("out").get_weights()[0]
    np.testing.assert_allclose(new_kernel, before["out"][0] - 0.01 * grad_kernel, rtol=1e-4,
                               atol=1e-6)


def test_fit_several_inputs_and_outputs_learns(backend, rng):
    model = two_branch_model()
    model.compile(optimizer="adam", loss="mse", metrics=[["mae"], []])
    # an emulated device's kernels are slow: 8 steps there instead of 45
    a, b, y1, y2 = _two_branch_data(rng, 32 if EMULATED else 64)
    before = model.evaluate([a, b], [y1, y2], verbose=0, return_dict=True)
    history = model.fit({"a": a, "b": b}, {"out": y1, "out2": y2}, epochs=4 if EMULATED else 15,
                        batch_size=16, verbose=0, validation_split=0.25)
    assert set(history.history) == {"loss", "out_loss", "out2_loss", "out_mae",
                                    "val_loss", "val_out_loss", "val_out2_loss",
                                    "val_out_mae"}
    after = model.evaluate([a, b], [y1, y2], verbose=0, return_dict=True)
    assert after["loss"] < before["loss"]
    np.testing.assert_allclose(after["loss"], after["out_loss"] + after["out2_loss"], rtol=1e-5)
    values = model.evaluate([a, b], [y1, y2], verbose=0)
    assert len(values) == len(model.metrics_names) == 4
    np.testing.assert_allclose(values, [after[k] for k in model.metrics_names], rtol=1e-6)


def test_compile_errors_for_several_outputs():
    model = two_branch_model()
    with pytest.raises(ValueError, match="2 outputs .*loss lists 3 entries"):
        model.compile(loss=["mse", "mse", "mse"])
    with pytest.raises(ValueError, match=r"unknown output\(s\) \['nope'\]"):
        model.compile(loss={"out": "mse", "nope": "mse"})
    with pytest.raises(ValueError, match="no loss for output 'out2'"):
        model.compile(loss={"out": "mse"})
    with pytest.raises(ValueError, match="metrics must have one entry per output"):
        model.compile(loss="mse", metrics=["mae"])
    with pytest.raises(ValueError, match=r"the model has 2 outputs \(out, out2\): pass y"):
        model.compile(loss="mse")
        model.fit([np.ones((4, 8))] * 2, np.ones((4, 2)), verbose=0)


# -- saving ------------------------------------------------------------------------------------

def test_config_round_trip_rebuilds_the_graph():
    model = two_branch_model()
    config = model.get_config()
    assert config["input_layers"] == [["a", 0, 0], ["b", 0, 0]]
    assert config["output_layers"] == [["out", 0, 0], ["out2", 0, 0]]
    add = next(entry for entry in config["layers"] if entry["name"] == "add")
    assert [t["config"]["keras_history"] for t in add["inbound_nodes"][0]["args"][0]] == [
        ["d1", 0, 0], ["d2", 0, 0]]
    clone = Functional.from_config(config)
    assert clone.get_config() == config
    assert [la.name for la in clone.layers] == [la.name for la in model.layers]


def test_save_and_load_several_inputs_and_outputs(backend, rng, tmp_path):
    from fastconv.saving import load_model

    model = two_branch_model()
    model.compile(optimizer="adam", loss={"out": "mse", "out2": "mse"}, loss_weights=[1.0, 2.0],
                  metrics={"out2": "mae"})
    a, b, y1, y2 = _two_branch_data(rng, 16)
    model.fit([a, b], [y1, y2], epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "graph.fcm")
    loaded = load_model(tmp_path / "graph.fcm")
    assert type(loaded) is Functional and loaded.name == "two_branch"
    for got, want in zip(loaded.predict([a, b], verbose=0), model.predict([a, b], verbose=0)):
        np.testing.assert_array_equal(got, want)
    assert loaded.metrics_names == model.metrics_names == [
        "loss", "out_loss", "out2_loss", "out2_mae"]
    np.testing.assert_allclose(loaded.evaluate([a, b], [y1, y2], verbose=0),
                               model.evaluate([a, b], [y1, y2], verbose=0), rtol=1e-6)
    # The optimizer state came back: one more step gives the same weights in both.
    model.train_on_batch([a, b], [y1, y2])
    loaded.train_on_batch([a, b], [y1, y2])
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


# -- nesting -----------------------------------------------------------------------------------

def small_base(name="base"):
    x = Input((6, 6, 2), name=f"{name}_in")
    y = Conv2D(3, 3, activation="relu", name=f"{name}_conv")(x)
    return Model(x, y, name=name)


def test_functional_model_inside_sequential(backend, rng, tmp_path):
    from fastconv.saving import load_model

    base = small_base()
    model = Sequential([base, Flatten(name="flat"), Dense(4, name="head")])
    assert model.input_shape == (None, 6, 6, 2) and model.output_shape == (None, 4)
    assert model.count_params() == base.count_params() + 48 * 4 + 4
    assert len(model.weights) == 4
    data = rng.standard_normal((5, 6, 6, 2)).astype("float32")
    direct = model.get_layer("head")(model.get_layer("flat")(base(data))).numpy()
    np.testing.assert_allclose(model.predict(data, verbose=0), direct, rtol=1e-5, atol=1e-6)
    lines = _ours(model, 88)
    assert "│ base (Functional)" in lines[4] and "(None, 4, 4, 3)" in lines[4]
    model.compile(optimizer="adam", loss="mse")
    model.fit(data, rng.standard_normal((5, 4)).astype("float32"), epochs=1, verbose=0)
    model.save(tmp_path / "nested.fcm")
    loaded = load_model(tmp_path / "nested.fcm")
    assert type(loaded.layers[0]) is Functional
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))
    assert list(loaded.optimizer.get_state(loaded.weight_paths())["arrays"]) == list(
        model.optimizer.get_state(model.weight_paths())["arrays"])
    assert "base/base_conv/kernel/m" in model.optimizer.get_state(model.weight_paths())["arrays"]


def test_functional_model_called_inside_a_functional_model(backend, rng, tmp_path):
    from fastconv.saving import load_model

    base = small_base()
    x = Input((6, 6, 2), name="image")
    features = base(x)
    head = Dense(2, name="head")(Flatten(name="flat")(features))
    model = Model(x, head, name="outer")
    assert [la.name for la in model.layers] == ["image", "base", "flat", "head"]
    assert features.shape == (None, 4, 4, 3)
    data = rng.standard_normal((3, 6, 6, 2)).astype("float32")
    conv = base.get_layer("base_conv")
    direct = model.get_layer("head")(Flatten()(conv(data))).numpy()
    np.testing.assert_allclose(model.predict(data, verbose=0), direct, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "outer.fcm")
    loaded = load_model(tmp_path / "outer.fcm")
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))
    assert type(loaded.get_layer("base")) is Functional


# -- freezing ----------------------------------------------------------------------------------

def test_trainable_false_freezes_every_layer_beneath(backend):
    base = small_base()
    model = Sequential([base, Flatten(), Dense(4)])
    assert len(model.trainable_weights) == 4
    base.trainable = False
    assert not base.get_layer("base_conv").trainable
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    assert base.trainable_weights == [] and len(base.non_trainable_weights) == 2
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 4
    model.trainable = True  # Keras: setting it on a model sets it on every layer beneath
    assert len(model.trainable_weights) == 4 and base.get_layer("base_conv").trainable
    base.trainable = False
    base.get_layer("base_conv").trainable = True  # a frozen model freezes what is inside
    assert base.trainable_weights == [] and len(model.trainable_weights) == 2


def test_frozen_after_compile_takes_effect_at_the_next_step(backend, rng):
    base = small_base()
    model = Sequential([base, Flatten(), Dense(4, name="head")])
    model.compile(optimizer="sgd", loss="mse")
    data = rng.standard_normal((4, 6, 6, 2)).astype("float32")
    y = rng.standard_normal((4, 4)).astype("float32")
    model.train_on_batch(data, y)
    frozen = base.get_weights()
    head = model.get_layer("head").get_weights()
    base.trainable = False  # no recompile
    model.fit(data, y, epochs=1, verbose=0)
    for got, want in zip(base.get_weights(), frozen):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(model.get_layer("head").get_weights()[0], head[0])


def test_freezing_survives_save_and_load_with_optimizer_state(backend, rng, tmp_path):
    """Train, freeze without recompiling, save, load: the optimizer state of the frozen weights
    is keyed by path, so it loads; the loaded model is frozen the same way."""
    from fastconv.saving import load_model

    base = small_base()
    model = Sequential([base, Flatten(), Dense(4, name="head")])
    model.compile(optimizer="adam", loss="mse")
    data = rng.standard_normal((8, 6, 6, 2)).astype("float32")
    y = rng.standard_normal((8, 4)).astype("float32")
    model.fit(data, y, epochs=1, batch_size=4, verbose=0)
    base.trainable = False
    model.save(tmp_path / "frozen.fcm")
    loaded = load_model(tmp_path / "frozen.fcm")
    assert not loaded.layers[0].trainable
    assert not loaded.layers[0].get_layer("base_conv").trainable
    assert [w.name for w in loaded.trainable_weights] == [w.name for w in model.trainable_weights]
    assert len(loaded.non_trainable_weights) == 2
    state = loaded.optimizer.get_state(loaded.weight_paths())
    assert state["iterations"] == 2 and "base/base_conv/kernel/m" in state["arrays"]
    model.fit(data, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    loaded.fit(data, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for got, want in zip(loaded.layers[0].get_weights(), base.get_weights()):
        np.testing.assert_array_equal(got, want)


def _shared_base_model():
    """One functional model called on two inputs (two nodes of one nested model)."""
    x = Input((6, 6, 2), name="base_in")
    base = Model(x, Conv2D(3, 3, name="base_conv")(x), name="base")
    image, image2 = Input((6, 6, 2), name="image"), Input((6, 6, 2), name="image2")
    added = Add(name="add")([base(image), base(image2)])
    return Model([image, image2], Dense(2, name="head")(Flatten(name="flat")(added)),
                 name="outer"), base


def test_nested_summaries_match_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    keras = _keras()
    L = keras.layers
    x = keras.Input((6, 6, 2), name="base_in")
    base = keras.Model(x, L.Conv2D(3, 3, name="base_conv")(x), name="base")
    i, j = keras.Input((6, 6, 2), name="image"), keras.Input((6, 6, 2), name="image2")
    out = L.Dense(2, name="head")(L.Flatten(name="flat")(L.Add(name="add")([base(i), base(j)])))
    want_graph = _keras_summary(keras.Model([i, j], out, name="outer"), 120)
    want_seq = _keras_summary(keras.Sequential([base, L.Flatten(name="f2"), L.Dense(3, name="d3")],
                                               name="seq"), 88)
    model, ours = _shared_base_model()
    assert _ours(model, 120) == want_graph
    assert any("base[0][0]" in line and "base[1][0]" in line for line in want_graph)
    seq = Sequential([ours, Flatten(name="f2"), Dense(3, name="d3")], name="seq")
    assert _ours(seq, 88) == want_seq


def test_nested_model_called_twice_saves_and_loads(backend, rng, tmp_path):
    from fastconv.saving import load_model

    model, base = _shared_base_model()
    assert model.count_params() == base.count_params() + 48 * 2 + 2
    a, b = (rng.standard_normal((3, 6, 6, 2)).astype("float32") for _ in range(2))
    conv = base.get_layer("base_conv")
    direct = model.get_layer("head")(Flatten()(F.add(conv(a), conv(b)))).numpy()
    np.testing.assert_allclose(model.predict([a, b], verbose=0), direct, rtol=1e-5, atol=1e-6)
    config = model.get_config()
    head = next(e for e in config["layers"] if e["name"] == "add")
    assert [t["config"]["keras_history"] for t in head["inbound_nodes"][0]["args"][0]] == [
        ["base", 0, 0], ["base", 1, 0]]
    model.save(tmp_path / "shared.fcm")
    loaded = load_model(tmp_path / "shared.fcm")
    np.testing.assert_array_equal(loaded.predict([a, b], verbose=0),
                                  model.predict([a, b], verbose=0))


def test_nested_model_with_two_outputs(backend, rng):
    x = Input((4,), name="x")
    inner = Model(x, [Dense(2, name="p")(x), Dense(3, name="q")(x)], name="inner")
    y = Input((4,), name="y")
    p, q = inner(y)
    assert p.shape == (None, 2) and q.shape == (None, 3)
    assert p._keras_history.tensor_index == 0 and q._keras_history.tensor_index == 1
    model = Model(y, Concatenate(name="cat")([p, q]), name="outer2")
    data = rng.standard_normal((5, 4)).astype("float32")
    want = np.concatenate([dense64(inner.get_layer("p"), data),
                           dense64(inner.get_layer("q"), data)], axis=1)
    np.testing.assert_allclose(model.predict(data, verbose=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(data).numpy(), want, rtol=1e-5, atol=1e-6)
    assert _ours(model, 120)[4].startswith("│ y (InputLayer)")
    clone = Functional.from_config(model.get_config())
    assert [la.name for la in clone.layers] == ["y", "inner", "cat"]


def test_deep_graph_maps_without_recursion(backend):
    """A chain deeper than Python's recursion limit still maps, runs and rebuilds."""
    x = Input((2,), name="x")
    y = x
    for _ in range(1200):
        y = Dense(2, use_bias=False)(y)
    model = Model(x, y)
    assert len(model.layers) == 1201
    model.set_weights([np.eye(2, dtype="float32")] * 1200)
    data = np.array([[1.0, -2.0]], dtype="float32")
    np.testing.assert_array_equal(model.predict(data, verbose=0), data)


def test_malformed_configs_give_clear_errors():
    config = two_branch_model().get_config()
    broken = {**config, "output_layers": [["nowhere", 0, 0]]}
    with pytest.raises(ValueError, match=r"output_layers .*'nowhere'.* not in the graph"):
        Functional.from_config(broken)
    bad_ref = {**config, "input_layers": [["a", 0, 5], ["b", 0, 0]]}
    with pytest.raises(ValueError, match="layer 'a' has no output 5"):
        Functional.from_config(bad_ref)
    layers = [dict(entry) for entry in config["layers"]]
    layers[2] = {**layers[2], "inbound_nodes": [{"args": [{"config": {"keras_history": ["ghost",
                                                                                          0, 0]}}],
                                                 "kwargs": {}}]}
    with pytest.raises(ValueError, match=r"the inputs of layer\(s\) \['d1', .* are never produced"):
        Functional.from_config({**config, "layers": layers})


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_summary_after_training_matches_keras(monkeypatch, optimizer):
    """Optimizer variables (slots, iteration counter, learning rate) count in the totals."""
    monkeypatch.setenv("COLUMNS", "200")
    keras = _keras()
    x = keras.Input((4,), name="x")
    ref = keras.Model(x, keras.layers.Dense(3, name="d")(keras.layers.Dense(5, name="h")(x)),
                      name="m")
    ref.get_layer("h").trainable = False
    ref.compile(optimizer=optimizer, loss="mse")
    ref.train_on_batch(np.zeros((2, 4)), np.zeros((2, 3)))
    want = _keras_summary(ref, 88)
    x = Input((4,), name="x")
    model = Model(x, Dense(3, name="d")(Dense(5, name="h")(x)), name="m")
    model.get_layer("h").trainable = False
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(np.zeros((2, 4)), np.zeros((2, 3)))
    assert any("Optimizer params" in line for line in want)
    assert _ours(model, 88) == want
