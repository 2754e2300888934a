"""Keras files: the reference files Keras 3.15 wrote (every model, every format) load and predict
as Keras did; the .keras archives fastconv writes load in Keras itself; and every kind of bad
input is refused with an error that names the file, the layer and what was expected."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastconv import keras_io, optimizers
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from fastconv.layers.base import layer_class
from fastconv.models import Sequential, load_model
from fastconv.saving import InvalidModelFileError

from . import naive, shared
from .weights import randomize_weights

MODELS = ("mini_vgg", "mini_resnet", "mini_inception")
FORMATS = ("keras", "h5", "weights.h5", "legacy_weights.h5")
TOLERANCE = 1e-5
SHARED = shared.shared_dir()
REF = SHARED / "keras_ref" if SHARED is not None else None
#: Keras's reference files: a test that reads them fails without them (the conftest fixture)
needs_ref = pytest.mark.usefixtures("keras_ref")


def relative_error(got, expected) -> float:
    """max |got - expected| / max |expected| (normwise, so tiny probabilities do not blow up)."""
    return float(np.max(np.abs(got.astype(np.float64) - expected)) / np.max(np.abs(expected)))


def ref_path(model: str, fmt: str) -> Path:
    return REF / (f"{model}_{fmt}" if fmt == "legacy_weights.h5" else f"{model}.{fmt}")


def architecture(model: str):
    """The fastconv model described by the reference .keras archive's config.json."""
    with zipfile.ZipFile(ref_path(model, "keras")) as zf:
        config = json.loads(zf.read("config.json"))
    return keras_io.model_from_keras_config(config, str(ref_path(model, "keras")))


def load_reference(model: str, fmt: str):
    path = ref_path(model, fmt)
    if fmt in ("keras", "h5"):
        return load_model(path)
    net = architecture(model)
    net.load_weights(path)
    return net


# -- a naive oracle of the reference graphs ----------------------------------------------------

def naive_forward(model: str, x, avg_same: str = "exclude") -> np.ndarray:
    """The reference model's output in float64, by the loops of tests/naive.py, reading the
    graph from config.json and the arrays straight from the legacy weights file with h5py
    (nothing from fastconv). ``avg_same``: how 'same' average pooling treats padding:
    'exclude' (Keras's documented semantics, its TensorFlow and JAX backends), or 'replicate'
    (Keras 3.15's PyTorch backend when the padding is uneven: the input's last row and column
    repeated and counted, keras-team/keras#23233)."""
    with zipfile.ZipFile(ref_path(model, "keras")) as zf:
        layers = json.loads(zf.read("config.json"))["config"]["layers"]
    weights = {}
    with h5py.File(ref_path(model, "legacy_weights.h5"), "r") as f:
        for name in f.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            order = [w.decode() if isinstance(w, bytes) else w
                     for w in f[name].attrs["weight_names"]]
            weights[name] = [f[name][w][()].astype(np.float64) for w in order]
    values = {}
    for entry in layers:
        cls, cfg, name = entry["class_name"], entry["config"], entry["config"]["name"]
        if cls == "InputLayer":
            values[name] = np.asarray(x, np.float64)
            continue
        args = entry["inbound_nodes"][0]["args"][0]
        refs = args if isinstance(args, list) else [args]
        ins = [values[r["config"]["keras_history"][0]] for r in refs]
        values[name] = naive_layer(cls, cfg, ins, weights.get(name, []), avg_same)
    return values[layers[-1]["config"]["name"]]


def naive_layer(cls, cfg, ins, w, avg_same):
    x = ins[0]
    if cls == "Conv2D":
        pad = naive.conv_padding(cfg["padding"], x.shape, w[0].shape, tuple(cfg["strides"]))
        y = naive.conv2d_forward(x, w[0], w[1], tuple(cfg["strides"]), pad)
        return np.maximum(y, 0) if cfg["activation"] == "relu" else y
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        pool, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"])
        pad = naive.pool_padding(cfg["padding"], x.shape, pool, strides)
        if cls == "MaxPooling2D":
            return naive.max_pool2d_forward(x, pool, strides, pad)[0]
        if avg_same == "replicate" and (pad[0] != pad[1] or pad[2] != pad[3]):
            x = np.pad(x, ((0, 0), pad[:2], pad[2:], (0, 0)), mode="edge")
            pad = (0, 0, 0, 0)
        return naive.avg_pool2d_forward(x, pool, strides, pad)
    if cls == "Concatenate":
        return np.concatenate(ins, axis=-1)
    if cls == "GlobalMaxPooling2D":
        return x.max(axis=(1, 2))
    if cls == "Dense":
        z = x @ w[0] + w[1]
        assert cfg["activation"] == "softmax"
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(f"the oracle has no {cls}")


