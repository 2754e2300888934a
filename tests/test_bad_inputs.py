"""Malformed API and CLI inputs: each gives a clear error that names the argument or layer and
what was expected. One test per family; every case is kept as a parameter."""

from __future__ import annotations

import shutil

import pytest

from fastconv.datasets import mnist

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
