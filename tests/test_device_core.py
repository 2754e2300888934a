"""What device backends will rely on, checked on the CPU backends: host copies only through
``Backend.to_host``, ops refusing inputs from two backends, ``Model.to`` moving weights and
optimizer state, and ``name:device`` backend names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import backends, config, geometry, ops, optimizers
from fastconv.backends.numpy_backend import NumpyBackend
from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Sequential, load_model
from fastconv.tensor import Tensor
from fastconv.utils import clear_session, set_random_seed


def _require(*names):
    for name in names:
        reason = fastconv.available_backends()[name]
        if reason is not None:
            pytest.skip(f"backend {name!r} is unavailable here: {reason}")


class CountingBackend(NumpyBackend):
    """The numpy backend under another name, counting the host copies it is asked for."""

    name = "counting"

    def __init__(self):
        super().__init__()
        self.host_copies = 0

    def to_host(self, a):
        self.host_copies += 1
        return super().to_host(a)


@pytest.fixture
def counting(monkeypatch):
    """'counting' registered and current for the test; yields its Backend object."""
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_instances", dict(backends._instances))
    backends._REGISTRY["counting"] = ("fastconv.backends.numpy_backend", ())
    backends._instances["counting"] = CountingBackend()
    with fastconv.use_backend("counting") as be:
        yield be


def make_model():
    return Sequential([Input((6, 6, 2)), Conv2D(3, 3, activation="relu", padding="same"),
                       MaxPooling2D(), Flatten(), Dense(4, activation="softmax")])


@pytest.fixture
def data(rng):
    return rng.random((10, 6, 6, 2)).astype("float32"), rng.integers(0, 4, 10)


# -- host copies go through Backend.to_host ---------------------------------------------------


def test_saving_copies_optimizer_state_through_to_host(counting, data, tmp_path):
    x, ids = data
    model = make_model()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, ids, batch_size=5, epochs=1, verbose=0)
    state = model.optimizer.get_state(model.weight_paths())["arrays"]
    before = counting.host_copies
    model.save(tmp_path / "m.fcm")
    assert counting.host_copies - before >= len(state) > 0
    loaded = load_model(tmp_path / "m.fcm")
    got = loaded.optimizer.get_state(loaded.weight_paths())["arrays"]
    assert set(got) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(counting.to_host(got[key]), counting.to_host(value))


def test_model_inputs_of_the_backend_are_copied_through_to_host(counting, data):
    x, _ = data
    model = make_model()
    want = model.predict(x, verbose=0)
    before = counting.host_copies
    got = model.predict(counting.asarray(x), verbose=0)
    assert counting.host_copies > before
    np.testing.assert_array_equal(got, want)


def test_set_weights_takes_tensors_and_backend_arrays(data):
    x, _ = data
    model = make_model()
    want = [w * 0.5 for w in model.get_weights()]
    model.set_weights([Tensor(w) for w in want])
    for got, w in zip(model.get_weights(), want):
        np.testing.assert_array_equal(got, w)
    backend = model.backend
    model.set_weights([backend.asarray(2 * w) for w in want])
    for got, w in zip(model.get_weights(), want):
        np.testing.assert_array_equal(got, 2 * w)
    with pytest.raises(TypeError, match="must be numeric"):
        model.set_weights([backend.asarray(w).astype(complex) for w in want])


# -- an op's inputs live on one backend -------------------------------------------------------


@pytest.mark.parametrize("op", ["add", "multiply", "concatenate", "conv2d"])
def test_mixed_backends_are_refused_naming_both(op, rng):
    _require("numpy", "numba-cpu")
    x = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    a = Tensor(x, backend=fastconv.get_backend("numpy"))
    other = fastconv.get_backend("numba-cpu")
    b = Tensor(x, backend=other)
    calls = {"add": lambda: ops.add(a, b), "multiply": lambda: a * b,
             "concatenate": lambda: ops.concatenate([a, b]),
             "conv2d": lambda: ops.conv2d(a, Tensor(np.ones((3, 3, 3, 2), "float32"),
                                                    backend=other))}
    with pytest.raises(ValueError, match="numpy and numba-cpu") as info:
        calls[op]()
    assert "different backends" in str(info.value)


def test_mixed_backends_refused_in_backward_graphs_too(rng):
    _require("numpy", "numba-cpu")
    w = Tensor(rng.standard_normal((3, 2)), requires_grad=True,
               backend=fastconv.get_backend("numba-cpu"))
    x = Tensor(rng.standard_normal((4, 3)), backend=fastconv.get_backend("numpy"))
    with pytest.raises(ValueError, match="numpy and numba-cpu"):
        ops.dense(x, w)
    assert w.grad is None


def test_array_likes_join_the_backend_of_the_tensor_operands(rng):
    """A NumPy array or number next to a Tensor goes to the Tensor's backend, whichever backend
    is current."""
    _require("numpy", "numba-cpu")
    x = rng.standard_normal((3, 4))
    t = Tensor(x, backend=fastconv.get_backend("numba-cpu"))
    with fastconv.use_backend("numpy"):
        out = ops.add(t, x)
        scaled = 2.0 * t
    assert out._backend.name == "numba-cpu" and scaled._backend.name == "numba-cpu"
    np.testing.assert_array_equal(out.numpy(), 2 * x)
    np.testing.assert_array_equal(scaled.numpy(), 2 * x)


# -- 'name:device' --------------------------------------------------------------------------


@pytest.mark.parametrize("call", [fastconv.set_backend, fastconv.get_backend,
                                  lambda n: fastconv.use_backend(n).__enter__()],
                         ids=["set_backend", "get_backend", "use_backend"])
@pytest.mark.parametrize("name", ["numpy", "numba-cpu"])
def test_cpu_backends_have_no_devices(call, name):
    before = fastconv.current_backend_name()
    with pytest.raises(ValueError, match=f"{name!r} runs on the CPU and has no devices"):
        call(f"{name}:0")
    assert fastconv.current_backend_name() == before and backends.current_device() is None


@pytest.mark.parametrize("spec, words", [
    ("cupy:x", "device after ':' must be a GPU index"),
    ("numpy:-1", "device after ':' must be a GPU index"),
    ("numpy:", "device after ':' must be a GPU index"),
    ("no-such:1", "unknown backend"),
])
def test_bad_device_specs_say_what_is_wrong(spec, words):
    with pytest.raises(ValueError, match=words):
        fastconv.set_backend(spec)


def test_parse_backend_spec():
    assert config.parse_backend_spec("numba-cpu") == ("numba-cpu", None)
    assert config.parse_backend_spec(" cupy:1 ") == ("cupy", 1)
    assert config.parse_backend_spec("numba-cuda:12") == ("numba-cuda", 12)


@pytest.fixture
def device_backend(monkeypatch):
    """'gpu-alias': the numpy implementation registered as a backend with devices."""
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_instances", dict(backends._instances))
    monkeypatch.setattr(backends, "DEVICE_BACKENDS", frozenset({"gpu-alias"}))
    monkeypatch.setitem(backends._default, "name", backends._default["name"])
    monkeypatch.setitem(backends._default, "device", backends._default.get("device"))
    backends._REGISTRY["gpu-alias"] = ("fastconv.backends.numpy_backend", ())
    return "gpu-alias"


def test_a_device_backend_keeps_the_device_index(device_backend):
    before = fastconv.current_backend_name()
    with fastconv.use_backend("gpu-alias:1") as be:
        assert fastconv.current_backend_name() == "gpu-alias"
        assert backends.current_device() == 1
        assert fastconv.get_backend("gpu-alias:1") is be is fastconv.get_backend()
        with fastconv.use_backend("gpu-alias"):
            assert backends.current_device() is None  # the backend's first device
        assert backends.current_device() == 1
    assert fastconv.current_backend_name() == before and backends.current_device() is None
    fastconv.set_backend("gpu-alias:3")
    assert (fastconv.current_backend_name(), backends.current_device()) == ("gpu-alias", 3)
    with fastconv.use_backend(before):
        assert backends.current_device() is None
    assert backends.current_device() == 3


# -- Model.to --------------------------------------------------------------------------------


def _trained_pair(backend_name, data):
    """Two identical models on ``backend_name``, compiled with Adam, after one training step."""
    x, ids = data
    models = []
    with fastconv.use_backend(backend_name):
        for _ in range(2):
            clear_session()
            set_random_seed(5)
            model = make_model()
            model.compile(optimizer=optimizers.Adam(0.01),
                          loss="sparse_categorical_crossentropy")
            model.train_on_batch(x, ids)
            models.append(model)
    return models


def _state(model):
    return {k: model.backend.to_host(v) for k, v in
            model.optimizer.get_state(model.weight_paths())["arrays"].items()}


def _assert_same(a, b, x):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    sa, sb = _state(a), _state(b)
    assert set(sa) == set(sb) and sa
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))


@pytest.mark.parametrize("home, away", [("numpy", "numba-cpu"), ("numba-cpu", "numpy")])
def test_model_to_and_back_changes_nothing(home, away, data):
    """A model moved to another backend and back trains and predicts exactly as one never
    moved."""
    _require(home, away)
    x, ids = data
    moved, still = _trained_pair(home, data)
    versions = [w.version for w in moved.weights]
    assert moved.to(away) is moved
    assert moved.backend.name == away
    assert all(w._backend.name == away for w in moved.weights)
    assert all(w.version > v for w, v in zip(moved.weights, versions))
    moved.to(home)
    with fastconv.use_backend(home):
        _assert_same(moved, still, x)
        moved.train_on_batch(x, ids)
        still.train_on_batch(x, ids)
        _assert_same(moved, still, x)


@pytest.mark.parametrize("home, away", [("numpy", "numba-cpu"), ("numba-cpu", "numpy")])
def test_a_moved_model_matches_one_made_there(home, away, data):
    """After ``to(away)``, predictions and a training step equal those of a model built on
    ``away`` with the same weights and optimizer state, whichever backend is current."""
    _require(home, away)
    x, ids = data
    moved, _ = _trained_pair(home, data)
    twin, _ = _trained_pair(away, data)
    twin.set_weights(moved.get_weights())
    twin.optimizer.set_state(moved.optimizer.get_state(moved.weight_paths()),
                             twin.weight_paths())
    moved.to(away)
    with fastconv.use_backend(away):  # twin, never moved, runs on the current backend
        want = twin.predict(x, verbose=0)
        twin.train_on_batch(x, ids)
        want_after = twin.predict(x, verbose=0)
    with fastconv.use_backend(home):  # the moved model runs on its own backend
        np.testing.assert_array_equal(moved.predict(x, verbose=0), want)
        moved.train_on_batch(x, ids)
        np.testing.assert_array_equal(moved.predict(x, verbose=0), want_after)
    with fastconv.use_backend(away):
        _assert_same(moved, twin, x)
    assert moved.optimizer.iterations == twin.optimizer.iterations == 2


def test_model_to_refuses_unbuilt_models_and_bad_names():
    model = Sequential([Dense(3)])
    with pytest.raises(ValueError, match="not built yet"):
        model.to("numpy")
    model = make_model()
    with pytest.raises(ValueError, match="unknown backend"):
        model.to("no-such-backend")
    with pytest.raises(ValueError, match="has no devices"):
        model.to("numpy:1")
    assert model.backend is fastconv.get_backend()


# -- geometry tuples read by name -------------------------------------------------------------

_KERNELS = Path(fastconv.__file__).parent / "backends" / "numba_cpu"
_ALIASES = {"wd": "w"}  # names kernels unpack a field under


@pytest.mark.parametrize("fields, prefix, geom", [
    (geometry.CONV_FIELDS, "CONV_", geometry.conv_geometry((2, 9, 8, 3), (3, 2, 3, 5),
                                                            strides=(2, 1), padding="same",
                                                            dilation=(1, 2))),
    (geometry.POOL_FIELDS, "POOL_", geometry.pool_geometry((2, 9, 8, 3), (3, 2), (2, 1),
                                                            "same")),
])
def test_geometry_constants_name_the_tuple_positions(fields, prefix, geom):
    values = geom.astuple()
    assert len(values) == len(fields) and len(set(fields)) == len(fields)
    for i, field in enumerate(fields):
        assert getattr(geometry, prefix + field.upper()) == i, field
        assert values[i] == getattr(geom, field), field


def test_kernels_read_geometry_tuples_by_name():
    """No kernel indexes a geometry tuple by a bare number, and every whole unpacking names the
    fields in the tuple's order."""
    unpackings = 0
    for path in sorted(_KERNELS.glob("*.py")):
        source = path.read_text()
        assert not re.search(r"\bg\[\d", source), f"{path.name} reads g[<number>]"
        for names in re.findall(r"^\s*([\w, ]+) = g$", source, flags=re.M):
            fields = tuple(_ALIASES.get(n.strip(), n.strip()) for n in names.split(","))
            assert fields in (geometry.CONV_FIELDS, geometry.POOL_FIELDS), (path.name, names)
            unpackings += 1
    assert unpackings > 10
