"""fastconv.applications: parameter counts equal Keras's (counted from weight shapes, without
allocating the weights), layer names and weight shapes equal keras.applications', a forward pass
with Keras's weights matches Keras, preprocessing as Keras's, and the arguments are checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastconv import applications, optimizers
from fastconv.layers.base import Layer
from fastconv.tensor import Variable
from fastconv.utils import clear_session

from . import naive
from .weights import randomize_weights

#: Keras's own figures (keras.applications, weights=None).
KERAS_PARAMS = {
    ("VGG16", True): 138_357_544, ("VGG16", False): 14_714_688,
    ("ResNet50", True): 25_636_712, ("ResNet50", False): 23_587_712,
    ("InceptionV3", True): 23_851_784, ("InceptionV3", False): 21_802_784,
}
#: The smallest inputs Keras accepts, used to keep the Keras comparisons small.
SMALL_INPUT = {"VGG16": (32, 32, 3), "ResNet50": (32, 32, 3), "InceptionV3": (75, 75, 3)}


@pytest.fixture
def shape_only(monkeypatch):
    """Layers get zero-strided read-only weights: the full shapes, no memory (VGG16 with its
    top would otherwise allocate 553 MB)."""

    def add_weight(self, name, shape, initializer="glorot_uniform", trainable=True, **kwargs):
        data = np.broadcast_to(np.zeros((), dtype=self.dtype), tuple(shape))
        var = Variable(data, name=f"{self.name}/{name}", trainable=trainable and self._trainable)
        self._weights.append(var)
        return var

    monkeypatch.setattr(Layer, "add_weight", add_weight)


def build(name, include_top, shape_only_input=None, **kwargs):
    input_shape = shape_only_input or (None if include_top else SMALL_INPUT[name])
    return getattr(applications, name)(include_top=include_top, input_shape=input_shape,
                                       **kwargs)


@pytest.mark.parametrize("include_top", [True, False])
@pytest.mark.parametrize("name", ["VGG16", "ResNet50", "InceptionV3"])
def test_parameter_counts_equal_keras(shape_only, name, include_top):
    model = build(name, include_top)
    assert model.count_params() == KERAS_PARAMS[(name, include_top)]
    assert all(w.data.strides == (0,) * w.data.ndim for w in model.weights)  # nothing allocated


def test_lenet5_alexnet_lesson_counts(shape_only):
    assert applications.LeNet5().count_params() == 61_706
    assert applications.AlexNet().count_params() == 62_378_344
    assert applications.lesson_model().count_params() == 93_322


def test_default_input_shapes(shape_only):
    assert applications.VGG16().input_shape == (None, 224, 224, 3)
    assert applications.InceptionV3().input_shape == (None, 299, 299, 3)
    assert applications.ResNet50(include_top=False, input_shape=(64, 48, 3)).output_shape == (
        None, 2, 2, 2048)
    assert applications.ResNet50(include_top=False).input_shape == (None, None, None, 3)
    # as in Keras, a classifier over another input size (fc1 then sees 2x2x512 features)
    vgg = applications.VGG16(input_shape=(64, 64, 3), classes=3)
    assert vgg.get_layer("fc1").kernel.shape == (2048, 4096)


@pytest.mark.parametrize("pooling, shape", [(None, (None, 1, 1, 512)), ("avg", (None, 512)),
                                            ("max", (None, 512))])
def test_pooling(pooling, shape):
    model = applications.VGG16(include_top=False, input_shape=(32, 32, 3), pooling=pooling)
    assert model.output_shape == shape
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (1, *shape[1:])


def test_classes_and_classifier_activation(shape_only):
    model = applications.ResNet50(input_shape=(32, 32, 3), classes=7,
                                  classifier_activation=None)
    head = model.layers[-1]
    assert head.name == "predictions" and head.units == 7 and head.activation == "linear"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weights": "imagenet"}, ValueError, "does not download"),
    ({"weights": "/no/such/file.h5"}, FileNotFoundError, "no such weights file"),
    ({"include_top": True, "input_shape": (None, None, 3)}, ValueError, "static"),
    ({"include_top": False, "input_shape": (16, 16, 3)}, ValueError, "at least 32x32"),
    ({"include_top": False, "pooling": "mean"}, ValueError, "pooling"),
    ({"classes": 0}, ValueError, "classes"),
    ({"include_top": False, "input_shape": (32, 32)}, ValueError, "height, width, channels"),
])
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        applications.VGG16(**kwargs)


def test_inception_minimum_size():
    with pytest.raises(ValueError, match="at least 75x75"):
        applications.InceptionV3(include_top=False, input_shape=(74, 80, 3))


def test_preprocess_input_modes():
    rgb = np.array([[[[255, 0, 0], [0, 128, 255]]]], dtype=np.uint8)
    caffe = applications.vgg16.preprocess_input(rgb)
    expected = np.array([[[[0 - 103.939, 0 - 116.779, 255 - 123.68],
                           [255 - 103.939, 128 - 116.779, 0 - 123.68]]]])
    np.testing.assert_allclose(caffe, expected, rtol=1e-6)
    assert caffe.dtype == np.float32
    np.testing.assert_array_equal(applications.resnet50.preprocess_input(rgb), caffe)
    tf = applications.inception_v3.preprocess_input(rgb)
    np.testing.assert_allclose(tf, rgb / 127.5 - 1, atol=1e-6)
    x = np.full((1, 2, 2, 3), 255.0, dtype=np.float32)
    applications.inception_v3.preprocess_input(x)
    assert x[0, 0, 0, 0] == 255.0  # the caller's array is left alone
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        applications.vgg16.preprocess_input(np.zeros((2, 2, 4)))


def torch_twin(model):
    """``(forward, params)``: the Sequential ``model`` as PyTorch ops in float64 on copies of its
    weights (``params``, leaf tensors in the order of ``get_weights()``), layouts converted
    (NHWC -> NCHW, HWIO -> OIHW; Flatten in NHWC order). Keras has no AlexNet nor LeNet-5, so
    PyTorch's own ops are the second opinion on the whole network."""
    tF = torch.nn.functional
    params = [torch.tensor(w.astype(np.float64), requires_grad=True) for w in model.get_weights()]

    def forward(x):
        h = torch.from_numpy(np.ascontiguousarray(x.astype(np.float64).transpose(0, 3, 1, 2)))
        weights = iter(params)
        for layer in model.layers:
            config, kind = layer.get_config(), type(layer).__name__
            if kind == "Conv2D":
                w, b = next(weights), next(weights)
                strides = tuple(config["strides"])
                if config["padding"] == "same":
                    top, bottom, left, right = naive.conv_padding(
                        "same", (1, h.shape[2], h.shape[3], 1), tuple(w.shape), strides)
                    h = tF.pad(h, (left, right, top, bottom))
                h = tF.conv2d(h, w.permute(3, 2, 0, 1), b, stride=strides)
            elif kind == "LocalResponseNormalization":  # PyTorch divides alpha by the size
                size = 2 * config["depth_radius"] + 1
                h = torch.nn.LocalResponseNorm(size, alpha=config["alpha"] * size,
                                               beta=config["beta"], k=config["bias"])(h)
            elif kind in ("MaxPooling2D", "AveragePooling2D"):
                assert config["padding"] == "valid", layer.name
                pool = tF.max_pool2d if kind == "MaxPooling2D" else tF.avg_pool2d
                h = pool(h, tuple(config["pool_size"]), tuple(config["strides"]))
            elif kind == "Flatten":
                h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)
            elif kind == "Dense":
                h = h @ next(weights) + next(weights)
            elif kind != "Dropout":  # inference: dropout is the identity
                raise AssertionError(f"the oracle has no {kind}")
            activation = config.get("activation", "linear")
            h = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda t: t,
                 "softmax": lambda t: torch.softmax(t, -1)}[activation](h)
        return h

    return forward, params


