"""MNIST, as Keras's ``mnist.load_data()``: uint8 images (N, 28, 28) and labels (N,).

Where the files are looked for: the ``path`` argument alone when it is given; otherwise
``$FASTCONV_DATA``, then the user cache (``<cache>/datasets/mnist``, see
``fastconv.config.cache_dir``). The four standard files (``train-images-idx3-ubyte.gz`` ...) are
verified against their SHA-256 checksums before use. When they are not found and
``download=True``, they are downloaded from the usual mirrors (where the internet is reachable)
into ``path``, or into the cache when no ``path`` is given, verified, then used. The error for
files not found lists each folder looked in and the files it lacks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .. import config

#: file name -> (SHA-256 of the .gz file, IDX magic number, item shape)
FILES = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 2051, (28, 28)),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 2049, ()),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 2051, (28, 28)),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 2049, ()),
}

MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are in none of the places fastconv looks."""


def cache_folder() -> Path:
    return config.cache_dir() / "datasets" / "mnist"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _candidates(path) -> list[Path]:
    if path is not None:  # an explicit folder is the only place looked in
        return [Path(path).expanduser()]
    places = []
    env = config.env_data_dir()
    if env is not None:
        places.append(env)
    places.append(cache_folder())
    return places


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def _what_lacks(folder: Path) -> str:
    """What a folder lacks, for the not-found message."""
    if not folder.is_dir():
        return "the folder does not exist"
    missing = [name for name in FILES if not (folder / name).is_file()]
    return "missing: " + ", ".join(missing)


def _verify(folder: Path) -> None:
    for name, (sha, _, _) in FILES.items():
        got = _sha256(folder / name)
        if got != sha:
            raise ValueError(
                f"MNIST file {folder / name} is corrupted or not the standard file: its SHA-256 "
                f"is {got}, expected {sha}. Delete it and fetch the file again.")


def _download(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (sha, _, _) in FILES.items():
        target = folder / name
        if target.is_file() and _sha256(target) == sha:
            continue
        errors = []
        for mirror in MIRRORS:
            tmp = None
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
                        mirror + name, timeout=30) as response:
                    out.write(response.read())
                if _sha256(Path(tmp)) != sha:
                    os.unlink(tmp)
                    errors.append(f"{mirror}: checksum mismatch")
                    continue
                os.replace(tmp, target)
                break
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{mirror}: {exc}")
                if tmp is not None and os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise OSError(f"could not download {name}: " + "; ".join(errors))


def _read_idx(path: Path, magic: int, item_shape: tuple) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = 1 + len(item_shape)
    header = np.frombuffer(data, dtype=">i4", count=1 + ndim)
    if int(header[0]) != magic or tuple(int(d) for d in header[2:]) != item_shape:
        raise ValueError(f"{path} is not an IDX file of the expected kind")
    count = int(header[1])
    return np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(
        count, *item_shape).copy()


def load_data(path=None, download: bool = True):
    """``(x_train, y_train), (x_test, y_test)`` as uint8 arrays, shapes (60000, 28, 28),
    (60000,), (10000, 28, 28), (10000,)."""
    places = _candidates(path)
    folder = next((p for p in places if _complete(p)), None)
    target = places[0] if path is not None else cache_folder()
    if folder is None and download:
        try:
            _download(target)
            folder = target
        except OSError as exc:
            download_error = str(exc)
        else:
            download_error = None
    else:
        download_error = None
    if folder is None:
        looked = "\n".join(f"  - {p}\n    ({_what_lacks(p)})" for p in places)
        names = ", ".join(FILES)
        hint = f"\nDownloading failed: {download_error}" if download_error else ""
        where = ("Put the files in that folder, or call load_data() without path= to use "
                 "FASTCONV_DATA or the cache" if path is not None else
                 "Put the files in one of those folders, or point FASTCONV_DATA at the folder "
                 "that holds them, or pass load_data(path=...)")
        raise DatasetNotFoundError(
            f"MNIST was not found. fastconv looked for the four files ({names}) in:\n{looked}"
            f"{hint}\n{where}.")
    _verify(folder)
    arrays = [_read_idx(folder / name, magic, shape) for name, (_, magic, shape) in FILES.items()]
    x_train, y_train, x_test, y_test = arrays
    return (x_train, y_train), (x_test, y_test)