def expected_predictions(model: str) -> np.ndarray:
    """Keras's predictions (for mini_inception, those of Keras's JAX backend, which pads an
    uneven 'same' average pooling as TensorFlow does and as fastconv does: padding not
    counted; see test_mini_inception_oracle_reproduces_both_keras_backends)."""
    return np.load(REF / f"{model}_io.npz")["y"]


# -- the reference files ------------------------------------------------------------------------

@needs_ref
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", MODELS)
def test_reference_file_predicts_as_keras(model, fmt):
    io_data = np.load(REF / f"{model}_io.npz")
    net = load_reference(model, fmt)
    index = json.loads((REF / "index.json").read_text())["models"][model]
    assert net.count_params() == index["params"]
    got = net.predict(io_data["x"], verbose=0)
    assert got.shape == io_data["y"].shape
    err = relative_error(got, expected_predictions(model))
    assert err <= TOLERANCE, f"{model}.{fmt}: relative error {err:.2e}"


@needs_ref
def test_mini_inception_oracle_reproduces_both_keras_backends():
    """The oracle gives each Keras backend's own predictions with that backend's padding rule
    for an uneven 'same' average pooling: JAX's (``y``: padding not counted, as TensorFlow and
    fastconv do) and PyTorch's in Keras 3.15 (``y_torch_backend``: the edge repeated into the
    padding). So the file is read right, and the two rules differ measurably on it."""
    io_data = np.load(REF / "mini_inception_io.npz")
    x, y, y_torch = io_data["x"], io_data["y"], io_data["y_torch_backend"]
    assert relative_error(naive_forward("mini_inception", x, "exclude"), y) <= TOLERANCE
    assert relative_error(naive_forward("mini_inception", x, "replicate"), y_torch) <= TOLERANCE
    assert relative_error(naive_forward("mini_inception", x, "exclude"), y_torch) > 1e-3


@needs_ref
def test_reference_layer_names_and_weight_order():
    """Keras's layer names survive, and BatchNormalization's four arrays land in Keras's order
    (gamma, beta, moving_mean, moving_variance)."""
    net = load_model(ref_path("mini_resnet", "keras"))
    names = [layer.name for layer in net.layers]
    assert {"conv1_pad", "conv1_bn", "b0_add", "b1_0_conv", "avg_pool", "predictions"} <= set(names)
    bn = next(layer for layer in net.layers if layer.name == "conv1_bn")
    with h5py.File(ref_path("mini_resnet", "legacy_weights.h5"), "r") as f:
        group = f["conv1_bn"]
        order = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        expected = [group[n][()] for n in order]
    for got, want in zip(bn.get_weights(), expected):
        np.testing.assert_array_equal(got, want)


# -- fastconv writes, Keras reads ---------------------------------------------------------------

def small_sequential():
    """Images with more rows than columns, so that a transposed image or kernel shows (the
    tests give it random biases: a fresh model's are all zero)."""
    return Sequential([Input((10, 8, 2)), Conv2D(4, 3, activation="relu", padding="same"),
                       MaxPooling2D(), Conv2D(6, 3, activation="tanh"), Flatten(), Dropout(0.2),
                       Dense(7, activation="relu"), Dense(3, activation="softmax")],
                      name="small")


def keras_predict(tmp_path, jobs: list[tuple[str, str, str]]) -> dict:
    """Run Keras (PyTorch backend) in a subprocess: for each (kind, path, x.npy) load the file
    ('model': keras.saving.load_model, then save it again as *.resaved.keras;
    'weights:<model.keras>': load that model, then the weights) and predict x. Returns
    {path: predictions}."""
    out = tmp_path / "keras_out.npz"
    script = f"""
import json, sys, numpy as np, keras
jobs = json.loads(sys.argv[1])
result = {{}}
for kind, path, xpath in jobs:
    if kind == "model":
        model = keras.saving.load_model(path)
        model.save(path.replace(".keras", ".resaved.keras"))
    else:
        model = keras.saving.load_model(kind.split(":", 1)[1])
        model.load_weights(path)
    result[path] = model.predict(np.load(xpath), verbose=0)
np.savez({str(out)!r}, **{{k.replace("/", "|"): v for k, v in result.items()}})
"""
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"Keras could not load the files:\n{proc.stderr[-3000:]}"
    with np.load(out) as data:
        return {k.replace("|", "/"): data[k] for k in data.files}


