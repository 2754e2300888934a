"""The one writer of every file fastconv produces.

``atomic_write(path, write)`` calls ``write(fh)`` on a temporary file in the target's folder
(locked while it is written), flushes it to disk, renames it over the target and flushes the
folder: a crash, a SIGKILL or a full disk at any moment leaves the previous file intact, and
the next write of the same file removes what a killed write left. The file gets the mode the
umask gives new files. An existing target that is not a regular file (a FIFO, a device, a
folder) is refused rather than replaced or opened.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temporaries are recognised by age
    fcntl = None

#: Without locks, a temporary older than this is taken as left by a killed save (seconds).
_STALE_AGE = 24 * 3600
_TEMP_SUFFIX = re.compile(r"[a-z0-9_]{8}\.tmp")  # what tempfile.mkstemp adds
_umask_lock = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # set and restore: the only portable way to read it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _lock(fd: int) -> bool:
    """Take the advisory lock that marks a temporary as being written (True if taken)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Remove the temporaries of earlier saves of ``name`` whose writer is gone (killed):
    the writer holds a lock on its temporary while it writes, so one that can be locked is
    abandoned. Files that merely look alike (another suffix) are left alone."""
    prefix = f".{name}."
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix)
                and _TEMP_SUFFIX.fullmatch(entry.name[len(prefix):])):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if fcntl is None:
                if time.time() - os.fstat(fd).st_mtime < _STALE_AGE:
                    continue
            elif not _lock(fd):
                continue  # a save in progress
            if os.path.samestat(os.fstat(fd), os.lstat(entry.path)):
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _new_temporary(folder: Path, name: str) -> tuple[int, str]:
    """A locked temporary file next to the target, with the mode the umask gives new files."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            # another save's clean-up may have removed it between mkstemp and the lock
            if _lock(fd) and os.path.samestat(os.fstat(fd), os.stat(tmp)):
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o666 & ~_umask())
                return fd, tmp
        except OSError:
            pass
        os.close(fd)


def atomic_write(path, write) -> None:
    """``write(fh)`` into a temporary file of the target's folder, flushed to disk, then
    renamed over ``path``: a crash leaves any earlier file intact. Temporaries left by killed
    saves of the same file are removed first; the file gets the mode the umask gives."""
    path = Path(os.fspath(path))
    _check_target(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {str(path)!r}: the folder {str(folder)!r} does "
                                f"not exist")
    _remove_stale_temporaries(folder, path.name)
    fd, tmp = _new_temporary(folder, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is not None:  # rename while the lock is held (POSIX allows it)
                os.replace(tmp, path)
        if fcntl is None:
            os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # a full disk, a quota, a file-size limit ...
            reason = exc.strerror or str(exc)
            raise OSError(exc.errno, f"cannot write {str(path)!r}: {reason}; any previous "
                                     f"file of that name is left as it was") from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass




def _check_target(path: Path) -> None:
    """Refuse a target that exists and is not a regular file (or a link to one): renaming over
    a FIFO or a device would silently replace it, and a folder cannot be replaced."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OSError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(f"cannot write {str(path)!r}: it exists and is not a regular "
                                f"file") if stat.S_ISDIR(st.st_mode) else \
            OSError(f"cannot write {str(path)!r}: it exists and is not a regular file "
                    f"(a FIFO, socket or device)")


def atomic_write_bytes(path, data: bytes) -> None:
    """``atomic_write`` of a bytes object."""
    atomic_write(path, lambda fh: fh.write(data))
