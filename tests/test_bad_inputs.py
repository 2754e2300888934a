"""Malformed API and CLI inputs: each gives a clear error that names the argument or layer and
what was expected. One test per family; every case is kept as a parameter."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv.datasets import mnist
from fastconv.layers import Dense
from fastconv.models import Sequential

# -- the MNIST loader -----------------------------------------------------------------------------


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))


def test_mnist_names_the_missing_files(mnist_dir, no_data_env, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copyfile(mnist_dir / "t10k-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(mnist.DatasetNotFoundError) as info:
        mnist.load_data(path=folder, download=False)
    message = str(info.value)
    missing_line = next(line for line in message.splitlines() if "missing:" in line)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz"):
        assert name in missing_line
    assert "t10k-labels-idx1-ubyte.gz" not in missing_line


def test_mnist_says_when_a_folder_does_not_exist(no_data_env, tmp_path):
    with pytest.raises(mnist.DatasetNotFoundError, match="does not exist"):
        mnist.load_data(path=tmp_path / "nowhere", download=False)


def test_mnist_explicit_path_never_falls_back_to_fastconv_data(mnist_dir, monkeypatch, tmp_path):
    """``$FASTCONV_DATA`` holds MNIST, but the ``path`` asked for does not: that is an error
    about ``path``, not a silent switch to another folder."""
    monkeypatch.setenv("FASTCONV_DATA", str(mnist_dir))
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(mnist.DatasetNotFoundError) as info:
        mnist.load_data(path=empty, download=False)
    assert str(empty) in str(info.value) and str(mnist_dir) not in str(info.value)


# -- dtypes, empty batches and allocations in the functional API ----------------------------------

def _conv_inputs(dtype, rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    return x, w


def test_float16_inputs_are_computed_in_float32(backend, rng):
    x, w = _conv_inputs(np.float16, rng)
    y = F.conv2d(x, w, padding="same")
    assert y.dtype == np.float32
    expected = F.conv2d(x.astype(np.float32), w.astype(np.float32), padding="same")
    np.testing.assert_array_equal(backend.to_host(y.data), backend.to_host(expected.data))
    d = F.dense(x.reshape(2, -1), np.ones((108, 5), np.float16))
    assert d.dtype == np.float32
    p = F.max_pool2d(x, 2)
    assert p.dtype == np.float32


@pytest.mark.parametrize("op", ["conv2d", "dense", "max_pool2d", "relu"])
def test_longdouble_inputs_are_refused_with_the_supported_dtypes(backend, rng, op):
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.longdouble)
    calls = {"conv2d": lambda: F.conv2d(x, np.ones((3, 3, 3, 2), np.float32)),
             "dense": lambda: F.dense(x.reshape(2, -1), np.ones((48, 2), np.float32)),
             "max_pool2d": lambda: F.max_pool2d(x, 2), "relu": lambda: F.relu(x)}
    if np.dtype(np.longdouble) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=r"input.*float128|longdouble") as info:
        calls[op]()
    assert "float32" in str(info.value) and "float64" in str(info.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_inputs_take_the_dtype_of_the_kernel(backend, rng, dtype):
    """An int input with a float64 kernel used to fail with 'dtypes differ (input float32,
    kernel float64)', naming a dtype the caller never gave."""
    x = rng.integers(0, 5, size=(2, 5, 5, 3))
    w = rng.standard_normal((3, 3, 3, 2)).astype(dtype)
    y = F.conv2d(x, w)
    assert y.dtype == dtype
    np.testing.assert_allclose(backend.to_host(y.data),
                               backend.to_host(F.conv2d(x.astype(dtype), w).data), rtol=1e-6)
    assert F.dense(x.reshape(2, -1), np.ones((75, 2), dtype)).dtype == dtype


def test_mismatched_float_dtypes_name_what_was_given(backend, rng):
    x, w = _conv_inputs(np.float32, rng)
    with pytest.raises(TypeError, match="input float32, kernel float64"):
        F.conv2d(x, w.astype(np.float64))


