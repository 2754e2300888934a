"""Layers: output shapes, parameter counts, Keras names and summary, freezing, configs, and the
errors that bad arguments and bad inputs raise (each naming the layer or argument at fault)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv.layers import (
    Activation,
    AveragePooling1D,
    AveragePooling2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPooling1D,
    MaxPooling2D,
    Reshape,
)
from fastconv.models import Sequential
from fastconv.utils import clear_session, set_random_seed

from .devices import EMULATED


def build(layer, input_shape):
    """Output shape of ``layer`` on a batch of 2, checked against its shape inference."""
    x = np.random.default_rng(0).standard_normal((2, *input_shape)).astype("float32")
    y = layer(x)
    inferred = layer.compute_output_shape((None, *input_shape))
    assert inferred == (None, *y.shape[1:])
    assert layer.output_shape == inferred
    return y.shape


# -- shapes and parameter counts ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, input_shape, out_shape", [
    ({"filters": 4, "kernel_size": 3}, (8, 7, 2), (2, 6, 5, 4)),
    ({"filters": 4, "kernel_size": 3, "padding": "same"}, (8, 7, 2), (2, 8, 7, 4)),
    ({"filters": 3, "kernel_size": (3, 2), "strides": 2}, (9, 8, 2), (2, 4, 4, 3)),
    ({"filters": 3, "kernel_size": 3, "strides": (2, 3), "padding": "same"}, (9, 8, 2),
     (2, 5, 3, 3)),
    ({"filters": 2, "kernel_size": 3, "dilation_rate": 2}, (9, 8, 1), (2, 5, 4, 2)),
    ({"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}, (9, 8, 1),
     (2, 9, 8, 2)),
    ({"filters": 5, "kernel_size": 1}, (4, 4, 3), (2, 4, 4, 5)),
    ({"filters": 5, "kernel_size": (4, 4)}, (4, 4, 3), (2, 1, 1, 5)),
])
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv2d_shapes_and_params(backend, kwargs, input_shape, out_shape, use_bias):
    layer = Conv2D(**kwargs, use_bias=use_bias)
    assert build(layer, input_shape) == out_shape
    kh, kw = layer.kernel_size
    kernel = kh * kw * input_shape[-1] * kwargs["filters"]
    assert layer.count_params() == kernel + (kwargs["filters"] if use_bias else 0)
    assert [w.shape for w in layer.weights] == [(kh, kw, input_shape[-1], kwargs["filters"])] + (
        [(kwargs["filters"],)] if use_bias else [])
    assert layer.kernel.name == f"{layer.name}/kernel"


def test_conv2d_defaults_are_keras(backend):
    set_random_seed(3)
    layer = Conv2D(64, 3)
    # an emulated device convolves a 3 x 3 input (the 10 x 10 one takes minutes in the CUDA
    # simulator); the initial weights depend on the channels only
    build(layer, (3, 3, 32) if EMULATED else (10, 10, 32))
    limit = np.sqrt(6 / (9 * 32 + 9 * 64))  # Glorot uniform over the receptive field
    kernel, bias = layer.get_weights()
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert abs(kernel.mean()) < 0.05 * limit
    np.testing.assert_array_equal(bias, 0)
    assert kernel.dtype == np.float32
    assert (layer.strides, layer.padding, layer.dilation_rate) == ((1, 1), "valid", (1, 1))


@pytest.mark.parametrize("units, input_shape, out_shape, params", [
    (3, (5,), (2, 3), 18),
    (4, (3, 5), (2, 3, 4), 24),  # over the last axis
    (1, (1,), (2, 1), 2),
])
def test_dense_shapes_and_params(backend, units, input_shape, out_shape, params):
    layer = Dense(units)
    assert build(layer, input_shape) == out_shape
    assert layer.count_params() == params
    assert Dense(units, use_bias=False).count_params() == 0  # unbuilt: no weights yet


@pytest.mark.parametrize("layer, input_shape, out_shape", [
    (lambda: MaxPooling2D(), (6, 7, 3), (2, 3, 3, 3)),
    (lambda: MaxPooling2D((3, 3), strides=1, padding="same"), (6, 7, 3), (2, 6, 7, 3)),
    (lambda: MaxPooling2D((2, 3), strides=(1, 2)), (6, 7, 3), (2, 5, 3, 3)),
    (lambda: AveragePooling2D(), (5, 5, 2), (2, 2, 2, 2)),
    (lambda: AveragePooling2D(3, strides=2, padding="same"), (5, 6, 2), (2, 3, 3, 2)),
    (lambda: AveragePooling2D((5, 6)), (5, 6, 2), (2, 1, 1, 2)),
    (lambda: MaxPooling1D(), (7, 3), (2, 3, 3)),
    (lambda: MaxPooling1D(3, strides=2, padding="same"), (7, 3), (2, 4, 3)),
    (lambda: AveragePooling1D(2, strides=1), (5, 2), (2, 4, 2)),
    (lambda: GlobalAveragePooling2D(), (4, 5, 3), (2, 3)),
    (lambda: GlobalAveragePooling2D(keepdims=True), (4, 5, 3), (2, 1, 1, 3)),
    (lambda: Flatten(), (4, 5, 3), (2, 60)),
    (lambda: Flatten(), (7,), (2, 7)),
    (lambda: Reshape((3, 4)), (12,), (2, 3, 4)),
    (lambda: Reshape((-1, 2)), (3, 4), (2, 6, 2)),
    (lambda: Dropout(0.5), (3, 4), (2, 3, 4)),
    (lambda: Activation("softmax"), (5,), (2, 5)),
    (lambda: Activation("tanh"), (2, 3), (2, 2, 3)),
])
def test_parameter_free_layers(backend, layer, input_shape, out_shape):
    layer = layer()
    assert build(layer, input_shape) == out_shape
    assert layer.count_params() == 0 and layer.weights == []


def test_layer_values(backend, rng):
    x = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(GlobalAveragePooling2D()(x).numpy(), x.mean(axis=(1, 2)),
                               rtol=1e-6)
    np.testing.assert_array_equal(Flatten()(x).numpy(), x.reshape(2, -1))
    np.testing.assert_array_equal(Reshape((16, 3))(x).numpy(), x.reshape(2, 16, 3))
    np.testing.assert_allclose(Activation("sigmoid")(x).numpy(), 1 / (1 + np.exp(-x)),
                               rtol=1e-6)
    dense = Dense(2, activation="relu")
    y = dense(x[:, 0, 0]).numpy()
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(y, np.maximum(x[:, 0, 0] @ kernel + bias, 0), rtol=1e-6)


def test_dropout_training_vs_inference(backend):
    layer = Dropout(0.5)
    x = np.ones((50, 40), dtype="float32")
    np.testing.assert_array_equal(layer(x).numpy(), x)  # inference (the default): identity
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    y = layer(x, training=True).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6
    assert not np.array_equal(y, layer(x, training=True).numpy())  # a fresh mask each call


def test_input_layer(backend):
    inp = Input((28, 28, 1))  # a symbolic tensor, made by an InputLayer
    assert inp.shape == (None, 28, 28, 1)
    assert isinstance(inp._keras_history.layer, L.InputLayer)
    assert inp._keras_history.layer.batch_input_shape == (None, 28, 28, 1)
    assert inp._keras_history.layer.count_params() == 0
    model = Sequential([inp, Conv2D(2, 3)])
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 26, 26, 2)
    assert model.built
    with pytest.raises(ValueError, match="shape"):
        L.InputLayer()
    with pytest.raises(ValueError, match="Input must come first"):
        model.add(Input((3,)))


def test_keras_aliases():
    assert L.MaxPool2D is MaxPooling2D and L.AvgPool2D is AveragePooling2D
    assert L.MaxPool1D is MaxPooling1D and L.AvgPool1D is AveragePooling1D
    assert L.GlobalAvgPool2D is GlobalAveragePooling2D


# -- the lesson network ------------------------------------------------------------------------


def lesson_model(side=28):
    model = Sequential()
    model.add(Conv2D(32, (3, 3), activation="relu", input_shape=(side, side, 1)))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(Flatten())
    model.add(Dense(64, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    return model


def test_lesson_network_summary(backend):
    clear_session()
    model = lesson_model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    expected = [
        ("conv2d", "Conv2D", "(None, 26, 26, 32)", "320"),
        ("max_pooling2d", "MaxPooling2D", "(None, 13, 13, 32)", "0"),
        ("conv2d_1", "Conv2D", "(None, 11, 11, 64)", "18,496"),
        ("max_pooling2d_1", "MaxPooling2D", "(None, 5, 5, 64)", "0"),
        ("conv2d_2", "Conv2D", "(None, 3, 3, 64)", "36,928"),
        ("flatten", "Flatten", "(None, 576)", "0"),
        ("dense", "Dense", "(None, 64)", "36,928"),
        ("dense_1", "Dense", "(None, 10)", "650"),
    ]
    assert [layer.name for layer in model.layers] == [e[0] for e in expected]
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == len(expected)
    for row, (name, cls, shape, params) in zip(rows, expected):
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells == [f"{name} ({cls})", shape, params]
    assert model.count_params() == 93_322
    assert "Total params: 93,322 (364.54 KB)" in text
    assert "Trainable params: 93,322" in text
    assert "Non-trainable params: 0 (0.00 B)" in text
    # Names keep counting until the session is cleared.
    assert Conv2D(1, 1).name == "conv2d_3"
    clear_session()
    assert Conv2D(1, 1).name == "conv2d"


def test_summary_after_compile_counts_optimizer_state(backend):
    model, x, count = lesson_model(), np.zeros((2, 28, 28, 1)), "186,646"
    if EMULATED:  # the lesson network's convolutions take minutes in the CUDA simulator
        model = Sequential([Conv2D(2, 3, input_shape=(5, 5, 1)), Flatten(),
                            Dense(10, activation="softmax")])
        x, count = np.zeros((2, 5, 5, 1)), "422"  # 2 x (20 + 190) + 2
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.train_on_batch(x, np.eye(10)[[1, 2]])
    lines = []
    model.summary(print_fn=lines.append)
    # Adam: two moments per weight, plus Keras's iteration counter and learning rate.
    assert f"Optimizer params: {count}" in lines[0]


# -- freezing --------------------------------------------------------------------------------


def test_frozen_layer_does_not_train(backend, rng):
    model = Sequential([Dense(6, activation="relu", input_shape=(4,)), Dense(3),
                        Dense(2, activation="softmax")])
    frozen = model.layers[1]
    frozen.trainable = False
    assert frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 2
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 21 " in lines[0]
    before = model.get_weights()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    n = 16 if EMULATED else 32  # fewer steps in the CUDA simulator
    x = rng.standard_normal((n, 4))
    y = np.eye(2)[rng.integers(0, 2, n)]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = model.get_weights()
    for i, (b, a) in enumerate(zip(before, after)):
        if i in (2, 3):
            np.testing.assert_array_equal(a, b)  # the frozen layer's kernel and bias
        else:
            assert not np.array_equal(a, b)
    frozen.trainable = True  # unfreezing makes it train again
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(model.get_weights()[2], before[2])


def test_layer_frozen_at_construction(backend):
    layer = Dense(3, trainable=False)
    build(layer, (4,))
    assert layer.trainable_weights == [] and not layer.kernel.requires_grad


def test_set_weights_copies(backend, rng):
    """Training must never write into the arrays handed to set_weights."""
    model = Sequential([Dense(3, input_shape=(4,))])
    mine = [rng.standard_normal((4, 3)).astype("float32"), np.ones(3, dtype="float32")]
    kept = [a.copy() for a in mine]
    model.set_weights(mine)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 3)), verbose=0)
    for a, b in zip(mine, kept):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.get_weights()[0], kept[0])


# -- configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="relu", use_bias=False,
                   kernel_initializer="he_normal", name="c"),
    lambda: Conv2D(2, 3, dilation_rate=2, dtype="float64", trainable=False),
    lambda: Dense(5, activation="tanh", bias_initializer="ones", input_shape=(3,)),
    lambda: MaxPooling2D((3, 2), strides=1, padding="same"),
    lambda: AveragePooling2D(2),
    lambda: MaxPooling1D(3, strides=2),
    lambda: AveragePooling1D(2, padding="same"),
    lambda: GlobalAveragePooling2D(keepdims=True),
    lambda: Flatten(),
    lambda: Reshape((2, -1)),
    lambda: Dropout(0.25),
    lambda: Activation("softmax"),
    lambda: L.InputLayer((4, 4, 1), batch_size=8, name="inp"),
])
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    # Every setting survives, not only those the config happens to list.
    assert vars(clone) == vars(layer)


def test_sequential_config_round_trip(backend, rng):
    # an emulated device runs the lesson network on one image of 18 x 18, the smallest input it
    # takes (its 28 x 28 convolutions take minutes in the CUDA simulator), with the direct
    # algorithm (the fastest there; the round trip does not depend on the algorithm)
    side, params, n = (18, 60_554, 1) if EMULATED else (28, 93_322, 3)
    model = lesson_model(side)
    clone = Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert [type(a) for a in clone.layers] == [type(b) for b in model.layers]
    assert clone.count_params() == params
    clone.set_weights(model.get_weights())
    x = rng.random((n, side, side, 1)).astype("float32")
    with fastconv.use_conv_algo("direct") if EMULATED else contextlib.nullcontext():
        np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(0, 3, name="c0"), r"Conv2D layer 'c0': filters must be a positive int"),
    (lambda: Conv2D(-2, 3, name="c0"), r"'c0': filters must be a positive int, got -2"),
    (lambda: Conv2D(2, 0, name="c1"), r"'c1': kernel_size must be >= 1"),
    (lambda: Conv2D(2, (3, 3, 3), name="c1"), r"'c1': kernel_size must be an int or a tuple"),
    (lambda: Conv2D(2, 3, strides=0, name="c2"), r"'c2': strides must be >= 1"),
    (lambda: Conv2D(2, 3, dilation_rate=0, name="c3"), r"'c3': dilation_rate must be >= 1"),
    (lambda: Conv2D(2, 3, padding="full", name="c4"), r"'c4': padding must be 'valid' or"),
    (lambda: Conv2D(2, 3, activation="mish", name="c5"), r"'c5': unknown activation 'mish'"),
    (lambda: Conv2D(2, 3, strides=2, dilation_rate=2, name="c6"), r"'c6': strides > 1"),
    (lambda: Conv2D(3, 3, groups=2, name="c7"),
     r"'c7': grouped convolution needs filters divisible by groups"),
    (lambda: Conv2D(2, 3, data_format="channels_first", name="c8"), r"'c8'.*channels_last"),
    (lambda: Conv2D(2, 3, kernel_initializer="nope", name="c9"), r"'c9': unknown initializer"),
    (lambda: Conv2D(2, 3, kernel_regularizer="l2", name="ca"), r"'ca': kernel_regularizer"),
    (lambda: Dense(-1, name="d0"), r"Dense layer 'd0': units must be a positive int, got -1"),
    (lambda: Dense(0), r"units must be a positive int"),
    (lambda: Dense(2.5), r"units must be a positive int"),
    (lambda: Dense(2, activation="celu", name="d1"), r"'d1': unknown activation 'celu'"),
    (lambda: MaxPooling2D(0, name="p0"), r"'p0': pool_size must be >= 1"),
    (lambda: MaxPooling2D(2, strides=0, name="p1"), r"'p1': strides must be >= 1"),
    (lambda: AveragePooling2D(2, padding="causal", name="p2"), r"'p2': padding must be"),
    (lambda: MaxPooling1D(-1, name="p3"), r"'p3': pool_size must be >= 1"),
    (lambda: Dropout(1.0, name="dr"), r"Dropout layer 'dr': rate must be in \[0, 1\)"),
    (lambda: Dropout(-0.1), r"rate must be in \[0, 1\)"),
    (lambda: Reshape((0, 2), name="r"), r"Reshape layer 'r': target_shape must hold positive"),
    (lambda: Reshape((-1, -1)), r"at most one -1"),
    (lambda: Activation("nope", name="a"), r"Activation layer 'a': unknown activation 'nope'"),
    (lambda: Input((0, 3)), r"input_shape must hold positive ints"),
    (lambda: Dense(2, name=""), r"name must be a non-empty string"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make, match", [
    (lambda: Dense(2, dtype="int32", name="d"), r"layer 'd': dtype must be float32 or float64"),
    (lambda: Dense(2, dtype="no-such-dtype", name="d"), r"layer 'd': unknown dtype"),
    (lambda: Dense(2, bogus=1), r"Dense: unexpected keyword argument\(s\): bogus"),
])
def test_bad_argument_types(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_wrong_input_rank_names_the_layer(backend):
    layer = Conv2D(2, 3, name="my_conv")
    with pytest.raises(ValueError, match=r"layer 'my_conv' \(Conv2D\).*expected ndim=4, found "
                                         r"ndim=3"):
        layer(np.ones((2, 5, 5), dtype="float32"))
    with pytest.raises(ValueError, match=r"layer 'pool' \(MaxPooling2D\).*expected ndim=4"):
        MaxPooling2D(name="pool")(np.ones((2, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"layer 'dense_x' \(Dense\) needs at least 2 axes"):
        Dense(2, name="dense_x")(np.ones(3, dtype="float32"))


def test_wrong_input_shape_after_build_names_the_layer(backend):
    layer = Dense(2, name="fc")
    layer(np.ones((1, 3), dtype="float32"))
    with pytest.raises(ValueError, match=r"layer 'fc' \(Dense\) is incompatible: expected shape "
                                         r"\(None, 3\), found shape \(None, 4\)"):
        layer(np.ones((1, 4), dtype="float32"))


def test_model_input_shape_errors_name_the_layer(backend):
    model = Sequential([Input((6, 6, 1)), Conv2D(2, 3, name="first_conv"), Flatten(),
                        Dense(2, name="head")])
    with pytest.raises(ValueError, match="first_conv"):
        model.predict(np.ones((2, 6, 6, 3)), verbose=0)
    with pytest.raises(ValueError, match="first_conv"):
        model.predict(np.ones((2, 36)), verbose=0)


def test_layer_that_does_not_fit_fails_where_it_is_added(backend):
    model = Sequential([Input((3, 3, 1))])
    with pytest.raises(ValueError, match=r"'too_big'.*5x5 kernel does not fit the 3x3 input"):
        model.add(Conv2D(1, 5, name="too_big"))
    assert model.layers == []  # the misfit layer was not kept
    with pytest.raises(ValueError, match=r"MaxPooling2D layer 'big_pool': pool_size \(4, 4\) "
                                         r"is larger than the input"):
        model.add(MaxPooling2D(4, name="big_pool"))
    model.add(MaxPooling2D(4, padding="same"))  # 'same' pads instead
    assert model.output_shape == (None, 1, 1, 1)
    with pytest.raises(ValueError, match="already in the model"):
        model.add(MaxPooling2D(name=model.layers[0].name))


def test_pool_larger_than_input_when_called(backend):
    with pytest.raises(ValueError, match=r"'p': pool_size \(3, 3\) is larger than the input"):
        MaxPooling2D(3, name="p")(np.ones((1, 2, 5, 1), dtype="float32"))
    with pytest.raises(ValueError, match=r"AveragePooling1D layer 'p1'.*larger than the input"):
        AveragePooling1D(4, name="p1")(np.ones((1, 3, 1), dtype="float32"))


def test_non_numeric_input_is_a_type_error(backend):
    with pytest.raises(TypeError, match=r"input of layer 'fc' must be an array of numbers"):
        Dense(2, name="fc")(np.array([["a", "b"]]))
    model = Sequential([Dense(2, input_shape=(2,))])
    with pytest.raises(TypeError, match="x must be an array of numbers"):
        model.predict(np.array([["a", "b"]]), verbose=0)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="y must be an array of numbers"):
        model.fit(np.ones((2, 2)), np.array([["a", "b"], ["c", "d"]]), verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        model.layers[0].set_weights([np.full((2, 2), "x"), np.zeros(2)])


def test_set_weights_errors(backend):
    layer = Dense(2, name="fc")
    build(layer, (3,))
    with pytest.raises(ValueError, match="layer 'fc' has 2 weights, got 1"):
        layer.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"shape \(2, 3\) to weight 'fc/kernel' of shape \(3, 2\)"):
        layer.set_weights([np.zeros((2, 3)), np.zeros(2)])


def test_integer_input_is_cast(backend):
    layer = Dense(2)
    y = layer(np.ones((3, 4), dtype=np.uint8))
    assert y.dtype == np.float32
    assert fastconv.get_backend() is backend