def test_alexnet_lrn_parameters_and_forward_match_pytorch():
    """The paper's k=2, n=5, alpha=1e-4, beta=0.75 in TensorFlow's terms, and the whole network
    (random biases, pixel-valued inputs, where the LRN's sum term changes the output by about
    10%) against PyTorch's ops in float64 on the same weights."""
    assert applications.ALEXNET_LRN == {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4,
                                        "beta": 0.75}
    model = applications.AlexNet(input_shape=(67, 67, 3), classes=4)
    norm = next(layer for layer in model.layers if layer.name == "norm1")
    config = norm.get_config()
    for key, value in applications.ALEXNET_LRN.items():
        assert config[key] == value
    rng = np.random.default_rng(1)
    randomize_weights(model, rng)
    x = (rng.random((2, 67, 67, 3)) * 255).astype("float32")
    y = model.predict(x, verbose=0)
    want = torch_twin(model)[0](x).detach().numpy()
    assert y.shape == want.shape == (2, 4)
    assert relative_error(y, want) <= 1e-5


def test_lenet5_training_step_matches_pytorch():
    """One SGD step (its update is the gradient itself, which Adam's first step, about
    lr * sign(g), would hide): the loss train_on_batch reports and every weight's change equal
    PyTorch's float64 loss and gradients on the same weights."""
    model = applications.LeNet5()
    rng = np.random.default_rng(2)
    randomize_weights(model, rng)
    x = rng.random((8, 32, 32, 1)).astype("float32")
    labels = np.arange(8) % 10
    forward, params = torch_twin(model)
    probabilities = forward(x)
    want_loss = -torch.log(probabilities[torch.arange(8), torch.from_numpy(labels)]).mean()
    want_loss.backward()
    lr = 0.1
    before = model.get_weights()
    model.compile(optimizer=optimizers.SGD(lr), loss="sparse_categorical_crossentropy")
    loss = model.train_on_batch(x, labels)
    assert loss == pytest.approx(want_loss.item(), rel=1e-5)
    for w0, w1, p, var in zip(before, model.get_weights(), params, model.weights):
        step, want = w1.astype(np.float64) - w0, -lr * p.grad.numpy()
        # float32 weights near 0.3 round a step of about 3e-3 to about 1e-5 of itself
        assert relative_error(step, want) <= 1e-4, var.name


