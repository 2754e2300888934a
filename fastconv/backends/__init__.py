"""Backend registry: one Backend object per name, the current one chosen in one place.

Adding a backend = one new package under ``fastconv/backends`` + one line in ``_REGISTRY``.
Backends are imported lazily, so a machine without Numba or CUDA never imports them unless asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util

from .. import config
from .base import FUSED_ACTIVATIONS, PRIMITIVES, Backend

#: name -> (module implementing it, packages it needs). Order = preference for the default.
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "numba-cpu": ("fastconv.backends.numba_cpu", ("numba",)),
    "numpy": ("fastconv.backends.numpy_backend", ()),
}

_instances: dict[str, Backend] = {}
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastconv_backend", default=None)


class BackendUnavailableError(RuntimeError):
    """A known backend that cannot run here (package missing, no device)."""


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, available here or not."""
    return tuple(_REGISTRY)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"unknown backend {name!r}; valid backends: {', '.join(_REGISTRY)}"
        )
    return name


def _missing_package(name: str) -> str | None:
    for package in _REGISTRY[name][1]:
        if importlib.util.find_spec(package) is None:
            return f"the package '{package}' is not installed (pip install {package})"
    return None


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None when it can."""
    module_name, _ = _REGISTRY[_check_name(name)]
    missing = _missing_package(name)
    if missing is not None:
        return missing
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a broken or incompatible installation
        return f"importing {module_name} failed: {exc}"
    if not callable(getattr(module, "create_backend", None)):
        return f"{module_name} defines no create_backend()"
    probe = getattr(module, "unavailable_reason", None)
    return probe() if probe is not None else None


def available_backends() -> dict[str, str | None]:
    """Every registered backend -> None when usable here, else the reason it is not."""
    return {name: unavailable_reason(name) for name in _REGISTRY}


def get_backend(name: str | None = None) -> Backend:
    """The backend object for ``name`` (default: the current backend)."""
    name = current_backend_name() if name is None else _check_name(name)
    backend = _instances.get(name)
    if backend is None:
        reason = unavailable_reason(name)
        if reason is not None:
            raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
        module_name, _ = _REGISTRY[name]
        backend = _instances[name] = importlib.import_module(module_name).create_backend()
    return backend


def _initial_backend() -> str:
    requested = config.env_backend()
    _check_name(requested)
    if requested == config.DEFAULT_BACKEND and _missing_package(requested) is not None:
        # The default backend needs Numba; without it fastconv still runs on NumPy.
        return "numpy"
    return requested


_default = {"name": _initial_backend()}


def current_backend_name() -> str:
    return _override.get() or _default["name"]


def set_backend(name: str) -> None:
    """Make ``name`` the current backend (checks that it can run here)."""
    get_backend(_check_name(name))
    _default["name"] = name


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend('numpy'): ...`` runs the block on that backend."""
    backend = get_backend(_check_name(name))
    token = _override.set(name)
    try:
        yield backend
    finally:
        _override.reset(token)


__all__ = [
    "PRIMITIVES", "FUSED_ACTIVATIONS", "Backend", "BackendUnavailableError", "backend_names",
    "available_backends", "unavailable_reason", "get_backend", "set_backend", "use_backend",
    "current_backend_name",
]
