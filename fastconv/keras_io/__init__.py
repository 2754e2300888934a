"""Keras files: ``.keras`` archives, legacy ``.h5`` models, ``.weights.h5`` and legacy weights.

* ``load_model(path)`` rebuilds a Keras 3 ``.keras`` archive or a legacy full-model ``.h5``
  file as a fastconv model (architecture from the JSON config, then the weights);
* ``load_weights(model, path)`` reads a Keras 3 ``.weights.h5`` file or a legacy HDF5 weights
  file (the layout keras.applications downloads) into a built fastconv model;
* ``save_model(model, path)`` writes a Keras 3 ``.keras`` archive that Keras itself loads
  (architecture, weights and compile settings, not optimizer state), and
  ``save_weights(model, path)`` a Keras 3 ``.weights.h5`` file.

h5py is an optional dependency (``pip install 'fastconv[keras]'``). Nothing in a file is ever
executed: configs are JSON, read through an allow-list of layer classes, and HDF5 files are parsed
by ``fastconv.io.hdf5`` in a child process bounded in time and memory, which accepts only plain
datasets stored inside the file, their sizes checked against the file's before they are read.
Only regular files are read (a FIFO or a device is refused before reading).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile

from ..io.atomic import atomic_write, atomic_write_bytes
from ..io.files import open_regular
from ..saving import InvalidModelFileError
from ._h5 import HDF5_SIGNATURE, is_hdf5, read_h5
from .compiling import compile_from_keras, keras_compile_config
from .graph import keras_model_config, model_from_keras_config
from .layers import KERAS_CLASSES, supported_classes
from .weights import h5_layout, load_keras3, load_legacy, write_keras3

__all__ = ["load_model", "load_weights", "save_model", "save_weights", "is_keras_file",
           "model_from_keras_config", "keras_model_config", "supported_classes",
           "KERAS_CLASSES"]

#: The Keras version whose .keras layout save_model writes (and its tests load the files with).
KERAS_FORMAT_VERSION = "3.15.1"
_ZIP_MAGIC = b"PK\x03\x04"
_ARCHIVE_CONFIG = "config.json"
_ARCHIVE_WEIGHTS = "model.weights.h5"
_ARCHIVE_METADATA = "metadata.json"
#: The largest config.json read from an archive (Keras's configs are tens of kilobytes).
_MAX_CONFIG_BYTES = 64 * 2**20
#: Deflate expands at most ~1032-fold; a member claiming more than that is corrupt.
_MAX_DEFLATE_RATIO = 1032


def _label(filepath) -> str:
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    return path


def is_keras_file(filepath) -> bool:
    """True for files this module reads: HDF5 files, and ZIP archives holding Keras's
    ``config.json`` (fastconv's own ZIP files hold ``fastconv.json`` instead). A file that does
    not exist, or is neither, counts as a Keras file when its extension says so (``.keras``,
    ``.h5``, ``.hdf5``), so that the error comes from this module's reader."""
    path = os.fspath(filepath)
    by_name = path.lower().endswith((".keras", ".h5", ".hdf5"))
    try:
        fh, _ = open_regular(path)
    except (OSError, InvalidModelFileError):
        return by_name
    with fh:
        head = fh.read(8)
        if is_hdf5(head):
            return True
        if not head.startswith(_ZIP_MAGIC):
            return by_name
        try:
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return by_name
        if "fastconv.json" in names:
            return False
        return by_name or _ARCHIVE_CONFIG in names
    return by_name


# -- .keras archives ----------------------------------------------------------------------------

class _KerasArchive:
    def __init__(self, path: str, data: bytes):
        self.path = path
        self.size = len(data)
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise self.error(f"it is not a Keras archive, or it is truncated or corrupted "
                             f"({exc})") from None

    def error(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"cannot load {self.path!r}: {why}")

    def member_size(self, member: str, limit: int | None = None) -> int:
        """The size ``member`` claims, checked against what the archive can hold."""
        try:
            info = self.zf.getinfo(member)
        except KeyError:
            raise self.error(f"it has no {member}: not a Keras 3 archive") from None
        bound = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED
                                      else _MAX_DEFLATE_RATIO)
        if info.file_size > min(limit or self.size, bound, self.size * _MAX_DEFLATE_RATIO):
            raise self.error(f"its {member} claims {info.file_size} bytes, more than the archive "
                             f"can hold: the file is corrupted")
        return info.file_size

    def read(self, member: str, limit: int) -> bytes:
        self.member_size(member, limit)
        try:
            return self.zf.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
                RuntimeError) as exc:
            raise self.error(f"its {member} is corrupted ({exc})") from None

    def config(self) -> dict:
        raw = self.read(_ARCHIVE_CONFIG, _MAX_CONFIG_BYTES)
        try:
            config = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self.error(f"its {_ARCHIVE_CONFIG} is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise self.error(f"its {_ARCHIVE_CONFIG} is not a model description")
        return config

    def weights(self) -> bytes:
        data = self.read(_ARCHIVE_WEIGHTS, self.size)
        if not is_hdf5(data[:8]):
            raise self.error(f"its {_ARCHIVE_WEIGHTS} is not an HDF5 file")
        return data

    def close(self):
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _open(path: str, what: str):
    """``("zip", bytes of the archive)``, ``("hdf5", the parsed HDF5 file)`` or ``("other",
    first bytes)`` for the regular file ``path`` (opened once; an HDF5 file's arrays are read
    straight from it)."""
    fh, size = open_regular(path, what)
    with fh:
        head = fh.read(8)
        if head.startswith(_ZIP_MAGIC):
            fh.seek(0)
            data = fh.read(size + 1)
            if len(data) != size:
                raise InvalidModelFileError(f"{what} {path!r} changed while it was read")
            return "zip", data
        if is_hdf5(head):
            return "hdf5", read_h5(fh, path)
    return "other", head


def _archive_weights(archive: _KerasArchive, path: str):
    """The archive's ``model.weights.h5``, parsed."""
    return read_h5(archive.weights(), f"{path}/{_ARCHIVE_WEIGHTS}")


def _build(model) -> None:
    if not model.built:
        try:
            model.build()
        except (TypeError, ValueError):
            pass


def _max_params(weights_bytes: int) -> int:
    """The most weights a file of ``weights_bytes`` can fill (2-byte float16 values, and some
    slack for tiny files): a config asking for more is refused before allocating."""
    return weights_bytes // 2 + 4096


def load_model(filepath, compile: bool = True):  # noqa: A002 - Keras's argument name
    """A fastconv model from a Keras 3 ``.keras`` archive or a legacy full-model ``.h5`` file.

    With ``compile=True`` the model is compiled as the file says when fastconv has the same
    optimizer, loss and metrics (Adam, SGD, RMSprop; optimizer state starts afresh); otherwise
    it comes back uncompiled and the reason is logged (``fastconv.keras_io`` logger).
    """
    path = _label(filepath)
    kind, content = _open(path, "model file")
    if kind == "zip":
        with _KerasArchive(path, content) as archive:
            size = archive.member_size(_ARCHIVE_WEIGHTS)
            config = archive.config()
            model = model_from_keras_config(config, path, max_params=_max_params(size))
            _build(model)
            load_keras3(model, _archive_weights(archive, path))
        if compile:
            compile_from_keras(model, config.get("compile_config"), path)
        return model
    if kind != "hdf5":
        raise InvalidModelFileError(f"cannot load {path!r}: it is neither a Keras archive "
                                    f"(.keras) nor an HDF5 file (.h5)")
    reader = content
    layout = h5_layout(reader)
    if layout != "legacy-model":
        raise InvalidModelFileError(
            f"cannot load {path!r} as a model: it is a weights-only file ({layout}); build the "
            f"architecture, then call model.load_weights({path!r})")
    text = reader.text_attr(reader.file, "model_config")
    if text is None:
        raise reader.error("its model_config attribute is not text")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise reader.error(f"its model_config is not valid JSON ({exc})") from None
    training = reader.text_attr(reader.file, "training_config") if compile else None
    model = model_from_keras_config(config, path, max_params=_max_params(reader.size))
    _build(model)
    load_legacy(model, reader, root="model_weights")
    if training:
        try:
            settings = json.loads(training)
        except (ValueError, RecursionError):
            raise InvalidModelFileError(f"cannot load {path!r}: its training_config is not "
                                        f"valid JSON") from None
        compile_from_keras(model, settings, path)
    return model


def load_weights(model, filepath) -> None:
    """Load a Keras weights file (Keras 3 ``.weights.h5``, legacy HDF5 weights, or the
    weights of a ``.keras`` / legacy ``.h5`` model) into the built ``model``."""
    path = _label(filepath)
    if not model.built:
        raise ValueError(f"load_weights: model '{model.name}' is not built yet; build it (or "
                         f"give it an input shape) first")
    kind, content = _open(path, "weights file")
    if kind == "zip":
        with _KerasArchive(path, content) as archive:
            load_keras3(model, _archive_weights(archive, path))
        return
    if kind != "hdf5":
        raise InvalidModelFileError(f"cannot load {path!r}: it is not an HDF5 file (its first "
                                    f"bytes are {content!r}, not {HDF5_SIGNATURE!r})")
    reader = content
    layout = h5_layout(reader)
    if layout == "keras3-weights":
        load_keras3(model, reader)
    else:
        load_legacy(model, reader, root="model_weights" if layout == "legacy-model" else "")


# -- writing ------------------------------------------------------------------------------------

def _h5_bytes(model) -> bytes:
    buf = io.BytesIO()
    write_keras3(model, buf)
    return buf.getvalue()


def save_model(model, filepath) -> None:
    """Write a Keras 3 ``.keras`` archive (architecture and weights; no optimizer state)."""
    from .._version import __version__

    if not model.built:
        raise ValueError(f"save: model '{model.name}' is not built yet (its input shape is "
                         f"unknown); build it, or train it, before saving")
    config = keras_model_config(model)
    compile_config = keras_compile_config(model)
    if compile_config is not None:
        config["compile_config"] = compile_config
    weights = _h5_bytes(model)
    # keras_version: the Keras release whose archive layout this follows (Keras reads it as
    # information only); fastconv_version says who wrote the file.
    metadata = {"keras_version": KERAS_FORMAT_VERSION,
                "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S"),
                "fastconv_version": __version__}

    def write(fh):
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_ARCHIVE_METADATA, json.dumps(metadata))
            zf.writestr(_ARCHIVE_CONFIG, json.dumps(config))
            zf.writestr(_ARCHIVE_WEIGHTS, weights)

    atomic_write(filepath, write)


def save_weights(model, filepath) -> None:
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file."""
    atomic_write_bytes(filepath, _h5_bytes(model))
