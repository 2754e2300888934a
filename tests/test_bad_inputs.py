"""Malformed API and CLI inputs: each gives a clear error that names the argument or layer and
what was expected. One test per family; every case is kept as a parameter."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

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
