"""MNIST loading: from $FASTCONV_DATA (CI sets it), checksums, and the not-found error.
Nothing here touches the network: downloads are simulated."""

from __future__ import annotations

import shutil
import urllib.error

import numpy as np
import pytest

from fastconv.datasets import mnist


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """Neither $FASTCONV_DATA nor the user cache holds MNIST."""
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def loaded(mnist_dir):
    return mnist.load_data(download=False)


def test_load_data_from_fastconv_data(loaded):
    (x_train, y_train), (x_test, y_test) = loaded
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8 and a.flags.writeable and a.flags.c_contiguous
    assert x_train.max() == 255 and x_train.min() == 0
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    # The well-known first labels of the standard files: 5 0 4 1 9 and 7 2 1 0 4.
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert y_test[:5].tolist() == [7, 2, 1, 0, 4]
    # Class counts of the standard training set (a header misread would shift them).
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                             5851, 5949]


def test_explicit_path_wins(mnist_dir, no_data_env):
    (x_train, _), (_, y_test) = mnist.load_data(path=mnist_dir, download=False)
    assert x_train.shape == (60000, 28, 28) and y_test.shape == (10000,)


def _copy(mnist_dir, folder):
    folder.mkdir()
    for name in mnist.FILES:
        shutil.copyfile(mnist_dir / name, folder / name)
    return folder


def test_corrupted_copy_fails_its_checksum(mnist_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "copy")
    target = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz is corrupted or not the "
                                         r"standard file: its SHA-256 is [0-9a-f]{64}, expected "
                                         r"f7ae60f9"):
        mnist.load_data(path=folder, download=False)


def test_truncated_copy_fails_its_checksum(mnist_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "copy")
    target = folder / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz is corrupted"):
        mnist.load_data(path=folder, download=False)


def test_empty_folder_without_download(no_data_env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(mnist.DatasetNotFoundError) as info:
        mnist.load_data(path=empty, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "MNIST was not found" in message
    assert f"  - {empty}\n" in message
    assert f"  - {no_data_env / 'datasets' / 'mnist'}" not in message  # path= is the only place
    for name in mnist.FILES:
        assert name in message
    assert "FASTCONV_DATA" in message and "Downloading failed" not in message


def test_fastconv_data_is_listed_where_looked(no_data_env, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("FASTCONV_DATA", str(elsewhere))
    with pytest.raises(mnist.DatasetNotFoundError, match=f"  - {elsewhere}\n"):
        mnist.load_data(download=False)


def test_incomplete_folder_is_not_used(mnist_dir, no_data_env, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copyfile(mnist_dir / "t10k-labels-idx1-ubyte.gz",
                    folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(mnist.DatasetNotFoundError):
        mnist.load_data(path=folder, download=False)


def test_failed_download_says_why(no_data_env, tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable (simulated)")

    monkeypatch.setattr(mnist.urllib.request, "urlopen", offline)
    with pytest.raises(mnist.DatasetNotFoundError, match=r"Downloading failed: could not "
                                                         r"download .*simulated"):
        mnist.load_data(path=tmp_path / "missing", download=True)
    leftovers = list((tmp_path / "missing").iterdir())  # downloads go to path=
    assert leftovers == []  # no half-written temporary files


def test_download_with_a_wrong_checksum_is_refused(no_data_env, tmp_path, monkeypatch):
    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"not the MNIST file"

    monkeypatch.setattr(mnist.urllib.request, "urlopen", lambda url, timeout=None: Response())
    with pytest.raises(mnist.DatasetNotFoundError, match="checksum mismatch"):
        mnist.load_data(download=True)
    assert list((no_data_env / "datasets" / "mnist").iterdir()) == []


def test_download_fills_the_cache(mnist_dir, no_data_env, monkeypatch):
    """A (simulated) mirror serving the real files: they land in the cache and load."""
    requested = []

    class Response:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return (mnist_dir / self.name).read_bytes()

    def serve(url, timeout=None):
        requested.append(url)
        return Response(url.rsplit("/", 1)[1])

    monkeypatch.setattr(mnist.urllib.request, "urlopen", serve)
    (_, y_train), _ = mnist.load_data(download=True)
    assert y_train[:3].tolist() == [5, 0, 4]
    cache = no_data_env / "datasets" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(mnist.FILES)
    assert len(requested) == 4 and all(u.startswith(mnist.MIRRORS[0]) for u in requested)
    requested.clear()
    mnist.load_data(download=True)  # now found in the cache: nothing is fetched
    assert requested == []
