"""Guarded HDF5 reading: h5py is optional, every array read is checked against the file's size.

Keras's HDF5 files hold plain, uncompressed datasets. A dataset whose header claims more bytes
than the file holds is refused before anything is allocated, so a damaged or hostile header
cannot make fastconv allocate gigabytes. Compressed datasets are refused too (Keras never writes
them, and their expanded size cannot be bounded by the file's).
"""

from __future__ import annotations

import io
import os

import numpy as np

from ..saving import InvalidModelFileError

#: The first 8 bytes of every HDF5 file (the superblock may also sit at 512, 1024 ... bytes).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FLOAT_KINDS = ("float16", "float32", "float64")


def require_h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading or writing Keras files needs h5py: "
                          "pip install 'fastconv[keras]'") from None
    return h5py


def is_hdf5(head: bytes) -> bool:
    return head.startswith(HDF5_SIGNATURE)


class H5Reader:
    """An open HDF5 file (a path or bytes from a ``.keras`` archive) with checked reads.

    ``label`` names the file in every error message.
    """

    def __init__(self, source, label: str):
        h5py = require_h5py()
        self.label = label
        if isinstance(source, (bytes, bytearray)):
            self.size = len(source)
            target = io.BytesIO(source)
        else:
            self.size = os.path.getsize(source)
            target = source
        try:
            self.file = h5py.File(target, "r")
        except (OSError, ValueError) as exc:
            raise self.error(f"it is not a readable HDF5 file ({exc})") from None

    def error(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"cannot load {self.label!r}: {why}")

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- navigation ------------------------------------------------------------------------
    def group(self, path: str, parent=None):
        """The group at ``path`` (below ``parent`` or the root), or None if there is none."""
        h5py = require_h5py()
        base = self.file if parent is None else parent
        try:
            obj = base.get(path) if path else base
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise self.error(f"its group {path!r} is corrupted ({exc})") from None
        return obj if isinstance(obj, h5py.Group) else None

    def attr(self, obj, key: str, default=None):
        try:
            if key not in obj.attrs:
                return default
            return obj.attrs[key]
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise self.error(f"attribute {key!r} of {obj.name!r} is corrupted ({exc})") from None

    def text_attr(self, obj, key: str) -> str | None:
        value = self.attr(obj, key)
        if value is None:
            return None
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error(f"attribute {key!r} of {obj.name!r} is not UTF-8 text") from None
        if isinstance(value, str):
            return value
        raise self.error(f"attribute {key!r} of {obj.name!r} is not text")

    def names_attr(self, obj, key: str) -> list[str] | None:
        """A list-of-names attribute (``layer_names``, ``weight_names``), decoded."""
        value = self.attr(obj, key)
        if value is None:
            return None
        values = np.asarray(value)
        if values.size == 0:
            return []
        if values.ndim != 1:
            raise self.error(f"attribute {key!r} of {obj.name!r} is not a list of names")
        names = []
        for v in values.tolist():
            if isinstance(v, bytes):
                try:
                    v = v.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.error(f"attribute {key!r} of {obj.name!r} holds a name that is "
                                     f"not UTF-8") from None
            if not isinstance(v, str):
                raise self.error(f"attribute {key!r} of {obj.name!r} holds {v!r}, not a name")
            names.append(v)
        return names

    # -- arrays ----------------------------------------------------------------------------
    def array(self, parent, path: str) -> np.ndarray:
        """Read the float dataset ``path`` below ``parent``, after checking its header."""
        h5py = require_h5py()
        where = f"{parent.name.rstrip('/')}/{path}"
        try:
            ds = parent.get(path)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise self.error(f"dataset {where!r} is corrupted ({exc})") from None
        if ds is None:
            raise self.error(f"dataset {where!r} is missing")
        if not isinstance(ds, h5py.Dataset):
            raise self.error(f"{where!r} is not a dataset")
        try:
            dtype, shape, compression = ds.dtype, ds.shape, ds.compression
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise self.error(f"dataset {where!r} has a corrupted header ({exc})") from None
        if shape is None or dtype.name not in _FLOAT_KINDS:
            raise self.error(f"dataset {where!r} has dtype {dtype}; weights must be float16, "
                             f"float32 or float64")
        if compression is not None or ds.id.get_create_plist().get_nfilters():
            raise self.error(f"dataset {where!r} is compressed ({compression}); Keras writes "
                             f"plain datasets and fastconv reads only those")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > self.size:
            raise self.error(f"dataset {where!r} claims shape {shape} ({nbytes} bytes), more "
                             f"than the whole file ({self.size} bytes): the file is truncated "
                             f"or corrupted")
        try:
            return np.asarray(ds[()])
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise self.error(f"dataset {where!r} cannot be read ({exc})") from None
