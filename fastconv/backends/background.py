"""Compiling processes: Numba's kernels compiled into its on-disk cache by a separate Python
process, while the process that needs them goes on without waiting. It runs at the same
priority: at a lower one (nice 10), a process keeping every core busy starved it while it ran.

A caller describes the work as a JSON *spec* with a ``kind`` (a model's plan or its training
step, fastconv.warmup) and a key (a hash of what decides the kernels compiled). :func:`start` writes
the spec into the cache folder and starts ``python -m fastconv.backends.background SPEC``,
which runs the kind's handler (a fixed table: a spec never names code) and, on success, leaves
``<key>.done``; :func:`done` tells whether that happened on this machine before. On failure the
handler's traceback stays in ``<key>.log``.

One compiling process runs at a time per cache folder. It holds an exclusive ``flock`` on
``compiling.lock`` (the starting process takes it and hands the open file to the child), so the
kernel releases the lock the moment the process ends, however it ends (SIGKILL included): a
killed compile never strands a later process, which starts a fresh one. The file also names the
holder's pid, for messages only. A caller that finds the lock held gets a job that joins the
running one, and starts its own later. Where ``fcntl`` is missing (Windows), nothing compiles
in the background.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from .. import config

try:
    import fcntl
except ImportError:  # Windows: no locks the kernel releases; no background compilation
    fcntl = None

log = logging.getLogger(__name__)

#: the folder (inside fastconv's cache folder) holding the markers and the compiling lock
FOLDER = "compiled"
_LOCK = "compiling.lock"

#: kind -> (module, function) that does a spec's work in the compiling process
HANDLERS = {"plan": ("fastconv.warmup", "compile_plan"),
            "train": ("fastconv.warmup", "compile_training")}


def folder() -> Path:
    return config.cache_dir() / FOLDER


def enabled(backend) -> bool:
    """Whether ``backend``'s kernels may compile in the background (it names a compile
    fallback, and ``FASTCONV_BACKGROUND_COMPILE`` is on)."""
    return (fcntl is not None and backend.compile_fallback is not None
            and config.env_background_compile())


def compiler_identity() -> dict:
    """What, besides a spec's own fields, decides whether Numba's cache holds its kernels."""
    import numba

    from . import jit_cache
    from .autotune import machine_signature

    return {"machine": machine_signature(), "numba": numba.__version__,
            "python": sys.version, "numba_cache": str(jit_cache.folder())}


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False where the cache folder cannot be read (an unreadable
    cache is no cache: compiling then happens in the foreground, as with none)."""
    try:
        return path.exists()
    except OSError:
        return False


def done(key: str) -> bool:
    """Whether the work of ``key`` was done on this machine (into this cache)."""
    return _exists(folder() / f"{key}.done")


def failed(key: str) -> bool:
    """Whether the work of ``key`` failed here before: its log is left and no process is
    compiling now (a running one writes its log as it goes)."""
    return _exists(folder() / f"{key}.log") and _lock_holder(folder()) is None


def start(key: str, spec: dict) -> CompileJob | None:
    """Start the compiling process for ``spec`` (a dict with a ``kind`` of HANDLERS), or join
    the one running; None when none can start (read-only cache folder, no Python)."""
    _reap()
    return CompileJob.start(folder(), key, spec)


def _open_lock(where: Path) -> int:
    return os.open(where / _LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)


def _lock_holder(where: Path) -> int | None:
    """The pid of the process compiling in ``where`` (0 when it is not known yet), or None when
    none holds the lock."""
    try:
        fd = _open_lock(where)
    except OSError:  # no folder, or none we may write: nothing compiles there
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _write_pid(fd: int, pid: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(pid).encode("ascii"), 0)


#: compiling processes this process started, kept until they have ended and been reaped
_children: list[subprocess.Popen] = []


def _reap() -> bool:
    """Reap the compiling processes that ended; whether any still runs."""
    _children[:] = [p for p in _children if p.poll() is None]
    return bool(_children)


class CompileJob:
    """A compilation in the background: one this process started, or one that another process
    (or an earlier caller) already runs in the same cache folder."""

    def __init__(self, where: Path, key: str, proc: subprocess.Popen | None, pid: int):
        self.where, self.key, self.proc, self.pid = where, key, proc, pid

    @classmethod
    def start(cls, where: Path, key: str, spec: dict) -> CompileJob | None:
        """Start the compiling process, or join the one running; None when none can start
        (read-only cache folder, no Python executable)."""
        if fcntl is None:
            return None
        fd = None
        try:
            where.mkdir(parents=True, exist_ok=True)
            fd = _open_lock(where)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another process compiles: join it
                os.close(fd)
                fd = None
                holder = _lock_holder(where)
                return cls(where, key, None, holder) if holder is not None else None
            _write_pid(fd, os.getpid())
            spec_path = where / f"{key}.json"
            spec_path.write_text(json.dumps(spec))
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            log.debug("no background compilation: %s", exc)
            return None
        from . import jit_cache

        # the child fills the Numba cache this process loads from, whatever the environment
        # says now
        env = dict(os.environ, FASTCONV_BACKGROUND_COMPILE="0",
                   NUMBA_CACHE_DIR=str(jit_cache.folder()))
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        try:
            with open(where / f"{key}.log", "wb") as err:
                # the child inherits the locked file: the lock is its until it ends
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fastconv.backends.background", str(spec_path)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                    close_fds=True, pass_fds=(fd,))
            _write_pid(fd, proc.pid)
        except OSError as exc:
            log.debug("no background compilation: %s", exc)
            return None
        finally:
            os.close(fd)  # this process's hold ends here; the child's goes on
        _children.append(proc)
        return cls(where, key, proc, proc.pid)

    def finished(self) -> bool:
        """Whether the compilation is over: recorded as done, or its process ended."""
        if self.succeeded():
            return True
        if self.proc is not None:
            return self.proc.poll() is not None
        return _lock_holder(self.where) is None

    def succeeded(self) -> bool:
        return (self.where / f"{self.key}.done").exists()

    def wait_exit(self) -> None:
        """Reap a process this one started (it ends right after recording success)."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    @property
    def log_path(self) -> Path:
        return self.where / f"{self.key}.log"

    def describe(self) -> str:
        return f"process {self.pid}" + ("" if self.proc is not None else ", already running")


def wait(where: Path | None = None, timeout: float = 300.0) -> bool:
    """Wait until no process compiles in ``where`` (default: this cache folder); False on
    timeout. Benchmarks use it so that a compiling process never runs beside a timing."""
    where = folder() if where is None else Path(where)
    deadline = time.monotonic() + timeout
    while _reap() or _lock_holder(where) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    where, key = spec_path.parent, spec_path.stem
    ok = False
    try:
        spec = json.loads(spec_path.read_text())
        module, function = HANDLERS[spec["kind"]]
        getattr(importlib.import_module(module), function)(spec)
        (where / f"{key}.done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        (where / f"{key}.log").unlink(missing_ok=True)
        ok = True
    finally:
        spec_path.unlink(missing_ok=True)
    if ok:  # Numba's cache is written: end now, without tearing the interpreter down, so
        # that the process is gone as soon as the marker says the work is done
        sys.stderr.flush()
        os._exit(0)
    return 1


if __name__ == "__main__":
    sys.exit(main())
