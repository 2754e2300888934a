"""Compiling processes: Numba's kernels compiled into its on-disk cache by a separate Python
process, while the process that needs them goes on without waiting. It runs at the same
priority: at a lower one (nice 10), a process keeping every core busy starved it while it ran.

A caller describes the work as a JSON *spec* with a ``kind`` (a model's plan or its training
step, fastconv.warmup) and a key (a hash of what decides the kernels compiled). :func:`start` writes
the spec into the cache folder and starts ``python -m fastconv.backends.background SPEC``,
which runs the kind's handler (a fixed table: a spec never names code) and, on success, leaves
``<key>.done``; :func:`done` tells whether that happened on this machine before. On failure the
handler's traceback stays in ``<key>.log``.

One compiling process runs at a time per cache folder: a lock file names it, written whole and
linked into place (never seen half written), taken over when its process is gone. A caller that
finds the lock held gets a job that joins the running one, and starts its own later.
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
    return backend.compile_fallback is not None and config.env_background_compile()


def compiler_identity() -> dict:
    """What, besides a spec's own fields, decides whether Numba's cache holds its kernels."""
    import numba

    from .autotune import machine_signature

    return {"machine": machine_signature(), "numba": numba.__version__,
            "python": sys.version, "numba_cache": os.environ.get("NUMBA_CACHE_DIR", "")}


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _lock_holder(where: Path) -> int | None:
    """The pid of the live process compiling in ``where``, or None (a stale lock is removed)."""
    lock = where / _LOCK
    try:
        text = lock.read_text()
    except OSError:  # none
        return None
    pid = int(text) if text.strip().isdigit() else 0  # a lock is never seen half written
    if pid > 0 and _alive(pid):
        return pid
    try:
        lock.unlink()
    except OSError:
        pass
    return None


#: compiling processes this process started, kept until they have ended and been reaped
_children: list[subprocess.Popen] = []


def _reap() -> bool:
    """Reap the compiling processes that ended; whether any still runs."""
    _children[:] = [p for p in _children if p.poll() is None]
    return bool(_children)


def _write_lock(where: Path, pid: int, exclusive: bool) -> None:
    """The lock names the compiling process; written whole, then linked (``exclusive``: fails
    with FileExistsError when taken) or renamed into place, so no reader sees it half written."""
    temporary = where / f"{_LOCK}.{os.getpid()}"
    temporary.write_text(str(pid))
    try:
        if exclusive:
            os.link(temporary, where / _LOCK)
        else:
            os.replace(temporary, where / _LOCK)
    finally:
        temporary.unlink(missing_ok=True)


class CompileJob:
    """A compilation in the background: one this process started, or one that another process
    (or an earlier caller) already runs in the same cache folder."""

    def __init__(self, where: Path, key: str, proc: subprocess.Popen | None, pid: int):
        self.where, self.key, self.proc, self.pid = where, key, proc, pid

    @classmethod
    def start(cls, where: Path, key: str, spec: dict) -> CompileJob | None:
        """Start the compiling process, or join the one running; None when none can start
        (read-only cache folder, no Python executable)."""
        try:
            where.mkdir(parents=True, exist_ok=True)
            holder = _lock_holder(where)
            if holder is not None:
                return cls(where, key, None, holder)
            spec_path = where / f"{key}.json"
            spec_path.write_text(json.dumps(spec))
            _write_lock(where, os.getpid(), exclusive=True)  # taken, until the child's pid
        except FileExistsError:  # another process took the lock just now
            holder = _lock_holder(where)
            return cls(where, key, None, holder) if holder is not None else None
        except OSError as exc:
            log.debug("no background compilation: %s", exc)
            return None
        env = dict(os.environ, FASTCONV_BACKGROUND_COMPILE="0")
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        try:
            with open(where / f"{key}.log", "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fastconv.backends.background", str(spec_path)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                    close_fds=True)
            _write_lock(where, proc.pid, exclusive=False)
        except OSError as exc:
            (where / _LOCK).unlink(missing_ok=True)
            log.debug("no background compilation: %s", exc)
            return None
        _children.append(proc)
        return cls(where, key, proc, proc.pid)

    def finished(self) -> bool:
        """Whether the compilation is over: recorded as done, or its process ended."""
        if self.succeeded():
            return True
        if self.proc is not None:
            return self.proc.poll() is not None
        _reap()  # a process this one started is a zombie, alive to os.kill, until reaped
        return _lock_holder(self.where) != self.pid

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
        lock = where / _LOCK
        try:
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
        except OSError:
            pass
    if ok:  # Numba's cache is written: end now, without tearing the interpreter down, so
        # that the process is gone as soon as the marker says the work is done
        sys.stderr.flush()
        os._exit(0)
    return 1


if __name__ == "__main__":
    sys.exit(main())
