"""Reading an ONNX file and the external data its tensors name, from the model's folder only.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL``, with
``location``, ``offset`` and ``length`` in ``external_data``): PyTorch's exporter writes
``model.onnx.data`` next to ``model.onnx``. Such a tensor may sit anywhere in the model: an
initializer, a ``Constant`` node's ``value`` (or a sparse value), any tensor attribute of any
node, and the same inside subgraphs (the graph attributes of If, Loop, Scan), functions and
training graphs. ``ExternalData`` finds every one of them and reads its bytes only from a
regular file inside the model file's folder:

* the location is relative, has no ``..`` part, and its real path (links followed) stays in
  the folder;
* the file is a regular file (no FIFO, device or folder), opened with ``open_regular``;
* offset and length are non-negative decimal integers within the file, and the length is the
  one the tensor's dims and element type give;
* a model given without a file (bytes, a ModelProto) has no folder: its external tensors are
  refused.

Everything is checked before a byte is read (``ExternalData(...)``); ``read`` then charges
each tensor's length to the caller's budget before reading it, with an explicit offset and
length, and puts the bytes into the in-memory tensor (the user's files are never written).
``onnx.load_external_data_for_model`` is not used: it follows the paths it is given.
"""

from __future__ import annotations

import math
import os
import re

from .errors import InvalidModelFileError
from .files import open_regular, read_regular

#: The largest ONNX file read (protobuf's own limit on one message).
MAX_ONNX_BYTES = (1 << 31) - 1
#: The largest element count a tensor's dims may give.
MAX_ELEMENTS = 1 << 48

_DIGITS = re.compile(r"[0-9]{1,19}")
#: Element types stored several to a byte: elements per byte.
_PACKED = {"UINT4": 2, "INT4": 2, "FLOAT4E2M1": 2, "UINT2": 4, "INT2": 4}


def read_onnx(path):
    """``(ModelProto, size in bytes)`` of the ONNX file ``path``, without its external data.

    InvalidModelFileError naming the file when it is not a regular file, cannot be read or is
    not an ONNX model; FileNotFoundError when it does not exist."""
    from google.protobuf.message import DecodeError
    from onnx import ModelProto

    path = os.fspath(path)
    try:
        data = read_regular(path, "ONNX model file", max_bytes=MAX_ONNX_BYTES)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder; a read error
        raise InvalidModelFileError(f"{path}: cannot read the ONNX file: "
                                    f"{exc.strerror or exc}") from None
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidModelFileError(f"{path}: not an ONNX model file ({exc})") from None
    return model, len(data)


def checked_dims(dims, where: str, what: str) -> tuple:
    """``dims`` as a tuple of ints after checking that none is negative and that their product
    stays within ``MAX_ELEMENTS``; InvalidModelFileError naming ``where`` and ``what``."""
    dims = tuple(int(d) for d in dims)
    if any(d < 0 for d in dims):
        raise InvalidModelFileError(f"{where}: {what} has negative dims {list(dims)}; every "
                                    f"dimension must be >= 0")
    if math.prod(dims) > MAX_ELEMENTS:
        raise InvalidModelFileError(f"{where}: {what} has dims {list(dims)}, "
                                    f"{math.prod(dims)} elements: more than the "
                                    f"{MAX_ELEMENTS} a tensor may hold")
    return dims


