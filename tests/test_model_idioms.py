"""Keras 3 model idioms: subclassed models with ``call``, custom layers written as the Keras guide
writes them, ``Model.from_config``, ``layer.output`` for feature extractors, ``clone_model`` and
``train_on_batch`` / ``test_on_batch`` with ``return_dict``. Where the results can be compared,
Keras itself (torch backend) on the same weights and data is the reference."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastconv
from fastconv import optimizers
from fastconv.layers import Add, Conv2D, Dense, Flatten, Input, Layer, MaxPooling2D
from fastconv.models import Functional, Model, Sequential, clone_model

#: Keras's torch backend turns tensors into arrays through torch's ``__array__``, which NumPy 2
#: warns about
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(autouse=True)
def _numpy_backend():
    """The backend is not the point here: every test runs on the NumPy backend."""
    with fastconv.use_backend("numpy"):
        yield


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.clear_session()
    return keras


def _data(rng, n=6, features=5, classes=3):
    x = rng.standard_normal((n, features)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]
    return x, y


# -- custom layers as the Keras guide writes them ------------------------------------------------

class Linear(Layer):
    """The Keras guide's ``Linear``: unnamed weights from ``add_weight``, made in ``build``, and a
    ``call`` without ``training``."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return inputs @ self.w + self.b


def _keras_linear(keras):
    class KerasLinear(keras.layers.Layer):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="random_normal", trainable=True)
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

        def call(self, inputs):
            return keras.ops.matmul(inputs, self.w) + self.b

    return KerasLinear


def test_custom_layer_from_the_keras_guide_matches_keras(rng):
    keras = _keras()
    x, _ = _data(rng)
    layer = Linear(4)
    model = Sequential([Input((5,)), layer, Dense(2, name="head")])
    assert [w.name for w in layer.weights] == ["linear/variable", "linear/variable_1"]
    assert layer.weights[0].shape == (5, 4) and layer.output.shape == (None, 4)
    assert model.output_shape == (None, 2)  # the layer's output shape comes from its call
    reference = keras.Sequential([keras.Input((5,)), _keras_linear(keras)(4),
                                  keras.layers.Dense(2)])
    reference.set_weights(model.get_weights())
    want = reference.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    graph = model(x)  # the training path calls it too, without training=
    np.testing.assert_allclose(graph.numpy(), want, rtol=1e-5, atol=1e-6)
    # in a functional model, trained: the unnamed weights are paths of their own
    inp = Input((5,))
    functional = Model(inp, Linear(3)(Linear(4)(inp)))
    functional.compile(optimizer="sgd", loss="mse")
    before = functional.get_weights()
    functional.fit(x, rng.standard_normal((6, 3)).astype("float32"), epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, functional.get_weights()))
    assert len(functional.weight_paths()) == 4


def test_custom_layer_output_shape_with_unknown_sizes(rng):
    """Without compute_output_shape, a custom layer's output shape comes from its call; sizes
    unknown in the input stay unknown where the output follows them."""

    class Twice(Layer):
        def call(self, inputs):
            return inputs * 2.0

    class Pool(Layer):  # a shape-changing custom layer (no compute_output_shape)
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pool = MaxPooling2D(2)

        def call(self, inputs):
            return self.pool(inputs)

    seq = Sequential([Input((None, None, 2)), Twice(), Conv2D(4, 3, name="conv"), Pool(),
                      Dense(3)])
    assert seq.output_shape == (None, None, None, 3)
    assert seq.get_layer("conv").output.shape == (None, None, None, 4)
    assert seq.predict(rng.standard_normal((1, 10, 10, 2)).astype("float32"),
                       verbose=0).shape == (1, 4, 4, 3)
    fixed = Sequential([Input((10, 10, 2)), Pool(), Twice()])
    assert fixed.output_shape == (None, 5, 5, 2)


