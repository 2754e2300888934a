"""Reading HDF5 files that may be damaged or hostile: the file becomes a plain in-memory tree.

An HDF5 file can do much more than hold arrays, and the HDF5 C library does whatever the file
says: a dataset may keep its bytes in another file (external storage: ``/etc/passwd`` read as
weights), a link may point into another HDF5 file (external links), a virtual dataset may map
other files' datasets, a filter may make the library load a plugin. A damaged file can also make
the library loop forever or crash, and a loop inside C code cannot be interrupted from Python.

So ``read_hdf5`` never lets h5py near hostile bytes in this process. On POSIX it forks a child
that parses the file through h5py's file-object driver (from the regular file this process
opened, or from bytes in memory: the library opens no path) under resource limits
(``RLIMIT_AS``: memory; ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_CORE``), walks every group,
link, attribute and dataset, validates each, and sends back a plain description over a pipe
(never pickle): JSON for the structure, then the raw bytes of the float arrays the parent cannot
take from the file itself. Most weights (contiguous datasets of IEEE floats, what Keras writes)
travel as their place in the file: the child checks that HDF5 reads the same bytes there, and
the parent reads them straight into the arrays (or takes a view of the bytes it holds, for a
file inside a ``.keras`` archive).

The parent reads at most what the file's size allows, within a wall-clock bound
(``parse_timeout``); a child that runs past it is killed, and a child that crashes or runs out of
memory gives the same ``InvalidModelFileError`` as any other damage. The parent checks the
description again before using it (a crashed-into child may send anything). Where ``os.fork``
does not exist (Windows), or fails, the same walk runs in this process, with the same validation
but no time or memory bound.

What the walk refuses (``InvalidModelFileError`` naming the file and the object):

* a link that is not a hard link (soft, external or user-defined links), a link name that is
  not UTF-8 or that holds ``/``;
* a dataset whose layout is not contiguous, compact or chunked (virtual datasets), one with
  external storage, and one with any filter (compression included: Keras writes plain
  datasets, and a filter may make the library load a plugin; the child also empties the
  plugin search path);
* float datasets (float16/32/64, the only ones read) declaring more bytes than the whole file,
  alone or together;
* attributes that are not text (UTF-8), numbers, booleans or arrays of those.

Datasets of other types are described (dtype and shape) but not read: ``HDF5File.array`` refuses
them when a reader asks for one.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import io
import json
import math
import os
import select
import signal
import struct
import sys
import time
import warnings
from collections import deque

import numpy as np

from .errors import InvalidModelFileError
from .files import open_regular

try:
    import resource
except ImportError:  # Windows: no fork either
    resource = None

#: The first 8 bytes of every HDF5 file (the superblock may also sit at 512, 1024 ... bytes).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: The wall-clock bound of one parse: TIMEOUT_BASE_S, plus one second per TIMEOUT_BYTES_PER_S
#: bytes of file. A legitimate file parses in well under a second (the 59 MB VGG16 weights in
#: under 0.1 s, the metadata of 1000 layers in about 0.5 s), so the base leaves room for a
#: loaded machine and a cold start, and the rate (10 MB/s, far slower than the parse) for large
#: files on slow disks; a damaged file that makes the HDF5 library loop runs into it instead of
#: hanging the caller.
TIMEOUT_BASE_S = 10.0
TIMEOUT_BYTES_PER_S = 10_000_000
#: The child's address space may grow by MEMORY_FACTOR x the file's size + MEMORY_MARGIN: the
#: arrays it reads through HDF5 (at most the file's size), the bytes of a file given in memory
#: when it copies them, the JSON description, plus the library's caches and Python's objects.
MEMORY_FACTOR = 4
MEMORY_MARGIN = 256 << 20
#: The largest JSON description accepted from the child: names and attributes come from the
#: file, so their text is bounded by its size, times JSON's escaping, plus room for small files.
DESCRIPTION_FACTOR = 8
DESCRIPTION_MARGIN = 16 << 20

_FLOAT_TYPES = {"float16": 2, "float32": 4, "float64": 8}
_MAGIC = b"FCH5"
_HEADER = struct.Struct("<4sQQ")  # magic, JSON bytes, array bytes
_ALIGN = 8
#: The float types whose file bytes are taken as they are (IEEE, either byte order).
_FILE_FLOATS = ("<f2", ">f2", "<f4", ">f4", "<f8", ">f8")
#: Elements of a contiguous dataset read through HDF5 to check that its bytes sit where HDF5
#: says.
_PROBE = 16
#: Smaller float datasets are read through HDF5 and sent over the pipe: for them the check
#: would cost more than the copy.
_DIRECT_BYTES = 64 << 10


def _capacity(size: int) -> int:
    """The most bytes of arrays a file of ``size`` bytes can send: the float datasets together
    declare at most the file's size, and each starts on an 8-byte boundary (a dataset's header
    takes more than 8 bytes of the file, so the padding is at most the file's size again)."""
    return 2 * size + 4096


