"""The archive reader of fastconv's own files (``.fcm`` models, weights), as hostile input.

Layout of the archive:

* ``fastconv.json``: ``{"format": "fastconv-model" | "fastconv-weights", "format_version": 1,
  "model": {"class_name", "config"}, "compile": {...} | null, "weights": [{"name", "shape",
  "dtype", "file"}], "optimizer": {"iterations", "arrays": [...]}}``
* ``arrays/<i>.npy``: each array in NumPy's ``.npy`` format, read back with
  ``allow_pickle=False``.

ZIP's CRC-32 catches corrupted bytes and its central directory catches truncation; every name,
shape and dtype is checked against the JSON before anything is used. Every declared size (zip
members, the manifest, ``.npy`` headers, what the configuration's layers would allocate) is
checked against the file's own size and a bound before anything is read or allocated, the
JSON's nesting is bounded, and every failure is an ``InvalidModelFileError`` that names the file
and the problem. ``fastconv.saving`` writes these files and builds models from them.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile

import numpy as np

from .. import allocation
from .._version import __version__
from .errors import InvalidModelFileError
from .files import open_regular, read_npy_header
from .jsontext import json_depth

FORMAT_VERSION = 1
MANIFEST = "fastconv.json"
ALLOWED_DTYPES = ("float32", "float64", "int64")

#: Largest manifest a file may hold (bytes).
MAXMANIFEST_BYTES = 16 << 20
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


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Archive:
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
            info = self.zf.getinfo(MANIFEST)
        except KeyError:
            raise self.error(f"it has no {MANIFEST}: not a fastconv file") from None
        if info.file_size > MAXMANIFEST_BYTES:
            raise self.error(f"its {MANIFEST} declares {info.file_size} bytes, more than the "
                             f"{MAXMANIFEST_BYTES} a manifest may have")
        raw = self._read(info, f"its {MANIFEST}")
        depth = json_depth(raw)
        if depth > MAX_JSON_DEPTH:
            raise self.error(f"its {MANIFEST} is nested {depth} levels deep (at most "
                             f"{MAX_JSON_DEPTH})")
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self.error(f"its {MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in expected_formats:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise self.error(f"expected a file of format {' or '.join(expected_formats)}, found "
                             f"{_short(found)}")
        version = manifest.get("format_version")
        if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
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
                    or not all(is_int(d) and d >= 0 for d in shape)):
                raise self.error(f"array {name!r} has an invalid shape {str(shape)[:80]} "
                                 f"(at most {MAX_NDIM} non-negative integers)")
            if dtype not in ALLOWED_DTYPES:
                raise self.error(f"array {name!r} has unsupported dtype {str(dtype)[:40]!r} "
                                 f"(fastconv stores {', '.join(ALLOWED_DTYPES)})")
            checked.append((entry, self._check_npy(entry)))
        return checked

    def _check_npy(self, entry) -> int:
        """The .npy header of an entry's member against the entry, and its data's size against
        the member's: nothing of the data is read."""
        what = f"array {entry['name']!r} ({entry['file']})"
        info = self._member(entry["file"], what)
        head = io.BytesIO(self._read(info, f"array {entry['name']!r}", _NPY_HEADER_BYTES))
        try:
            shape, _, dtype = read_npy_header(head)
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