@pytest.mark.parametrize("loss", [
    lambda p, y: F.cross_entropy(p, y), lambda p, y: F.cross_entropy(p, y, from_logits=True),
    lambda p, y: F.softmax_cross_entropy(p, y), lambda p, y: F.mean_squared_error(p, y)])
def test_losses_refuse_an_empty_batch(backend, loss):
    """A mean over no samples used to come back as NaN without a word."""
    with pytest.raises(ValueError, match="empty batch"):
        loss(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))


def test_a_layer_too_large_to_allocate_names_the_layer_and_the_bytes(backend):
    with pytest.raises(MemoryError) as info:
        Sequential([Dense(2**40, name="huge", input_shape=(1024,))])
    message = str(info.value)
    assert "huge" in message and str(1024 * 2**40 * 4) in message


# -- malformed API inputs: each a clear error naming the argument or layer -----------------------

def _model():
    from fastconv.layers import Conv2D, Flatten

    m = Sequential([Conv2D(2, 3, input_shape=(6, 6, 1), name="c"), Flatten(name="f"),
                    Dense(3, name="d")])
    m.compile(optimizer="sgd", loss="mse")
    return m


def _x(n=4):
    return np.zeros((n, 6, 6, 1), np.float32)


def _k():
    return np.zeros((3, 3, 1, 2), np.float32)


def _y(n=4):
    return np.zeros((n, 3), np.float32)


def _layers():
    from fastconv import layers as L

    return L


