"""The embeddable Predictor: loading every format, threads, pickling, clear errors."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest

import fastconv
from fastconv.inference import Predictor, load
from fastconv.layers import Add, Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Model, Sequential
from fastconv.saving import InvalidModelFileError

from . import shared
from .devices import EMULATED
from .threads import run_in_threads

THREADS = 8


def sequential_model():
    return Sequential([
        Conv2D(8, (3, 3), activation="relu", input_shape=(12, 12, 1)),
        MaxPooling2D((2, 2)),
        Flatten(),
        Dense(5, activation="softmax"),
    ])


def functional_model():
    x = Input((12, 12, 1))
    h = Conv2D(6, 3, padding="same", activation="relu")(x)
    y = Dense(5, activation="softmax")(Flatten()(Add()([h, Conv2D(6, 1)(x)])))
    return Model(x, y)


def nested_model():
    """A functional model nested in a Sequential one (the inner plan is a step of the outer)."""
    return Sequential([functional_model(), Dense(3, activation="softmax")])


MODELS = {"sequential": sequential_model, "functional": functional_model,
          "nested": nested_model}


def expected_shape(model):
    return (None, model.layers[-1].units)


def images(n, seed=0):
    return np.random.default_rng(seed).random((n, 12, 12, 1), dtype=np.float32)


def other_weights(model, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(w.shape).astype(w.dtype) * 0.3 for w in model.get_weights()]


# -- loading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MODELS))
def test_load_fcm_predicts_as_the_model(kind, tmp_path):
    model = MODELS[kind]()
    path = tmp_path / "m.fcm"
    model.save(path)
    predictor = load(path)
    x = images(7)
    assert isinstance(predictor, Predictor) and predictor.path == str(path)
    np.testing.assert_array_equal(predictor.predict(x), model.predict(x, verbose=0))
    np.testing.assert_array_equal(predictor(x, batch_size=3), model.predict(x, verbose=0))
    assert predictor.input_shape == (None, 12, 12, 1)
    assert predictor.output_shape == model.output_shape == expected_shape(model)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_keras_files_written_by_keras(suffix):
    import h5py  # noqa: F401 - Keras files need it; the test extra installs it

    path = shared.require("keras_ref", f"mini_resnet{suffix}")
    predictor = load(path)
    from fastconv.models import load_model

    model = load_model(path, compile=False)
    shape = (2, *predictor.input_shape[1:])
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    np.testing.assert_array_equal(predictor.predict(x), model.predict(x, verbose=0))


def test_load_keras_file_fastconv_wrote(tmp_path):
    import h5py  # noqa: F401 - Keras files need it; the test extra installs it

    model = sequential_model()
    path = tmp_path / "m.keras"
    model.save(path)
    x = images(4)
    np.testing.assert_allclose(load(path).predict(x), model.predict(x, verbose=0), rtol=1e-6)


def test_load_onnx_goes_through_fastconv_onnx(tmp_path, monkeypatch):
    """An .onnx path is handed to fastconv.onnx.load (imported only then)."""
    import fastconv.onnx as fc_onnx

    model = sequential_model()
    path = tmp_path / "m.onnx"
    fc_onnx.export(model, path)
    x = images(3)
    np.testing.assert_allclose(load(path).predict(x), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_backend_is_used_and_checked(tmp_path):
    model = sequential_model()
    x = images(4)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(Predictor(model, backend="numpy").predict(x), expected,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no-such"):
        Predictor(model, backend="no-such")
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(model, batch_size=0)
    with pytest.raises(TypeError, match="fastconv Model"):
        Predictor(object())


# -- bad files and inputs --------------------------------------------------------------------

@pytest.mark.parametrize("name,content", [
    ("corrupt.fcm", b"PK\x03\x04 this is not really a zip"),
    ("foreign.fcm", b"hello, world\n" * 10),
    ("foreign.keras", b"not an archive"),
    ("text.h5", b"plain text"),
])
def test_corrupt_or_foreign_file_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidModelFileError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_corrupt_onnx_file_names_the_file(tmp_path):
    import fastconv.onnx  # noqa: F401 - onnx is in the test extra: missing is an error

    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf model" * 3)
    with pytest.raises((InvalidModelFileError, ValueError)) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "missing.fcm")
    with pytest.raises(IsADirectoryError, match="folder"):
        load(tmp_path)


def test_input_shape_and_dtype_errors_name_expected_and_found():
    predictor = Predictor(sequential_model())
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 12, 12, 1\).*found "
                                         r"shape \(4, 12, 12, 3\)"):
        predictor.predict(np.zeros((4, 12, 12, 3), np.float32))
    with pytest.raises(ValueError, match=r"found shape \(12, 12, 1\).*add the batch axis"):
        predictor.predict(np.zeros((12, 12, 1), np.float32))
    with pytest.raises(TypeError, match="found dtype object"):
        predictor.predict(np.empty((2, 12, 12, 1), dtype=object))
    with pytest.raises(TypeError, match="found dtype complex"):
        predictor.predict(np.zeros((2, 12, 12, 1), dtype=np.complex64))
    # integers are numbers: converted like Keras does
    np.testing.assert_array_equal(predictor.predict(np.zeros((2, 12, 12, 1), np.uint8)),
                                  predictor.predict(np.zeros((2, 12, 12, 1), np.float32)))


# -- threads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend_name", ["numpy", "numba-cpu"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_threads_after_set_weights_match_serial_bitwise(kind, backend_name):
    """Weights change, then 8 threads predict at once: every answer is the serial one."""
    if fastconv.available_backends()[backend_name] is not None:
        pytest.skip(f"{backend_name} unavailable here")
    model = MODELS[kind]()
    predictor = Predictor(model, backend=backend_name, batch_size=16)
    x = images(40, seed=3)
    serial_model = MODELS[kind]()
    for round_ in range(4):
        weights = other_weights(model, seed=round_)
        serial_model.set_weights(weights)
        with fastconv.use_backend(backend_name):
            expected = serial_model.predict(x, batch_size=16, verbose=0)
        predictor.set_weights(weights)
        for got in run_in_threads(THREADS, lambda i: predictor.predict(x)):
            np.testing.assert_array_equal(got, expected)


def test_threads_each_set_weights_then_predict(backend):
    """8 threads, each with its own copy of a model: set_weights then predict, concurrently;
    each answer equals the serial answer for that thread's weights, bit for bit."""
    model = sequential_model()
    x = images(4 if EMULATED else 24, seed=4)  # 24 predictions of 4 images in an emulated run
    weights = [other_weights(model, seed=10 + i) for i in range(THREADS)]
    expected = []
    for w in weights:
        model.set_weights(w)
        expected.append(model.predict(x, verbose=0))
    # a thread starts in the default context: the backend is the Predictor's, not the fixture's
    copies = [Predictor(pickle.loads(pickle.dumps(model)), backend=backend.name)
              for _ in range(THREADS)]
    for c in copies:  # plans made with the old weights, so that set_weights must take effect
        c.predict(x)

    def work(i):
        copies[i].set_weights(weights[i])
        return copies[i].predict(x)

    for got, want in zip(run_in_threads(THREADS, work), expected):
        np.testing.assert_array_equal(got, want)


