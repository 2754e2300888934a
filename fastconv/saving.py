"""Model and weight files: one ZIP archive, never pickle.

Layout of the archive:

* ``fastconv.json``: ``{"format": "fastconv-model" | "fastconv-weights", "format_version": 1,
  "model": {"class_name", "config"}, "compile": {...} | null, "weights": [{"name", "shape",
  "dtype", "file"}], "optimizer": {"iterations", "arrays": [...]}}``
* ``arrays/<i>.npy``: each array in NumPy's ``.npy`` format, read back with
  ``allow_pickle=False``.

ZIP's CRC-32 catches corrupted bytes and its central directory catches truncation; every name,
shape and dtype is checked against the JSON before anything is used. Files are read as hostile:
every declared size (zip members, the manifest, ``.npy`` headers, what the configuration's
layers would allocate) is checked against the file's own size and a bound before anything is
read or allocated, the JSON's nesting is bounded, and every failure is an
``InvalidModelFileError`` that names the file and the problem.

Writes are atomic: the archive goes to a temporary file in the same folder (locked while it is
written), is flushed to disk, then renamed over the target, so a crash mid-save leaves any
earlier file intact; the next save of the same file removes the temporaries that killed saves
left. Saved files get the mode that the umask gives new files.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from . import allocation
from ._version import __version__
from .io.atomic import atomic_write
from .io.errors import InvalidModelFileError
from .io.files import check_regular, open_regular
from .io.jsontext import json_depth

FORMAT_VERSION = 1
_MANIFEST = "fastconv.json"
_ALLOWED_DTYPES = ("float32", "float64", "int64")


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

    atomic_write(Path(os.fspath(path)), write)


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


def model_description(model) -> dict:
    """A model's architecture as a model file keeps it: its class name and configuration."""
    return {"class_name": type(model).__name__, "config": model.get_config()}


def model_class(description):
    """The model class a description (``model_description``) names, or None when it is not
    one that model files hold."""
    from .models.functional import Functional
    from .models.sequential import Sequential

    name = description.get("class_name") if isinstance(description, dict) else None
    return {"Sequential": Sequential, "Functional": Functional}.get(name) \
        if isinstance(name, str) else None


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
                "model": model_description(model),
                "compile": None, "weights": entries, "optimizer": None}
    if model.compiled:
        manifest["compile"] = model.compile_config(serialize_optimizer, serialize_loss)
        paths = model.weight_paths()
        state = model.optimizer.get_state(paths)
        opt_entries = []
        for key, value in state["arrays"].items():
            host = paths[key.rpartition("/")[0]]._backend.to_host(value)
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

