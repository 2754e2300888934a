"""Where Numba keeps the machine code of fastconv's kernels: in fastconv's cache folder, never
next to the installed sources.

Numba's own default writes ``__pycache__/*.nbi|nbc`` beside each source file, which puts files
into ``site-packages/fastconv`` at run time (a later reinstall then leaves that folder behind
as a namespace package). Numba also keys a function's cache by its own file only, so an edit
to a helper it inlines (the micro-kernel) would load stale machine code.

Importing this module (the ``numba-cpu`` package does, before any of its kernels is defined:
Numba reads the setting per function) runs ``configure()``, which points
``numba.config.CACHE_DIR`` at ``<FASTCONV_CACHE_DIR>/numba/<key>``, where the key hashes
fastconv's version, the CPU model and the sources of every module the kernels compile from:
any edit, upgrade or other CPU gets a folder of its own. Folders of other keys unused for
``STALE_DAYS`` are removed. A ``NUMBA_CACHE_DIR`` the user sets wins. Where the folder cannot
be written, a folder in the system's temporary directory serves instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from .. import config
from .._version import __version__

#: Sibling folders (other versions or sources) untouched for this long are removed.
STALE_DAYS = 30
#: The sources whose machine code Numba caches: every kernel module and what they import.
_SOURCE_GLOBS = ("backends/numba_cpu/*.py", "geometry.py", "winograd.py",
                 "backends/jit_cache.py")

_configured: dict[str, Path] = {}


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    from .autotune import cpu_identity

    return cpu_identity()[0]


def sources_key() -> str:
    """A short hash of fastconv's version, the CPU model and the kernels' sources."""
    h = hashlib.sha256(f"{__version__}\0{_cpu_model()}\0".encode())
    root = _package_root()
    for pattern in _SOURCE_GLOBS:
        for path in sorted(root.glob(pattern)):
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            try:
                h.update(path.read_bytes())
            except OSError:
                pass
    return h.hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", delete=True)
        probe.close()
        return True
    except OSError:
        return False


def _prune(parent: Path, keep: str) -> None:
    cutoff = time.time() - STALE_DAYS * 86400
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        try:
            if (entry.name != keep and entry.is_dir(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff):
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass


def folder() -> Path:
    """The folder Numba caches fastconv's kernels in (configured on first use)."""
    return configure()


def configure() -> Path:
    """Point Numba's cache at fastconv's folder for this key (once per process, before any
    kernel is defined); returns the folder."""
    if "dir" in _configured:
        return _configured["dir"]
    import numba

    user = os.environ.get("NUMBA_CACHE_DIR", "").strip()
    if user:
        chosen = Path(user).expanduser()
    else:
        key = sources_key()
        parent = config.cache_dir() / "numba"
        chosen = parent / key
        if _writable(chosen):
            os.utime(chosen)  # marks it as in use for the pruning of other processes
            _prune(parent, key)
        else:
            chosen = Path(tempfile.gettempdir()) / f"fastconv-numba-{os.getuid()}" / key \
                if hasattr(os, "getuid") else Path(tempfile.gettempdir()) / "fastconv-numba" / key
            _writable(chosen)
        numba.config.CACHE_DIR = str(chosen)
    _configured["dir"] = chosen
    return chosen


#: Numba's cache folder for this process, set when this module is imported.
CACHE_FOLDER = configure()
