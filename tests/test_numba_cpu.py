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


@pytest.mark.parametrize("shape", [(12, 2, 16), (6, 2, 8), (6, 2, 4), (4, 1, 8)],
                         ids=["avx512", "avx2", "128-bit", "one-vector"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_microkernel_tile_shapes(shape, dtype):
    """Every tile shape fastconv may pick on some CPU computes a GEMM exactly: several
    segments of row pointers, store and accumulate, and the bias + ReLU epilogue (LLVM lowers
    the vectors on any CPU)."""
    from numba import njit

    from fastconv.backends.numba_cpu.microkernel import (
        make_microkernel,
        make_microkernel_bias_act,
    )

    mr, nv, w32 = shape
    kernel = make_microkernel(mr, nv, w32)
    nr = nv * (w32 if dtype == np.float32 else w32 // 2)

    @njit
    def tile(ptrs, nseg, seglen, bp, c, accumulate):
        kernel(nseg, seglen, ptrs, bp.ctypes.data, c.ctypes.data, c.shape[1], accumulate, c)

    rng = np.random.default_rng(8)
    nseg, seglen = 3, 5
    a = [rng.standard_normal((mr, seglen)).astype(dtype) for _ in range(nseg)]
    b = rng.standard_normal((nseg * seglen, nr)).astype(dtype)
    ptrs = np.array([a[s][r].ctypes.data for s in range(nseg) for r in range(mr)], np.int64)
    c = np.full((mr, nr + 3), 7.0, dtype)  # a row stride wider than the tile
    tile(ptrs, nseg, seglen, b, c, False)
    expected = np.concatenate(a, axis=1).astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c[:, :nr], expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c[:, nr:], 7.0)  # nothing beyond the tile is written
    tile(ptrs, nseg, seglen, b, c, True)
    np.testing.assert_allclose(c[:, :nr], 2 * expected, rtol=tol, atol=tol)

    # the epilogue variant: act(A @ B + bias), with NaN, -0.0 and negatives through ReLU
    epilogue = make_microkernel_bias_act(mr, nv, w32)

    @njit
    def tile_bias_act(ptrs, nseg, seglen, bp, c, bias, relu):
        epilogue(nseg, seglen, ptrs, bp.ctypes.data, c.ctypes.data, c.shape[1],
                 bias.ctypes.data, relu, c, c)

    bias = rng.standard_normal(nr).astype(dtype)
    a[0][0, 0] = np.nan  # row 0 of C becomes NaN
    expected = np.concatenate(a, axis=1).astype(np.float64) @ b.astype(np.float64) + bias
    for relu in (False, True):
        c[:] = 7.0
        tile_bias_act(ptrs, nseg, seglen, b, c, bias, relu)
        want = np.where(expected < 0, 0.0, expected) if relu else expected
        np.testing.assert_allclose(c[:, :nr], want, rtol=tol, atol=tol)
        assert np.isnan(c[0, :nr]).all()  # row 0 met the NaN; the other rows are finite
        assert (c[1:, :nr] >= 0).all() == relu
        np.testing.assert_array_equal(c[:, nr:], 7.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (13, 7, 33), (29, 64, 17), (100, 3, 65)])
def test_matmul_every_transpose(dtype, m, k, n, kernel_mode):
    be = fastconv.get_backend("numba-cpu")
    rng = np.random.default_rng(9)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for ta in (False, True):
        for tb in (False, True):
            got = be.matmul(a.T.copy() if ta else a, b.T.copy() if tb else b, ta, tb)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


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


@pytest.mark.parametrize("case", [
    ((2, 7, 9, 3), (3, 3, 3, 5), 1, "same", 1),
    ((3, 9, 7, 4), (3, 2, 4, 3), (2, 3), ((1, 2), (0, 1)), 1),
    ((1, 9, 9, 2), (3, 3, 2, 2), 1, "valid", 2),
    ((5, 5, 5, 3), (1, 1, 3, 6), 1, "valid", 1),
    ((2, 10, 10, 3), (3, 3, 3, 4), 1, 3, 1),
    ((2, 6, 7, 32), (3, 2, 32, 5), (1, 2), "same", 1),
    ((1, 7, 6, 64), (2, 3, 64, 3), 1, ((0, 2), (1, 0)), (2, 1)),
], ids=["same", "strided-asymmetric", "dilated", "1x1", "pad-above-k-1", "channels-32",
        "channels-64-dilated"])
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
