"""The backend registry: names, availability, switching, and the primitives every backend offers."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import backends
from fastconv.backends import algorithms
from fastconv.backends.autotune import TUNE_AFTER_CALLS
from fastconv.backends.base import PRIMITIVES, Backend
from fastconv.geometry import conv_geometry
from fastconv.utils import set_random_seed

from .devices import EMULATED

# -- fixtures: a fake backend name to switch to ---------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry (and its instance cache) that a test may extend."""
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_instances", dict(backends._instances))
    monkeypatch.setitem(backends._default, "name", backends._default["name"])
    monkeypatch.setitem(backends._default, "device", backends._default.get("device"))
    return backends._REGISTRY


@pytest.fixture
def alias_backend(registry):
    """'numpy-alias': the numpy implementation registered under a second name, so that
    switching backends is observable whichever backend is current."""
    registry["numpy-alias"] = ("fastconv.backends.numpy_backend", ())
    return "numpy-alias"


@pytest.fixture
def missing_backend(registry):
    """A registered backend whose package is not installed."""
    registry["needs-missing"] = ("fastconv.backends.needs_missing",
                                 ("fastconv_no_such_package_xyz",))
    return "needs-missing"


# -- the primitives --------------------------------------------------------------------------


def _abstract_in_base(name: str) -> bool:
    """Whether ``Backend.<name>`` only raises NotImplementedError (each backend must define it)."""
    return "raise NotImplementedError" in inspect.getsource(getattr(Backend, name))


def test_primitives_list_is_sane():
    assert len(set(PRIMITIVES)) == len(PRIMITIVES)
    for name in PRIMITIVES:
        assert callable(getattr(Backend, name, None)), name
    # The base class leaves the array-specific primitives to each backend.
    assert {"to_host", "max_pool2d_forward", "avg_pool2d_backward",
            "random_uniform"} <= {n for n in PRIMITIVES if _abstract_in_base(n)}


def test_backend_implements_every_primitive(backend):
    assert isinstance(backend, Backend)
    missing = [name for name in PRIMITIVES if not callable(getattr(backend, name, None))]
    assert not missing, f"backend {backend.name!r} lacks primitives {missing}"
    not_overridden = [name for name in PRIMITIVES if _abstract_in_base(name)
                      and getattr(type(backend), name) is getattr(Backend, name)]
    assert not not_overridden, (
        f"backend {backend.name!r} leaves {not_overridden} to the abstract base class")


def test_backend_implements_every_conv_algorithm(backend):
    assert set(backend.conv_algorithms) == set(algorithms.ALGORITHMS), (
        f"backend {backend.name!r} implements {backend.conv_algorithms}; the algorithm table "
        f"has {tuple(algorithms.ALGORITHMS)}")


def test_backend_name_and_arrays(backend):
    assert backend.name == fastconv.current_backend_name()
    assert fastconv.get_backend() is backend
    assert set(backend.dtypes) <= {"float32", "float64"} and "float32" in backend.dtypes
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    dev = backend.asarray(host[:, ::2])  # a non-contiguous view in
    back = backend.to_host(dev)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host[:, ::2])
    as64 = backend.to_host(backend.asarray(host, dtype="float64"))
    assert as64.dtype == np.float64