def require_h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"reading or writing Keras files needs h5py: pip install "
                          f"'fastconv[keras]' ({exc})") from None
    return h5py


def is_hdf5(head: bytes) -> bool:
    return bytes(head[:8]) == HDF5_SIGNATURE


def parse_timeout(size: int) -> float:
    """The seconds a file of ``size`` bytes may take to parse (see TIMEOUT_BASE_S)."""
    return TIMEOUT_BASE_S + size / TIMEOUT_BYTES_PER_S


class _Refused(Exception):
    """Why the walk refuses the file (the caller adds the file's name)."""


# -- the walk (in the child, or in this process where fork is unavailable) ------------------------

def _text(raw, what: str) -> str:
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused(f"{what} is not UTF-8 text") from None
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(f"{what} {bytes(raw)[:60]!r} is not UTF-8 text") from None


def _join(path: str, name: str) -> str:
    return f"{path.rstrip('/')}/{name}"


def _pread_into(fh, view, offset: int) -> int:
    """Read into ``view`` from byte ``offset`` of ``fh`` without using the file's position
    where the system can (a forked child shares it with this process); the count read."""
    fd = fh.fileno()
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    if hasattr(os, "pread"):
        data = os.pread(fd, len(view), offset)
        view[:len(data)] = data
        return len(data)
    fh.seek(offset)  # no fork here either: the position is this process's alone
    return fh.readinto(view)


class _Positional(io.RawIOBase):
    """A read-only file object over ``fh`` that keeps its own position (``_pread_into``)."""

    def __init__(self, fh, size: int):
        super().__init__()
        self.fh = fh
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(base + pos, 0)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def truncate(self, size=None) -> int:
        """Nothing: h5py's driver asks to truncate even a file open for reading when the
        file's end is not where its superblock says (the file itself is never changed)."""
        return self.size

    def readinto(self, buffer) -> int:
        n = _pread_into(self.fh, memoryview(buffer).cast("B"), self.pos)
        self.pos += n
        return n