# -- pickling --------------------------------------------------------------------------------

@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("predicted", [False, True], ids=["fresh", "after-predict"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_models_pickle_and_predict_identically(kind, predicted, dumps):
    model = MODELS[kind]()
    x = images(9, seed=5)
    expected = model.predict(x, verbose=0) if predicted else None
    if predicted:
        assert model._plans  # the closures that used to break pickling are there
    clone = pickle.loads(dumps(model))
    assert not clone._plans
    got = clone.predict(x, verbose=0)
    if expected is None:
        expected = model.predict(x, verbose=0)
    np.testing.assert_array_equal(got, expected)
    assert model._plans if predicted else True  # the original keeps its plans


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_predictor_pickles_after_predict(dumps, tmp_path):
    model = functional_model()
    path = tmp_path / "f.fcm"
    model.save(path)
    predictor = load(path, backend="numpy")
    x = images(5, seed=6)
    expected = predictor.predict(x)
    clone = pickle.loads(dumps(predictor))
    assert clone.path == str(path) and clone.backend == "numpy"
    np.testing.assert_array_equal(clone.predict(x), expected)


def test_compiled_model_pickles_after_fit():
    model = sequential_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x = images(16, seed=7)
    y = np.eye(5, dtype=np.float32)[np.arange(16) % 5]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.predict(x, verbose=0)
    clone = cloudpickle.loads(cloudpickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