API_CASES = {
    # layer constructors
    "Conv2D filters=-1": (lambda: _layers().Conv2D(-1, 3), ValueError, "filters"),
    "Conv2D filters=1.5": (lambda: _layers().Conv2D(1.5, 3), (TypeError, ValueError), "filters"),
    "Conv2D filters='8'": (lambda: _layers().Conv2D("8", 3), (TypeError, ValueError), "filters"),
    "Conv2D kernel_size=0": (lambda: _layers().Conv2D(2, 0), ValueError, "kernel_size"),
    "Conv2D kernel_size=(3,3,3)": (lambda: _layers().Conv2D(2, (3, 3, 3)), ValueError,
                                   "kernel_size"),
    "Conv2D strides=0": (lambda: _layers().Conv2D(2, 3, strides=0), ValueError, "strides"),
    "Conv2D padding='diagonal'": (lambda: _layers().Conv2D(2, 3, padding="diagonal"),
                                  ValueError, "padding"),
    "Conv2D dilation_rate=0": (lambda: _layers().Conv2D(2, 3, dilation_rate=0), ValueError,
                               "dilation"),
    "Conv2D activation='nope'": (lambda: _layers().Conv2D(2, 3, activation="nope"), ValueError,
                                 "nope"),
    "Conv2D kernel_initializer='nope'": (
        lambda: _layers().Conv2D(2, 3, kernel_initializer="nope", input_shape=(4, 4, 1)),
        ValueError, "nope"),
    "Conv2D unknown keyword": (lambda: _layers().Conv2D(2, 3, filterz=3), TypeError, "filterz"),
    "Conv2D data_format channels_first": (
        lambda: _layers().Conv2D(2, 3, data_format="channels_first"), ValueError, "data_format"),
    "Dense units=0": (lambda: _layers().Dense(0), ValueError, "units"),
    "Dense units=-3": (lambda: _layers().Dense(-3), ValueError, "units"),
    "Dense units=None": (lambda: _layers().Dense(None), (TypeError, ValueError), "units"),
    "Dense activation=5": (lambda: _layers().Dense(3, activation=5), (TypeError, ValueError),
                           "activation"),
    "MaxPooling2D pool_size=0": (lambda: _layers().MaxPooling2D(0), ValueError, "pool_size"),
    "MaxPooling2D padding='full'": (lambda: _layers().MaxPooling2D(2, padding="full"),
                                    ValueError, "padding"),
    "AveragePooling2D strides=-1": (lambda: _layers().AveragePooling2D(2, strides=-1),
                                    ValueError, "strides"),
    "Dropout rate=1.5": (lambda: _layers().Dropout(1.5), ValueError, "rate"),
    "Dropout rate=-0.1": (lambda: _layers().Dropout(-0.1), ValueError, "rate"),
    "Reshape two -1": (lambda: Sequential([_layers().Reshape((-1, -1), input_shape=(4,))]),
                       ValueError, "Reshape|-1"),
    "Reshape wrong size": (lambda: Sequential([_layers().Reshape((3, 3), input_shape=(4,))]),
                           ValueError, "Reshape|reshape"),
    "Activation 'nope'": (lambda: _layers().Activation("nope"), ValueError, "nope"),
    "kernel larger than input": (
        lambda: Sequential([_layers().Conv2D(2, 7, input_shape=(4, 4, 1), name="big")]),
        ValueError, "big"),
    "Conv2D on a 2D input": (
        lambda: Sequential([_layers().Conv2D(2, 3, input_shape=(4,), name="flat")]), ValueError,
        "flat"),
    "input_shape with a negative size": (
        lambda: Sequential([_layers().Dense(2, input_shape=(-4,))]), ValueError, "shape"),
    # models
    "Sequential of a non-layer": (lambda: Sequential([3]), TypeError, "layer"),
    "compile without loss": (lambda: _model().compile(optimizer="sgd"), (TypeError, ValueError),
                             "loss"),
    "compile loss='nope'": (lambda: _model().compile(optimizer="sgd", loss="nope"), ValueError,
                            "nope"),
    "compile optimizer='nope'": (lambda: _model().compile(optimizer="nope", loss="mse"),
                                 ValueError, "nope"),
    "compile metrics='nope'": (lambda: _model().compile(loss="mse", metrics=["nope"]),
                               ValueError, "nope"),
    "fit x of the wrong shape": (lambda: _model().fit(np.zeros((4, 5, 5, 1)), _y(), verbose=0),
                                 ValueError, "shape"),
    "fit x and y of different lengths": (lambda: _model().fit(_x(4), _y(3), verbose=0),
                                         ValueError, "4|3"),
    "fit y of the wrong width": (lambda: _model().fit(_x(), np.zeros((4, 5)), verbose=0),
                                 ValueError, "shape|target"),
    "fit batch_size=0": (lambda: _model().fit(_x(), _y(), batch_size=0, verbose=0), ValueError,
                         "batch_size"),
    "fit epochs=-1": (lambda: _model().fit(_x(), _y(), epochs=-1, verbose=0), ValueError,
                      "epochs"),
    "fit epochs=1.5": (lambda: _model().fit(_x(), _y(), epochs=1.5, verbose=0),
                       (TypeError, ValueError), "epochs"),
    "fit verbose=7": (lambda: _model().fit(_x(), _y(), verbose=7), ValueError, "verbose"),
    "fit x of strings": (lambda: _model().fit(np.full((4, 6, 6, 1), "a"), _y(), verbose=0),
                         (TypeError, ValueError), "x|input"),
    "fit x empty": (lambda: _model().fit(_x(0), _y(0), verbose=0), ValueError, "empty|0"),
    "fit validation_split=2": (lambda: _model().fit(_x(), _y(), validation_split=2, verbose=0),
                               ValueError, "validation_split"),
    "fit before compile": (lambda: Sequential([Dense(2, input_shape=(3,))]).fit(
        np.zeros((2, 3)), np.zeros((2, 2)), verbose=0), (RuntimeError, ValueError), "compile"),
    "fit unknown keyword": (lambda: _model().fit(_x(), _y(), epochz=2), TypeError, "epochz"),
    "predict wrong shape": (lambda: _model().predict(np.zeros((2, 7, 7, 1)), verbose=0),
                            ValueError, "shape"),
    "predict batch_size=0": (lambda: _model().predict(_x(), batch_size=0, verbose=0),
                             ValueError, "batch_size"),
    "predict a list of strings": (lambda: _model().predict(["a", "b"], verbose=0),
                                  (TypeError, ValueError), "x|input"),
    "evaluate wrong y": (lambda: _model().evaluate(_x(), np.zeros((4, 2)), verbose=0),
                         ValueError, "shape|target"),
    "set_weights wrong count": (lambda: _model().set_weights([np.zeros((3, 3, 1, 2))]),
                                ValueError, "weight"),
    "set_weights wrong shape": (lambda: _model().set_weights(
        [np.zeros((3, 3, 1, 5)), np.zeros(2), np.zeros((32, 3)), np.zeros(3)]), ValueError,
        "c/kernel|shape"),
    "save to a missing folder": (lambda: _model().save("/nonexistent-folder/m.fcm"),
                                 FileNotFoundError, "nonexistent-folder"),
    "load a missing file": (lambda: fastconv.models.load_model("/nonexistent/m.fcm"),
                            FileNotFoundError, "nonexistent"),
    # functional ops
    "conv2d 3D input": (lambda: F.conv2d(np.zeros((6, 6, 1)), np.zeros((3, 3, 1, 2))),
                        ValueError, "4D|input"),
    "conv2d channel mismatch": (lambda: F.conv2d(np.zeros((1, 6, 6, 2)), np.zeros((3, 3, 1, 2))),
                                ValueError, "channel"),
    "conv2d strides=0": (lambda: F.conv2d(_x(), _k(), strides=0), ValueError,
                         "strides"),
    "conv2d padding=-1": (lambda: F.conv2d(_x(), _k(), padding=-1),
                          ValueError, "padding"),
    "conv2d algo='fft'": (lambda: F.conv2d(_x(), _k(), algo="fft"),
                          ValueError, "fft"),
    "conv2d activation='tanh'": (
        lambda: F.conv2d(_x(), _k(), activation="tanh"), ValueError,
        "activation"),
    "conv2d bias of the wrong shape": (
        lambda: F.conv2d(_x(), _k(), np.zeros(3, np.float32)), ValueError, "bias"),
    "conv2d complex input": (lambda: F.conv2d(_x().astype(complex), np.zeros((3, 3, 1, 2))),
                             TypeError, "input"),
    "conv2d object input": (lambda: F.conv2d(np.array([[1], "a"], dtype=object),
                                             np.zeros((3, 3, 1, 2))), TypeError, "input"),
    "dense kernel 3D": (lambda: F.dense(np.zeros((2, 3)), np.zeros((3, 2, 1))), ValueError,
                        "kernel"),
    "dense shape mismatch": (lambda: F.dense(np.zeros((2, 3)), np.zeros((4, 2))), ValueError,
                             "shape"),
    "max_pool2d pool=0": (lambda: F.max_pool2d(_x(), 0), ValueError, "pool"),
    "max_pool2d pool larger than input": (lambda: F.max_pool2d(_x(), 9), ValueError, "pool|fit"),
    "cross_entropy labels out of range": (
        lambda: F.cross_entropy(np.full((2, 3), 1 / 3), np.array([0, 5]), sparse=True),
        ValueError, "label"),
    "mean_squared_error shape mismatch": (
        lambda: F.mean_squared_error(np.zeros((2, 3)), np.zeros((2, 4))), ValueError, "shape"),
    # settings
    "set_num_threads(0)": (lambda: fastconv.set_num_threads(0), ValueError, "n"),
    "use_backend('cuda9')": (lambda: fastconv.use_backend("cuda9").__enter__(), ValueError,
                             "cuda9"),
    "use_conv_algo('fft')": (lambda: fastconv.use_conv_algo("fft").__enter__(), ValueError,
                             "fft"),
    "mnist path is a file": (lambda: mnist.load_data(path=__file__, download=False),
                             mnist.DatasetNotFoundError, "test_bad_inputs"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_malformed_api_input(backend, name):
    call, error, match = API_CASES[name]
    with pytest.raises(error, match=match):
        call()


CLI_CASES = {
    "unknown command": (["fly"], "invalid choice"),
    "no command": ([], "required"),
    "train-mnist --epochs abc": (["train-mnist", "--epochs", "abc"], "--epochs"),
    "train-mnist --verbose 5": (["train-mnist", "--verbose", "5"], "--verbose"),
    "train-mnist --epochs 0": (["train-mnist", "--epochs", "0", "--data", "."], "epochs"),
    "train-mnist --batch-size -2": (["train-mnist", "--batch-size", "-2", "--data", "."],
                                    "batch.size"),
    "train-mnist --backend nope": (["train-mnist", "--backend", "nope"], "nope"),
    "train-mnist --algo fft": (["train-mnist", "--algo", "fft"], "fft"),
    "train-mnist --data missing": (["train-mnist", "--data", "/nonexistent-mnist", "--epochs",
                                    "1"], "nonexistent-mnist"),
    "info --explain missing": (["info", "--explain", "/nonexistent/model.fcm"], "nonexistent"),
    "info --explain not a model": (["info", "--explain", __file__], "test_bad_inputs.py"),
    "info --batch-size x": (["info", "--batch-size", "x"], "--batch-size"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_malformed_cli_input(name, capsys, monkeypatch, tmp_path):
    from fastconv import cli

    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))

    def offline(url, timeout=None):
        raise mnist.urllib.error.URLError("no network in tests")

    monkeypatch.setattr(mnist.urllib.request, "urlopen", offline)
    argv, match = CLI_CASES[name]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert __import__("re").search(match, err), err


@pytest.mark.parametrize("make", [
    lambda L: L.MaxPooling2D(2, strides=2**63, input_shape=(8, 8, 1)),
    lambda L: L.AveragePooling2D(2**40, input_shape=(8, 8, 1)),
    lambda L: L.MaxPooling1D(2**31, input_shape=(8, 1)),
])
def test_absurd_window_arguments_are_refused_when_the_layer_is_made(make):
    """Sizes past what a kernel indexes are refused at once, naming the layer and argument
    (not at predict, with an OverflowError)."""
    import fastconv.layers as L

    with pytest.raises(ValueError, match=r"layer '.*': (strides|pool_size) must be at most"):
        Sequential([make(L)])


def test_a_same_pooling_whose_padding_would_take_gigabytes_names_layer_and_bytes():
    import fastconv.layers as L

    with pytest.raises(ValueError, match=r"MaxPooling2D layer 'huge'.*pads each 8x8 input to "
                                         r"\d+x\d+ pixels \(\d+ bytes per image\)"):
        Sequential([L.MaxPooling2D(2**30, strides=1, padding="same", input_shape=(8, 8, 1),
                                   name="huge")])


def test_a_dilated_same_convolution_needing_gigabytes_is_refused_at_load(tmp_path):
    """Conv2D with dilation 10**6 and 'same' padding on 8x8 images: once a MemoryError at
    predict for a plane of 2,000,008 x 2,000,008 pixels; now refused when the file is loaded,
    naming the file, the layer and the bytes."""
    import fastconv.layers as L
    from fastconv.models import load_model
    from fastconv.saving import InvalidModelFileError

    from .campaign import hostile

    with pytest.raises(ValueError, match=r"'wide' \(Conv2D\).*2000008x2000008 pixels"):
        Sequential([L.Conv2D(2, 3, dilation_rate=10**6, padding="same",
                             input_shape=(8, 8, 1), name="wide")])
    path = tmp_path / "m.fcm"
    Sequential([L.Conv2D(2, 3, dilation_rate=2, padding="same", input_shape=(8, 8, 1),
                         name="wide")]).save(path)
    manifest = hostile.manifest_of(path.read_bytes())
    layer = next(la for la in manifest["model"]["config"]["layers"]
                 if la["config"].get("name") == "wide")
    layer["config"]["dilation_rate"] = [10**6, 10**6]
    path.write_bytes(hostile.with_manifest(path.read_bytes(), manifest))
    with pytest.raises(InvalidModelFileError, match=r"m\.fcm.*'wide'.*bytes per image"):
        load_model(path)
