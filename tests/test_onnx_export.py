"""fastconv.onnx.export: every layer type and the applications, checked by
onnx.checker (full check) and compared with onnxruntime (1e-5 relative), and read back by
fastconv.onnx.load."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort  # noqa: E402
import pytest

import fastconv.onnx as fo  # noqa: E402
from fastconv import applications  # noqa: E402
from fastconv import layers as L  # noqa: E402
from fastconv.models import Model, Sequential  # noqa: E402


def randomise(model, seed=0):
    """Random weights that keep activations O(1) through deep stacks: He-scaled kernels,
    biases and BN parameters around their neutral values, variances in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        if len(w.shape) >= 2:
            a = rng.standard_normal(w.shape) * np.sqrt(2.0 / np.prod(w.shape[:-1]))
        elif "variance" in w.name:
            a = rng.uniform(0.5, 1.5, w.shape)
        elif "gamma" in w.name:
            a = rng.uniform(0.5, 1.5, w.shape)
        else:
            a = rng.uniform(-0.5, 0.5, w.shape)
        values.append(a.astype(np.float32))
    model.set_weights(values)  # through the API: caches of packed weights see the change


def assert_informative(y):
    """The outputs differ across samples and features: a comparison that can fail."""
    y = np.asarray(y)
    assert np.ptp(y, axis=0).max() > 1e-3 and np.ptp(y.reshape(len(y), -1), axis=1).max() > 1e-3


def parity(model, xs, tmp_path, rtol=1e-5):
    """Max relative difference between fastconv and onnxruntime, after the full check; the
    exported file loads back into fastconv with the same outputs."""
    path = tmp_path / "m.onnx"
    proto = fo.export(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert proto.opset_import[0].version == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = xs if isinstance(xs, list) else [xs]
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    if len(xs[0]) > 1:
        assert_informative(want)
    got = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})[0]
    scale = float(np.abs(want).max()) or 1.0
    err = float(np.abs(got - want).max()) / scale
    assert got.shape == want.shape and err <= rtol, err
    back = fo.load(path).predict(xs if len(xs) > 1 else xs[0], verbose=0)
    np.testing.assert_allclose(back, want, rtol=rtol, atol=rtol * scale)
    return err


IMAGE = (10, 9, 3)

LAYERS = {  # a layer type -> the layers around it (after an image input of shape IMAGE)
    "Conv2D": [L.Conv2D(4, 3, padding="same", activation="relu"),
               L.Conv2D(3, (2, 3), strides=2, activation="sigmoid"),
               L.Conv2D(2, 3, dilation_rate=2, padding="same", activation="tanh")],
    "Conv2D_groups": [L.Conv2D(6, 3, groups=3, padding="same", activation="relu"),
                      L.Conv2D(4, (3, 2), groups=2, strides=2)],
    "DepthwiseConv2D": [L.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                          activation="relu"),
                        L.DepthwiseConv2D((2, 3), strides=2, use_bias=False)],
    "SeparableConv2D": [L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2,
                                          activation="relu"),
                        L.SeparableConv2D(4, 2, strides=2, use_bias=False)],
    "Dense": [L.Dense(5, activation="relu"), L.Dense(3, activation="softmax")],
    "MaxPooling2D": [L.MaxPooling2D(3, 2, padding="same"), L.MaxPooling2D(2)],
    "MaxPooling2D_explicit": [L.MaxPooling2D(3, 2, ((1, 0), (1, 1)), ceil_mode=True)],
    "AveragePooling2D": [L.AveragePooling2D(3, 2, padding="same"), L.AveragePooling2D(2)],
    "AveragePooling2D_explicit": [L.AveragePooling2D(3, 2, ((1, 1), (0, 1)), ceil_mode=True,
                                                     count_include_pad=True)],
    "GlobalAveragePooling2D": [L.GlobalAveragePooling2D()],
    "GlobalMaxPooling2D": [L.GlobalMaxPooling2D(keepdims=True)],
    "Flatten": [L.Conv2D(2, 3), L.Flatten()],
    "Reshape": [L.Reshape((9, 30))],
    "Dropout": [L.Dropout(0.5)],
    "Activation": [L.Activation("tanh"), L.Activation("softmax")],
    "LeakyReLU": [L.LeakyReLU(0.2)],
    "Clip": [L.Clip(-0.4, 0.6)],
    "Permute": [L.Permute((3, 1, 2))],
    "BatchNormalization": [L.BatchNormalization()],
    "BatchNormalization_axis1": [L.BatchNormalization(axis=1)],
    "LocalResponseNormalization": [L.LocalResponseNormalization(1, 2.0, 0.1, 0.75)],
    "ZeroPadding2D": [L.ZeroPadding2D(((1, 2), (0, 3)))],
    "Rescaling": [L.Rescaling(1 / 3, 0.5), L.Rescaling(np.arange(3.0), np.ones(3))],
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_every_layer_type_matches_onnxruntime(tmp_path, kind, rng):
    model = Sequential([L.Input(IMAGE), *LAYERS[kind]])
    randomise(model)
    parity(model, rng.standard_normal((2, *IMAGE)).astype(np.float32), tmp_path)


