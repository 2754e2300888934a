"""Shared fixtures: every registered backend, every convolution algorithm, MNIST's folder.

* ``backend`` runs a test once per name in ``fastconv.backend_names()``; a backend that cannot run
  here is skipped with the reason ``fastconv.available_backends()`` gives, so a new backend is
  enrolled by registering it, without touching the tests.
* ``conv_algo`` runs a test once per convolution algorithm in fastconv's algorithm table, inside
  ``fastconv.use_conv_algo``.
* ``kernel_mode`` runs a test once with the numba-cpu kernels forced serial and once forced
  parallel, whatever the problem size.
* ``mnist_dir`` is the folder fastconv itself would read MNIST from: ``$FASTCONV_DATA`` when it is
  set (CI sets it), otherwise the user cache; tests that need MNIST skip, saying where they
  looked, only when neither holds it.
* ``keras_ref`` is the folder of Keras's reference files in the shared folder
  (``tests/shared.py``): a test that needs it (or the lesson script) fails when it is missing,
  unless ``FASTCONV_ALLOW_MISSING_SHARED=1`` (then it skips, saying so).

Autotuning and background compilation are switched off (``FASTCONV_AUTOTUNE=0``,
``FASTCONV_BACKGROUND_COMPILE=0``) and the cache goes to a temporary folder for the whole
session, so tests never time kernels, start compiling processes or write autotuning choices to
the user's cache; only Numba's compiled kernels stay in the environment's cache folder
(``fastconv.backends.jit_cache``), so that one run reuses what another compiled. fastconv reads
those variables at call time; the backend and algorithm names it
reads at import are left to the environment the suite runs in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

import fastconv
from fastconv import config
from fastconv.backends import algorithms
from fastconv.datasets import mnist
from fastconv.utils import clear_session, set_random_seed
from tests import shared
from tests.devices import EMULATED_DEVICES

#: Every convolution algorithm fastconv knows ('auto' is a choice among these, not one).
CONV_ALGOS = tuple(algorithms.ALGORITHMS)


@pytest.fixture(scope="session", autouse=True)
def _fastconv_environment(tmp_path_factory):
    # Numba's machine code stays in the environment's cache folder (CI: one for its three runs)
    # before the session's own cache folder replaces it for everything else
    from fastconv.backends import jit_cache

    jit_cache.configure()
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTCONV_AUTOTUNE", "0")
    mp.setenv("FASTCONV_BACKGROUND_COMPILE", "0")
    mp.setenv("FASTCONV_CACHE_DIR", str(tmp_path_factory.mktemp("fastconv-cache")))
    algorithms.clear_memory()
    yield
    algorithms.clear_memory()
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts with Keras's naming from scratch and a fixed seed."""
    clear_session()
    set_random_seed(1234)
    yield


BACKENDS = EMULATED_DEVICES or fastconv.backend_names()

#: Numba's simulator runs a block as one Python thread per CUDA thread while its block manager
#: busy-polls them for ``syncthreads``: at Python's default 5 ms switch interval each hand-over
#: of the GIL between the poller and a thread costs up to 5 ms. 0.1 ms makes the tiled kernels
#: about 10x faster there and changes nothing else.
SIMULATOR_SWITCH_INTERVAL = 1e-4
if "numba-cuda" in EMULATED_DEVICES:
    sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL)


# Hypothesis: the default profile draws the same cases on every run (derandomized: each test's
# seed comes from its name), so a failure seen once is seen again; HYPOTHESIS_PROFILE=fresh
# draws new cases every run (the nightly-style search).
hypothesis_settings.register_profile("repeatable", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("fresh", derandomize=False, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "repeatable")
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config):
    how = ("the same cases every run, derived from each test's name"
           if HYPOTHESIS_PROFILE == "repeatable" else "fresh random cases")
    folder = shared.shared_dir()
    if folder is not None:
        files = f"shared reference files: {folder}"
    else:
        files = ("shared reference files: MISSING (../shared, $FASTCONV_SHARED); the tests that "
                 "read them " + ("skip" if shared.missing_allowed() else "fail") +
                 f" ({shared.ALLOW_MISSING}=1 skips them)")
    return [f"hypothesis profile: {HYPOTHESIS_PROFILE} ({how}; HYPOTHESIS_PROFILE=fresh|"
            f"repeatable)", files]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "device(*backends): a test of the GPU backends' own machinery (of the named "
        "ones only, when named); it runs in the processes that emulate them "
        "(NUMBA_ENABLE_CUDASIM=1, FASTCONV_CUPY_EMULATE=1) and on a real GPU")
    config.addinivalue_line(
        "markers", "host_only(reason): a test of CPU-backend behaviour that an emulated device "
        "run leaves out, with the reason")


