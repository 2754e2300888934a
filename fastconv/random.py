"""Seeded random state shared by initialisers, shuffling, dropout and the backends.

``fastconv.utils.set_random_seed(s)`` reseeds everything derived from here, so two runs with the
same seed draw the same weights, batches and dropout masks.
"""

from __future__ import annotations

import random as _pyrandom

import numpy as np

_state = {"seed": None, "generation": 0, "host": None, "host_generation": -1}


def seed(value: int) -> None:
    """Reseed Python's ``random``, NumPy's global state and every fastconv generator."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"seed must be a non-negative int, got {value!r}")
    _pyrandom.seed(value)
    np.random.seed(value % 2**32)
    _state["seed"] = value
    _state["generation"] += 1


def generation() -> int:
    """Increases at every reseed; generators created for an older generation are stale."""
    return _state["generation"]


def derive_seed(stream: str) -> int | None:
    """A seed for the named stream (None when no seed was set: fresh entropy)."""
    if _state["seed"] is None:
        return None
    return int(np.random.SeedSequence([_state["seed"], *stream.encode()]).generate_state(1)[0])


def host_rng() -> np.random.Generator:
    """The host (NumPy) generator for initialisers, shuffling and CPU backends."""
    if _state["host_generation"] != _state["generation"]:
        _state["host"] = np.random.default_rng(derive_seed("host"))
        _state["host_generation"] = _state["generation"]
    return _state["host"]