#: Largest manifest a file may hold (bytes).
MAX_MANIFEST_BYTES = 16 << 20
#: Deepest nesting of the manifest's JSON (fastconv writes 7 levels).
MAX_JSON_DEPTH = 64
#: Most dimensions of a stored array.
MAX_NDIM = 8
#: A compressed member may expand at most this many times (fastconv stores members
#: uncompressed; other zip tools may deflate them).
MAX_EXPANSION = 32
#: Bytes of an .npy header read before its data (NumPy's own limit is 10,000 characters).
_NPY_HEADER_BYTES = 16384
def _short(value, limit: int = 80) -> str:
    """repr of a value from a file, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Archive:
    """A validated archive: manifest plus checked array reads.

    Every size is checked before anything is read or allocated: each member's declared size
    against the file's size (``MAX_EXPANSION`` for compressed members), the manifest's size and
    nesting, each array's shape and dtype in the manifest against its ``.npy`` header and its
    member's size. What a model built from the file's configuration may allocate is bounded by
    the bytes its weights declare (``weight_budget``). Every failure is an
    ``InvalidModelFileError`` naming the file and the problem."""

    def __init__(self, filepath, expected_formats: tuple[str, ...]):
        self.path = os.fspath(filepath)
        self._fh, self.size = open_regular(self.path, "model file")
        try:
            self.zf = zipfile.ZipFile(self._fh, "r")
        except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file
            self._fh.close()
            raise self.error(f"it is not a fastconv file, or it is truncated or corrupted "
                             f"({type(exc).__name__}: {exc})") from None
        try:
            self._check_members()
            self.manifest = self._read_manifest(expected_formats)
            self.weight_entries = self._entries(self.manifest.get("weights"), "weights")
        except BaseException:
            self.close()
            raise

    def error(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"cannot load {self.path!r}: {why}")

    # -- sizes ---------------------------------------------------------------------------------
    def _check_members(self) -> None:
        total = 0
        for info in self.zf.infolist():
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise self.error(f"member {info.filename!r} declares {info.file_size} bytes "
                                     f"but stores {info.compress_size}")
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                if info.file_size > MAX_EXPANSION * max(info.compress_size, 1) + 4096:
                    raise self.error(
                        f"member {info.filename!r} would expand from {info.compress_size} to "
                        f"{info.file_size} bytes (more than {MAX_EXPANSION}x): refused as a "
                        f"decompression bomb")
            else:
                raise self.error(f"member {info.filename!r} uses compression method "
                                 f"{info.compress_type}; fastconv reads stored or deflated "
                                 f"members only")
            if info.compress_size > self.size:
                raise self.error(f"member {info.filename!r} declares {info.compress_size} "
                                 f"bytes, more than the file's {self.size}")
            total += info.file_size
        if total > MAX_EXPANSION * self.size + (1 << 20):
            raise self.error(f"its members declare {total} bytes in all, which a file of "
                             f"{self.size} bytes cannot hold (more than {MAX_EXPANSION}x)")

    def _member(self, name: str, what: str):
        try:
            return self.zf.getinfo(name)
        except KeyError:
            raise self.error(f"{what} ({name!r}) is missing") from None

    def _read(self, info, what: str, limit: int | None = None) -> bytes:
        """A member's bytes (all, or the first ``limit``), any read error a bad file."""
        try:
            with self.zf.open(info) as fh:
                return fh.read() if limit is None else fh.read(limit)
        except Exception as exc:  # noqa: BLE001 - zlib, CRC, headers: a corrupted member
            raise self.error(f"{what} is corrupted ({exc})") from None

    # -- the manifest ----------------------------------------------------------------------------
    def _read_manifest(self, expected_formats) -> dict:
        try:
            info = self.zf.getinfo(_MANIFEST)
        except KeyError:
            raise self.error(f"it has no {_MANIFEST}: not a fastconv file") from None
        if info.file_size > MAX_MANIFEST_BYTES:
            raise self.error(f"its {_MANIFEST} declares {info.file_size} bytes, more than the "
                             f"{MAX_MANIFEST_BYTES} a manifest may have")
        raw = self._read(info, f"its {_MANIFEST}")
        depth = json_depth(raw)
        if depth > MAX_JSON_DEPTH:
            raise self.error(f"its {_MANIFEST} is nested {depth} levels deep (at most "
                             f"{MAX_JSON_DEPTH})")
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self.error(f"its {_MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in expected_formats:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise self.error(f"expected a file of format {' or '.join(expected_formats)}, found "
                             f"{_short(found)}")
        version = manifest.get("format_version")
        if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
            raise self.error(f"format version {_short(version)} is not supported by "
                             f"fastconv {__version__} (it reads versions 1 to {FORMAT_VERSION})")
        return manifest

    def _entries(self, entries, where: str) -> list[tuple[dict, int]]:
        """Array entries of the manifest, each checked (name, shape, dtype, file) against its
        member's .npy header and size; returns (entry, bytes of data)."""
        if entries is None:
            raise self.error(f"the manifest lists no {where}")
        if not isinstance(entries, list):
            raise self.error(f"the manifest's {where} is not a list of arrays: {_short(entries)}")
        checked, names = [], set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not {"name", "shape", "dtype", "file"} <= set(entry):
                raise self.error(f"malformed array entry {where}[{i}] (it needs name, shape, "
                                 f"dtype and file): {_short(entry)}")
            name, shape, dtype, file = (entry[k] for k in ("name", "shape", "dtype", "file"))
            if not isinstance(name, str) or not isinstance(file, str):
                raise self.error(f"{where}[{i}]: name and file must be strings, got "
                                 f"{str(name)[:40]!r} and {str(file)[:40]!r}")
            if name in names:
                raise self.error(f"{where}: array {name!r} is listed twice")
            names.add(name)
            if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                    or not all(_is_int(d) and d >= 0 for d in shape)):
                raise self.error(f"array {name!r} has an invalid shape {str(shape)[:80]} "
                                 f"(at most {MAX_NDIM} non-negative integers)")
            if dtype not in _ALLOWED_DTYPES:
                raise self.error(f"array {name!r} has unsupported dtype {str(dtype)[:40]!r} "
                                 f"(fastconv stores {', '.join(_ALLOWED_DTYPES)})")
            checked.append((entry, self._check_npy(entry)))
        return checked

    def _check_npy(self, entry) -> int:
        """The .npy header of an entry's member against the entry, and its data's size against
        the member's: nothing of the data is read."""
        what = f"array {entry['name']!r} ({entry['file']})"
        info = self._member(entry["file"], what)
        head = io.BytesIO(self._read(info, f"array {entry['name']!r}", _NPY_HEADER_BYTES))
        try:
            version = np.lib.format.read_magic(head)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
            else:
                raise ValueError(f".npy version {version} is not supported")
        except Exception as exc:  # noqa: BLE001 - a malformed header
            raise self.error(f"{what} has no valid .npy header ({exc})") from None
        if dtype.hasobject:
            raise self.error(f"{what} holds Python objects (dtype {dtype}): Object arrays cannot "
                             f"be loaded (fastconv never unpickles)")
        if dtype.name != entry["dtype"] or list(shape) != entry["shape"]:
            raise self.error(f"{what} has shape {shape} and dtype {dtype}, but the manifest "
                             f"says {tuple(entry['shape'])} and {entry['dtype']}")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size - head.tell() != nbytes:
            raise self.error(f"{what} should hold {nbytes} bytes of data for shape {shape}, but "
                             f"its member has {info.file_size - head.tell()}")
        return nbytes

    # -- arrays ------------------------------------------------------------------------------------
    def read_array(self, entry) -> np.ndarray:
        """An array whose entry was checked by ``_entries``."""
        what = f"array {entry['name']!r}"  # read errors name the member
        data = self._read(self.zf.getinfo(entry["file"]), what)
        try:
            a = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise self.error(f"{what} is corrupted ({exc})") from None
        if list(a.shape) != entry["shape"] or a.dtype.name != entry["dtype"]:
            raise self.error(f"{what} has shape {a.shape} and dtype {a.dtype}, but the manifest "
                             f"says {entry['shape']} and {entry['dtype']}")
        return a

    def weights(self) -> list[tuple[dict, np.ndarray]]:
        return [(e, self.read_array(e)) for e, _ in self.weight_entries]

    def weight_budget(self):
        """A context in which the model built from this file may allocate about what the
        file's weights hold: twice their bytes (initial values may be computed in float64)
        plus 1 MiB."""
        declared = sum(n for _, n in self.weight_entries)
        return allocation.budget(2 * declared + (1 << 20),
                                 f"the file's weights hold ({declared} bytes)")

    def close(self) -> None:
        self.zf.close()
        self._fh.close()

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

    check_regular(filepath, "model file")
    if keras_io.is_keras_file(filepath):
        return keras_io.load_model(filepath, compile=compile)
    with _Archive(filepath, ("fastconv-model",)) as archive:
        spec = archive.manifest.get("model")
        cls = model_class(spec)
        if cls is None:
            raise archive.error(f"unsupported model description {str(spec)[:80]!r}")
        try:  # the configuration may ask for no more memory than the file's weights hold
            with archive.weight_budget():
                model = cls.from_config(spec["config"])
                model.build()
        except Exception as exc:  # noqa: BLE001 - whatever a hostile config raises
            raise archive.error(f"its architecture cannot be rebuilt "
                                f"({type(exc).__name__}: {str(exc)[:300]})") from None
        _assign_weights(model, archive.weights(), archive)
        settings = archive.manifest.get("compile")
        if compile and settings is not None:
            if not isinstance(settings, dict):
                raise archive.error(f"its compile settings are not a mapping: "
                                    f"{str(settings)[:80]}")
            try:
                model.compile(optimizer=settings["optimizer"], loss=settings["loss"],
                              metrics=settings["metrics"],
                              loss_weights=settings.get("loss_weights"))
            except Exception as exc:  # noqa: BLE001
                raise archive.error(f"its compile settings are invalid "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from None
            opt = archive.manifest.get("optimizer")
            if opt is not None:
                _set_optimizer_state(model, opt, archive)
    return model


def _set_optimizer_state(model, opt, archive: _Archive) -> None:
    if not isinstance(opt, dict) or not isinstance(opt.get("arrays", []), list):
        raise archive.error(f"its optimizer state is malformed: {str(opt)[:80]}")
    iterations = opt.get("iterations")
    if not _is_int(iterations) or not 0 <= iterations < 2**63:
        raise archive.error(f"its optimizer's iteration count {str(iterations)[:40]!r} is not "
                            f"an integer in [0, 2**63)")
    entries = archive._entries(opt.get("arrays", []), "optimizer arrays")
    arrays = {e["name"]: archive.read_array(e) for e, _ in entries}
    try:
        model.optimizer.set_state({"iterations": iterations, "arrays": arrays},
                                  model.weight_paths())
    except Exception as exc:  # noqa: BLE001
        raise archive.error(f"its optimizer state does not fit "
                            f"({type(exc).__name__}: {str(exc)[:300]})") from None


def load_weights(model, filepath) -> None:
    """Load weights saved by ``save_weights`` (or a full model file) into ``model``; Keras
    weight files (``.weights.h5``, legacy ``.h5``) are read by ``fastconv.keras_io``."""
    from . import keras_io

    check_regular(filepath, "weights file")
    if keras_io.is_keras_file(filepath):
        return keras_io.load_weights(model, filepath)
    with _Archive(filepath, ("fastconv-weights", "fastconv-model")) as archive:
        if not model.built:
            raise ValueError(f"load_weights: model '{model.name}' is not built yet; build it "
                             f"(or give its first layer input_shape=...) first")
        _assign_weights(model, archive.weights(), archive)