class _Source:
    """The file's bytes: in memory (``data``), or a regular file open for reading (``fh``) of
    ``size`` bytes when it was opened."""

    def __init__(self, data=None, fh=None, size: int = 0):
        self.data = data
        self.fh = fh
        self.size = len(data) if data is not None else size

    def fileobj(self):
        """A file object for h5py (its file-object driver: the library opens no path)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return io.BufferedReader(_Positional(self.fh, self.size), 1 << 16)

    def read(self, offset: int, count: int, dtype) -> np.ndarray:
        """``count`` values of ``dtype`` stored at ``offset`` (a view of bytes in memory)."""
        if self.data is not None:
            return np.frombuffer(self.data, dtype, count, offset)
        value = np.empty(count, dtype)
        view = memoryview(value).cast("B")
        pos = 0
        while pos < len(view):
            n = _pread_into(self.fh, view[pos:], offset + pos)
            if not n:
                raise EOFError(f"the file ends before byte {offset + len(view)}: it changed "
                               f"while it was read")
            pos += n
        return value


class _Walk:
    """Describe the HDF5 file of ``source`` (open as ``fid``) as JSON-able ``nodes``; float
    arrays are either a place in the file (``"f"``: offset) or one of ``chunks`` (``"o"``:
    offset in their concatenation, each padded to 8 bytes)."""

    def __init__(self, h5py, source: _Source):
        self.h5py = h5py
        self.source = source
        self.size = source.size
        self.nodes: list = []
        self.chunks: list = []
        self.offset = 0
        self.claimed = 0
        self.seen: dict = {}
        self.queue: deque = deque()

    def run(self, fid) -> dict:
        h5o = self.h5py.h5o
        self._node(h5o.open(fid, b"/"), "/")
        while self.queue:
            index, oid, path = self.queue.popleft()
            self.nodes[index] = self._describe(oid, path)
        return {"nodes": self.nodes}

    def _node(self, oid, path: str) -> int:
        """The index of ``oid``'s node, queued for description the first time it is met (two
        hard links to one object give one node; a link back to a parent is no loop)."""
        key = self.h5py.h5o.get_info(oid).addr
        if key not in self.seen:
            self.seen[key] = len(self.nodes)
            self.nodes.append(None)
            self.queue.append((self.seen[key], oid, path))
        return self.seen[key]

    def _describe(self, oid, path: str) -> dict:
        h5py = self.h5py
        attrs = self._attrs(oid, path)
        if isinstance(oid, h5py.h5g.GroupID):
            return {"k": "g", "a": attrs, "l": self._links(oid, path)}
        if isinstance(oid, h5py.h5d.DatasetID):
            node = {"k": "d", "a": attrs}
            node.update(self._dataset(oid, path))
            return node
        return {"k": "o", "a": attrs}  # a named datatype

    def _links(self, gid, path: str) -> list:
        h5l = self.h5py.h5l
        found = []

        def collect(name, info):
            found.append((name, info.type))

        gid.links.iterate(collect, info=True)
        links = []
        for raw, kind in found:
            name = _text(raw, f"a link name in group {path!r}")
            where = _join(path, name)
            if "/" in name or name in ("", "."):
                raise _Refused(f"group {path!r} holds a link named {name!r}, which no HDF5 "
                               f"writer makes")
            if kind != h5l.TYPE_HARD:
                raise _Refused(f"{where!r} is {self._link_kind(gid, raw, kind)}; fastconv reads "
                               f"only objects stored inside the file itself")
            links.append([name, self._node(self.h5py.h5o.open(gid, raw), where)])
        return links

    def _link_kind(self, gid, raw, kind) -> str:
        h5l = self.h5py.h5l
        try:
            value = gid.links.get_val(raw)
        except Exception:  # noqa: BLE001 - only to word the message
            value = None
        if kind == h5l.TYPE_SOFT:
            return f"a soft link (to {_shown(value)})"
        if kind == h5l.TYPE_EXTERNAL:
            target = (f" (to {_shown(value[1])} in {_shown(value[0])})"
                      if isinstance(value, tuple) and len(value) == 2 else "")
            return f"an external link{target}"
        return f"a user-defined link (type {int(kind)})"

    def _attrs(self, oid, path: str) -> dict:
        h5py = self.h5py
        names = []
        h5py.h5a.iterate(oid, names.append)
        attrs = {}
        for raw in names:
            name = _text(raw, f"an attribute name of {path!r}")
            attrs[name] = self._attr(h5py.h5a.open(oid, raw), f"attribute {name!r} of {path!r}")
        return attrs

    def _attr(self, aid, what: str):
        h5py = self.h5py
        try:
            dtype = aid.dtype
        except (TypeError, ValueError) as exc:
            raise _Refused(f"{what} has a type fastconv does not read ({exc})") from None
        shape = aid.shape
        if shape is None:  # an empty (null) dataspace
            return None
        vlen_text = False
        if dtype.subdtype is not None:
            raise _Refused(f"{what} has the array type {dtype}; fastconv reads only text and "
                           f"numbers")
        if dtype.kind == "O":
            info = h5py.check_string_dtype(dtype)
            if info is None or info.length is not None:
                raise _Refused(f"{what} has type {dtype}; fastconv reads only text and numbers")
            vlen_text = True
        elif dtype.kind not in "fiubS" or dtype.itemsize > 8 and dtype.kind != "S":
            raise _Refused(f"{what} has type {dtype}; fastconv reads only text and numbers")
        count = math.prod(shape)
        if count * (1 if vlen_text else dtype.itemsize) > self.size:
            raise _Refused(f"{what} claims shape {shape} of {dtype}, more than the whole file "
                           f"({self.size} bytes)")
        value = np.zeros(shape, dtype=dtype)
        aid.read(value, mtype=h5py.h5t.py_create(dtype))
        return _plain(value.tolist(), what)

    def _dataset(self, did, path: str) -> dict:
        h5d = self.h5py.h5d
        where = f"dataset {path!r}"
        dcpl = did.get_create_plist()
        layout = dcpl.get_layout()
        if layout not in (h5d.COMPACT, h5d.CONTIGUOUS, h5d.CHUNKED):
            kind = "a virtual dataset" if layout == getattr(h5d, "VIRTUAL", 3) else \
                f"stored with layout {layout}"
            raise _Refused(f"{where} is {kind}, mapping data held elsewhere; fastconv reads only "
                           f"datasets stored inside the file itself")
        if dcpl.get_external_count():
            raise _Refused(f"{where} keeps its data in another file "
                           f"({_shown(dcpl.get_external(0)[0])}: external storage); fastconv "
                           f"reads only datasets stored inside the file itself")
        nfilters = dcpl.get_nfilters()
        if nfilters:
            filters = ", ".join(_filter_name(dcpl.get_filter(i)) for i in range(nfilters))
            raise _Refused(f"{where} is compressed or filtered ({filters}); Keras writes plain "
                           f"datasets and fastconv reads only those")
        shape = did.shape
        try:
            dtype = did.dtype
        except (TypeError, ValueError) as exc:
            return {"t": f"an HDF5 type without NumPy equivalent ({exc})", "s": None}
        name = dtype.name if dtype.subdtype is None else str(dtype)
        if shape is None or name not in _FLOAT_TYPES or dtype.kind != "f":
            return {"t": str(dtype), "s": None if shape is None else list(shape)}
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        self.claimed += nbytes
        if nbytes > self.size or self.claimed > self.size:
            claim = (f"shape {tuple(shape)} ({nbytes} bytes)" if nbytes > self.size else
                     f"shape {tuple(shape)}, {self.claimed} bytes of arrays with the datasets "
                     f"before it")
            raise _Refused(f"{where} claims {claim}, more than the whole file ({self.size} "
                           f"bytes): the file is truncated or corrupted")
        node = {"t": name, "s": list(shape)}
        at = self._in_file(did, layout, shape, count, nbytes) if nbytes >= _DIRECT_BYTES \
            else None
        if at is not None:
            node["t"], node["f"] = at
            return node
        value = np.empty(shape, dtype=name)
        if count:
            did.read(self.h5py.h5s.ALL, self.h5py.h5s.ALL, value)
        node["o"] = self.offset
        self.chunks.append(value)
        self.offset += _padded(nbytes)
        return node

    def _in_file(self, did, layout, shape, count: int, nbytes: int):
        """``(file dtype, offset)`` where the dataset's bytes lie in the file as they are: a
        contiguous, allocated dataset of IEEE floats, whose first elements HDF5 reads equal to
        the bytes there. None otherwise (the dataset is then read through HDF5)."""
        h5py = self.h5py
        h5t = h5py.h5t
        if layout != h5py.h5d.CONTIGUOUS or did.get_storage_size() != nbytes:
            return None
        offset = did.get_offset()
        tid = did.get_type()
        stored = next((code for code in _FILE_FLOATS
                       if tid.equal(getattr(h5t, f"IEEE_F{8 * int(code[2])}"
                                                 f"{'LE' if code[0] == '<' else 'BE'}"))), None)
        if offset is None or stored is None or not 0 <= offset <= self.size - nbytes:
            return None
        probe = min(count, _PROBE)
        fspace = did.get_space()
        if shape:
            fspace.select_none()
            flat = np.arange(probe)
            fspace.select_elements(np.stack(np.unravel_index(flat, shape), axis=1))
        value = np.empty(probe, dtype=stored)
        did.read(h5py.h5s.create_simple((probe,)), fspace, value, mtype=tid)
        try:
            there = self.source.read(offset, probe, stored)
        except EOFError:
            return None
        return (stored, offset) if value.tobytes() == there.tobytes() else None


def _plain(value, what: str):
    """An attribute's ``tolist()`` as JSON-able values: text must be UTF-8."""
    if isinstance(value, list):
        return [_plain(v, what) for v in value]
    if isinstance(value, (bytes, str)):
        return _text(value, f"{what} (text)")
    if isinstance(value, (bool, int, float)):
        return value
    raise _Refused(f"{what} holds a {type(value).__name__}; fastconv reads only text and numbers")