# -- against keras.applications -----------------------------------------------------------------

_KERAS_SCRIPT = r"""
import json, sys, numpy as np, keras
from keras.src.legacy.saving import legacy_h5_format
import h5py
out = sys.argv[1]
jobs = json.loads(sys.argv[2])
rng = np.random.default_rng(0)
report = {}
for name, include_top, input_shape, forward in jobs:
    keras.backend.clear_session()
    model = getattr(keras.applications, name)(weights=None, include_top=include_top,
                                              input_shape=tuple(input_shape))
    report[f"{name}-{include_top}"] = [
        [layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
        for layer in model.layers]
    if not forward:
        continue
    for layer in model.layers:  # BatchNormalization statistics away from 0 and 1
        if type(layer).__name__ == "BatchNormalization":
            w = layer.get_weights()
            w[-2] = rng.normal(0, 0.1, w[-2].shape).astype("float32")
            w[-1] = rng.uniform(0.5, 1.5, w[-1].shape).astype("float32")
            layer.set_weights(w)
    x = rng.uniform(-1, 1, (1, *input_shape)).astype("float32")
    stem = f"{out}/{name}-{include_top}"
    model.save_weights(stem + ".weights.h5")
    with h5py.File(stem + "_legacy.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    np.savez(stem + "_io.npz", x=x, y=np.asarray(model.predict(x, verbose=0)))
with open(f"{out}/layers.json", "w") as fh:
    json.dump(report, fh)
"""


def run_keras(tmp_path, jobs):
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run([sys.executable, "-c", _KERAS_SCRIPT, str(tmp_path), json.dumps(jobs)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "layers.json").read_text())


def fastconv_layers(model):
    return [[layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
            for layer in model.layers]


def test_layer_names_and_weight_shapes_equal_keras(tmp_path, shape_only):
    jobs = [["ResNet50", True, SMALL_INPUT["ResNet50"], False],
            ["InceptionV3", True, SMALL_INPUT["InceptionV3"], False],
            ["VGG16", False, SMALL_INPUT["VGG16"], False]]
    keras_layers = run_keras(tmp_path, jobs)
    for name, include_top, input_shape, _ in jobs:
        clear_session()
        ours = fastconv_layers(build(name, include_top, shape_only_input=tuple(input_shape)))
        theirs = keras_layers[f"{name}-{include_top}"]
        assert [row[0] for row in ours] == [row[0] for row in theirs], name
        assert ours == theirs, name


def relative_error(got, expected) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - expected)) / np.max(np.abs(expected)))


@pytest.mark.slow
def test_forward_with_keras_weights_matches_keras(tmp_path):
    """Keras's randomly initialised ResNet50, InceptionV3 and VGG16 (no top) at their smallest
    inputs, batch 1: fastconv loads their weights (Keras 3 and legacy layouts) and predicts the
    same."""
    jobs = [["ResNet50", True, SMALL_INPUT["ResNet50"], True],
            ["InceptionV3", True, SMALL_INPUT["InceptionV3"], True],
            ["VGG16", False, SMALL_INPUT["VGG16"], True]]
    run_keras(tmp_path, jobs)
    for name, include_top, input_shape, _ in jobs:
        stem = tmp_path / f"{name}-{include_top}"
        with np.load(f"{stem}_io.npz") as data:
            x, y = data["x"], data["y"]
        for path in (f"{stem}.weights.h5", f"{stem}_legacy.h5"):
            clear_session()
            model = build(name, include_top, shape_only_input=tuple(input_shape), weights=path)
            err = relative_error(model.predict(x, verbose=0), y)
            print(f"{name} include_top={include_top} {os.path.basename(path)}: relative error "
                  f"{err:.2e}")
            assert err <= 1e-5, f"{name} from {os.path.basename(path)}: {err:.2e}"


def test_feature_extraction_on_vgg16_saved_as_keras(tmp_path):
    """The lesson's recipe on an application: VGG16 as a frozen base (input_tensor), a new
    head, saved as .keras and loaded back with the base still frozen."""
    from fastconv.layers import Dense, Input
    from fastconv.models import Model, load_model

    inputs = Input((32, 32, 3), name="image")
    base = applications.VGG16(include_top=False, input_tensor=inputs, pooling="avg")
    base.trainable = False
    outputs = Dense(4, activation="softmax", name="head")(base.output)
    model = Model(inputs, outputs, name="transfer")
    assert [w.name for w in model.trainable_weights] == ["head/kernel", "head/bias"]
    model.save(tmp_path / "transfer.keras")
    again = load_model(tmp_path / "transfer.keras")
    assert [w.name for w in again.trainable_weights] == ["head/kernel", "head/bias"]
    x = np.random.default_rng(4).random((2, 32, 32, 3)).astype("float32") * 255
    x = applications.vgg16.preprocess_input(x)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
