"""Compiling in the background: the first prediction of a fresh install does not wait for Numba.

numba-cpu compiles each kernel on its first use and keeps the machine code in Numba's on-disk
cache. On an empty cache that takes seconds per kernel, so the first ``predict`` of a fresh
install would wait about ten seconds. A backend that compiles its kernels names, as its
``compile_fallback``, a backend on the same host memory that compiles nothing (numba-cpu names
numpy). When a model makes an inference plan that this machine has not compiled before:

1. a separate Python process (``python -m fastconv.warmup SPEC``, at a lower priority) rebuilds
   the model from its configuration, makes the same plan on the compiling backend and runs it
   once on zeros, serial and parallel kernel variants both, which fills Numba's cache; then it
   records the plan as compiled (a marker file in ``fastconv``'s cache folder);
2. meanwhile the model predicts through the fallback backend's plan (same layers, same weights,
   results equal to rounding);
3. once the process is done, the next call makes the real plan, whose kernels now load from the
   cache in milliseconds, and the model uses it from then on.

The compiling runs in its own process rather than a thread: the predicting process keeps its
interpreter to itself, exits whenever it likes without waiting for (or tearing down) a compiler,
and a program that predicts once and exits still leaves a warm cache for its next run. One
compiling process runs at a time per cache folder; plans made while one runs wait for it, then
compile what is still missing in the foreground.

Nothing of this happens for plans already recorded as compiled, for models whose configuration
cannot be written out (custom layer classes), or with ``FASTCONV_BACKGROUND_COMPILE=0``: those
compile in the foreground, on first use, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from . import config
from .inference import InferencePlan

log = logging.getLogger(__name__)

#: the folder (inside fastconv's cache folder) holding the markers and the compiling lock
FOLDER = "compiled"
_LOCK = "compiling.lock"


def folder() -> Path:
    return config.cache_dir() / FOLDER


def plan_for(model, batch_shape, backend, on_ready=None):
    """The plan for ``model`` at ``batch_shape`` on ``backend``: the real one, or, when its
    kernels were never compiled here, a :class:`WarmingPlan` (see the module docstring).
    ``on_ready(plan)`` is called with the real plan once a WarmingPlan has made it."""
    fallback = getattr(backend, "compile_fallback", None)
    if fallback is None or not config.env_background_compile():
        return InferencePlan(model, batch_shape, backend)
    _reap()
    spec = plan_spec(model, batch_shape, backend)
    if spec is None:
        return InferencePlan(model, batch_shape, backend)
    key = spec_key(spec)
    where = folder()
    if (where / f"{key}.done").exists():
        return InferencePlan(model, batch_shape, backend)
    job = CompileJob.start(where, key, spec)
    if job is None:
        return InferencePlan(model, batch_shape, backend)
    from .backends import get_backend

    try:
        interim = InferencePlan(model, batch_shape, get_backend(fallback))
    except Exception:  # noqa: BLE001 - a plan the fallback cannot make: compile here and now
        log.debug("no %s plan for %s: compiling in the foreground", fallback, model.name,
                  exc_info=True)
        return InferencePlan(model, batch_shape, backend)
    log.debug("plan of %s for %s compiles in the background (%s); %s predicts meanwhile",
              model.name, batch_shape, job.describe(), fallback)
    return WarmingPlan(model, batch_shape, backend, interim, job, on_ready)


def plan_spec(model, batch_shape, backend) -> dict | None:
    """What the compiling process needs to make the same plan, and what decides the kernels
    that plan compiles; None when the model cannot be described (custom layer classes)."""
    import numba

    from .backends import algorithms
    from .backends.autotune import machine_signature

    try:
        architecture = {"class_name": type(model).__name__, "config": model.get_config()}
        json.dumps(architecture)
    except Exception:  # noqa: BLE001 - whatever a layer's get_config raises
        return None
    if architecture["class_name"] not in ("Sequential", "Functional") or not _built_in(model):
        return None
    shape = [list(s) for s in batch_shape] if isinstance(batch_shape, list) else list(
        batch_shape)
    return {"model": architecture, "batch_shape": shape, "dtype": model.dtype,
            "backend": backend.name, "conv_algo": algorithms.current_conv_algo(),
            "threads": backend.num_threads(), "machine": machine_signature(),
            "numba": numba.__version__, "python": sys.version,
            "numba_cache": os.environ.get("NUMBA_CACHE_DIR", "")}


def _built_in(model) -> bool:
    """Whether every layer (nested models' included) is one of fastconv's own classes, which
    the compiling process can rebuild from the configuration."""
    for layer in model.layers:
        if not type(layer).__module__.startswith("fastconv."):
            return False
        if hasattr(layer, "layers") and not _built_in(layer):
            return False
    return True


def spec_key(spec: dict) -> str:
    """The spec's hash, with every model and layer name replaced by its position: two models
    that differ only in their names (``conv2d`` and ``conv2d_1``) compile the same kernels."""
    names: dict[str, int] = {}

    def collect(value):
        if isinstance(value, dict):
            if isinstance(value.get("name"), str):
                names.setdefault(value["name"], len(names))
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    def canonical(value):
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items()}
        if isinstance(value, list):
            return [canonical(v) for v in value]
        if isinstance(value, str) and value in names:
            return f"#{names[value]}"
        return value

    collect(spec["model"])
    text = json.dumps(canonical(spec), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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
    """The background compilation a WarmingPlan waits for: one it started, or one that another
    process (or an earlier plan) already runs in the same cache folder."""

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
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        try:
            with open(where / f"{key}.log", "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fastconv.warmup", str(spec_path)],
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

    def describe(self) -> str:
        return f"process {self.pid}" + ("" if self.proc is not None else ", already running")


class WarmingPlan:
    """A plan that predicts with the fallback backend until the compiling process is done, then
    makes the real plan and hands over to it (``on_ready`` lets the model keep it instead)."""

    def __init__(self, model, batch_shape, backend, interim, job, on_ready=None):
        self.model, self.batch_shape, self.backend = model, batch_shape, backend
        self.interim, self.job, self.on_ready = interim, job, on_ready
        self.output_shape = interim.output_shape
        self.real = None

    def run(self, x):
        real = self.real
        if real is None:
            if not self.job.finished():
                return self.interim.run(x)
            real = self.switch()
        return real.run(x)

    __call__ = run

    def switch(self) -> InferencePlan:
        """Make the real plan now (its kernels load from the cache, or compile here when the
        background compilation failed)."""
        if not self.job.succeeded():
            log.debug("background compilation of %s failed (see %s): compiling in the "
                      "foreground", self.model.name, self.job.where / f"{self.job.key}.log")
        if self.job.proc is not None:
            try:
                self.job.proc.wait(timeout=10)  # it ends right after recording success
            except subprocess.TimeoutExpired:
                pass
        self.real = InferencePlan(self.model, self.batch_shape, self.backend)
        if self.on_ready is not None:
            self.on_ready(self.real)
        return self.real


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


def compile_plan(spec: dict) -> None:
    """The compiling process's work: the plan of ``spec`` made and run on zeros, once per
    variant of the backend's kernels (``compile_variants``)."""
    import numpy as np

    import fastconv

    from .models.functional import Functional
    from .models.sequential import Sequential

    classes = {"Sequential": Sequential, "Functional": Functional}
    fastconv.set_backend(spec["backend"])
    backend = fastconv.get_backend()
    backend.set_num_threads(spec["threads"])
    model = classes[spec["model"]["class_name"]].from_config(spec["model"]["config"])
    model.build()
    shape = spec["batch_shape"]
    several = bool(shape) and isinstance(shape[0], list)
    batch_shape = [tuple(s) for s in shape] if several else tuple(shape)
    with fastconv.use_conv_algo(spec["conv_algo"]):
        plan = InferencePlan(model, batch_shape, backend)
        inputs = [np.zeros(s, dtype=spec["dtype"]) for s in (
            batch_shape if several else [batch_shape])]
        backend.compile_variants(lambda: plan.run(inputs if several else inputs[0]))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    where, key = spec_path.parent, spec_path.stem
    try:
        os.nice(10)  # the predicting process comes first
    except OSError:
        pass
    ok = False
    try:
        compile_plan(json.loads(spec_path.read_text()))
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