def test_add_weight_arguments():
    layer = Linear(2)
    layer.ensure_built((None, 3))
    w = layer.add_weight(shape=(2,), initializer="ones", trainable=False, name="scale")
    assert w.name == "linear/scale" and not w.trainable and np.all(w.numpy() == 1)
    assert layer.add_weight(shape=(3,)).name == "linear/variable_2"  # glorot_uniform default
    called = layer.add_weight(shape=(2, 2), initializer=lambda shape, dtype=None: np.eye(2))
    np.testing.assert_array_equal(called.numpy(), np.eye(2))
    assert layer.add_weight(shape=(2,), dtype="float64").dtype == np.float64
    for key, value in [("regularizer", "l2"), ("constraint", "non_neg"),
                       ("aggregation", "mean"), ("overwrite_with_gradient", True)]:
        with pytest.raises(NotImplementedError, match=key):
            layer.add_weight(shape=(2,), **{key: value})
    with pytest.raises(TypeError, match="'bogus'"):
        layer.add_weight(shape=(2,), bogus=1)
    with pytest.raises(TypeError, match="float32 or float64"):
        layer.add_weight(shape=(2,), dtype="int32")
    with pytest.raises(ValueError, match="unknown initializer"):
        layer.add_weight(shape=(2,), initializer="no_such_thing")


# -- subclassed models ---------------------------------------------------------------------------

