"""Reliability: concurrency, numerics that must not fall off a cliff, and the corner cases that
a hostile user found (stale predictions after ``set_weights``, max-pool backward over windows of
``-inf``, denormal inputs)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry, pool_geometry
from fastconv.layers import Conv2D, Dense, Flatten
from fastconv.models import Sequential

from . import naive
from .devices import EMULATED
from .threads import run_in_threads


def _dense_model():
    if EMULATED:  # a 2048 x 2048 product takes minutes in an emulated device
        return Sequential([Dense(24, input_shape=(20,)), Dense(16)])
    return Sequential([Dense(2048, input_shape=(2048,)), Dense(16)])


def _conv_model():
    if EMULATED:
        return Sequential([Conv2D(8, 3, padding="same", input_shape=(5, 5, 3)), Flatten(),
                           Dense(4)])
    return Sequential([Conv2D(256, 3, padding="same", input_shape=(8, 8, 256)), Flatten(),
                       Dense(4)])


@pytest.mark.parametrize("make", [_dense_model, _conv_model], ids=["dense", "conv2d"])
def test_predict_in_threads_right_after_set_weights_uses_the_new_weights(backend, make):
    """8 threads predicting at once after each ``set_weights`` all see the new weights (the
    packed-kernel caches of inference plans must not hand out the previous packing)."""
    model = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, *model.input_shape[1:])).astype(np.float32)
    for round_ in range(4):
        old = model.get_weights()
        new = [rng.standard_normal(w.shape).astype(np.float32) for w in old]
        model.set_weights(new)
        expected = model.predict(x, verbose=0)  # serial: the reference for this round
        model.set_weights(old)
        model.predict(x, verbose=0)  # the plan holds kernels packed from the old weights
        model.set_weights(new)
        got = run_in_threads(8, lambda i: model.predict(x, verbose=0))
        stale = sum(not np.array_equal(g, expected) for g in got)
        assert stale == 0, f"round {round_}: {stale} of 8 threads got stale predictions"


# -- max pooling over windows of -inf ------------------------------------------------------------

@pytest.mark.parametrize("pool,strides", [((3, 3), (1, 1)), ((2, 2), (1, 1)), ((3, 3), (2, 2)),
                                          ((2, 3), (1, 2))])
def test_max_pool_backward_over_windows_of_minus_inf_matches_oracle(backend, pool, strides):
    """'same' padding over an input of -inf with one finite value: a window holding only -inf
    sends its gradient to its first in-bounds element (as the oracle and PyTorch do), never to
    tap 0 when tap 0 is padding, nor to the finite value of another window."""
    rng = np.random.default_rng(3)
    for _ in range(6):
        h, w = rng.integers(2, 7, size=2)
        x = np.full((1, h, w, 2), -np.inf)
        x[0, rng.integers(h), rng.integers(w), :] = 1.5
        g = pool_geometry(x.shape, pool, strides, "same")
        pads = (g.pt, g.pb, g.pl, g.pr)
        dy = rng.uniform(1, 2, size=g.y_shape)
        y_ref, arg_ref = naive.max_pool2d_forward(x, pool, strides, pads)
        y, argmax = backend.max_pool2d_forward(backend.asarray(x), g)
        np.testing.assert_array_equal(backend.to_host(y), y_ref)
        np.testing.assert_array_equal(backend.to_host(argmax), arg_ref)
        dx = backend.max_pool2d_backward(backend.asarray(dy), argmax, g)
        np.testing.assert_allclose(backend.to_host(dx),
                                   naive.max_pool2d_backward(x, dy, pool, strides, pads))


# -- denormals ----------------------------------------------------------------------------------

_NUMBA_ALGOS = ("direct", "im2col", "winograd", "winograd4")


def _numba_backend():
    reason = fastconv.available_backends()["numba-cpu"]
    if reason is not None:
        pytest.skip(f"numba-cpu is unavailable here: {reason}")
    return fastconv.get_backend("numba-cpu")


@pytest.mark.parametrize("algo", _NUMBA_ALGOS)
def test_numba_kernels_flush_denormals_to_zero(kernel_mode, algo):
    """Inside the kernels, denormal inputs read as 0 (DAZ) and denormal results are written as
    0 (FTZ): a convolution of denormals is exactly 0, on the calling thread and on the workers."""
    be = _numba_backend()
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 9, 9, 8)) * 1e-39).astype(np.float32)
    assert (np.abs(x[x != 0]) < np.finfo(np.float32).tiny).all()  # denormal in NumPy
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    g = conv_geometry(x.shape, w.shape, (1, 1), "same", (1, 1))
    y = be.conv2d_forward(x, w, None, g, algo)
    assert np.count_nonzero(y) == 0, f"{algo}: {np.count_nonzero(y)} denormal outputs"
    # normal values that make denormal products are flushed too
    small = np.full((1, 4, 4, 8), 1e-20, dtype=np.float32)
    y = be.conv2d_forward(small, np.full((3, 3, 8, 16), 1e-20, np.float32), None,
                          conv_geometry(small.shape, (3, 3, 8, 16), (1, 1), "same", (1, 1)),
                          algo)
    assert np.count_nonzero(y) == 0


def test_flushing_stays_inside_the_kernels(kernel_mode):
    """The caller's floating-point state is restored after each kernel: its own NumPy code
    keeps IEEE denormals. The workers keep FTZ and DAZ."""
    from fastconv.backends.numba_cpu import fpenv

    be = _numba_backend()
    if not fpenv.SUPPORTED:
        pytest.skip("no MXCSR on this machine: denormals are left alone")
    before = fpenv.calling_thread_csr()
    x = np.ones((2, 8, 8, 4), dtype=np.float32)
    be.conv2d_forward(x, np.ones((3, 3, 4, 4), np.float32), None,
                      conv_geometry(x.shape, (3, 3, 4, 4), (1, 1), "valid", (1, 1)), "im2col")
    assert fpenv.calling_thread_csr() == before
    tiny = np.array([1e-39], dtype=np.float32)
    assert (tiny * np.float32(1.0))[0] != 0
    if kernel_mode == "parallel":
        csrs = np.zeros(be.num_threads(), dtype=np.int64)
        fpenv.worker_csrs(csrs)  # thread 0 is the caller, outside any kernel
        assert all(v & fpenv.FLUSH == fpenv.FLUSH for v in csrs[1:]), [hex(v) for v in csrs]
        assert csrs[0] == before


@pytest.mark.parametrize("algo", _NUMBA_ALGOS)
def test_denormal_inputs_read_as_zero_at_a_working_size(algo):
    """The size where the kernels pick their own (parallel) variant: denormal inputs count as
    0 wherever they are (the output equals that of the input with them zeroed, bit for bit), an
    image of denormals alone gives exactly 0, and no output is denormal. Without DAZ and FTZ in
    some pass the all-denormal image gives denormal outputs, not 0, whatever the CPU's speed on
    them (a timing bound cannot fail on CPUs without a denormal penalty)."""
    from fastconv.backends.numba_cpu import fpenv

    be = _numba_backend()
    if not fpenv.SUPPORTED:
        pytest.skip("no MXCSR on this machine: denormals keep their IEEE meaning")
    tiny = np.finfo(np.float32).tiny
    rng = np.random.default_rng(2)
    normal = rng.standard_normal((4, 16, 16, 32)).astype(np.float32)
    # images 0-2: half of the values denormal, at random places; image 3: denormals only
    scale = np.where(rng.random(normal.shape) < 0.5, np.float32(1e-39), np.float32(1))
    scale[3] = np.float32(1e-39)
    x = normal * scale
    denormal = (x != 0) & (np.abs(x) < tiny)
    assert (np.abs(x[3]) < tiny).all() and denormal[3].mean() > 0.99
    assert 0.4 < denormal[:3].mean() < 0.6
    w = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    g = conv_geometry(x.shape, w.shape, (1, 1), "same", (1, 1))
    y = be.conv2d_forward(x, w, None, g, algo)
    zeroed = be.conv2d_forward(np.where(denormal, np.float32(0), x), w, None, g, algo)
    np.testing.assert_array_equal(y, zeroed, err_msg=f"{algo}: denormal inputs counted")
    assert np.count_nonzero(y[3]) == 0, f"{algo}: {np.count_nonzero(y[3])} denormal outputs"
    assert not ((y != 0) & (np.abs(y) < tiny)).any(), f"{algo}: denormal outputs"


# -- saves: interrupted writers, temporaries, modes ---------------------------------------------

_KILLED_WRITER = """
import sys, time
from pathlib import Path
from fastconv.io.atomic import atomic_write