def tensor_nbytes(tensor, where: str, what: str) -> int:
    """The bytes the elements of the TensorProto ``tensor`` take in its raw form (its dims x
    its element size; packed types take a fraction of a byte); InvalidModelFileError for
    negative or overflowing dims and for element types without a fixed size."""
    from onnx import TensorProto, helper

    count = math.prod(checked_dims(tensor.dims, where, what))
    name = TensorProto.DataType.Name(tensor.data_type) if (
        tensor.data_type in TensorProto.DataType.values()) else None
    if name in _PACKED:
        return -(-count // _PACKED[name])
    if name in (None, "UNDEFINED", "STRING"):
        raise InvalidModelFileError(
            f"{where}: {what} has element type {name or tensor.data_type}, which has no fixed "
            f"size in bytes")
    try:
        import numpy as np

        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        raise InvalidModelFileError(f"{where}: {what} has element type {name}, which fastconv "
                                    f"cannot read") from None
    return count * itemsize


def _short(name) -> str:
    """A name from the file, as short text (a damaged file's names may not be UTF-8)."""
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return name if len(name) <= 100 else name[:100] + "..."


def iter_tensors(model):
    """``(description, TensorProto)`` for every tensor of ``model``: initializers, sparse
    initializers, tensor and sparse-tensor attributes of every node, in the main graph, in
    subgraphs at any depth, in functions and in training graphs. Iterative (no recursion)."""
    graphs = [(model.graph, "")]
    for f in model.functions:
        graphs.append((f, f" in function '{f.name}'"))
    for i, info in enumerate(model.training_info):
        graphs.append((info.initialization, f" in training graph {i} (initialization)"))
        graphs.append((info.algorithm, f" in training graph {i} (algorithm)"))
    while graphs:
        graph, ctx = graphs.pop()
        for t in getattr(graph, "initializer", ()):
            yield f"initializer '{_short(t.name)}'{ctx}", t
        for s in getattr(graph, "sparse_initializer", ()):
            yield f"values of sparse initializer '{_short(s.values.name)}'{ctx}", s.values
            yield f"indices of sparse initializer '{_short(s.values.name)}'{ctx}", s.indices
        for node in graph.node:
            name = node.name or (node.output[0] if node.output else "")
            who = f"node '{_short(name)}' ({_short(node.op_type)})"
            for a in node.attribute:
                at = f"attribute '{_short(a.name)}' of {who}{ctx}"
                if a.HasField("t"):
                    yield at, a.t
                for k, t in enumerate(a.tensors):
                    yield f"{at} [{k}]", t
                sparse = ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(
                    a.sparse_tensors)
                for s in sparse:
                    yield f"values of sparse {at}", s.values
                    yield f"indices of sparse {at}", s.indices
                if a.HasField("g"):
                    graphs.append((a.g, f" in subgraph '{a.name}' of {who}{ctx}"))
                for k, g in enumerate(a.graphs):
                    graphs.append((g, f" in subgraph '{a.name}' [{k}] of {who}{ctx}"))


def _is_external(tensor) -> bool:
    from onnx import TensorProto

    return tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL


class ExternalData:
    """Every external tensor of ``model``, checked against the folder of ``model_path`` (see
    the module's docstring); nothing is read yet. ``where`` names the model in errors (its
    path). ``file_bytes`` is the size of the data files named, each counted once."""

    def __init__(self, model, model_path, where: str):
        self.where = where
        self.entries = []  # (description, tensor, real path, location, offset, length)
        self.file_bytes = 0
        tensors = [(d, t) for d, t in iter_tensors(model) if _is_external(t)]
        if not tensors:
            return
        if model_path is None:
            what, t = tensors[0]
            raise InvalidModelFileError(
                f"{where}: tensor '{_short(t.name)}' ({what}) keeps its data in an external "
                f"file, and a model given without its file has no folder to read it from; "
                f"load the model from its file")
        folder = os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(model_path))))
        sizes = {}
        for what, t in tensors:
            desc = f"tensor '{_short(t.name)}' ({what})"
            location, offset, length = self._info(t, desc)
            shown = _short(location)
            real = self._resolve(folder, location, desc)
            if real not in sizes:
                sizes[real] = self._size(real, location, desc)
            size = sizes[real]
            need = tensor_nbytes(t, where, desc)
            if offset > size:
                raise InvalidModelFileError(
                    f"{where}: {desc} starts at offset {offset} of external data file "
                    f"'{shown}', which holds {size} bytes")
            if length is None:
                length = size - offset
            if length != need:
                raise InvalidModelFileError(
                    f"{where}: {desc} takes {length} bytes of external data file "
                    f"'{shown}', but its dims {_short(list(t.dims))} need {need} bytes")
            if offset + length > size:
                raise InvalidModelFileError(
                    f"{where}: {desc} reads bytes {offset} to {offset + length} of external "
                    f"data file '{shown}', which holds only {size} bytes")
            self.entries.append((desc, t, real, location, offset, length))
        self.file_bytes = sum(sizes.values())

    def _info(self, tensor, desc):
        """(location, offset, length or None) of an external tensor."""
        seen = {}
        for entry in tensor.external_data:
            if not isinstance(entry.key, str) or not isinstance(entry.value, str):
                raise InvalidModelFileError(f"{self.where}: {desc} has external data entries "
                                            f"that are not UTF-8 text")
            if entry.key in seen:
                raise InvalidModelFileError(f"{self.where}: {desc} names its external "
                                            f"'{_short(entry.key)}' twice")
            seen[entry.key] = entry.value
        location = seen.get("location", "")
        if not location:
            raise InvalidModelFileError(f"{self.where}: {desc} keeps its data in an external "
                                        f"file but names no location")
        values = []
        for key in ("offset", "length"):
            text = seen.get(key)
            if text is None or (key == "offset" and text == ""):
                values.append(0 if key == "offset" else None)
                continue
            if not _DIGITS.fullmatch(text):
                raise InvalidModelFileError(
                    f"{self.where}: {desc} has external data {key} {text[:40]!r}; expected a "
                    f"non-negative decimal integer")
            values.append(int(text))
        return location, values[0], values[1]

    def _resolve(self, folder: str, location: str, desc: str) -> str:
        shown = repr(location[:200])
        if "\x00" in location:
            raise InvalidModelFileError(f"{self.where}: {desc} names external data file "
                                        f"{shown}, which holds a NUL character")
        parts = re.split(r"[\\/]+", location)
        if (os.path.isabs(location) or location.startswith(("/", "\\"))
                or re.match(r"[A-Za-z]:", location)):
            raise InvalidModelFileError(
                f"{self.where}: {desc} names external data file {shown} by an absolute path; "
                f"external data must be a relative path inside the model's folder")
        if ".." in parts:
            raise InvalidModelFileError(
                f"{self.where}: {desc} names external data file {shown}, which climbs out "
                f"with '..'; external data must be a relative path inside the model's folder")
        real = os.path.realpath(os.path.join(folder, *[p for p in parts if p]))
        if os.path.commonpath([real, folder]) != folder:
            raise InvalidModelFileError(
                f"{self.where}: {desc} names external data file {shown}, which resolves to "
                f"{real!r}, outside the model's folder {folder!r} (a symbolic link?)")
        return real

    def _open(self, real: str, location: str, desc: str):
        try:
            return open_regular(real, "external data file")
        except FileNotFoundError:
            raise InvalidModelFileError(f"{self.where}: {desc} keeps its data in "
                                        f"'{location[:200]}', which is not in the model's "
                                        f"folder") from None
        except (InvalidModelFileError, OSError) as exc:  # a folder, a FIFO, a device ...
            raise InvalidModelFileError(f"{self.where}: {desc}: {exc}") from None

    def _size(self, real: str, location: str, desc: str) -> int:
        fh, size = self._open(real, location, desc)
        fh.close()
        return size

    def read(self, charge) -> None:
        """Read every external tensor's bytes into it, calling ``charge(nbytes, description)``
        before each read (it raises to stop). The tensors then hold their data inline."""
        from onnx import TensorProto

        handles = {}
        try:
            for desc, t, real, location, offset, length in self.entries:
                charge(length, desc)
                if real not in handles:
                    handles[real] = self._open(real, location, desc)[0]
                fh = handles[real]
                fh.seek(offset)
                data = fh.read(length)
                if len(data) != length:
                    raise InvalidModelFileError(
                        f"{self.where}: external data file '{_short(location)}' of {desc} changed "
                        f"while it was read (read {len(data)} of {length} bytes)")
                t.raw_data = data
                t.data_location = TensorProto.DEFAULT
                del t.external_data[:]
        finally:
            for fh in handles.values():
                fh.close()
