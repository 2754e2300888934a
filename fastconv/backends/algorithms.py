"""The convolution algorithm table and the choice of algorithm per convolution.

``FASTCONV_CONV_ALGO`` (read in ``fastconv.config``) sets the starting choice; ``set_conv_algo``
and ``use_conv_algo`` change it. Forcing an algorithm on a convolution it cannot do is an error
that names what the algorithm supports.

``auto`` picks per (backend, pass, geometry, dtype, threads). With autotuning on (the default,
``FASTCONV_AUTOTUNE=1``) it times every supported algorithm once on random data, as cuDNN's
benchmark mode does, and caches the winner in memory and in ``<cache>/autotune.json``; with it
off it asks the backend's heuristic. Every choice is logged on the ``fastconv.algorithms`` logger
(DEBUG) and kept for :func:`choices` (``fastconv info --explain`` prints them).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .. import config
from ..geometry import ConvGeometry

log = logging.getLogger("fastconv.algorithms")


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    supports: Callable[[ConvGeometry], bool]
    scope: str  # what it supports, in words, for error messages


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec for spec in (
        AlgorithmSpec("direct", lambda g: True,
                      "any kernel size, stride, padding and dilation"),
        AlgorithmSpec("im2col", lambda g: True,
                      "any kernel size, stride, padding and dilation"),
        AlgorithmSpec("winograd", lambda g: g.is_3x3_unit,
                      "F(2x2,3x3): 3x3 kernels with stride 1 and dilation 1, any padding"),
        AlgorithmSpec("winograd4", lambda g: g.is_3x3_unit,
                      "F(4x4,3x3): 3x3 kernels with stride 1 and dilation 1, any padding"),
    )
}

CHOICES = ("auto", *ALGORITHMS)


def _check_algo(name) -> str:
    if not isinstance(name, str) or name not in CHOICES:
        raise ValueError(
            f"unknown convolution algorithm {name!r}; valid algorithms: {', '.join(CHOICES)}")
    return name


_default = {"name": _check_algo(config.env_conv_algo())}
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastconv_conv_algo", default=None)


def current_conv_algo() -> str:
    return _override.get() or _default["name"]


def set_conv_algo(name: str) -> None:
    """Make ``name`` (``auto``, ``direct``, ``im2col``, ``winograd``, ``winograd4``) current."""
    _default["name"] = _check_algo(name)


@contextlib.contextmanager
def use_conv_algo(name: str):
    """``with use_conv_algo('winograd4'): ...`` runs the block with that algorithm."""
    token = _override.set(_check_algo(name))
    try:
        yield
    finally:
        _override.reset(token)


def describe(geom: ConvGeometry) -> str:
    return (f"{geom.kh}x{geom.kw} convolution with stride {geom.sh}x{geom.sw} and dilation "
            f"{geom.dh}x{geom.dw}")


def supported_algorithms(backend, geom: ConvGeometry) -> tuple[str, ...]:
    return tuple(a for a in backend.conv_algorithms if ALGORITHMS[a].supports(geom))


def resolve(backend, geom: ConvGeometry, dtype, conv_pass: str,
            requested: str | None = None) -> str:
    """The concrete algorithm for one pass of one convolution."""
    requested = current_conv_algo() if requested is None else _check_algo(requested)
    if requested == "auto":
        return _choose(backend, geom, str(dtype), conv_pass)
    if requested not in backend.conv_algorithms:
        raise ValueError(
            f"backend {backend.name!r} does not implement the {requested!r} convolution "
            f"algorithm; it implements: {', '.join(backend.conv_algorithms)}")
    spec = ALGORITHMS[requested]
    if not spec.supports(geom):
        others = ", ".join(supported_algorithms(backend, geom))
        raise ValueError(
            f"convolution algorithm {requested!r} cannot compute a {describe(geom)}: it supports "
            f"{spec.scope}. Use 'auto' or one of: {others}")
    return requested


# -- auto ---------------------------------------------------------------------------------------

_memory: dict[str, str] = {}
_disk_loaded = {"done": False}
_explained: dict[tuple, dict] = {}


def _key(backend, geom: ConvGeometry, dtype: str, conv_pass: str) -> str:
    g = asdict(geom)
    shape = ",".join(f"{k}={v}" for k, v in g.items())
    return f"{backend.name}|{conv_pass}|{dtype}|threads={backend.num_threads()}|{shape}"


def _cache_file():
    return config.cache_dir() / "autotune.json"


def _load_disk() -> None:
    if _disk_loaded["done"]:
        return
    _disk_loaded["done"] = True
    try:
        with open(_cache_file(), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return  # no cache yet, or an unreadable one: it is rebuilt as shapes are measured
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and value in ALGORITHMS:
                _memory.setdefault(key, value)


def _save_disk() -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".autotune-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_memory, fh, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not stop training
        log.debug("could not write the autotune cache %s: %s", path, exc)


def _measure(backend, algo: str, geom: ConvGeometry, dtype: str, conv_pass: str,
             repeats: int = 3) -> float:
    xp = backend.xp
    rng = xp.random.default_rng(0) if hasattr(xp.random, "default_rng") else xp.random
    x = backend.asarray(rng.standard_normal(geom.x_shape), dtype=dtype)
    w = backend.asarray(rng.standard_normal(geom.w_shape), dtype=dtype)
    dy = backend.asarray(rng.standard_normal(geom.y_shape), dtype=dtype)
    if conv_pass == "forward":
        def run():
            return backend.conv2d_forward(x, w, None, geom, algo)
    elif conv_pass == "backward_data":
        def run():
            return backend.conv2d_backward_data(dy, w, geom, algo)
    else:
        def run():
            return backend.conv2d_backward_weight(x, dy, geom, algo)
    backend.synchronize(run())  # compiles / warms up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        backend.synchronize(run())
        best = min(best, time.perf_counter() - start)
    return best


_fast: dict[tuple, str] = {}


def _choose(backend, geom: ConvGeometry, dtype: str, conv_pass: str) -> str:
    fast_key = (backend.name, conv_pass, geom, dtype, backend.num_threads())
    chosen = _fast.get(fast_key)
    if chosen is None:
        chosen = _fast[fast_key] = _choose_slow(backend, geom, dtype, conv_pass)
    return chosen


def _choose_slow(backend, geom: ConvGeometry, dtype: str, conv_pass: str) -> str:
    candidates = supported_algorithms(backend, geom)
    if conv_pass == "backward_weight":
        # Winograd's backward-weight is im2col's: timing it twice would only add noise.
        candidates = tuple(a for a in candidates if not a.startswith("winograd")) or candidates
    key = _key(backend, geom, dtype, conv_pass)
    chosen = _memory.get(key)
    how = "cached"
    timings = {}
    if chosen is None and config.env_autotune() and backend.autotune:
        _load_disk()
        chosen = _memory.get(key)
        if chosen is None and len(candidates) > 1:
            timings = {a: _measure(backend, a, geom, dtype, conv_pass) for a in candidates}
            chosen = min(timings, key=timings.get)
            _memory[key] = chosen
            _save_disk()
            how = "measured"
    if chosen is None or chosen not in candidates:
        chosen = backend.heuristic_conv_algorithm(geom, conv_pass, candidates)
        how = "heuristic"
        _memory[key] = chosen
    record_key = (backend.name, conv_pass, geom, dtype)
    if record_key not in _explained or timings:
        _explained[record_key] = {"algorithm": chosen, "how": how,
                                  "seconds": {a: round(t, 6) for a, t in timings.items()}}
        log.debug("%s %s %s %s: %s (%s) %s", backend.name, conv_pass, dtype, describe(geom),
                  chosen, how, timings or "")
    return chosen


def choices() -> list[dict]:
    """Every ``auto`` choice made in this process, for ``fastconv info --explain``."""
    rows = []
    for (backend, conv_pass, geom, dtype), info in _explained.items():
        rows.append({"backend": backend, "pass": conv_pass, "dtype": dtype, "geometry": geom,
                     **info})
    return rows


def clear_memory() -> None:
    """Forget in-memory choices (the disk cache is kept); used by tests and benchmarks."""
    _memory.clear()
    _fast.clear()
    _explained.clear()
    _disk_loaded["done"] = False