def write(fh):
    fh.write(b"partial" * 1000)
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(Path(sys.argv[1]), write)
"""


def _temporaries(folder, name):
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def _small_model():
    return Sequential([Dense(3, input_shape=(4,))])


def _kill_a_writer(path):
    """Start a process that saves to ``path`` and SIGKILL it in the middle of the write."""
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()


def test_a_save_removes_the_temporaries_of_killed_saves(tmp_path):
    """Each SIGKILL during a save leaves its temporary file (2.09 GB after 12 kills in the
    issue); the next save of the same file removes them, and the last saved file loads."""
    path = tmp_path / "model.fcm"
    model = _small_model()
    model.save(path)
    for _ in range(3):
        _kill_a_writer(path)  # each save first removes what earlier killed ones left
        assert len(_temporaries(tmp_path, path.name)) == 1
    fastconv.models.load_model(path)  # the earlier file is intact
    model.save(path)
    assert _temporaries(tmp_path, path.name) == []
    np.testing.assert_array_equal(fastconv.models.load_model(path).get_weights()[0],
                                  model.get_weights()[0])


def test_a_save_leaves_the_temporary_of_a_save_in_progress(tmp_path):
    """A temporary whose writer is alive (it holds a lock on it) is not touched, nor are files
    that only look alike."""
    fcntl = pytest.importorskip("fcntl", reason="fcntl's locks are POSIX-only (absent on Windows)")
    path = tmp_path / "model.fcm"
    busy = tmp_path / f".{path.name}.abcd1234.tmp"
    other = tmp_path / f".{path.name}.backup.tmp"
    busy.write_bytes(b"in progress")
    other.write_bytes(b"not ours")
    with open(busy, "rb+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        _small_model().save(path)
        assert busy.exists() and other.exists()
    _small_model().save(path)  # the writer is gone now
    assert not busy.exists() and other.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_files_follow_the_umask(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        _small_model().save(tmp_path / "m.fcm")
        _small_model().save_weights(tmp_path / "w.fcm")
    finally:
        os.umask(old)
    for name in ("m.fcm", "w.fcm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