def test_keras_loads_what_fastconv_writes(tmp_path, rng):
    jobs, expected = [], {}
    x = rng.random((5, 10, 8, 2)).astype("float32")
    np.save(tmp_path / "x_seq.npy", x)
    seq = randomize_weights(small_sequential(), rng)
    seq.compile(optimizer=optimizers.Adam(0.0123), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    seq.save(tmp_path / "seq.keras")
    seq.save_weights(tmp_path / "seq.weights.h5")
    # different weights in the weights file, so that loading it visibly changes the model
    seq2 = randomize_weights(small_sequential(), rng)
    seq2.save_weights(tmp_path / "seq2.weights.h5")
    jobs += [("model", str(tmp_path / "seq.keras"), str(tmp_path / "x_seq.npy")),
             (f"weights:{tmp_path / 'seq.keras'}", str(tmp_path / "seq2.weights.h5"),
              str(tmp_path / "x_seq.npy"))]
    expected[str(tmp_path / "seq.keras")] = seq.predict(x, verbose=0)
    expected[str(tmp_path / "seq2.weights.h5")] = seq2.predict(x, verbose=0)
    for name, build, shape in functional_models():
        xf = (rng.random((4, *shape)) * 255).astype("float32")
        np.save(tmp_path / f"x_{name}.npy", xf)
        net = randomize_weights(build(), rng)
        net.save(tmp_path / f"{name}.keras")
        jobs.append(("model", str(tmp_path / f"{name}.keras"), str(tmp_path / f"x_{name}.npy")))
        expected[str(tmp_path / f"{name}.keras")] = net.predict(xf, verbose=0)
    got = keras_predict(tmp_path, jobs)
    for path, want in expected.items():
        err = relative_error(got[path], want)
        assert err <= TOLERANCE, f"{Path(path).name}: Keras differs by {err:.2e}"
    # the compile settings went to Keras and came back
    again = load_model(tmp_path / "seq.resaved.keras")
    assert again.compiled and again.loss.name == "sparse_categorical_crossentropy"
    assert again.optimizer.name == "adam"
    assert again.optimizer.learning_rate == pytest.approx(0.0123)
    assert [m.name for m in again._metrics] == ["accuracy"]
    # and back: what Keras saved again loads in fastconv, frozen layers still frozen
    for kind, path, xpath in jobs:
        if kind != "model":
            continue
        again = load_model(path.replace(".keras", ".resaved.keras"))
        original = load_model(path)
        assert [layer.trainable for layer in again.layers] == [
            layer.trainable for layer in original.layers]
        err = relative_error(again.predict(np.load(xpath), verbose=0), expected[path])
        assert err <= TOLERANCE, f"{Path(path).name} saved by Keras: {err:.2e}"


def functional_models():
    """A functional model with merge layers and BatchNormalization; a frozen functional base
    nested in a functional model and in a Sequential one (transfer learning's shape)."""
    return [("graph", graph_model, (9, 7, 3)), ("nested", nested_model, (9, 7, 3)),
            ("nested_seq", nested_sequential, (9, 7, 3)), ("misc", misc_sequential, (12, 3))]


def misc_sequential():
    """The other layers Keras shares with fastconv: Rescaling, Conv1D, 1D pooling, Reshape,
    'same' average pooling, Activation."""
    from fastconv.layers import (
        Activation,
        AveragePooling1D,
        AveragePooling2D,
        Conv1D,
        GlobalAveragePooling2D,
        MaxPooling1D,
        Rescaling,
        Reshape,
    )

    return Sequential([Input((12, 3)), Rescaling(1 / 255.0, offset=-0.5),
                       Conv1D(4, 3, activation="relu", padding="same"), MaxPooling1D(2),
                       Conv1D(5, 2, strides=2), AveragePooling1D(1), Reshape((3, 5, 1)),
                       Conv2D(2, 2, padding="same"), AveragePooling2D(2, strides=1, padding="same"),
                       GlobalAveragePooling2D(), Activation("tanh"),
                       Dense(3, activation="softmax")], name="misc")


def frozen_base():
    from fastconv.layers import BatchNormalization
    from fastconv.models import Model

    inputs = Input((9, 7, 3), name="base_input")
    x = BatchNormalization()(Conv2D(4, 3, activation="relu", name="base_conv")(inputs))
    base = Model(inputs, MaxPooling2D()(x), name="base")
    base.trainable = False
    return base


def nested_model():
    from fastconv.models import Model

    inputs = Input((9, 7, 3), name="image")
    x = Flatten()(frozen_base()(inputs))
    return Model(inputs, Dense(3, activation="softmax", name="head")(x), name="transfer")


def nested_sequential():
    return Sequential([Input((9, 7, 3)), frozen_base(), Flatten(),
                       Dense(3, activation="softmax", name="head")], name="transfer_seq")


def graph_model():
    from fastconv.layers import (
        Activation,
        Add,
        BatchNormalization,
        Concatenate,
        GlobalMaxPooling2D,
        ZeroPadding2D,
    )
    from fastconv.models import Model

    inputs = Input((9, 7, 3), name="image")
    x = ZeroPadding2D(1)(inputs)
    x = Conv2D(4, 3, name="stem")(x)
    bn = BatchNormalization(epsilon=1.001e-5)
    y = bn(x)
    rng = np.random.default_rng(7)
    bn.set_weights([rng.random(4) + 0.5, rng.random(4) - 0.5, rng.random(4) - 0.5,
                    rng.random(4) + 0.5])
    a = Conv2D(4, 1, activation="relu", name="branch_a")(y)
    b = Conv2D(4, 3, padding="same", name="branch_b")(y)
    s = Activation("relu")(Add()([a, b]))
    c = Concatenate()([s, x])
    z = GlobalMaxPooling2D()(c)
    return Model(inputs, Dense(3, activation="softmax", name="out")(z), name="graph")


# -- round trips inside fastconv ----------------------------------------------------------------

def test_keras_archive_round_trip(tmp_path, rng):
    model = randomize_weights(small_sequential(), rng)
    x = rng.random((3, 10, 8, 2)).astype("float32")
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(zf.namelist())
        config = json.loads(zf.read("config.json"))
    assert config["class_name"] == "Sequential"
    again = load_model(tmp_path / "m.keras")
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weights_h5_round_trip(tmp_path, rng):
    model = randomize_weights(small_sequential(), rng)
    other = randomize_weights(small_sequential(), rng)
    x = rng.random((3, 10, 8, 2)).astype("float32")
    model.save_weights(tmp_path / "m.weights.h5")
    other.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_fastconv_archive_named_keras_still_loads(tmp_path):
    from fastconv import saving

    model = small_sequential()
    saving.save_model(model, tmp_path / "native.fcm")
    os.replace(tmp_path / "native.fcm", tmp_path / "native.keras")
    assert not keras_io.is_keras_file(tmp_path / "native.keras")
    assert load_model(tmp_path / "native.keras").count_params() == model.count_params()


def write_legacy(path, layers):
    """A legacy weights file as keras.applications ships them: ``layer_names`` at the root and a
    ``weight_names`` attribute per layer group, datasets under arbitrary names."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        for name, arrays in layers:
            group = f.create_group(name)
            weight_names = [f"{name}_W_{j}:0" for j in range(len(arrays))]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for w, a in zip(weight_names, arrays):
                group.create_dataset(w, data=a)


def test_legacy_weights_follow_weight_names(tmp_path, rng):
    """Arrays are read in the order of ``weight_names`` under the names it gives (old Keras
    called them ``conv1_W_1:0``); names are never rebuilt from the layer."""
    model = small_sequential()
    layers = []
    for layer in model.layers:
        layers.append((layer.name, [rng.standard_normal(w.shape).astype("float32")
                                    for w in layer.weights]))
    write_legacy(tmp_path / "legacy.h5", layers)
    model.load_weights(tmp_path / "legacy.h5")
    for layer, (_, arrays) in zip(model.layers, layers):
        for got, want in zip(layer.get_weights(), arrays):
            np.testing.assert_array_equal(got, want)


def test_legacy_weights_matched_by_position_when_names_differ(tmp_path, rng):
    model = small_sequential()
    weighted = [layer for layer in model.layers if layer.weights]
    layers = [(f"old_name_{i}", [rng.standard_normal(w.shape).astype("float32")
                                 for w in layer.weights]) for i, layer in enumerate(weighted)]
    layers.insert(1, ("a_pool_without_weights", []))
    write_legacy(tmp_path / "legacy.h5", layers)
    model.load_weights(tmp_path / "legacy.h5")
    np.testing.assert_array_equal(weighted[-1].get_weights()[0], layers[-1][1][0])


# -- bad input ----------------------------------------------------------------------------------

def test_weights_that_do_not_fit_name_layer_and_shapes(tmp_path):
    small_sequential().save_weights(tmp_path / "m.weights.h5")
    other = Sequential([Input((10, 8, 2)), Conv2D(5, 3, activation="relu", padding="same",
                                                   name="wide"),
                        MaxPooling2D(), Conv2D(6, 3, activation="tanh"), Flatten(),
                        Dropout(0.2), Dense(7, activation="relu"), Dense(3)])
    before = other.get_weights()
    with pytest.raises(InvalidModelFileError) as info:
        other.load_weights(tmp_path / "m.weights.h5")
    message = str(info.value)
    assert "'wide'" in message and "(3, 3, 2, 5)" in message and "(3, 3, 2, 4)" in message
    for a, b in zip(before, other.get_weights()):  # nothing was assigned
        np.testing.assert_array_equal(a, b)


def test_legacy_weights_that_do_not_fit(tmp_path, rng):
    model = small_sequential()
    layers = [(layer.name, [rng.standard_normal(w.shape).astype("float32")
                            for w in layer.weights]) for layer in model.layers if layer.weights]
    layers[-1] = (layers[-1][0], [np.zeros((7, 4), "float32"), np.zeros(4, "float32")])
    write_legacy(tmp_path / "legacy.h5", layers)
    with pytest.raises(InvalidModelFileError, match=r"expects shape \(7, 3\).*\(7, 4\)"):
        model.load_weights(tmp_path / "legacy.h5")
    write_legacy(tmp_path / "short.h5", layers[:2])
    with pytest.raises(InvalidModelFileError, match="holds weights for 2 layers"):
        model.load_weights(tmp_path / "short.h5")


def archive_with(path, config, weights: bytes = b""):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights)


def sequential_config(*layers):
    return {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "in"}},
        *layers]}}


def test_lambda_layers_are_refused(tmp_path):
    archive_with(tmp_path / "lambda.keras", sequential_config(
        {"class_name": "Lambda", "config": {"name": "evil", "function": "os.system('x')"}}))
    with pytest.raises(InvalidModelFileError, match="never runs code") as info:
        load_model(tmp_path / "lambda.keras")
    assert "lambda.keras" in str(info.value) and "'evil'" in str(info.value)


def test_unsupported_layer_class_lists_the_supported_ones(tmp_path):
    archive_with(tmp_path / "lstm.keras", sequential_config(
        {"class_name": "LSTM", "config": {"name": "rnn", "units": 3}}))
    with pytest.raises(InvalidModelFileError, match="supported layer classes: .*Conv2D.*Dense"):
        load_model(tmp_path / "lstm.keras")


def test_unsupported_option_is_named(tmp_path):
    archive_with(tmp_path / "reg.keras", sequential_config(
        {"class_name": "Dense", "config": {"name": "d", "units": 3,
                                           "kernel_regularizer": {"class_name": "L2"}}}))
    with pytest.raises(InvalidModelFileError, match="'d'.*kernel_regularizer"):
        load_model(tmp_path / "reg.keras")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "bad_json", "no_weights"])
def test_corrupt_keras_archive(tmp_path, damage):
    path = tmp_path / "m.keras"
    small_sequential().save(path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a zip at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "bad_json":
        archive_with(path, {})
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("config.json", "{not json")
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("config.json", json.dumps(json.loads(
                zipfile.ZipFile(io.BytesIO(data)).read("config.json"))))
    with pytest.raises(InvalidModelFileError, match="m.keras"):
        load_model(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_h5(tmp_path, damage):
    path = tmp_path / "w.weights.h5"
    model = small_sequential()
    model.save_weights(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3] if damage == "truncated" else b"\x89HDF\r\n\x1a\n" +
                     b"\x07" * 600)
    with pytest.raises(InvalidModelFileError, match="w.weights.h5"):
        model.load_weights(path)


def test_dataset_claiming_more_than_the_file_is_refused_before_allocating(tmp_path):
    """A header promising 4 GB in a file of a few kilobytes is refused without reading."""
    path = tmp_path / "huge.weights.h5"
    model = Sequential([Input((4,)), Dense(3, name="d")])
    with h5py.File(path, "w") as f:
        group = f.create_group("layers/dense/vars")
        group.attrs["name"] = "d"
        group.create_dataset("0", shape=(2**15, 2**15), dtype="float32")  # never written
        group.create_dataset("1", data=np.zeros(3, "float32"))
    assert path.stat().st_size < 2**20
    with pytest.raises(InvalidModelFileError, match="more than the whole file"):
        model.load_weights(path)


def test_compressed_and_non_float_datasets_are_refused(tmp_path):
    model = Sequential([Input((4,)), Dense(3, name="d")])
    for kind in ("gzip", "strings"):
        path = tmp_path / f"{kind}.weights.h5"
        with h5py.File(path, "w") as f:
            group = f.create_group("layers/dense/vars")
            group.attrs["name"] = "d"
            if kind == "gzip":
                group.create_dataset("0", data=np.zeros((4, 3), "float32"), compression="gzip")
            else:
                group.create_dataset("0", data=np.array([b"abc"] * 12).reshape(4, 3))
            group.create_dataset("1", data=np.zeros(3, "float32"))
        with pytest.raises(InvalidModelFileError, match="compressed" if kind == "gzip"
                           else "dtype"):
            model.load_weights(path)


def test_weights_file_given_to_load_model(tmp_path):
    small_sequential().save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(InvalidModelFileError, match="weights-only"):
        load_model(tmp_path / "w.weights.h5")


def test_saving_legacy_h5_models_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.keras file .* \.fcm"):
        small_sequential().save(tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_layers_keras_lacks_are_refused_when_saving_keras_files(tmp_path):
    lrn = layer_class("LocalResponseNormalization")
    model = Sequential([Input((6, 6, 3)), lrn(), Flatten(), Dense(2)])
    with pytest.raises(ValueError, match="LocalResponseNormalization.*Keras has no such layer"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()


def test_keras2_legacy_h5_model(tmp_path, rng):
    """A Keras 2 full-model file: ``batch_input_shape``, inbound nodes as
    ``[[name, node, tensor, kwargs]]``, a merge layer fed by two of them."""
    def node(*names):
        return [[[name, 0, 0, {}] for name in names]]

    config = {"class_name": "Model", "config": {
        "name": "k2", "layers": [
            {"class_name": "InputLayer", "name": "in", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 5], "dtype": "float32", "name": "in"}},
            {"class_name": "Dense", "name": "a", "inbound_nodes": node("in"),
             "config": {"name": "a", "units": 3, "activation": "relu", "use_bias": True}},
            {"class_name": "Dense", "name": "b", "inbound_nodes": node("in"),
             "config": {"name": "b", "units": 3, "activation": "linear", "use_bias": False}},
            {"class_name": "Add", "name": "sum", "inbound_nodes": node("a", "b"),
             "config": {"name": "sum"}}],
        "input_layers": [["in", 0, 0]], "output_layers": [["sum", 0, 0]]}}
    arrays = {"a": [rng.standard_normal((5, 3)), rng.standard_normal(3)],
              "b": [rng.standard_normal((5, 3))]}
    path = tmp_path / "k2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["training_config"] = json.dumps({
            "optimizer_config": {"class_name": "RMSprop", "config": {"lr": 0.002, "rho": 0.8}},
            "loss": "mse", "metrics": ["mae"]}).encode()
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = np.array([b"in", b"a", b"b", b"sum"])
        for name in ("in", "a", "b", "sum"):
            group = weights.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"][:len(arrays.get(name, []))]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, a in zip(names, arrays.get(name, [])):
                group.create_dataset(n, data=a.astype("float32"))
    model = load_model(path)
    x = rng.standard_normal((4, 5)).astype("float32")
    a, b = (v.astype("float32").astype(np.float64) for v in arrays["a"]), arrays["b"][0]
    kernel_a, bias_a = a
    expected = np.maximum(x @ kernel_a + bias_a, 0) + x @ b.astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(0.002)
    assert model.optimizer.rho == pytest.approx(0.8) and model.loss.name == "mean_squared_error"


def test_config_asking_for_more_weights_than_the_file_holds(tmp_path):
    """units=10**9 in a tiny archive: refused before 4 GB are allocated."""
    archive_with(tmp_path / "huge.keras", sequential_config(
        {"class_name": "Dense", "config": {"name": "wide", "units": 10**9}}), weights=b"x" * 100)
    with pytest.raises(InvalidModelFileError, match="'wide'.*more than the file's weights"):
        load_model(tmp_path / "huge.keras")


def _mutations(config, rng, count):
    """``count`` copies of ``config``, each with one value replaced or one key removed."""
    import copy

    values = [None, 0, -1, 3, 1.5, "", "x", [], [1], [None], {}, {"a": 1}, True, [[1, 2]],
              10**12, "Lambda", [["a", 0, 0]]]
    paths = []

    def walk(obj, path):
        if path:
            paths.append(path)
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(
            obj, list) else ()
        for key, value in items:
            walk(value, (*path, key))

    walk(config, ())
    for _ in range(count):
        mutated = copy.deepcopy(config)
        path = paths[rng.integers(len(paths))]
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = values[rng.integers(len(values))]
        yield mutated


@needs_ref
@pytest.mark.parametrize("model", MODELS)
def test_mangled_configs_give_only_invalid_model_file_errors(tmp_path, model):
    """One value of config.json changed at random, many times: each file either loads or is
    refused with InvalidModelFileError, never another exception (nor a huge allocation)."""
    from fastconv.utils import clear_session

    with zipfile.ZipFile(ref_path(model, "keras")) as zf:
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    rng = np.random.default_rng(5)
    for i, mutated in enumerate(_mutations(config, rng, 60)):
        path = tmp_path / f"m{i}.keras"
        archive_with(path, mutated, weights)
        clear_session()
        try:
            net = load_model(path)
        except InvalidModelFileError as exc:
            assert str(path) in str(exc)
            continue
        net.predict(np.zeros((1, *net.input_shape[1:]), "float32"), verbose=0)


def test_compile_settings_round_trip_and_refusals(tmp_path, caplog):
    model = small_sequential()
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.8, nesterov=True),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert again.optimizer.get_config() == model.optimizer.get_config()
    assert not load_model(tmp_path / "m.keras", compile=False).compiled
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    config["compile_config"]["optimizer"]["config"]["use_ema"] = True
    archive_with(tmp_path / "ema.keras", config, weights)
    with caplog.at_level("WARNING", logger="fastconv.keras_io"):
        loaded = load_model(tmp_path / "ema.keras")
    assert not loaded.compiled
    assert "use_ema" in caplog.text


def test_grouped_depthwise_and_separable_layers_go_both_ways_with_keras(tmp_path, rng):
    """Conv2D(groups=), DepthwiseConv2D (depth_multiplier 2) and SeparableConv2D: fastconv's
    .keras and .weights.h5 files predict the same in Keras, and what Keras saves again loads
    back in fastconv with the same predictions."""
    from fastconv.layers import DepthwiseConv2D, SeparableConv2D

    model = Sequential([Input((9, 8, 4)), Conv2D(6, 3, groups=2, activation="relu"),
                        DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                        SeparableConv2D(5, 3, strides=2, activation="relu"), Flatten(),
                        Dense(3)], name="grouped")
    model.set_weights([rng.normal(0, 0.4, w.shape).astype("float32")
                       for w in model.get_weights()])
    x = rng.random((4, 9, 8, 4)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "g.keras")
    model.save_weights(tmp_path / "g.weights.h5")
    want = model.predict(x, verbose=0)
    got = keras_predict(tmp_path, [
        ("model", str(tmp_path / "g.keras"), str(tmp_path / "x.npy")),
        (f"weights:{tmp_path / 'g.keras'}", str(tmp_path / "g.weights.h5"),
         str(tmp_path / "x.npy"))])
    for path, pred in got.items():
        assert relative_error(pred, want) <= TOLERANCE, path
    again = load_model(tmp_path / "g.resaved.keras")
    assert [type(la).__name__ for la in again.layers][:3] == [
        "Conv2D", "DepthwiseConv2D", "SeparableConv2D"]
    assert relative_error(again.predict(x, verbose=0), want) <= TOLERANCE
