"""Model and weight files: round trips, atomic writes, and every kind of damage being refused
with InvalidModelFileError (never a crash, never an unpickle)."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastconv.saving as saving
from fastconv import optimizers
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from fastconv.models import Sequential, load_model
from fastconv.saving import InvalidModelFileError
from fastconv.utils import set_random_seed

from .devices import EMULATED
from .weights import randomize_weights


def make_model():
    """Images with more rows than columns, so that a transposed image or kernel shows."""
    return Sequential([Input((8, 6, 1)), Conv2D(3, 3, activation="relu", padding="same"),
                       MaxPooling2D(), Flatten(), Dropout(0.1), Dense(8, activation="tanh"),
                       Dense(3, activation="softmax")])


@pytest.fixture
def data(rng):
    n = 8 if EMULATED else 24  # one training step per epoch in an emulated device's slow kernels
    x = rng.random((n, 8, 6, 1)).astype("float32")
    ids = rng.integers(0, 3, n)
    return x, ids


@pytest.fixture
def trained(backend, data, rng):
    x, ids = data
    model = randomize_weights(make_model(), rng)
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, ids, epochs=1, batch_size=8, verbose=0)
    return model


def test_invalid_model_file_error_is_a_value_error():
    assert issubclass(InvalidModelFileError, ValueError)


def test_save_load_round_trip(trained, data, tmp_path):
    x, ids = data
    path = tmp_path / "model.fcm"
    trained.save(path)
    loaded = load_model(path)
    assert type(loaded) is Sequential and loaded is not trained
    assert loaded.get_config() == trained.get_config()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in trained.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), trained.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # compile settings
    assert loaded.compiled
    assert type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.get_config() == trained.optimizer.get_config()
    assert loaded.loss.name == "sparse_categorical_crossentropy"
    assert loaded.metrics_names == ["loss", "accuracy"]
    assert loaded.evaluate(x, ids, verbose=0) == trained.evaluate(x, ids, verbose=0)
    # optimizer state
    assert loaded.optimizer.iterations == trained.optimizer.iterations == len(x) // 8
    state, state2 = trained.optimizer.get_state(), loaded.optimizer.get_state()
    assert sorted(state["arrays"]) == sorted(state2["arrays"]) and state["arrays"]
    for key, value in state["arrays"].items():
        np.testing.assert_array_equal(np.asarray(state2["arrays"][key]), np.asarray(value))


def test_continued_training_matches(trained, data, tmp_path):
    x, ids = data
    trained.save(tmp_path / "model.fcm")
    loaded = load_model(tmp_path / "model.fcm")
    set_random_seed(11)  # the same shuffles and dropout masks for both
    h1 = trained.fit(x, ids, epochs=2, batch_size=8, verbose=0).history
    set_random_seed(11)
    h2 = loaded.fit(x, ids, epochs=2, batch_size=8, verbose=0).history
    assert h1 == h2
    for a, b in zip(trained.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_without_compile(trained, tmp_path):
    trained.save(tmp_path / "m.fcm")
    loaded = load_model(tmp_path / "m.fcm", compile=False)
    assert not loaded.compiled and loaded.optimizer is None


def test_uncompiled_model_round_trip(backend, data, rng, tmp_path):
    x, _ = data
    model = randomize_weights(make_model(), rng)  # a fresh model's biases are all zero
    model.save(tmp_path / "m.fcm")
    loaded = load_model(tmp_path / "m.fcm")
    assert not loaded.compiled
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_float64_model_round_trip(backend, rng, tmp_path):
    model = randomize_weights(Sequential([Dense(3, input_shape=(4,), dtype="float64")]), rng)
    model.save(tmp_path / "m.fcm")
    loaded = load_model(tmp_path / "m.fcm")
    assert loaded.get_weights()[0].dtype == np.float64
    x = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_unbuilt_model_cannot_be_saved(backend, tmp_path):
    with pytest.raises(ValueError, match="not built yet"):
        Sequential([Dense(2)]).save(tmp_path / "m.fcm")
    assert list(tmp_path.iterdir()) == []


def test_save_weights_load_weights(trained, data, tmp_path):
    x, _ = data
    path = tmp_path / "w.fcw"
    trained.save_weights(path)
    other = make_model()
    before = other.predict(x, verbose=0)
    assert not np.allclose(before, trained.predict(x, verbose=0))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x, verbose=0), trained.predict(x, verbose=0))
    # A full model file holds weights too.
    trained.save(tmp_path / "m.fcm")
    third = make_model()
    third.load_weights(tmp_path / "m.fcm")
    np.testing.assert_array_equal(third.predict(x, verbose=0), trained.predict(x, verbose=0))
    # A weights file is not a model.
    with pytest.raises(InvalidModelFileError, match="expected a file of format fastconv-model, "
                                                    "found 'fastconv-weights'"):
        load_model(path)


def test_load_weights_into_a_different_model(trained, backend, tmp_path):
    path = tmp_path / "w.fcw"
    trained.save_weights(path)
    fewer = Sequential([Input((8, 6, 1)), Flatten(), Dense(3)])
    with pytest.raises(InvalidModelFileError, match="holds 6 weight arrays but model"):
        fewer.load_weights(path)
    wider = Sequential([Input((8, 6, 1)), Conv2D(4, 3, padding="same"), MaxPooling2D(),
                        Flatten(), Dense(8), Dense(3)])
    before = wider.get_weights()
    with pytest.raises(InvalidModelFileError, match=r"has shape \(3, 3, 1, 3\) but"):
        wider.load_weights(path)
    for a, b in zip(wider.get_weights(), before):  # nothing was half-assigned
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not built yet"):
        Sequential([Dense(3)]).load_weights(path)


def test_missing_file(backend, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "nope.fcm")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_model().save(tmp_path / "no-folder" / "m.fcm")


# -- atomic writes ---------------------------------------------------------------------------


def test_failed_save_leaves_the_earlier_file_intact(trained, data, tmp_path, monkeypatch):
    x, ids = data
    path = tmp_path / "model.fcm"
    trained.save(path)
    original = path.read_bytes()
    trained.fit(x, ids, epochs=1, verbose=0)  # the next save would differ

    calls = {"n": 0}
    real = np.lib.format.write_array

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 3 == 0:  # the third array of each save: part of the archive is written
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="simulated"):
        trained.save(path)
    with pytest.raises(OSError, match="simulated"):
        trained.save_weights(tmp_path / "weights.fcw")
    assert calls["n"] >= 3
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fcm"]  # no temp files left
    monkeypatch.undo()
    trained.save(path)
    assert path.read_bytes() != original


def test_interrupted_save_leaves_no_temp_file(trained, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trained.save(tmp_path / "m.fcm")
    assert list(tmp_path.iterdir()) == []


# -- damaged files --------------------------------------------------------------------------------


@pytest.fixture
def saved(trained, tmp_path):
    path = tmp_path / "model.fcm"
    trained.save(path)
    return path


def _rewrite(path, members: dict) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def _members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _expect_invalid(path, match, loader=load_model):
    with pytest.raises(InvalidModelFileError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value)


def test_truncated_file(saved):
    data = saved.read_bytes()
    for keep in (len(data) // 2, len(data) - 10, 10):
        saved.write_bytes(data[:keep])
        _expect_invalid(saved, "truncated or corrupted|corrupted")


def test_random_bytes(saved, rng):
    saved.write_bytes(rng.bytes(4000))
    _expect_invalid(saved, "not a fastconv file, or it is truncated or corrupted")


def test_empty_file(saved):
    saved.write_bytes(b"")
    _expect_invalid(saved, "not a fastconv file")


def test_zip_without_manifest(saved):
    members = _members(saved)
    del members["fastconv.json"]
    _rewrite(saved, members)
    _expect_invalid(saved, "has no fastconv.json: not a fastconv file")


def test_manifest_not_json(saved):
    members = _members(saved)
    members["fastconv.json"] = b"{not json"
    _rewrite(saved, members)
    _expect_invalid(saved, "fastconv.json is not valid JSON")


@pytest.mark.parametrize("change, match", [
    ({"format": "keras"}, "expected a file of format fastconv-model, found 'keras'"),
    ({"format": None}, "found None"),
    ({"format_version": 99}, "format version 99 is not supported"),
    ({"format_version": "1"}, "format version '1' is not supported"),
    ({"model": {"class_name": "Subclassed", "config": {}}}, "unsupported model description"),
    ({"model": {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Conv3D", "config": {}}]}}}, "architecture cannot be rebuilt.*Conv3D"),
    ({"weights": None}, "lists no weights"),
    ({"compile": {"optimizer": "lion", "loss": "mse", "metrics": []}},
     "compile settings are invalid"),
])
def test_manifest_with_wrong_content(saved, change, match):
    members = _members(saved)
    manifest = json.loads(members["fastconv.json"])
    manifest.update(change)
    members["fastconv.json"] = json.dumps(manifest)
    _rewrite(saved, members)
    _expect_invalid(saved, match)


def test_manifest_that_is_not_an_object(saved):
    members = _members(saved)
    members["fastconv.json"] = b"[1, 2, 3]"
    _rewrite(saved, members)
    _expect_invalid(saved, "expected a file of format")


def test_weight_entry_mismatches(saved):
    members = _members(saved)
    manifest = json.loads(members["fastconv.json"])
    good = json.dumps(manifest)
    cases = [
        (lambda m: m["weights"][0].update(shape=[1, 2]), "has shape .* but the manifest says"),
        (lambda m: m["weights"][0].update(dtype="float64"), "but the manifest says"),
        (lambda m: m["weights"][0].update(dtype="object"), "unsupported dtype 'object'"),
        (lambda m: m["weights"][0].update(file="arrays/99.npy"), "is missing"),
        (lambda m: m["weights"][0].pop("file"), "malformed array entry"),
        (lambda m: m["weights"].pop(), "holds 5 weight arrays but model"),
        (lambda m: m["optimizer"]["arrays"][0].update(name="nope/m"),
         "optimizer state does not fit"),
    ]
    for change, match in cases:
        m = json.loads(good)
        change(m)
        members["fastconv.json"] = json.dumps(m)
        _rewrite(saved, members)
        _expect_invalid(saved, match)


def test_flipped_bytes_inside_an_array(saved):
    with zipfile.ZipFile(saved) as zf:
        arrays = [i for i in zf.infolist() if i.filename.startswith("arrays/")]
        largest = max(arrays, key=lambda i: i.file_size)
        assert largest.file_size > 200 and largest.compress_type == zipfile.ZIP_STORED
        offset = largest.header_offset
    data = bytearray(saved.read_bytes())
    name_len = int.from_bytes(data[offset + 26:offset + 28], "little")
    extra_len = int.from_bytes(data[offset + 28:offset + 30], "little")
    start = offset + 30 + name_len + extra_len  # the member's bytes (stored, not compressed)
    position = start + largest.file_size - 8  # inside the array values, past the .npy header
    data[position] ^= 0xFF
    saved.write_bytes(bytes(data))
    _expect_invalid(saved, r"array '.*' is corrupted \(Bad CRC-32")
    _expect_invalid(saved, "corrupted", loader=lambda p: make_model().load_weights(p))


def test_pickled_object_array_is_never_unpickled(saved, tmp_path):
    """An .npy holding a pickle whose loading would create a folder: loading the model must
    refuse the array before anything is unpickled."""
    marker = tmp_path / "unpickled-marker"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    buf = io.BytesIO()
    np.save(buf, evil, allow_pickle=True)
    members = _members(saved)
    members["arrays/0.npy"] = buf.getvalue()
    _rewrite(saved, members)
    with pytest.raises(InvalidModelFileError, match="Object arrays cannot be loaded"):
        load_model(saved)
    with pytest.raises(InvalidModelFileError):
        make_model().load_weights(saved)
    assert not marker.exists()


def test_save_never_pickles(trained, tmp_path, monkeypatch):
    seen = []
    real = np.lib.format.write_array

    def spy(fp, array, allow_pickle=True, **kwargs):
        seen.append(allow_pickle)
        return real(fp, array, allow_pickle=allow_pickle, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", spy)
    trained.save(tmp_path / "m.fcm")
    assert seen and not any(seen)
    assert saving.FORMAT_VERSION == 1


def test_frozen_after_training_without_recompiling_saves_and_loads(trained, data, tmp_path):
    """Train, freeze a layer without recompiling, save: the optimizer state of the frozen
    weights is keyed by weight path, so the file loads, frozen, with all of its state."""
    x, ids = data
    conv = trained.layers[0]
    conv.trainable = False
    path = tmp_path / "frozen.fcm"
    trained.save(path)
    with zipfile.ZipFile(path) as zf:
        names = [e["name"] for e in json.loads(zf.read("fastconv.json"))["optimizer"]["arrays"]]
    assert f"{conv.name}/kernel/m" in names  # the frozen weights' moments are kept
    loaded = load_model(path)
    assert not loaded.layers[0].trainable
    assert [w.name for w in loaded.trainable_weights] == [w.name for w in trained.trainable_weights]
    state, want = (m.optimizer.get_state(m.weight_paths()) for m in (loaded, trained))
    assert state["iterations"] == want["iterations"] == len(x) // 8  # the trained fixture's steps
    assert sorted(state["arrays"]) == sorted(want["arrays"])
    for key, value in want["arrays"].items():
        np.testing.assert_array_equal(np.asarray(state["arrays"][key]), np.asarray(value))
    for model in (trained, loaded):  # the same dropout masks for both
        set_random_seed(7)
        model.fit(x, ids, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), trained.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(loaded.layers[0].get_weights()[0], conv.get_weights()[0])


def test_optimizer_state_of_a_different_model_is_refused(trained, tmp_path):
    """Keys name weights by path: state for a weight the model lacks is an error, not a silent
    mismatch by position."""
    path = tmp_path / "model.fcm"
    trained.save(path)
    members = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            members[name] = zf.read(name)
    manifest = json.loads(members["fastconv.json"])
    manifest["optimizer"]["arrays"][0]["name"] = "no_such_layer/kernel/m"
    members["fastconv.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with pytest.raises(InvalidModelFileError, match="no_such_layer/kernel/m"):
        load_model(path)