class TwoBlocks(Model):
    """A subclassed model: a Dense attribute, then layers in a list."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = Dense(4, activation="relu")
        self.blocks = [Linear(4), Dense(3, activation="softmax")]

    def call(self, x, training=False):
        x = self.hidden(x)
        for block in self.blocks:
            x = block(x)
        return x


def _keras_two_blocks(keras):
    KerasLinear = _keras_linear(keras)  # noqa: N806

    class KerasTwoBlocks(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(4, activation="relu")
            self.blocks = [KerasLinear(4), keras.layers.Dense(3, activation="softmax")]

        def call(self, x, training=False):
            x = self.hidden(x)
            for block in self.blocks:
                x = block(x)
            return x

    return KerasTwoBlocks()


def test_subclassed_model_trains_as_keras_does(rng):
    keras = _keras()
    x, y = _data(rng)
    model = TwoBlocks()
    assert model.name == "two_blocks" and not model.built
    assert [type(la).__name__ for la in model.layers] == ["Dense", "Linear", "Dense"]
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    reference = _keras_two_blocks(keras)
    reference.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                      loss="categorical_crossentropy", metrics=["accuracy"])
    reference(x[:1])  # Keras's build() would leave its layers unbuilt; a call builds them
    model.build((None, 5))
    assert model.built and model.output_shape == (None, 3)
    assert [w.shape for w in model.weights] == [tuple(w.shape) for w in reference.weights]
    reference.set_weights(model.get_weights())
    for _ in range(2):
        got = model.train_on_batch(x, y, return_dict=True)
        want = reference.train_on_batch(x, y, return_dict=True)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    history = model.fit(x, y, epochs=3, batch_size=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1


def test_subclassed_model_summary_weights_and_saving(rng, tmp_path):
    class Scaled(Model):  # its own weight, its own build, a call without training
        def __init__(self):
            super().__init__(name="scaled")
            self.dense = Dense(2)

        def build(self, input_shape):
            super().build(input_shape)
            self.scale = self.add_weight(shape=(2,), initializer="ones")

        def call(self, x):
            return self.dense(x) * self.scale

    model = Scaled()
    with pytest.raises(ValueError, match="not yet been built"):
        model.summary()
    lines = []
    model.build((None, 3))
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "scaled"' in text and "dense (Dense)" in text and "(None, 2)" in text
    assert [w.name for w in model.weights] == ["scaled/variable", "dense/kernel", "dense/bias"]
    assert model.count_params() == 2 + 8
    x = rng.standard_normal((4, 3)).astype("float32")
    kernel, bias = model.dense.get_weights()
    model.set_weights([np.array([2.0, -1.0]), kernel, bias])
    np.testing.assert_allclose(model.predict(x, verbose=0), (x @ kernel + bias) * [2.0, -1.0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError, match="subclassed model .*save_weights"):
        model.save(tmp_path / "m.keras")
    with pytest.raises(NotImplementedError, match="subclassed model"):
        model.save(tmp_path / "m.fcm")
    with pytest.raises(NotImplementedError, match="weights of its own"):
        model.save_weights(tmp_path / "m.weights.h5")
    model.save_weights(tmp_path / "m.weights")
    again = Scaled()
    again.build((None, 3))
    again.load_weights(tmp_path / "m.weights")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    # nested in a Sequential model, it predicts through its call
    outer = Sequential([Input((3,)), model, Dense(1)])
    assert outer.output_shape == (None, 1)
    assert outer.predict(x, verbose=0).shape == (4, 1)


def test_subclassed_model_arguments():
    class Plain(Model):
        def call(self, x):
            return x

    assert Plain(name="p", dtype="float64").dtype == "float64"
    with pytest.raises(TypeError, match="autocast"):
        Plain(autocast=False)
    with pytest.raises(NotImplementedError, match="inputs and outputs"):
        Plain(Input((2,)), Input((2,)))

    class NoCall(Model):
        pass

    with pytest.raises(NotImplementedError, match="must define call"):
        NoCall().predict(np.zeros((1, 2), "float32"), verbose=0)


# -- from_config ---------------------------------------------------------------------------------

def _block_model():
    x = Input((8, 8, 2), name="image")
    h = Conv2D(3, 3, padding="same", activation="relu", name="block1_conv")(x)
    h = MaxPooling2D(2, name="block1_pool")(h)
    h = Conv2D(4, 3, padding="same", activation="relu", name="block2_conv")(h)
    h = MaxPooling2D(2, name="block2_pool")(h)
    out = Dense(3, activation="softmax", name="predictions")(Flatten(name="flatten")(h))
    return Model(x, out, name="blocks")


def test_model_from_config_of_functional_and_sequential_models(rng):
    model = _block_model()
    rebuilt = Model.from_config(model.get_config())
    assert type(rebuilt) is Functional and rebuilt.name == "blocks"
    assert [la.name for la in rebuilt.layers] == [la.name for la in model.layers]
    rebuilt.set_weights(model.get_weights())
    x = rng.standard_normal((2, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)
    seq = Sequential([Input((5,), name="features"), Dense(4, name="h"), Dense(2, name="o")],
                     name="seq")
    again = Sequential.from_config(seq.get_config())
    assert type(again) is Sequential and again.name == "seq"
    assert [la.name for la in again.layers] == ["h", "o"] and again.input_shape == (None, 5)
    with pytest.raises(ValueError, match="Sequential.from_config"):
        Model.from_config(seq.get_config())
    with pytest.raises(NotImplementedError, match="custom_objects"):
        Model.from_config(model.get_config(), custom_objects={"Linear": Linear})


# -- layer.output and feature extractors ---------------------------------------------------------

def test_feature_extractor_from_layer_output_matches_keras(rng):
    keras = _keras()
    model = _block_model()
    features = Model(model.input, model.get_layer("block2_pool").output)
    assert [la.name for la in features.layers] == [la.name for la in model.layers][:5]
    assert features.output_shape == (None, 2, 2, 4)
    L = keras.layers
    x = keras.Input((8, 8, 2), name="image")
    h = L.MaxPooling2D(2, name="block1_pool")(
        L.Conv2D(3, 3, padding="same", activation="relu", name="block1_conv")(x))
    h = L.MaxPooling2D(2, name="block2_pool")(
        L.Conv2D(4, 3, padding="same", activation="relu", name="block2_conv")(h))
    out = L.Dense(3, activation="softmax", name="predictions")(L.Flatten(name="flatten")(h))
    reference = keras.Model(x, out)
    reference.set_weights(model.get_weights())
    keras_features = keras.Model(reference.input, reference.get_layer("block2_pool").output)
    assert [la.name for la in keras_features.layers] == [la.name for la in features.layers]
    data = rng.standard_normal((3, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(features.predict(data, verbose=0),
                               keras_features.predict(data, verbose=0), rtol=1e-5, atol=1e-5)


def test_layer_input_and_output_follow_keras_3(rng):
    keras = _keras()
    x = Input((4,), name="x")
    shared = Dense(4, name="shared")
    first = shared(x)
    second = shared(first)
    kx = keras.Input((4,), name="x")
    kshared = keras.layers.Dense(4, name="shared")
    kfirst = kshared(kx)
    kshared(kfirst)
    # Keras 3: a layer called twice answers with its first call
    assert (kshared.output is kfirst) and (kshared.input is kx)
    assert shared.output is first and shared.input is x
    assert second is not first
    lonely, klonely = Dense(2, name="lonely"), keras.layers.Dense(2, name="lonely")
    with pytest.raises(AttributeError) as want:  # torch's Module would hide Keras's message
        keras.layers.Layer.output.fget(klonely)
    with pytest.raises(AttributeError) as got:
        lonely.output  # noqa: B018
    assert str(got.value) == str(want.value)
    merged = Add(name="add")([first, second])
    assert merged.shape == (None, 4)
    assert merged._keras_history.layer.input == [first, second]


@pytest.mark.parametrize("declared", ["input", "input_shape"])
def test_sequential_input_output_and_intermediate_layers(rng, declared):
    first = [Input((5,))] if declared == "input" else []
    hidden = Dense(4, name="h", **({} if first else {"input_shape": (5,)}))
    seq = Sequential([*first, hidden, Dense(2, name="o")])
    assert seq.input.shape == (None, 5) and seq.output.shape == (None, 2)
    assert seq.inputs == [seq.input] and seq.outputs == [seq.output]
    assert hidden.output.shape == (None, 4)
    extractor = Model(seq.input, seq.get_layer("h").output)
    data = rng.standard_normal((3, 5)).astype("float32")
    kernel, bias = hidden.get_weights()
    np.testing.assert_allclose(extractor.predict(data, verbose=0), data @ kernel + bias,
                               rtol=1e-5, atol=1e-6)
    full = Model(seq.input, seq.output)
    np.testing.assert_allclose(full.predict(data, verbose=0), seq.predict(data, verbose=0),
                               rtol=1e-6, atol=1e-7)
    seq.pop()
    assert seq.output is hidden.output
    seq.add(Dense(6, name="o2"))
    assert seq.output.shape == (None, 6)


def test_sequential_without_input_shape_has_no_input_until_built(rng):
    seq = Sequential([Dense(3, name="h")])
    with pytest.raises(AttributeError, match="has no defined input yet"):
        seq.input  # noqa: B018
    seq.predict(rng.standard_normal((2, 7)).astype("float32"), verbose=0)
    assert seq.input.shape == (None, 7) and seq.output.shape == (None, 3)


# -- clone_model ---------------------------------------------------------------------------------

def test_clone_model_matches_keras_and_has_fresh_weights(rng):
    keras = _keras()
    model = _block_model()
    clone = clone_model(model)
    assert type(clone) is Functional and clone.name == model.name
    assert [la.name for la in clone.layers] == [la.name for la in model.layers]
    assert all(a is not b for a, b in zip(clone.layers, model.layers))
    assert not any(np.array_equal(a, b) for a, b in zip(clone.get_weights(), model.get_weights())
                   if a.ndim > 1)
    x = rng.standard_normal((2, 8, 8, 2)).astype("float32")
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)
    kx = keras.Input((4,), name="x")
    kshared = keras.layers.Dense(4, name="shared")
    kmodel = keras.Model(kx, keras.layers.Add(name="add")([kshared(kx), kshared(kshared(kx))]),
                         name="shared_model")
    kclone = keras.models.clone_model(kmodel)
    x_in = Input((4,), name="x")
    shared = Dense(4, name="shared")
    shared_model = Model(x_in, Add(name="add")([shared(x_in), shared(shared(x_in))]),
                         name="shared_model")
    shared_clone = clone_model(shared_model)
    assert [la.name for la in shared_clone.layers] == [la.name for la in kclone.layers]
    assert len(shared_clone.weights) == len(kclone.weights) == 2  # the shared layer once
    assert shared_clone.name == kclone.name


def test_clone_model_of_sequential_models(rng):
    seq = Sequential([Input((5,), name="features"), Dense(4, name="h"), Dense(2, name="o")],
                     name="seq")
    seq.compile(optimizer="adam", loss="mse", metrics=["mae"])
    clone = clone_model(seq)
    assert type(clone) is Sequential and clone.name == "seq"
    assert [la.name for la in clone.layers] == ["h", "o"] and clone.input_shape == (None, 5)
    assert clone.layers[0] is not seq.layers[0] and clone.compiled  # compiled as Keras does
    assert clone.metrics_names == seq.metrics_names
    data = rng.standard_normal((3, 5)).astype("float32")
    clone.set_weights(seq.get_weights())
    np.testing.assert_allclose(clone.predict(data, verbose=0), seq.predict(data, verbose=0),
                               rtol=1e-6)
    renamed = clone_model(seq, clone_function=lambda la: Dense(la.units, name=f"{la.name}_new"))
    assert [la.name for la in renamed.layers] == ["h_new", "o_new"]
    nested = Sequential([Input((5,)), seq, Dense(1, name="top")])
    deep = clone_model(nested, recursive=True)
    assert deep.layers[0] is not seq and [la.name for la in deep.layers[0].layers] == ["h", "o"]
    with pytest.raises(NotImplementedError, match="call_function"):
        clone_model(seq, call_function=lambda layer, *args, **kwargs: layer(*args))
    with pytest.raises(ValueError, match="subclassed"):
        clone_model(TwoBlocks())


# -- train_on_batch / test_on_batch --------------------------------------------------------------

def test_on_batch_returns_match_keras(rng):
    keras = _keras()
    x, y = _data(rng)
    model = Sequential([Input((5,)), Dense(4, activation="relu"), Dense(3, activation="softmax")])
    reference = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
    reference.set_weights(model.get_weights())
    for metrics in ([], ["accuracy"]):
        model.compile(optimizer=optimizers.SGD(learning_rate=0.1),
                      loss="categorical_crossentropy", metrics=metrics)
        reference.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                          loss="categorical_crossentropy", metrics=metrics)
        for call in ("train_on_batch", "test_on_batch"):
            for return_dict in (False, True):
                for part in (slice(0, 6), slice(0, 2)):  # metrics restart at every batch
                    got = getattr(model, call)(x[part], y[part], return_dict=return_dict)
                    want = getattr(reference, call)(x[part], y[part], return_dict=return_dict)
                    if return_dict:
                        assert list(got) == list(want)
                        got, want = list(got.values()), list(want.values())
                    assert np.shape(got) == np.shape(want)
                    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError, match="sample_weight"):
        model.train_on_batch(x, y, sample_weight=np.ones(6))
    with pytest.raises(NotImplementedError, match="class_weight"):
        model.train_on_batch(x, y, class_weight={0: 1.0})


def test_on_batch_with_several_outputs_matches_keras(rng):
    keras = _keras()
    x, y = _data(rng)
    y2 = rng.standard_normal((6, 2)).astype("float32")
    inp = Input((5,), name="x")
    h = Dense(4, name="h")(inp)
    model = Model(inp, [Dense(3, activation="softmax", name="o1")(h), Dense(2, name="o2")(h)])
    kin = keras.Input((5,), name="x")
    kh = keras.layers.Dense(4, name="h")(kin)
    reference = keras.Model(kin, [keras.layers.Dense(3, activation="softmax", name="o1")(kh),
                                  keras.layers.Dense(2, name="o2")(kh)])
    reference.set_weights(model.get_weights())
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1),
                  loss=["categorical_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]])
    reference.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                      loss=["categorical_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]])
    for return_dict in (True, False):
        got = model.train_on_batch(x, [y, y2], return_dict=return_dict)
        want = reference.train_on_batch(x, [y, y2], return_dict=return_dict)
        if return_dict:
            assert list(got) == list(want)
            got, want = list(got.values()), list(want.values())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    got = model.test_on_batch(x, [y, y2], return_dict=True)
    want = reference.test_on_batch(x, [y, y2], return_dict=True)
    assert list(got) == list(want)
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-5, atol=1e-6)