def test_backend_random_uniform_is_seeded(backend):
    set_random_seed(7)
    a = backend.to_host(backend.random_uniform((500,), "float32"))
    set_random_seed(7)
    b = backend.to_host(backend.random_uniform((500,), "float32"))
    c = backend.to_host(backend.random_uniform((500,), "float32"))
    assert a.dtype == np.float32 and a.shape == (500,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    assert a.min() >= 0 and a.max() < 1 and 0.4 < a.mean() < 0.6


def test_backend_epilogues(backend, rng):
    x = rng.standard_normal((4, 3, 5))
    b = rng.standard_normal(5)
    y = backend.bias_activation(backend.asarray(x.copy()), backend.asarray(b), "relu")
    np.testing.assert_allclose(backend.to_host(y), np.maximum(x + b, 0), rtol=1e-15)
    lin = backend.bias_activation(backend.asarray(x.copy()), None, "linear")
    np.testing.assert_array_equal(backend.to_host(lin), x)
    dy = rng.standard_normal((4, 3, 5))
    out = np.maximum(x, 0)
    dz, db = backend.epilogue_backward(backend.asarray(dy), backend.asarray(out), "relu", True)
    np.testing.assert_array_equal(backend.to_host(dz), dy * (out > 0))
    np.testing.assert_allclose(backend.to_host(db), (dy * (out > 0)).sum(axis=(0, 1)),
                               rtol=1e-13)
    dz, db = backend.epilogue_backward(backend.asarray(dy), backend.asarray(out), "relu", False)
    np.testing.assert_array_equal(backend.to_host(dz), dy * (out > 0))
    assert db is None
    dz, db = backend.epilogue_backward(backend.asarray(dy), None, "linear", True)
    np.testing.assert_array_equal(backend.to_host(dz), dy)
    np.testing.assert_allclose(backend.to_host(db), dy.sum(axis=(0, 1)), rtol=1e-13)
    big = rng.standard_normal((300, 7, 50))  # large enough for the parallel kernels
    big_out = np.maximum(rng.standard_normal(big.shape), 0)
    dz, db = backend.epilogue_backward(backend.asarray(big), backend.asarray(big_out), "relu",
                                       True)
    np.testing.assert_array_equal(backend.to_host(dz), big * (big_out > 0))
    np.testing.assert_allclose(backend.to_host(db), (big * (big_out > 0)).sum(axis=(0, 1)),
                               rtol=1e-12)


def test_backend_prepared_primitives_match_plain_ones(backend, rng):
    """prepare_conv2d_forward and prepare_matmul (inference plans) give what conv2d_forward and
    matmul give, for every algorithm, and follow a weights change when the key changes."""
    # a smaller image in the CUDA simulator, still with edge tiles in every algorithm
    x = rng.standard_normal((1, 4, 5, 3) if EMULATED else (2, 7, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    geom = conv_geometry(x.shape, w.shape, padding="same")
    xd, wd, bd = backend.asarray(x), backend.asarray(w), backend.asarray(b)
    for algo in backend.conv_algorithms:
        run = backend.prepare_conv2d_forward(geom, algo, "relu")
        want = backend.to_host(backend.conv2d_forward(xd, wd, bd, geom, algo, "relu"))
        np.testing.assert_allclose(backend.to_host(run(xd, wd, bd, 1)), want, rtol=1e-12,
                                   atol=1e-12, err_msg=algo)
        w2 = backend.asarray(2 * w)
        want2 = backend.to_host(backend.conv2d_forward(xd, w2, bd, geom, algo, "relu"))
        np.testing.assert_allclose(backend.to_host(run(xd, w2, bd, 2)), want2, rtol=1e-12,
                                   atol=1e-12, err_msg=algo)
    a, m = rng.standard_normal((5, 6)), rng.standard_normal((6, 3))
    run = backend.prepare_matmul()
    np.testing.assert_allclose(backend.to_host(run(backend.asarray(a), backend.asarray(m), 1)),
                               a @ m, rtol=1e-12)
    np.testing.assert_allclose(
        backend.to_host(run(backend.asarray(a), backend.asarray(3 * m), 2)), a @ (3 * m),
        rtol=1e-12)


def test_backend_device_primitives(backend):
    """synchronize returns its argument; CPU backends name no device, GPU backends theirs; the
    GEMM description is text (shown by ``fastconv info``)."""
    a = backend.asarray(np.ones(3))
    assert backend.synchronize(a) is a
    assert backend.synchronize() is None
    if backend.name in backends.DEVICE_BACKENDS:  # a GPU backend names its device
        assert backend.device_string() != ""
    else:
        assert backend.device_string() == ""
    assert isinstance(backend.gemm_description(), str)


# -- names and availability -------------------------------------------------------------------


def test_backend_names_and_availability():
    names = fastconv.backend_names()
    assert "numpy" in names and "numba-cpu" in names
    available = fastconv.available_backends()
    assert set(available) == set(names)
    assert available["numpy"] is None  # the reference backend needs nothing but NumPy
    for name, reason in available.items():
        assert reason is None or (isinstance(reason, str) and reason), name


@pytest.mark.parametrize("call", [
    lambda: fastconv.get_backend("no-such-backend"),
    lambda: fastconv.set_backend("no-such-backend"),
    lambda: fastconv.use_backend("no-such-backend").__enter__(),
    lambda: backends.unavailable_reason("no-such-backend"),
    lambda: fastconv.get_backend(3),
], ids=["get_backend", "set_backend", "use_backend", "unavailable_reason", "not-a-string"])
def test_unknown_backend_lists_valid_names(call):
    with pytest.raises(ValueError, match="unknown backend") as info:
        call()
    for name in fastconv.backend_names():
        assert name in str(info.value)


def test_unavailable_backend_says_why(missing_backend):
    reason = fastconv.available_backends()[missing_backend]
    assert reason is not None and "fastconv_no_such_package_xyz" in reason
    before = fastconv.current_backend_name()
    for call in (fastconv.get_backend, fastconv.set_backend,
                 lambda n: fastconv.use_backend(n).__enter__()):
        with pytest.raises(fastconv.BackendUnavailableError,
                           match="fastconv_no_such_package_xyz") as info:
            call(missing_backend)
        assert missing_backend in str(info.value)
    assert fastconv.current_backend_name() == before


def test_real_unavailable_backends_say_why():
    for name, reason in fastconv.available_backends().items():
        if reason is None:
            continue
        with pytest.raises(fastconv.BackendUnavailableError) as info:
            fastconv.get_backend(name)
        assert reason in str(info.value) and name in str(info.value)


def test_use_backend_switches_and_restores(alias_backend):
    before = fastconv.current_backend_name()
    assert before != alias_backend
    with fastconv.use_backend(alias_backend) as be:
        assert fastconv.current_backend_name() == alias_backend
        assert fastconv.get_backend() is be
        assert fastconv.Tensor([1.0])._backend is be
        with fastconv.use_backend(before):
            assert fastconv.current_backend_name() == before
        assert fastconv.current_backend_name() == alias_backend
    assert fastconv.current_backend_name() == before


def test_use_backend_restores_after_an_exception(alias_backend):
    before = fastconv.current_backend_name()
    with pytest.raises(KeyError, match="inside"):
        with fastconv.use_backend(alias_backend):
            raise KeyError("inside")
    assert fastconv.current_backend_name() == before


def test_set_backend(alias_backend):
    before = fastconv.current_backend_name()
    fastconv.set_backend(alias_backend)
    assert fastconv.current_backend_name() == alias_backend
    assert fastconv.get_backend().name == "numpy"  # the implementation behind the alias
    with fastconv.use_backend(before):  # an override beats the default
        assert fastconv.current_backend_name() == before
    assert fastconv.current_backend_name() == alias_backend
    with pytest.raises(ValueError, match="unknown backend"):
        fastconv.set_backend("nope")
    assert fastconv.current_backend_name() == alias_backend  # a failed switch changes nothing
    fastconv.set_backend(before)
    assert fastconv.current_backend_name() == before


def test_backends_are_singletons(backend):
    assert fastconv.get_backend(backend.name) is backend


# -- environment at import ---------------------------------------------------------------------


def _import_fastconv(**env):
    full = {**os.environ, **env}
    code = ("import fastconv; from fastconv.backends import algorithms; "
            "print(fastconv.current_backend_name(), algorithms.current_conv_algo())")
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=120)


def test_environment_names_are_read_at_import():
    done = _import_fastconv(FASTCONV_BACKEND="numpy", FASTCONV_CONV_ALGO="direct")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "direct"]


@pytest.mark.parametrize("variable, words", [
    ("FASTCONV_BACKEND", ["unknown backend", "numpy", "numba-cpu"]),
    ("FASTCONV_CONV_ALGO", ["unknown convolution algorithm", "im2col", "winograd4"]),
])
def test_bad_environment_name_fails_at_import(variable, words):
    done = _import_fastconv(**{variable: "bogus-name"})
    assert done.returncode != 0
    for word in words:
        assert word in done.stderr


def test_a_cpu_backend_with_a_device_fails_at_import():
    done = _import_fastconv(FASTCONV_BACKEND="numpy:1")
    assert done.returncode != 0
    assert "'numpy' runs on the CPU and has no devices" in done.stderr


# -- convolution algorithm choice ---------------------------------------------------------------


def test_conv_algo_switching():
    before = fastconv.current_conv_algo()
    with fastconv.use_conv_algo("winograd4"):
        assert fastconv.current_conv_algo() == "winograd4"
        with fastconv.use_conv_algo("direct"):
            assert fastconv.current_conv_algo() == "direct"
        assert fastconv.current_conv_algo() == "winograd4"
    assert fastconv.current_conv_algo() == before
    with pytest.raises(RuntimeError):
        with fastconv.use_conv_algo("im2col"):
            raise RuntimeError
    assert fastconv.current_conv_algo() == before
    try:
        fastconv.set_conv_algo("direct")
        assert fastconv.current_conv_algo() == "direct"
    finally:
        fastconv.set_conv_algo(before)


@pytest.mark.parametrize("call", [fastconv.set_conv_algo,
                                  lambda n: fastconv.use_conv_algo(n).__enter__()])
def test_unknown_conv_algo_lists_valid_names(call):
    with pytest.raises(ValueError, match="unknown convolution algorithm") as info:
        call("fft")
    for name in ("auto", "direct", "im2col", "winograd", "winograd4"):
        assert name in str(info.value)


@pytest.mark.parametrize("autotune", ["0", "1"])
def test_auto_picks_a_supported_algorithm(backend, autotune, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", autotune)
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    algorithms.clear_memory()
    try:
        for w_shape, strides in (((3, 3, 2, 3), 1), ((5, 5, 2, 3), 1), ((3, 3, 2, 3), 2)):
            geom = conv_geometry((1, 8, 8, 2), w_shape, strides, "same")
            for conv_pass in ("forward", "backward_data", "backward_weight"):
                for _ in range(TUNE_AFTER_CALLS):  # a shape is tuned on its third use
                    chosen = algorithms.resolve(backend, geom, "float32", conv_pass, "auto")
                    assert chosen in algorithms.supported_algorithms(backend, geom)
                    assert chosen in backend.conv_algorithms
        if autotune == "1" and backend.autotune:  # measured (kept only on a quiet machine),
            # unless one algorithm alone was worth timing
            timed = [row for row in algorithms.choices() if row["how"] != "heuristic"]
            assert timed and all(row["seconds"] for row in timed)
        assert algorithms.choices()
    finally:
        algorithms.clear_memory()


def test_a_backend_without_create_backend_is_unavailable(monkeypatch):
    """A half-written backend package is reported unavailable, with the reason."""
    monkeypatch.setitem(backends._REGISTRY, "half-written", ("fastconv.geometry", ()))
    reason = backends.unavailable_reason("half-written")
    assert reason is not None and "create_backend" in reason
    with pytest.raises(backends.BackendUnavailableError, match="create_backend"):
        backends.get_backend("half-written")


def test_adding_a_python_number_keeps_the_tensor_dtype(backend):
    import fastconv.functional as F

    t = F.as_tensor(np.ones(3, np.float32))
    for out, expected in ((t + 2.0, 3.0), (2.0 + t, 3.0), (F.add(t, 1), 2.0)):
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.numpy(), np.full(3, expected, np.float32))
