"""What is specific to the numba-cpu backend: Winograd's error bound, the on-disk compile cache,
threads, the stand-in GEMM, and training that follows the numpy backend's loss curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry

pytestmark = pytest.mark.skipif(
    fastconv.available_backends()["numba-cpu"] is not None,
    reason=f"numba-cpu unavailable: {fastconv.available_backends()['numba-cpu']}")

#: Documented bound (README, "Winograd accuracy"): max |y32 - y64| / max |y64| in float32.
WINOGRAD_BOUND = {"winograd": 5e-6, "winograd4": 1e-4}


def _relative_error(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("algo", ["winograd", "winograd4"])
@pytest.mark.parametrize("layer", [
    ("lesson conv1", (4, 28, 28, 1), (3, 3, 1, 32), "valid"),
    ("lesson conv2", (4, 13, 13, 32), (3, 3, 32, 64), "valid"),
    ("lesson conv3", (4, 5, 5, 64), (3, 3, 64, 64), "valid"),
    ("VGG conv 56x56 256->256", (1, 56, 56, 256), (3, 3, 256, 256), "same"),
], ids=lambda layer: layer[0])
def test_winograd_error_bound(layer, algo):
    """Winograd in float32 stays within the documented bound of the float64 direct result, in
    the forward and the backward-data pass (He-initialised weights, as in training)."""
    _, xs, ws, padding = layer
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws) * np.sqrt(2.0 / (9 * xs[3]))
    g = conv_geometry(xs, ws, 1, padding)
    dy = rng.standard_normal(g.y_shape)
    reference = fastconv.get_backend("numpy")
    y64 = reference.conv2d_forward(x, w, None, g, "direct", "linear")
    dx64 = reference.conv2d_backward_data(dy, w, g, "direct")
    be = fastconv.get_backend("numba-cpu")
    y = be.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, g, algo, "linear")
    dx = be.conv2d_backward_data(dy.astype(np.float32), w.astype(np.float32), g, algo)
    assert _relative_error(y, y64) < WINOGRAD_BOUND[algo]
    assert _relative_error(dx, dx64) < WINOGRAD_BOUND[algo]
    # The bound is not vacuous: float32 rounding is visible.
    assert _relative_error(y, y64) > 1e-9


_CACHE_PROBE = textwrap.dedent("""
    import json, numpy as np, fastconv
    from fastconv.geometry import conv_geometry, pool_geometry
    from fastconv.backends.numba_cpu import conv_direct, conv_im2col, conv_winograd, elementwise
    from fastconv.backends.numba_cpu import gemm, pool
    be = fastconv.get_backend("numba-cpu")
    x = np.ones((2, 6, 6, 3), np.float32); w = np.ones((3, 3, 3, 4), np.float32)
    g = conv_geometry(x.shape, w.shape, 1, "same")
    for algo in ("direct", "im2col", "winograd", "winograd4"):
        y = be.conv2d_forward(x, w, np.ones(4, np.float32), g, algo, "relu")
        be.conv2d_backward_data(y, w, g, algo); be.conv2d_backward_weight(x, y, g, algo)
    pg = pool_geometry(x.shape, 2)
    y, a = be.max_pool2d_forward(x, pg); be.max_pool2d_backward(y, a, pg)
    be.avg_pool2d_backward(be.avg_pool2d_forward(x, pg), pg)
    be.matmul(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32))
    misses = 0
    for mod in (conv_direct, conv_im2col, conv_winograd, elementwise, gemm, pool):
        for obj in vars(mod).values():
            for d in (obj, getattr(obj, "parallel", None), getattr(obj, "serial", None)):
                stats = getattr(d, "stats", None)
                if stats is not None and hasattr(d, "py_func"):
                    misses += sum(stats.cache_misses.values())
    print(json.dumps({"misses": misses}))
""")


def test_second_run_compiles_nothing(tmp_path):
    """With cache=True, a second process loads every kernel from Numba's on-disk cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "FASTCONV_CACHE_DIR": str(tmp_path / "fc")}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True,
                             text=True, timeout=600, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1])["misses"])
    assert runs[0] > 0  # the first run did compile into the empty cache
    assert runs[1] == 0


def test_threads_follow_numba_num_threads():
    code = "import fastconv; print(fastconv.get_num_threads())"
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "FASTCONV_BACKEND": "numba-cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "1"


def test_set_num_threads():
    with fastconv.use_backend("numba-cpu"):
        before = fastconv.get_num_threads()
        try:
            fastconv.set_num_threads(1)
            assert fastconv.get_num_threads() == 1
            with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
                fastconv.set_num_threads(10_000)
            with pytest.raises(ValueError, match="positive int"):
                fastconv.set_num_threads(0)
        finally:
            fastconv.set_num_threads(before)


