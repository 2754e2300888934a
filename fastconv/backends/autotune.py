"""Autotuning of ``auto``: which algorithm runs one pass of one convolution, measured with care.

A measurement can be fooled: by another program using the CPUs while it runs, by noise between
candidates that are really equally fast, by a cache written on another machine or by an older
fastconv, by a cached choice that no longer fits. This module guards against each:

* **Lazy.** A shape seen for the first time runs the backend's heuristic; it is tuned on its
  ``TUNE_AFTER_CALLS``-th use, so a one-off shape (a last partial batch, one ``predict``) never
  pays for compiling and timing every candidate.
* **Only when it can pay.** Tuning compiles every candidate not yet run in this process, seconds
  each (``FASTCONV_TUNE_COMPILE``, 3 s by default), to save a fraction of one call's time per
  call. So at the ``TUNE_AFTER_CALLS``-th use the heuristic's choice is timed, and the shape is
  tuned only once its uses so far have taken as long as those compiles would (the ski-rental
  rule: a shape that runs for long is tuned, and never pays more than twice what it would have
  paid tuning at once; a short run never compiles a candidate it could not profit from).
* **Interleaved, and the heuristic wins ties.** Candidates are timed in rotating rounds (one run of
  each per round), so a slow phase of the machine hits all of them alike. The heuristic's choice is
  kept unless another candidate beats it by more than the larger of ``MIN_GAIN`` and the measured
  noise.
* **Busy machines persist nothing.** Each tuning compares the machine's busy CPU time
  (``/proc/stat``, steal included) with this process's own CPU time over the same wall time; if
  other programs used more than ``BUSY_SHARE`` of the machine, or this process got less than
  ``STARVED_SHARE`` of one CPU (CPU backends), the result is thrown away: the shape keeps its
  current choice and is tried again later (``RETRY_AFTER_CALLS``, at most ``MAX_TRIES`` times
  per process).
* **Keys name the machine.** A cache key holds the CPU model, its SIMD features, the backend, its
  device string (``Backend.device_string()``, empty on CPUs), threads and fastconv's version, then
  the pass, dtype and geometry. Entries of other machines or versions stay in the file, unused.
* **Cached choices are checked.** The first time a process uses a cached entry a lot (at its
  ``TUNE_AFTER_CALLS``-th use) it times that choice; if the time strays from the recorded one by
  more than ``RECHECK_FACTOR`` either way, or the entry is inconsistent (its choice is not its own
  fastest recorded time), or the choice cannot run the shape, the shape is tuned again and the entry
  replaced.
* **Writes merge under a lock.** ``autotune.json`` is rewritten under ``fcntl.flock`` on a
  sidecar ``autotune.json.lock``: read, merge this process's entries in, write a temporary file,
  ``os.replace``. The temporary file is removed on any failure. The file carries ``SCHEMA``; a file
  of another schema is ignored (and replaced on the next write).

``Tuner`` holds what a measurement reads from the outside world (a clock, the CPU-time probe and
the function that runs one candidate once); tests replace it with fakes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .. import config
from .._version import __version__
from ..geometry import ConvGeometry
from ..io.atomic import atomic_write_bytes
from ..io.errors import InvalidModelFileError
from ..io.files import read_regular
from ..io.jsontext import json_depth

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; writes are still atomic (os.replace)
    fcntl = None

log = logging.getLogger("fastconv.algorithms")

SCHEMA = 2
FILE_NAME = "autotune.json"
#: a shape is tuned (or its cached entry checked) on this use; before, it runs the heuristic
TUNE_AFTER_CALLS = 3
#: after a tuning thrown away for load, the next try comes this many uses later (times the tries)
RETRY_AFTER_CALLS = 50
MAX_TRIES = 3
#: another algorithm replaces the heuristic's choice only if faster by more than this (and more
#: than the measured noise)
MIN_GAIN = 0.05
#: other programs using more than this share of all CPUs during a measurement: machine busy
BUSY_SHARE = 0.25
#: this process getting less than this share of one CPU during a measurement: machine busy
STARVED_SHARE = 0.5
#: a cached choice timed this many times slower or faster than recorded is tuned again
RECHECK_FACTOR = 2.0
#: interleaved rounds per tuning: at least MIN_ROUNDS, more while under MIN_SECONDS
MIN_ROUNDS, MAX_ROUNDS, MIN_SECONDS = 5, 30, 0.15

#: SIMD features (``/proc/cpuinfo`` spelling) that name the instruction set in cache keys
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve")


# -- the machine ----------------------------------------------------------------------------------

_machine: dict[str, str] = {}


def cpu_identity() -> tuple[str, tuple[str, ...]]:
    """(CPU model name, the ``ISA_FLAGS`` it has) from ``/proc/cpuinfo`` where there is one."""
    model, flags = platform.processor() or platform.machine() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "model name":
                    model = value.strip()
                elif name in ("flags", "features") and not flags:
                    flags = set(value.split())
                if model and flags and name == "":
                    break  # first CPU done
    except OSError:
        pass
    return model, tuple(f for f in ISA_FLAGS if f in flags)


def machine_signature() -> str:
    """The part of every cache key naming this machine and this fastconv."""
    if "sig" not in _machine:
        model, isa = cpu_identity()
        _machine["sig"] = f"{model} [{' '.join(isa) or 'isa unknown'}] fastconv {__version__}"
    return _machine["sig"]


def device_string(backend) -> str:
    return backend.device_string()


def cache_key(backend, geom: ConvGeometry, dtype: str, conv_pass: str) -> str:
    shape = ",".join(f"{k}={v}" for k, v in asdict(geom).items())
    device = device_string(backend)
    return (f"{machine_signature()}|{backend.name}{' ' + device if device else ''}|"
            f"threads={backend.num_threads()}|{conv_pass}|{dtype}|{shape}")


# -- load ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuSample:
    wall: float  # seconds
    process: float  # this process's CPU seconds, every thread
    busy: float | None  # the machine's busy CPU seconds over all CPUs (None: unknown)


class SystemProbe:
    """CPU time of this process and of the whole machine (Linux ``/proc/stat``)."""

    def __init__(self):
        try:
            self._tick = 1.0 / os.sysconf("SC_CLK_TCK")
        except (AttributeError, ValueError, OSError):
            self._tick = 0.01

    def cpus(self) -> int:
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1

    def machine_busy(self) -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = fh.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        values = [int(v) for v in fields[1:9]]
        values += [0] * (8 - len(values))
        user, nice, system, _idle, _iowait, irq, softirq, steal = values
        return (user + nice + system + irq + softirq + steal) * self._tick

    def sample(self) -> CpuSample:
        return CpuSample(time.perf_counter(), time.process_time(), self.machine_busy())


@dataclass(frozen=True)
class Load:
    others: float | None  # share of all CPUs other programs used (None: unknown)
    own: float | None  # CPUs' worth this process used (None: not judged, device backends)
    cpus: int

    @property
    def busy(self) -> bool:
        return ((self.others is not None and self.others > BUSY_SHARE)
                or (self.own is not None and self.own < STARVED_SHARE))

    def describe(self) -> str:
        others = "unknown" if self.others is None else f"{self.others:.0%}"
        own = "" if self.own is None else f", this process {self.own:.2f} CPUs"
        return f"other programs {others} of {self.cpus} CPUs{own}"


def load_between(a: CpuSample, b: CpuSample, cpus: int, host_kernels: bool = True) -> Load:
    """The load between two samples. ``host_kernels``: the measured work runs on this
    process's CPU threads, so a process that got little CPU time was crowded out (a device
    backend waits instead: its own CPU time says nothing)."""
    wall = max(b.wall - a.wall, 1e-9)
    own = (b.process - a.process) / wall
    others = None
    if a.busy is not None and b.busy is not None:
        others = max(0.0, (b.busy - a.busy) - (b.process - a.process)) / (wall * cpus)
    return Load(others, own if host_kernels else None, cpus)


# -- measuring ----------------------------------------------------------------------------------

def run_once_factory(backend, geom: ConvGeometry, dtype: str, conv_pass: str):
    """``run(algo)``: one call of that algorithm on random data of the shape, finished."""
    xp = backend.xp
    rng = xp.random.default_rng(0) if hasattr(xp.random, "default_rng") else xp.random
    x = backend.asarray(rng.standard_normal(geom.x_shape), dtype=dtype)
    w = backend.asarray(rng.standard_normal(geom.w_shape), dtype=dtype)
    dy = backend.asarray(rng.standard_normal(geom.y_shape), dtype=dtype)

    def run(algo: str):
        if conv_pass == "forward":
            out = backend.conv2d_forward(x, w, None, geom, algo)
        elif conv_pass == "backward_data":
            out = backend.conv2d_backward_data(dy, w, geom, algo)
        else:
            out = backend.conv2d_backward_weight(x, dy, geom, algo)
        backend.synchronize(out)

    return run


@dataclass
class Measurement:
    choice: str
    timings: dict[str, float]  # best time per candidate, seconds
    noise: float  # relative spread of the fastest candidates' samples
    how: str  # 'measured', 'heuristic within noise', 'busy'
    load: Load
    rounds: int
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> why it could not run

    @property
    def busy(self) -> bool:
        return self.load.busy


@dataclass
class Tuner:
    """Everything a measurement takes from the outside world (tests swap in fakes)."""

    clock: Callable[[], float] = time.perf_counter
    probe: SystemProbe = field(default_factory=SystemProbe)
    run_factory: Callable = run_once_factory

    def measure(self, backend, geom: ConvGeometry, dtype: str, conv_pass: str,
                candidates: tuple[str, ...], heuristic: str) -> Measurement:
        """Time ``candidates`` in interleaved rounds and pick one (see the module's docstring)."""
        run = self.run_factory(backend, geom, dtype, conv_pass)
        failed, usable = {}, []
        for algo in candidates:  # compile and warm up, outside the measured span
            try:
                run(algo)
                usable.append(algo)
            except (ValueError, NotImplementedError) as exc:
                failed[algo] = str(exc)
        if not usable:
            raise RuntimeError(f"no convolution algorithm could run the {conv_pass} pass: "
                               f"{failed}")
        samples: dict[str, list[float]] = {a: [] for a in usable}
        cpus = self.probe.cpus()
        before = self.probe.sample()
        start, rounds = self.clock(), 0
        while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and self.clock() - start < MIN_SECONDS):
            k = rounds % len(usable)
            for algo in usable[k:] + usable[:k]:
                t0 = self.clock()
                run(algo)
                samples[algo].append(self.clock() - t0)
            rounds += 1
        load = load_between(before, self.probe.sample(), cpus, not device_string(backend))
        return decide(samples, heuristic, load, rounds, failed)


