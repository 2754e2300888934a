"""Model and weight files: one ZIP archive, never pickle.

Layout of the archive:

* ``fastconv.json``: ``{"format": "fastconv-model" | "fastconv-weights", "format_version": 1,
  "model": {"class_name", "config"}, "compile": {...} | null, "weights": [{"name", "shape",
  "dtype", "file"}], "optimizer": {"iterations", "arrays": [...]}}``
* ``arrays/<i>.npy``: each array in NumPy's ``.npy`` format, read back with
  ``allow_pickle=False``.

ZIP's CRC-32 catches corrupted bytes and its central directory catches truncation; every name,
shape and dtype is checked against the JSON before anything is used. Writes are atomic: the
archive goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a crash mid-save leaves any earlier file intact.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__

FORMAT_VERSION = 1
_MANIFEST = "fastconv.json"
_ALLOWED_DTYPES = ("float32", "float64", "int64")


class InvalidModelFileError(ValueError):
    """The file is not a readable fastconv model or weights file."""


# -- writing ------------------------------------------------------------------------------------

def _atomic_write(path: Path, write) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {str(path)!r}: the folder {str(folder)!r} does "
                                f"not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _array_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _write_archive(path, manifest: dict, arrays: list[np.ndarray]) -> None:
    def write(fh):
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_MANIFEST, json.dumps(manifest, indent=1))
            for i, a in enumerate(arrays):
                zf.writestr(f"arrays/{i}.npy", _array_bytes(a))

    _atomic_write(Path(os.fspath(path)), write)


def _weight_entries(variables, offset: int = 0) -> tuple[list[dict], list[np.ndarray]]:
    entries, arrays = [], []
    for i, var in enumerate(variables):
        host = var.numpy()
        entries.append({"name": var.name, "shape": list(host.shape), "dtype": host.dtype.name,
                        "file": f"arrays/{offset + i}.npy"})
        arrays.append(host)
    return entries, arrays


def _keras_target(filepath, where: str) -> bool:
    """True when ``filepath`` names a Keras file: ``.keras`` for models, ``.h5`` for weights."""
    name = os.fspath(filepath).lower()
    if where == "save" and name.endswith((".h5", ".hdf5")):
        raise ValueError(f"save: fastconv does not write legacy HDF5 model files "
                         f"({os.fspath(filepath)!r}); save to a .keras file (Keras 3) or a .fcm "
                         f"file (fastconv's own format)")
    return name.endswith(".keras") if where == "save" else name.endswith((".h5", ".hdf5"))


def save_model(model, filepath) -> None:
    from .losses import serialize as serialize_loss
    from .optimizers import serialize as serialize_optimizer

    if _keras_target(filepath, "save"):  # a Keras 3 archive (fastconv.keras_io)
        from . import keras_io

        return keras_io.save_model(model, filepath)

    if not model.built:
        raise ValueError(f"save: model '{model.name}' is not built yet (its input shape is "
                         f"unknown); build it, or train it, before saving")
    entries, arrays = _weight_entries(model.weights)
    manifest = {"format": "fastconv-model", "format_version": FORMAT_VERSION,
                "fastconv_version": __version__,
                "model": {"class_name": type(model).__name__, "config": model.get_config()},
                "compile": None, "weights": entries, "optimizer": None}
    if model.compiled:
        manifest["compile"] = model.compile_config(serialize_optimizer, serialize_loss)
        state = model.optimizer.get_state(model.weight_paths())
        opt_entries = []
        for key, value in state["arrays"].items():
            host = np.asarray(value) if isinstance(value, np.ndarray) else value.get()
            opt_entries.append({"name": key, "shape": list(host.shape),
                                "dtype": host.dtype.name, "file": f"arrays/{len(arrays)}.npy"})
            arrays.append(host)
        manifest["optimizer"] = {"iterations": state["iterations"], "arrays": opt_entries}
    _write_archive(filepath, manifest, arrays)


def save_weights(model, filepath) -> None:
    if _keras_target(filepath, "save_weights"):  # a Keras 3 .weights.h5 file
        from . import keras_io

        return keras_io.save_weights(model, filepath)
    entries, arrays = _weight_entries(model.weights)
    manifest = {"format": "fastconv-weights", "format_version": FORMAT_VERSION,
                "fastconv_version": __version__, "weights": entries}
    _write_archive(filepath, manifest, arrays)


# -- reading ------------------------------------------------------------------------------------

class _Archive:
    """A validated archive: manifest plus checked array reads."""

    def __init__(self, filepath, expected_formats: tuple[str, ...]):
        self.path = os.fspath(filepath)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path!r}")
        try:
            self.zf = zipfile.ZipFile(self.path, "r")
        except (zipfile.BadZipFile, OSError) as exc:
            raise self.error(f"it is not a fastconv file, or it is truncated or corrupted "
                             f"({exc})") from None
        try:
            raw = self.zf.read(_MANIFEST)
        except KeyError:
            self.close()
            raise self.error(f"it has no {_MANIFEST}: not a fastconv file") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            self.close()
            raise self.error(f"it is corrupted ({exc})") from None
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self.close()
            raise self.error(f"its {_MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in expected_formats:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            self.close()
            raise self.error(f"expected a file of format {' or '.join(expected_formats)}, found "
                             f"{found!r}")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            self.close()
            raise self.error(f"format version {version!r} is not supported by fastconv "
                             f"{__version__} (it reads versions up to {FORMAT_VERSION})")
        self.manifest = manifest

    def error(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"cannot load {self.path!r}: {why}")

    def read_array(self, entry) -> np.ndarray:
        if not isinstance(entry, dict) or not {"name", "shape", "dtype", "file"} <= set(entry):
            raise self.error(f"malformed array entry {entry!r}")
        if entry["dtype"] not in _ALLOWED_DTYPES:
            raise self.error(f"array {entry['name']!r} has unsupported dtype {entry['dtype']!r}")
        try:
            with self.zf.open(entry["file"]) as fh:
                data = fh.read()
            a = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except KeyError:
            raise self.error(f"array {entry['name']!r} ({entry['file']}) is missing") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise self.error(f"array {entry['name']!r} is corrupted ({exc})") from None
        if list(a.shape) != list(entry["shape"]) or a.dtype.name != entry["dtype"]:
            raise self.error(f"array {entry['name']!r} has shape {a.shape} and dtype {a.dtype}, "
                             f"but the manifest says {entry['shape']} and {entry['dtype']}")
        return a

    def weights(self) -> list[tuple[dict, np.ndarray]]:
        entries = self.manifest.get("weights")
        if not isinstance(entries, list):
            raise self.error("the manifest lists no weights")
        return [(e, self.read_array(e)) for e in entries]

    def close(self) -> None:
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _assign_weights(model, pairs, archive: _Archive) -> None:
    variables = model.weights
    if len(pairs) != len(variables):
        raise archive.error(f"it holds {len(pairs)} weight arrays but model '{model.name}' has "
                            f"{len(variables)}")
    for var, (entry, value) in zip(variables, pairs):
        if tuple(value.shape) != var.shape:
            raise archive.error(f"weight {entry['name']!r} has shape {tuple(value.shape)} but "
                                f"{var.name!r} in the model has shape {var.shape}")
    for var, (_, value) in zip(variables, pairs):
        var.assign(value)


def load_model(filepath, compile: bool = True):  # noqa: A002 - Keras's argument name
    """Rebuild a model saved with ``model.save``: architecture, weights and, with
    ``compile=True``, optimizer, loss, metrics and optimizer state. Keras files (``.keras``,
    ``.h5``) are read by ``fastconv.keras_io``."""
    from . import keras_io

    if keras_io.is_keras_file(filepath):
        return keras_io.load_model(filepath, compile=compile)
    from .models.functional import Functional
    from .models.sequential import Sequential

    classes = {"Sequential": Sequential, "Functional": Functional}
    with _Archive(filepath, ("fastconv-model",)) as archive:
        spec = archive.manifest.get("model")
        if not isinstance(spec, dict) or spec.get("class_name") not in classes:
            raise archive.error(f"unsupported model description {str(spec)[:80]!r}")
        try:
            model = classes[spec["class_name"]].from_config(spec["config"])
            model.build()
        except (KeyError, TypeError, ValueError) as exc:
            raise archive.error(f"its architecture cannot be rebuilt ({exc})") from None
        _assign_weights(model, archive.weights(), archive)
        settings = archive.manifest.get("compile")
        if compile and settings:
            try:
                model.compile(optimizer=settings["optimizer"], loss=settings["loss"],
                              metrics=settings["metrics"],
                              loss_weights=settings.get("loss_weights"))
            except (KeyError, TypeError, ValueError) as exc:
                raise archive.error(f"its compile settings are invalid ({exc})") from None
            opt = archive.manifest.get("optimizer")
            if opt:
                arrays = {e["name"]: archive.read_array(e) for e in opt.get("arrays", [])}
                try:
                    model.optimizer.set_state({"iterations": opt["iterations"],
                                               "arrays": arrays}, model.weight_paths())
                except (KeyError, TypeError, ValueError) as exc:
                    raise archive.error(f"its optimizer state does not fit ({exc})") from None
    return model


def load_weights(model, filepath) -> None:
    """Load weights saved by ``save_weights`` (or a full model file) into ``model``; Keras
    weight files (``.weights.h5``, legacy ``.h5``) are read by ``fastconv.keras_io``."""
    from . import keras_io

    if keras_io.is_keras_file(filepath):
        return keras_io.load_weights(model, filepath)
    with _Archive(filepath, ("fastconv-weights", "fastconv-model")) as archive:
        if not model.built:
            raise ValueError(f"load_weights: model '{model.name}' is not built yet; build it "
                             f"(or give its first layer input_shape=...) first")
        _assign_weights(model, archive.weights(), archive)