def test_fallback_gemm_matches_blas(monkeypatch):
    """The Numba GEMM that stands in when no CBLAS is found gives the same convolutions."""
    from fastconv.backends.numba_cpu import NumbaCpuBackend
    from fastconv.backends.numba_cpu.fallback_gemm import fallback_blas

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 6, 3))
    w = rng.standard_normal((3, 3, 3, 5))
    g = conv_geometry(x.shape, w.shape, (1, 2), "same")
    dy = rng.standard_normal(g.y_shape)
    system = fastconv.get_backend("numba-cpu")
    standin = NumbaCpuBackend()
    standin.blas = fallback_blas()
    for algo in ("im2col",):
        np.testing.assert_allclose(standin.conv2d_forward(x, w, None, g, algo),
                                   system.conv2d_forward(x, w, None, g, algo), rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(standin.conv2d_backward_data(dy, w, g, algo),
                                   system.conv2d_backward_data(dy, w, g, algo), rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(standin.conv2d_backward_weight(x, dy, g, algo),
                                   system.conv2d_backward_weight(x, dy, g, algo), rtol=1e-12,
                                   atol=1e-12)
    a, b = rng.standard_normal((9, 4)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(standin.matmul(a, b, trans_b=True), a @ b.T, rtol=1e-12)
    a2 = rng.standard_normal((4, 9))
    np.testing.assert_allclose(standin.matmul(a2, b, trans_a=True, trans_b=True), a2.T @ b.T,
                               rtol=1e-12)


def _lesson_losses(backend: str, x, y) -> list[float]:
    from fastconv.callbacks import LambdaCallback
    from fastconv.cli import lesson_model
    from fastconv.utils import clear_session, set_random_seed

    losses: list[float] = []
    with fastconv.use_backend(backend):
        clear_session()
        set_random_seed(7)
        model = lesson_model()
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))])
    return losses


def test_lesson_loss_curve_matches_numpy_backend():
    """One epoch of the lesson network (on 640 images) on numba-cpu follows the numpy
    backend's loss curve, batch by batch, from the same seed."""
    rng = np.random.default_rng(3)
    x = rng.random((640, 28, 28, 1), dtype=np.float32)
    labels = (x[:, 10:18, 10:18, 0].mean(axis=(1, 2)) * 10).astype(int) % 10
    y = np.eye(10, dtype=np.float32)[labels]
    reference = _lesson_losses("numpy", x, y)
    fast = _lesson_losses("numba-cpu", x, y)
    assert len(fast) == len(reference) == 20
    np.testing.assert_allclose(fast, reference, rtol=2e-3)
    assert reference[-1] < reference[0]  # it did learn


@pytest.fixture(params=["parallel", "serial"])
def kernel_mode(request):
    """Run the numba-cpu kernels in one variant whatever the problem size."""
    from fastconv.backends.numba_cpu.jit import SizedKernel

    SizedKernel.mode = request.param
    try:
        yield request.param
    finally:
        SizedKernel.mode = "auto"


@pytest.mark.parametrize("case", [
    ((2, 7, 9, 3), (3, 3, 3, 5), 1, "same", 1),
    ((3, 9, 7, 4), (3, 2, 4, 3), (2, 3), ((1, 2), (0, 1)), 1),
    ((1, 9, 9, 2), (3, 3, 2, 2), 1, "valid", 2),
    ((5, 5, 5, 3), (1, 1, 3, 6), 1, "valid", 1),
    ((2, 10, 10, 3), (3, 3, 3, 4), 1, 3, 1),
], ids=["same", "strided-asymmetric", "dilated", "1x1", "pad-above-k-1"])
def test_parallel_and_serial_variants_match_numpy(kernel_mode, case):
    """Small shapes normally run serially; both variants must agree with the reference."""
    from fastconv.geometry import pool_geometry

    xs, ws, strides, padding, dilation = case
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[3])
    g = conv_geometry(xs, ws, strides, padding, dilation)
    dy = rng.standard_normal(g.y_shape)
    ref, be = fastconv.get_backend("numpy"), fastconv.get_backend("numba-cpu")
    for algo in fastconv.backends.algorithms.supported_algorithms(be, g):
        tol = 1e-9 if algo.startswith("winograd") else 1e-12
        np.testing.assert_allclose(be.conv2d_forward(x, w, b, g, algo, "relu"),
                                   ref.conv2d_forward(x, w, b, g, "im2col", "relu"), rtol=tol,
                                   atol=tol)
        np.testing.assert_allclose(be.conv2d_backward_data(dy, w, g, algo),
                                   ref.conv2d_backward_data(dy, w, g, "im2col"), rtol=tol,
                                   atol=tol)
        np.testing.assert_allclose(be.conv2d_backward_weight(x, dy, g, algo),
                                   ref.conv2d_backward_weight(x, dy, g, "im2col"), rtol=tol,
                                   atol=tol)
    pg = pool_geometry(xs, (2, 3), (1, 2), "same")
    py = rng.standard_normal(pg.y_shape)
    (y1, a1), (y2, a2) = be.max_pool2d_forward(x, pg), ref.max_pool2d_forward(x, pg)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(be.max_pool2d_backward(py, a1, pg),
                               ref.max_pool2d_backward(py, a2, pg), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(be.avg_pool2d_forward(x, pg), ref.avg_pool2d_forward(x, pg),
                               rtol=1e-13)
    np.testing.assert_allclose(be.avg_pool2d_backward(py, pg), ref.avg_pool2d_backward(py, pg),
                               rtol=1e-13)
    dz, db = be.epilogue_backward(dy, np.maximum(dy, 0), "relu", True)
    rz, rb = ref.epilogue_backward(dy, np.maximum(dy, 0), "relu", True)
    np.testing.assert_array_equal(dz, rz)
    np.testing.assert_allclose(db, rb, rtol=1e-12)
    a, m = rng.standard_normal((7, 5)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(be.matmul(a, m), a @ m, rtol=1e-12)
