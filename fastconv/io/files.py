"""Opening what a user names: regular files only, their size known before anything is read.

A FIFO, a character device (``/dev/zero``), a socket or a folder given as a model, an input or
a cache file would block forever or stream without end; ``open_regular`` refuses it before
reading a byte (the open itself does not block: it is non-blocking until the file is known to
be regular). ``check_outputs`` refuses an output path that is one of a command's inputs, so
that a typo never overwrites the model or the data it reads.
"""

from __future__ import annotations

import os
import stat

from .errors import InvalidModelFileError


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path, what: str = "file", max_bytes: int | None = None):
    """``(binary file object, size)`` for the regular file ``path``.

    Raises FileNotFoundError when it does not exist, IsADirectoryError for a folder, and
    InvalidModelFileError naming ``what`` and the path when it is not a regular file or holds
    more than ``max_bytes``."""
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path!r}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{what} {path!r} is a folder, not a file") from None
    except OSError as exc:
        raise InvalidModelFileError(f"cannot read {what} {path!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{what} {path!r} is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidModelFileError(f"{what} {path!r} is {_kind(st.st_mode)}; fastconv "
                                        f"reads only regular files")
        if max_bytes is not None and st.st_size > max_bytes:
            raise InvalidModelFileError(f"{what} {path!r} holds {st.st_size} bytes, more than "
                                        f"the {max_bytes} bytes such a file may hold")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The whole content of the regular file ``path`` (see ``open_regular``)."""
    fh, size = open_regular(path, what, max_bytes)
    with fh:
        data = fh.read(size + 1)
    if len(data) > size:  # grew while being read
        raise InvalidModelFileError(f"{what} {os.fspath(path)!r} changed while it was read")
    return data


def check_regular(path, what: str = "file") -> int:
    """The size of the regular file ``path``; the errors of ``open_regular`` otherwise."""
    fh, size = open_regular(path, what)
    fh.close()
    return size


def same_file(a, b) -> bool:
    """True when the paths ``a`` and ``b`` name one file (links and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: dict, inputs: dict) -> None:
    """Refuse any output that is one of the inputs: ``outputs`` and ``inputs`` map an option's
    name (``--out``, ``MODEL``) to its path. Raises ValueError naming both."""
    for out_name, out in outputs.items():
        if out is None:
            continue
        for in_name, src in inputs.items():
            if src is not None and same_file(out, src):
                raise ValueError(f"{out_name} {os.fspath(out)!r} is the {in_name} this command "
                                 f"reads; writing it would destroy it. Choose another path")


def read_npy_header(fh) -> tuple[tuple, bool, object]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at ``fh``'s position (format
    versions 1.0 and 2.0), nothing of the data read; ValueError (or EOFError) for a malformed
    header."""
    import numpy as np

    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"version {version} of the .npy format is not supported")
