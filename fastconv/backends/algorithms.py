"""The convolution algorithm table and the choice of algorithm per convolution.

``FASTCONV_CONV_ALGO`` (read in ``fastconv.config``) sets the starting choice; ``set_conv_algo``
and ``use_conv_algo`` change it. Forcing an algorithm on a convolution it cannot do is an error
that names what the algorithm supports.

``auto`` picks per (backend, pass, geometry, dtype, threads): the backend's heuristic, replaced
by a measured choice with autotuning on (the default, ``FASTCONV_AUTOTUNE=1``; see
``fastconv.backends.autotune`` for how measurements are protected and cached). Every choice is
logged on the ``fastconv.algorithms`` logger (DEBUG) and kept for :func:`choices` (``fastconv info
--explain`` prints them).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from dataclasses import dataclass

from .. import config
from ..geometry import ConvGeometry
from . import autotune
from .setting import ContextSetting


@dataclass(frozen=True)
class AlgorithmSpec:
    """One convolution algorithm: its name, the geometries it supports (and those in words,
    for error messages), the ConvAlgorithm class a backend's ``conv`` module defines for it,
    and, for Winograd, the transform (a key of ``fastconv.winograd.TRANSFORMS``) that class is
    made with (``backends.base.conv_algorithm_table``)."""

    name: str
    supports: Callable[[ConvGeometry], bool]
    scope: str
    kernel: str
    transform: str | None = None


#: Every convolution algorithm. A new one is an entry here and its ``kernel`` class in each
#: backend's ``conv`` module; a backend whose module lacks the class does not offer it.
ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec for spec in (
        AlgorithmSpec("direct", lambda g: True,
                      "any kernel size, stride, padding and dilation", "DirectConv"),
        AlgorithmSpec("im2col", lambda g: True,
                      "any kernel size, stride, padding and dilation", "Im2colConv"),
        AlgorithmSpec("winograd", lambda g: g.is_3x3_unit,
                      "F(2x2,3x3): 3x3 kernels with stride 1 and dilation 1, any padding",
                      "WinogradConv", "winograd"),
        AlgorithmSpec("winograd4", lambda g: g.is_3x3_unit,
                      "F(4x4,3x3): 3x3 kernels with stride 1 and dilation 1, any padding",
                      "WinogradConv", "winograd4"),
    )
}

CHOICES = ("auto", *ALGORITHMS)


def _check_algo(name) -> str:
    if not isinstance(name, str) or name not in CHOICES:
        raise ValueError(
            f"unknown convolution algorithm {name!r}; valid algorithms: {', '.join(CHOICES)}")
    return name


_setting = ContextSetting("fastconv_conv_algo", _check_algo, config.env_conv_algo())


def current_conv_algo() -> str:
    return _setting.current()


def set_conv_algo(name: str) -> None:
    """Make ``name`` (``auto``, ``direct``, ``im2col``, ``winograd``, ``winograd4``) current."""
    _setting.set(name)


def use_conv_algo(name: str):
    """``with use_conv_algo('winograd4'): ...`` runs the block with that algorithm."""
    return _setting.use(name)


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

#: Winograd is not timed with fewer input or output channels than this: its tile transforms
#: then dominate a GEMM stage (channels in x channels out per tile point) of almost nothing, and
#: compiling it would only slow the first run.
WINOGRAD_MIN_CHANNELS = 4


def tuning_candidates(backend, geom: ConvGeometry, conv_pass: str) -> tuple[str, ...]:
    """The algorithms autotuning times for one pass: those that can run it and may win, the
    heuristic's choice always among them."""
    candidates = supported_algorithms(backend, geom)
    direct_max = backend.direct_tuning_max_products
    plausible = tuple(
        a for a in candidates
        if not (a.startswith("winograd")
                # Winograd's backward-weight is im2col's: timing it twice would only add noise
                and (conv_pass == "backward_weight"
                     or min(geom.c, geom.o) < WINOGRAD_MIN_CHANNELS))
        and not (a == "direct" and direct_max is not None
                 and geom.c * geom.kh * geom.kw > direct_max))
    guess = heuristic(backend, geom, conv_pass)
    return plausible if guess in plausible else (guess, *plausible)


def heuristic(backend, geom: ConvGeometry, conv_pass: str) -> str:
    """The backend's choice without measuring."""
    return backend.heuristic_conv_algorithm(geom, conv_pass, supported_algorithms(backend, geom))


def _choose(backend, geom: ConvGeometry, dtype: str, conv_pass: str) -> str:
    chosen = autotune._fast.get((backend.name, conv_pass, geom, dtype, backend.num_threads()))
    if chosen is not None:
        return chosen
    decide = autotune.peek if _looking.get() else autotune.choose
    return decide(backend, geom, dtype, conv_pass, tuning_candidates(backend, geom, conv_pass),
                  heuristic(backend, geom, conv_pass))


_looking: contextvars.ContextVar[bool] = contextvars.ContextVar("fastconv_algo_looking",
                                                                default=False)


@contextlib.contextmanager
def only_looking():
    """Within the block, ``auto`` answers what it would run without counting a use or tuning
    (``autotune.peek``): for plans made to be measured, never run (``inference.chunk_size``)."""
    token = _looking.set(True)
    try:
        yield
    finally:
        _looking.reset(token)


def choices() -> list[dict]:
    """Every ``auto`` choice made in this process, for ``fastconv info --explain``."""
    return autotune.choices()


def clear_memory() -> None:
    """Forget in-memory choices (the disk cache is kept); used by tests and benchmarks."""
    autotune.clear_memory()