def _param_backend(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend") if callspec is not None else None


def pytest_collection_modifyitems(config, items):
    """Main process: the tests of a GPU backend that cannot run here are left to the emulation
    run, and said so once. Emulation run: only the tests of the emulated backends."""
    from fastconv.backends import DEVICE_BACKENDS

    keep, dropped = [], {}
    for item in items:
        name = _param_backend(item)
        marker = item.get_closest_marker("device")
        wanted = tuple(marker.args) if marker is not None else ()
        if EMULATED_DEVICES:
            ok = (name in EMULATED_DEVICES or (marker is not None and all(
                w in EMULATED_DEVICES for w in wanted))) \
                and item.get_closest_marker("host_only") is None
        else:
            unusable = (name in DEVICE_BACKENDS and fastconv.available_backends()[name]
                        is not None)
            if marker is None:
                device_ok = True
            elif wanted:
                device_ok = all(fastconv.available_backends()[w] is None for w in wanted)
            else:
                device_ok = not _no_usable_device()
            ok = not unusable and device_ok
        if ok:
            keep.append(item)
        else:
            dropped.setdefault(name or "device", []).append(item)
    if dropped:
        config.hook.pytest_deselected(items=[i for group in dropped.values() for i in group])
        items[:] = keep
        config._fastconv_left_out = {k: len(v) for k, v in dropped.items()}


def _no_usable_device() -> bool:
    from fastconv.backends import DEVICE_BACKENDS

    return all(fastconv.available_backends()[name] is not None for name in DEVICE_BACKENDS)


#: the variable that runs a GPU backend's tests on the CPU
_EMULATION_VARIABLES = {"numba-cuda": "NUMBA_ENABLE_CUDASIM=1", "cupy": "FASTCONV_CUPY_EMULATE=1"}
_EITHER = "NUMBA_ENABLE_CUDASIM=1 or FASTCONV_CUPY_EMULATE=1"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    left_out = getattr(config, "_fastconv_left_out", None)
    if not left_out:
        return
    if EMULATED_DEVICES:
        terminalreporter.write_line(
            f"emulated device run ({', '.join(EMULATED_DEVICES)}): "
            f"{sum(left_out.values())} tests of the CPU backends left to the main run")
        return
    for name, count in sorted(left_out.items()):
        reason = fastconv.available_backends().get(name) or "no usable GPU backend"
        terminalreporter.write_line(
            f"{count} tests of {name} left to the emulated run "
            f"({_EMULATION_VARIABLES.get(name, _EITHER)} python -m pytest): {reason}")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The test runs inside ``use_backend(name)``; yields the Backend object."""
    name = request.param
    reason = fastconv.available_backends()[name]
    if reason is not None:
        pytest.skip(f"backend {name!r} is unavailable here: {reason}")
    with fastconv.use_backend(name) as be:
        yield be


@pytest.fixture(params=CONV_ALGOS)
def conv_algo(request):
    """The test runs inside ``use_conv_algo(name)``; yields the name."""
    with fastconv.use_conv_algo(request.param):
        yield request.param


#: Where fastconv.datasets.mnist looks without an explicit path ($FASTCONV_DATA, then the user
#: cache), taken before the session fixture points the cache at a temporary folder.
_MNIST_PLACES = mnist._candidates(None)
_MNIST_FROM_ENV = config.env_data_dir()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the four MNIST files, found as fastconv finds them: an explicit
    ``$FASTCONV_DATA`` must hold them; otherwise the user cache is used when complete. Skips
    only when MNIST is in neither place (tests never download)."""
    if _MNIST_FROM_ENV is not None:
        missing = [name for name in mnist.FILES if not (_MNIST_FROM_ENV / name).is_file()]
        if missing:
            pytest.fail(f"FASTCONV_DATA={str(_MNIST_FROM_ENV)!r} lacks the MNIST files {missing}")
        yield _MNIST_FROM_ENV
        return
    for folder in _MNIST_PLACES:
        if all((folder / name).is_file() for name in mnist.FILES):
            # the tests' cache is a temporary folder: name the user cache's folder explicitly,
            # so that load_data() without a path finds it there too
            mp = pytest.MonkeyPatch()
            mp.setenv("FASTCONV_DATA", str(folder))
            yield folder
            mp.undo()
            return
    pytest.skip(f"MNIST not found: FASTCONV_DATA is unset and {', '.join(map(str, _MNIST_PLACES))}"
                f" lacks the four *-ubyte.gz files; set FASTCONV_DATA to their folder, or "
                f"download them once with python -c \"from fastconv.datasets import mnist; "
                f"mnist.load_data()\"")


@pytest.fixture(scope="session")
def keras_ref() -> Path:
    """The folder of Keras's reference files (``shared/keras_ref``); a test that uses it fails
    when it is missing (skips, saying so, where ``$FASTCONV_ALLOW_MISSING_SHARED=1``)."""
    return shared.require("keras_ref")


@pytest.fixture(params=["parallel", "serial"])
def kernel_mode(request):
    """Run the numba-cpu kernels in one variant whatever the problem size."""
    from fastconv.backends.numba_cpu.jit import SizedKernel

    SizedKernel.mode = request.param
    try:
        yield request.param
    finally:
        SizedKernel.mode = "auto"


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)
