"""Keras-style utilities and configuration: to_categorical, seeding, threads, environment."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import config
from fastconv.utils import set_random_seed, to_categorical


def test_to_categorical():
    y = to_categorical([1, 0, 3])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(to_categorical(np.array([[2], [0]]), 3), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(to_categorical(np.array([1.0, 2.0]), 3, dtype="float64"),
                                  [[0, 1, 0], [0, 0, 1]])
    assert to_categorical(np.array([[1, 2], [0, 1]], dtype=np.uint8), 3).shape == (2, 2, 3)
    assert to_categorical(np.arange(10, dtype=np.uint8), 10).sum(axis=1).tolist() == [1] * 10


@pytest.mark.parametrize("call, error, match", [
    (lambda: to_categorical([0.5, 1]), TypeError, "integer class ids"),
    (lambda: to_categorical([-1, 1]), ValueError, "class ids must be >= 0"),
    (lambda: to_categorical([3], 3), ValueError, "class id 3 does not fit num_classes=3"),
    (lambda: to_categorical([0], 0), ValueError, "num_classes must be a positive int"),
])
def test_to_categorical_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_set_random_seed_validates():
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            set_random_seed(bad)


def test_set_random_seed_reseeds_numpy_and_python():
    import random

    set_random_seed(3)
    a = (np.random.random(), random.random())
    set_random_seed(3)
    assert (np.random.random(), random.random()) == a


def test_num_threads(backend):
    n = fastconv.get_num_threads()
    assert isinstance(n, int) and n >= 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            fastconv.set_num_threads(bad)
    fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == n


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False), ("off", False),
                                             ("yes", True), ("", True)])
def test_autotune_setting(monkeypatch, value, expected):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    assert config.env_autotune() is expected


def test_bad_autotune_setting(monkeypatch):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "sometimes")
    with pytest.raises(ValueError, match="FASTCONV_AUTOTUNE must be 0 or 1, got 'sometimes'"):
        config.env_autotune()


@pytest.mark.parametrize("value, expected", [("", config.DEFAULT_TUNE_COMPILE_SECONDS),
                                             ("0", 0.0), ("1.5", 1.5)])
def test_tune_compile_setting(monkeypatch, value, expected):
    monkeypatch.setenv("FASTCONV_TUNE_COMPILE", value)
    assert config.env_tune_compile_seconds() == expected


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_bad_tune_compile_setting(monkeypatch, value):
    monkeypatch.setenv("FASTCONV_TUNE_COMPILE", value)
    with pytest.raises(ValueError, match="FASTCONV_TUNE_COMPILE must be a number of seconds"):
        config.env_tune_compile_seconds()


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FASTCONV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "fastconv"


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path))
    assert config.env_data_dir() == tmp_path
    monkeypatch.setenv("FASTCONV_DATA", "  ")
    assert config.env_data_dir() is None