def test_1d_layers_match_onnxruntime(tmp_path, rng):
    model = Sequential([L.Input((12, 3)), L.Conv1D(4, 3, padding="causal", dilation_rate=2),
                        L.Conv1D(4, 2, padding="same", strides=2, activation="relu"),
                        L.MaxPooling1D(2, padding="same"), L.AveragePooling1D(2),
                        L.Dense(3)])
    randomise(model)
    parity(model, rng.standard_normal((3, 12, 3)).astype(np.float32), tmp_path)


def test_functional_merges_and_nested_models_match_onnxruntime(tmp_path, rng):
    a_in, b_in = L.Input((8, 8, 3)), L.Input((8, 8, 2))
    a = L.Conv2D(4, 3, padding="same")(a_in)
    b = L.Conv2D(4, 1, activation="relu")(b_in)
    s = L.Add()([a, b, L.Conv2D(4, 1)(a_in)])
    c = L.Concatenate()([s, a])
    flat = L.Flatten()(L.Concatenate(axis=1)([c, c]))
    inner = Sequential([L.Input((16 * 8 * 8,)), L.Dense(6, activation="relu")])
    g = L.GlobalAveragePooling2D()(c)
    out = L.Dense(3, activation="softmax")(L.Concatenate()([inner(flat), g]))
    model = Model([a_in, b_in], out)
    randomise(model)
    xs = [rng.standard_normal((2, 8, 8, 3)).astype(np.float32),
          rng.standard_normal((2, 8, 8, 2)).astype(np.float32)]
    parity(model, xs, tmp_path)


def test_lenet5_and_alexnet_match_onnxruntime(tmp_path, rng):
    lenet = applications.LeNet5()
    randomise(lenet, 1)
    parity(lenet, rng.standard_normal((2, 32, 32, 1)).astype(np.float32), tmp_path)
    alex = applications.AlexNet(input_shape=(67, 67, 3), classes=10)
    randomise(alex, 2)
    parity(alex, rng.standard_normal((2, 67, 67, 3)).astype(np.float32), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,shape", [("VGG16", (32, 32, 3)), ("ResNet50", (32, 32, 3)),
                                        ("InceptionV3", (75, 75, 3))])
def test_big_applications_match_onnxruntime(tmp_path, rng, name, shape):
    """Each once, on its smallest input, headless (the Dense top is checked above): the
    pooled features, which no softmax saturates."""
    model = getattr(applications, name)(weights=None, input_shape=shape, include_top=False,
                                        pooling="avg")
    randomise(model)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    parity(model, x, tmp_path)


def test_sequential_built_by_data_exports(tmp_path, rng):
    model = Sequential([L.Conv2D(3, 3), L.Flatten(), L.Dense(2)])
    x = rng.standard_normal((2, 6, 6, 1)).astype(np.float32)
    model.predict(x, verbose=0)
    randomise(model)
    parity(model, x, tmp_path)


def test_export_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(TypeError, match="fastconv Model"):
        fo.export(L.Dense(3), tmp_path / "x.onnx")
    model = Sequential([L.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="opset"):
        fo.export(model, tmp_path / "x.onnx", opset=7)
    with pytest.raises(ValueError, match="not built"):
        fo.export(Sequential([L.Dense(3)]), tmp_path / "x.onnx")