def _noise(values: list[float]) -> float:
    ordered = sorted(values)
    best, median = ordered[0], ordered[len(ordered) // 2]
    return (median - best) / best if best > 0 else 0.0


def decide(samples: dict[str, list[float]], heuristic: str, load: Load, rounds: int,
           failed: dict[str, str] | None = None) -> Measurement:
    """The choice from interleaved samples: the fastest, unless the heuristic's choice is within
    the noise of it (then the heuristic's)."""
    timings = {a: min(v) for a, v in samples.items()}
    best = min(timings, key=timings.get)
    if heuristic not in timings:
        choice, noise, how = best, _noise(samples[best]), "measured"
    else:
        noise = max(_noise(samples[best]), _noise(samples[heuristic]))
        margin = max(MIN_GAIN, noise)
        if timings[heuristic] <= timings[best] * (1 + margin):
            choice = heuristic
            how = "measured" if best == heuristic else "heuristic within noise"
        else:
            choice, how = best, "measured"
    if load.busy:
        how = "busy"
    return Measurement(choice, timings, noise, how, load, rounds, dict(failed or {}))


# -- the cache file -----------------------------------------------------------------------------

def cache_file():
    return config.cache_dir() / FILE_NAME


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``<path>.lock`` (no-op where ``fcntl`` is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(str(path) + ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


#: The largest cache file read (bytes): thousands of entries take a few MiB; anything larger is
#: damaged or not ours, and reading it whole would cost memory for nothing.
MAX_FILE_BYTES = 64 << 20
#: The deepest JSON nesting an entry file can hold (schema: file / entries / entry / geometry).
MAX_NESTING = 8
_warned: set[str] = set()


def _unusable(path, why: str) -> dict:
    """An unusable cache file is no cache: one warning per file and process, then {}."""
    key = os.fspath(path)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"fastconv ignores the autotuning cache {key!r}: {why}; choices are "
                      f"made as if there were none (delete the file to start afresh)",
                      RuntimeWarning, stacklevel=3)
    return {}


def read_entries(path=None) -> dict[str, dict]:
    """The entries of the cache file; {} for a missing file or one of another schema, and {}
    with one warning for a file that cannot be used (unreadable, not a regular file, too
    large, too deeply nested, not JSON)."""
    path = cache_file() if path is None else path
    try:
        raw = read_regular(path, "autotuning cache", MAX_FILE_BYTES)
    except FileNotFoundError:
        return {}
    except (OSError, InvalidModelFileError) as exc:
        return _unusable(path, str(exc))
    if json_depth(raw) > MAX_NESTING:
        return _unusable(path, f"it is nested deeper than {MAX_NESTING} levels")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return _unusable(path, f"it is not JSON ({exc})")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}


def _write(path, entries: dict) -> None:
    text = json.dumps({"schema": SCHEMA, "entries": entries}, indent=1, sort_keys=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def update_entries(updates: dict[str, dict] | None = None, remove=(), clear: bool = False,
                   path=None) -> bool:
    """Merge ``updates`` into the cache file (and drop ``remove``) under the lock. False where the
    file could not be written (a read-only home must not stop training)."""
    path = cache_file() if path is None else path
    try:
        with _locked(path):
            entries = {} if clear else read_entries(path)
            for key in remove:
                entries.pop(key, None)
            entries.update(updates or {})
            _write(path, entries)
        return True
    except OSError as exc:
        log.debug("could not write the autotune cache %s: %s", path, exc)
        return False


def clear_file(path=None) -> bool:
    """Delete the cache file under the lock; True if there was one."""
    path = cache_file() if path is None else path
    with _locked(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
    return True


def make_entry(backend, geom: ConvGeometry, dtype: str, conv_pass: str,
               m: Measurement) -> dict:
    return {"machine": machine_signature(), "backend": backend.name,
            "device": device_string(backend), "threads": backend.num_threads(),
            "pass": conv_pass, "dtype": dtype, "geometry": asdict(geom), "choice": m.choice,
            "seconds": m.timings[m.choice], "timings": m.timings, "noise": round(m.noise, 4),
            "how": m.how, "rounds": m.rounds,
            "others_load": None if m.load.others is None else round(m.load.others, 3),
            "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "version": __version__}


def entry_problem(entry: dict, candidates: tuple[str, ...]) -> str | None:
    """Why a cached entry cannot be used as it stands (None: usable)."""
    choice, timings, seconds = entry.get("choice"), entry.get("timings"), entry.get("seconds")
    if choice not in candidates:
        return f"its choice {choice!r} cannot run this shape"
    if not isinstance(seconds, (int, float)) or seconds <= 0 or not isinstance(timings, dict):
        return "it records no time"
    recorded = [t for t in timings.values() if isinstance(t, (int, float)) and t > 0]
    noise = entry.get("noise")
    noise = noise if isinstance(noise, (int, float)) and 0 <= noise < 10 else 0.0
    if not recorded or seconds > min(recorded) * (1 + max(MIN_GAIN, noise)):
        return "its choice is not its own fastest recorded time"
    return None


# -- per-process state and the choice -----------------------------------------------------------

@dataclass
class _State:
    current: str
    how: str
    entry: dict | None = None
    calls: int = 0
    next_check: int = TUNE_AFTER_CALLS
    tries: int = 0
    timings: dict = field(default_factory=dict)
    priced: bool = False  # whether the compile cost of tuning was weighed yet


TUNER = Tuner()
_fast: dict[tuple, str] = {}  # decided shapes: the hot path
_states: dict[tuple, _State] = {}  # shapes still to be tuned or checked
_disk: dict = {}  # {'entries': ...} once read
_explained: dict[tuple, dict] = {}
_ran: set[tuple] = set()  # (backend, pass, dtype, algorithm) that ran in this process: compiled


def _disk_entries() -> dict[str, dict]:
    if "entries" not in _disk:
        _disk["entries"] = read_entries()
    return _disk["entries"]


def clear_memory() -> None:
    """Forget this process's choices and its copy of the cache file (the file is kept)."""
    _fast.clear()
    _states.clear()
    _disk.clear()
    _explained.clear()
    _ran.clear()


def _explain(backend, geom, dtype, conv_pass, state: _State) -> None:
    _explained[(backend.name, conv_pass, geom, dtype)] = {
        "algorithm": state.current, "how": state.how,
        "seconds": {a: round(t, 6) for a, t in state.timings.items()
                    if isinstance(t, (int, float))}}
    log.debug("%s %s %s %s: %s (%s) %s", backend.name, conv_pass, dtype, geom, state.current,
              state.how, state.timings or "")


def choose(backend, geom: ConvGeometry, dtype: str, conv_pass: str,
           candidates: tuple[str, ...], heuristic: str) -> str:
    """The algorithm ``auto`` runs now for one pass of one convolution (``candidates``: those
    worth timing, ``heuristic``: the backend's pick without measuring)."""
    fast_key = (backend.name, conv_pass, geom, dtype, backend.num_threads())
    chosen = _fast.get(fast_key)
    if chosen is not None:
        return chosen
    state = _states.get(fast_key)
    if state is None:
        state = _states[fast_key] = _first_use(backend, geom, dtype, conv_pass, candidates,
                                               heuristic, fast_key)
        _explain(backend, geom, dtype, conv_pass, state)
    if fast_key in _fast:
        return _ran_now(backend, conv_pass, dtype, _fast[fast_key])
    state.calls += 1
    if state.calls >= state.next_check:
        _tune_or_check(backend, geom, dtype, conv_pass, candidates, heuristic, state, fast_key)
        _explain(backend, geom, dtype, conv_pass, state)
    return _ran_now(backend, conv_pass, dtype, state.current)


def peek(backend, geom: ConvGeometry, dtype: str, conv_pass: str,
         candidates: tuple[str, ...], heuristic: str) -> str:
    """What ``choose`` would run now, without counting a use, marking an algorithm as run,
    listing the choice for ``choices`` or tuning: for plans made only to be looked at
    (``fastconv.inference.chunk_size``). A choice that cannot change (autotuning off, one
    candidate) is remembered as ``choose`` would."""
    fast_key = (backend.name, conv_pass, geom, dtype, backend.num_threads())
    if fast_key in _fast:
        return _fast[fast_key]
    state = _states.get(fast_key)
    if state is None:
        state = _first_use(backend, geom, dtype, conv_pass, candidates, heuristic, fast_key)
    return state.current


def _ran_now(backend, conv_pass, dtype, algo) -> str:
    _ran.add((backend.name, conv_pass, dtype, algo))
    return algo


def _first_use(backend, geom, dtype, conv_pass, candidates, heuristic, fast_key) -> _State:
    if len(candidates) <= 1 or not backend.autotune or not config.env_autotune():
        _fast[fast_key] = heuristic
        return _State(heuristic, "heuristic")
    entry = _disk_entries().get(cache_key(backend, geom, dtype, conv_pass))
    if entry is not None:
        problem = entry_problem(entry, candidates)
        if problem is None:
            return _State(entry["choice"], "cached", entry=entry,
                          timings=dict(entry.get("timings") or {}))
        log.debug("cached entry for %s %s %s ignored: %s", conv_pass, dtype, geom, problem)
        # as if there were none: the heuristic's choice, then tuning replaces the entry
        return _State(heuristic, f"heuristic (cached entry unusable: {problem})")
    return _State(heuristic, "heuristic (not tuned yet)")


def _tune_or_check(backend, geom, dtype, conv_pass, candidates, heuristic, state, fast_key):
    if state.entry is not None:
        verdict = _check_entry(backend, geom, dtype, conv_pass, state)
        if verdict is None:  # consistent with what was recorded
            _fast[fast_key] = state.current
            state.how = "cached, checked"
            return
        if verdict == "busy":
            _retry_later(state, fast_key)
            return
        log.debug("cached %s for %s %s %s re-tuned: %s", state.current, conv_pass, dtype, geom,
                  verdict)
    elif not state.priced:
        state.priced = True
        wait = _uses_until_worth_tuning(backend, geom, dtype, conv_pass, candidates, state)
        if wait:
            state.next_check = state.calls + wait
            state.how = f"heuristic (tuned on use {state.next_check}, when it can pay)"
            return
    m = TUNER.measure(backend, geom, dtype, conv_pass, candidates, heuristic)
    _ran.update((backend.name, conv_pass, dtype, a) for a in m.timings)
    state.timings = m.timings
    if m.busy:
        log.debug("tuning %s %s %s under load (%s): nothing kept", conv_pass, dtype, geom,
                  m.load.describe())
        state.how = f"{'cached' if state.entry else 'heuristic'} (measured under load: not kept)"
        _retry_later(state, fast_key)
        return
    state.current, state.how, state.entry = m.choice, m.how, None
    update_entries({cache_key(backend, geom, dtype, conv_pass):
                    make_entry(backend, geom, dtype, conv_pass, m)})
    _fast[fast_key] = m.choice


def _uses_until_worth_tuning(backend, geom, dtype, conv_pass, candidates, state) -> int:
    """How many more uses the current choice runs before tuning may pay for its compiles: 0 when
    every candidate already ran in this process (or compiling is assumed free)."""
    to_compile = [a for a in candidates if (backend.name, conv_pass, dtype, a) not in _ran]
    cost = config.env_tune_compile_seconds() * len(to_compile)
    if cost <= 0:
        return 0
    run = TUNER.run_factory(backend, geom, dtype, conv_pass)
    try:
        per_use = max(_best_of(run, state.current), 1e-9)
    except (ValueError, NotImplementedError):
        return 0  # the measurement reports it
    state.timings = {state.current: per_use}
    return max(0, math.ceil(cost / per_use) - state.calls)


def _best_of(run, algo: str) -> float:
    """The fastest of ``MIN_ROUNDS`` runs of ``algo`` (already compiled) on ``TUNER``'s clock."""
    times = []
    for _ in range(MIN_ROUNDS):
        t0 = TUNER.clock()
        run(algo)
        times.append(TUNER.clock() - t0)
    return min(times)


def _retry_later(state: _State, fast_key) -> None:
    state.tries += 1
    if state.tries >= MAX_TRIES:
        _fast[fast_key] = state.current  # keep it for the rest of this process
    else:
        state.next_check = state.calls + RETRY_AFTER_CALLS * state.tries


def _check_entry(backend, geom, dtype, conv_pass, state: _State) -> str | None:
    """Time the cached choice: None if it runs as recorded, 'busy', or why it must be re-tuned."""
    recorded = float(state.entry["seconds"])
    run = TUNER.run_factory(backend, geom, dtype, conv_pass)
    try:
        run(state.current)  # compile / warm up
    except (ValueError, NotImplementedError) as exc:
        return f"it cannot run: {exc}"
    cpus = TUNER.probe.cpus()
    before = TUNER.probe.sample()
    observed = _best_of(run, state.current)
    load = load_between(before, TUNER.probe.sample(), cpus, not device_string(backend))
    if load.busy:
        return "busy"
    if observed > recorded * RECHECK_FACTOR or observed * RECHECK_FACTOR < recorded:
        return f"timed {observed * 1e3:.3f} ms against {recorded * 1e3:.3f} ms recorded"
    return None


def settle() -> None:
    """Keep every shape still waiting to be tuned or checked at its current choice for the rest
    of the process (benchmarks: no tuning inside a timed region)."""
    for fast_key, state in _states.items():
        _fast.setdefault(fast_key, state.current)


def choices() -> list[dict]:
    """Every ``auto`` choice made in this process, for ``fastconv info --explain``."""
    return [{"backend": backend, "pass": conv_pass, "dtype": dtype, "geometry": geom, **info}
            for (backend, conv_pass, geom, dtype), info in _explained.items()]


# -- fastconv autotune --retune ------------------------------------------------------------------

def retune(backend, candidates_for, heuristic_for, keys=None) -> list[tuple[str, Measurement]]:
    """Measure again the shapes of this machine's entries for ``backend`` (at its current thread
    count) and store the results that were not measured under load. ``candidates_for(geom,
    conv_pass)`` and ``heuristic_for(geom, conv_pass)`` come from the algorithm table."""
    results, updates = [], {}
    for key, entry in read_entries().items():
        if keys is not None and key not in keys:
            continue
        try:
            geom = ConvGeometry(**entry["geometry"])
            conv_pass, dtype = entry["pass"], entry["dtype"]
        except (KeyError, TypeError):
            continue
        if key != cache_key(backend, geom, dtype, conv_pass):
            continue  # another machine, version, backend or thread count
        m = TUNER.measure(backend, geom, dtype, conv_pass, candidates_for(geom, conv_pass),
                          heuristic_for(geom, conv_pass))
        results.append((key, m))
        if not m.busy:
            updates[key] = make_entry(backend, geom, dtype, conv_pass, m)
    if updates:
        update_entries(updates)
    clear_memory()
    return results