def _shown(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return repr(str(value)[:200])


def _filter_name(info) -> str:
    try:
        code, _flags, _values, name = info
        return f"filter {int(code)} {_text(name, 'filter name')!r}" if name else \
            f"filter {int(code)}"
    except Exception:  # noqa: BLE001 - only to word the message
        return "a filter"


def _walk(source: _Source, h5py):
    """``(description, chunks)`` for the HDF5 file of ``source``."""
    with h5py.File(source.fileobj(), "r") as f:
        walk = _Walk(h5py, source)
        doc = walk.run(f.id)
    return doc, walk.chunks


def _walk_text(source: _Source, h5py):
    """``(description or error, chunks)``: every failure of the walk worded as a refusal."""
    try:
        return _walk(source, h5py)
    except _Refused as exc:
        return {"error": str(exc)}, []
    except MemoryError:
        return {"error": "parsing it needs more memory than a file of its size may"}, []
    except RecursionError:
        return {"error": "it is nested too deeply"}, []
    except Exception as exc:  # noqa: BLE001 - whatever the HDF5 library raises on damage
        text = str(exc)[:500] or type(exc).__name__
        return {"error": f"it is not a readable HDF5 file, or it is corrupted ({text})"}, []


def _padded(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


# -- the child ----------------------------------------------------------------------------------

def _vm_bytes() -> int | None:
    """This process's address-space size (Linux), or None."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _limit(which, value: int) -> None:
    if resource is None:
        return
    try:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))
    except (ValueError, OSError):
        pass


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _child(source: _Source, wfd: int, h5py) -> None:
    """Runs in the forked child: parse, send the description over ``wfd``."""
    # A collection would touch every object the parent made, copying its pages for nothing.
    gc.disable()
    if faulthandler.is_enabled():
        faulthandler.disable()
    keep = sorted({wfd} | ({source.fh.fileno()} if source.fh is not None else set()))
    start = 3
    for fd in keep:  # the child holds no other file (nor another pipe's end) open
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 16)
    size = source.size
    vm = _vm_bytes() if resource is not None else None
    if vm is not None:
        _limit(resource.RLIMIT_AS, vm + MEMORY_FACTOR * size + MEMORY_MARGIN)
    _limit(resource.RLIMIT_CPU, int(parse_timeout(size)) + 2)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_CORE, 0)
    with contextlib.suppress(Exception):  # no filter plugin may be loaded from anywhere
        while h5py.h5pl.size():
            h5py.h5pl.remove(0)
    doc, chunks = _walk_text(source, h5py)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    _write_all(wfd, _HEADER.pack(_MAGIC, len(text), sum(_padded(c.nbytes) for c in chunks)))
    _write_all(wfd, text)
    pad = bytes(_ALIGN)
    for chunk in chunks:
        if chunk.nbytes:
            _write_all(wfd, chunk.reshape(-1).view(np.uint8))
        if chunk.nbytes % _ALIGN:
            _write_all(wfd, pad[:_ALIGN - chunk.nbytes % _ALIGN])


class _Timeout(Exception):
    pass


class _Pipe:
    """Reads from the child's pipe, each bounded by the caller and all by one deadline."""

    def __init__(self, fd: int, deadline: float):
        self.fd = fd
        self.deadline = deadline

    def _wait(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            raise _Timeout

    def read_into(self, buf) -> bool:
        """Fill ``buf``; False when the child closed the pipe first."""
        view, pos = memoryview(buf).cast("B"), 0
        while pos < len(view):
            self._wait()
            n = os.readv(self.fd, [view[pos:]])
            if n == 0:
                return False
            pos += n
        return True


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _parse_in_child(source: _Source, h5py):
    """``(JSON description, bytes of arrays)`` from a forked child, or raises _Refused, or
    OSError (no fork)."""
    size = source.size
    timeout = parse_timeout(size)
    rfd, wfd = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a multi-threaded process may deadlock the child:
            # the child runs only this module's code, with h5py's lock taken around the fork.
            warnings.simplefilter("ignore", DeprecationWarning)
            with getattr(h5py._objects, "phil", contextlib.nullcontext()):
                pid = os.fork()
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    if pid == 0:  # the child
        code = 1
        try:
            os.close(rfd)
            _child(source, wfd, h5py)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    reaped = False
    try:
        pipe = _Pipe(rfd, time.monotonic() + timeout)
        try:
            header = bytearray(_HEADER.size)
            result = None
            if pipe.read_into(header):
                magic, n_text, n_data = _HEADER.unpack(header)
                if magic != _MAGIC:
                    raise _Refused("parsing it failed (the parser sent no description)")
                if n_text > DESCRIPTION_FACTOR * size + DESCRIPTION_MARGIN or \
                        n_data > _capacity(size):
                    raise _Refused(f"parsing it gave a description of {n_text} bytes and "
                                   f"{n_data} bytes of arrays, more than a file of {size} bytes "
                                   f"can hold")
                text, data = bytearray(n_text), np.empty(n_data, np.uint8)
                if pipe.read_into(text) and pipe.read_into(data):
                    result = text, data
                if pipe.read_into(bytearray(1)):  # the child's exit closes the pipe
                    raise _Refused("parsing it failed (the parser sent more than it said)")
        except _Timeout:
            raise _Refused(f"parsing took more than {timeout:.0f} s: the file is "
                           f"damaged") from None
        try:
            status = _reap(pid, 1.0)
        except ChildProcessError:  # SIGCHLD ignored: the system reaped the child already
            reaped = True
            if result is None:
                raise _Refused("parsing it failed: the file is damaged") from None
            return result
        reaped = True
        if status is None:
            raise _Refused(f"parsing took more than {timeout:.0f} s: the file is damaged")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == getattr(signal, "SIGXCPU", None):
                raise _Refused(f"parsing took more than {timeout:.0f} s of CPU: the file is "
                               f"damaged")
            raise _Refused(f"the HDF5 library crashed parsing it ({_signal_name(sig)}): the "
                           f"file is damaged")
        if result is None or os.WEXITSTATUS(status) != 0:
            raise _Refused("parsing it failed (the parser exited with status "
                           f"{os.WEXITSTATUS(status)}): the file is damaged")
        return result
    finally:
        os.close(rfd)
        if not reaped:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)


def _reap(pid: int, wait_s: float):
    """The child's exit status, killing it after ``wait_s`` seconds (then None)."""
    end = time.monotonic() + wait_s
    delay = 0.0001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# -- the tree the readers use -------------------------------------------------------------------

class _Node:
    __slots__ = ("kind", "attrs", "links", "dtype", "shape", "value")

    def __init__(self, kind: str, attrs: dict):
        self.kind = kind
        self.attrs = attrs
        self.links: dict = {}
        self.dtype = None
        self.shape = None
        self.value = None


class H5Object:
    """A group or dataset of an ``HDF5File``, named by the path it was reached by."""

    __slots__ = ("_node", "name", "_root")

    def __init__(self, node: _Node, name: str, root: _Node):
        self._node = node
        self.name = name
        self._root = root

    @property
    def attrs(self) -> dict:
        """Attribute values: str, int, float, bool, None (empty), or (nested) lists of those."""
        return self._node.attrs


class H5Group(H5Object):
    __slots__ = ()

    def __iter__(self):
        return iter(self._node.links)

    def __contains__(self, name) -> bool:
        return name in self._node.links

    def __len__(self) -> int:
        return len(self._node.links)

    def keys(self):
        return self._node.links.keys()

    def get(self, path: str):
        """The group or dataset at ``path`` (relative to this group, or from the file's root
        when it starts with ``/``), or None."""
        node, name = (self._root, "/") if path.startswith("/") else (self._node, self.name)
        for part in path.split("/"):
            if part in ("", "."):
                continue
            node = node.links.get(part) if node.kind == "g" else None
            if node is None:
                return None
            name = _join(name, part)
        if node.kind == "g":
            return H5Group(node, name, self._root)
        if node.kind == "d":
            return H5Dataset(node, name, self._root)
        return None


class H5Dataset(H5Object):
    __slots__ = ()

    @property
    def dtype(self) -> str:
        """``float16``, ``float32``, ``float64``, or a description of any other type."""
        return self._node.dtype

    @property
    def shape(self):
        return self._node.shape


class HDF5File:
    """An HDF5 file read by ``read_hdf5``: its groups, attributes and float arrays, in memory.

    The readers' API: ``group``, ``attr``, ``text_attr``, ``names_attr`` and ``array``; every
    error is an ``InvalidModelFileError`` naming ``label`` (the file)."""

    def __init__(self, root: _Node, label: str, size: int):
        self.label = label
        self.size = size
        self.root = H5Group(root, "/", root)

    @property
    def file(self) -> H5Group:
        return self.root

    def error(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"cannot load {self.label!r}: {why}")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def group(self, path: str, parent: H5Group | None = None) -> H5Group | None:
        """The group at ``path`` (below ``parent`` or the root), or None if there is none."""
        obj = (parent or self.root).get(path)
        return obj if isinstance(obj, H5Group) else None

    def attr(self, obj: H5Object, key: str, default=None):
        value = obj.attrs.get(key)
        return default if value is None else value

    def text_attr(self, obj: H5Object, key: str) -> str | None:
        value = self.attr(obj, key)
        if value is None or isinstance(value, str):
            return value
        raise self.error(f"attribute {key!r} of {obj.name!r} is not text")

    def names_attr(self, obj: H5Object, key: str) -> list[str] | None:
        """A list-of-names attribute (``layer_names``, ``weight_names``)."""
        value = self.attr(obj, key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(f"attribute {key!r} of {obj.name!r} is not a list of names")
        for v in value:
            if not isinstance(v, str):
                raise self.error(f"attribute {key!r} of {obj.name!r} holds {str(v)[:80]!r}, "
                                 f"not a name")
        return value

    def array(self, parent: H5Group, path: str) -> np.ndarray:
        """The float array of the dataset ``path`` below ``parent``."""
        where = path if path.startswith("/") else _join(parent.name, path)
        ds = parent.get(path)
        if ds is None:
            raise self.error(f"dataset {where!r} is missing")
        if not isinstance(ds, H5Dataset):
            raise self.error(f"{where!r} is not a dataset")
        node = ds._node
        if node.value is None:
            raise self.error(f"dataset {where!r} has dtype {node.dtype}"
                             f"{'' if node.shape is not None else ' and no shape'}; weights "
                             f"must be float16, float32 or float64")
        return node.value


def _build(doc, data, source: _Source, label: str) -> HDF5File:
    """The tree of a description, checked: it may come from a child a hostile file crashed into.
    """
    bad = InvalidModelFileError(f"cannot load {label!r}: parsing it gave a malformed "
                                f"description: the file is damaged")
    try:
        if "error" in doc:
            raise InvalidModelFileError(f"cannot load {label!r}: {str(doc['error'])[:2000]}")
        entries = doc["nodes"]
        if not isinstance(entries, list) or not entries:
            raise bad
        nodes = []
        for entry in entries:
            kind, attrs = entry["k"], entry["a"]
            if kind not in ("g", "d", "o") or not isinstance(attrs, dict):
                raise bad
            nodes.append(_Node(kind, attrs))
        if nodes[0].kind != "g":
            raise bad
        total = 0  # the arrays' bytes: together, no more than the file holds
        for node, entry in zip(nodes, entries):
            if node.kind == "g":
                for name, index in entry["l"]:
                    if not isinstance(name, str) or "/" in name or name in ("", ".") or \
                            type(index) is not int or not 0 <= index < len(nodes):
                        raise bad
                    node.links[name] = nodes[index]
            elif node.kind == "d":
                node.dtype, shape = str(entry["t"]), entry["s"]
                if shape is not None:
                    if not isinstance(shape, list) or len(shape) > 64 or not all(
                            type(n) is int and 0 <= n for n in shape):
                        raise bad
                    node.shape = tuple(shape)
                if "o" in entry or "f" in entry:
                    node.value = _array(node, entry, data, source, bad)
                    total += node.value.nbytes
                    if total > source.size:
                        raise bad
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidModelFileError):
            raise
        raise bad from None
    except (OSError, EOFError) as exc:
        raise InvalidModelFileError(f"cannot load {label!r}: reading its arrays failed "
                                    f"({exc})") from None
    return HDF5File(nodes[0], label, source.size)


def _array(node: _Node, entry: dict, data, source: _Source, bad) -> np.ndarray:
    """A float dataset's array: from the child's bytes (``"o"``) or from the file (``"f"``),
    its place checked."""
    if node.shape is None:
        raise bad
    count = math.prod(node.shape)
    code = node.dtype
    if code not in (_FILE_FLOATS if "f" in entry else _FLOAT_TYPES):
        raise bad
    offset, end = entry["f" if "f" in entry else "o"], source.size if "f" in entry else len(data)
    itemsize = np.dtype(code).itemsize
    if type(offset) is not int or not 0 <= offset <= end - count * itemsize:
        raise bad
    if "f" in entry:
        node.dtype = np.dtype(code).name
        value = source.read(offset, count, code).reshape(node.shape)
    else:
        value = np.frombuffer(data, code, count, offset).reshape(node.shape)
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    return value


def _isolated() -> bool:
    return hasattr(os, "fork") and sys.platform != "emscripten"


def read_hdf5(source, label: str | None = None, what: str = "file",
              isolate: bool | None = None) -> HDF5File:
    """The HDF5 file ``source`` (a path, the file's bytes, or a regular file open for reading in
    binary, as ``fastconv.io.files.open_regular`` returns it) as an in-memory ``HDF5File``.

    ``label`` names the file in errors (default: the path). A path must be a regular file (see
    ``fastconv.io.files``); ``what`` names it there. With ``isolate`` (the default where
    ``os.fork`` exists) the file is parsed in a child process under time and memory bounds.
    Raises InvalidModelFileError for anything but a valid HDF5 file of plain, self-contained
    datasets, and ImportError when h5py is not installed."""
    h5py = require_h5py()
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = "<bytes>" if label is None else label
        return _read(_Source(data=source), label, h5py, isolate)
    if hasattr(source, "readinto") and hasattr(source, "fileno"):  # an open regular file
        label = str(getattr(source, "name", "<file>")) if label is None else label
        size = os.fstat(source.fileno()).st_size
        return _read(_Source(fh=source, size=size), label, h5py, isolate)
    label = os.fspath(source) if label is None else label
    fh, size = open_regular(source, what)
    with fh:
        return _read(_Source(fh=fh, size=size), label, h5py, isolate)


def _read(source: _Source, label: str, h5py, isolate) -> HDF5File:
    try:
        signed = _signed(source)
        head = source.read(0, min(source.size, 8), "u1").tobytes()
    except (OSError, EOFError) as exc:
        raise InvalidModelFileError(f"cannot load {label!r}: reading it failed ({exc})") from None
    if not signed:
        raise InvalidModelFileError(f"cannot load {label!r}: it is not an HDF5 file (its first "
                                    f"bytes are {head!r}, not {HDF5_SIGNATURE!r})")
    if isolate is None:
        isolate = _isolated()
    if isolate:
        try:
            result = _parse_in_child(source, h5py)
        except _Refused as exc:
            raise InvalidModelFileError(f"cannot load {label!r}: {exc}") from None
        except OSError:  # fork refused (no memory for the copy, too many processes)
            result = None
        if result is not None:
            text, data = result
            try:
                doc = json.loads(text.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                doc = None
            if not isinstance(doc, dict):
                raise InvalidModelFileError(f"cannot load {label!r}: parsing it gave a "
                                            f"malformed description: the file is damaged")
            return _build(doc, data, source, label)
    doc, chunks = _walk_text(source, h5py)
    data = np.zeros(sum(_padded(c.nbytes) for c in chunks), np.uint8)
    at = 0
    for chunk in chunks:
        data[at:at + chunk.nbytes] = chunk.reshape(-1).view(np.uint8)
        at += _padded(chunk.nbytes)
    return _build(doc, data, source, label)


def _signed(source: _Source) -> bool:
    """The HDF5 signature at byte 0, or where HDF5 also looks for it (512, 1024 ...)."""
    at = 0
    while at + 8 <= source.size and at <= 1 << 20:
        if source.read(at, 8, "u1").tobytes() == HDF5_SIGNATURE:
            return True
        at = 512 if at == 0 else 2 * at
    return False
