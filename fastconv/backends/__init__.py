"""Backend registry: one Backend object per name, the current one chosen in one place.

Adding a backend = one new package under ``fastconv/backends`` + one line in ``_REGISTRY``.
Backends are imported lazily, so a machine without Numba or CUDA never imports them unless asked.

A GPU backend (listed in ``DEVICE_BACKENDS``) may be named with its device, ``'cupy:1'``; the
index is kept (``current_device()``) for the backend to run on. CPU backends have no devices:
``'numba-cpu:0'`` is an error saying so.
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
    "numba-cuda": ("fastconv.backends.numba_cuda", ("numba",)),
    # CuPy on a GPU; under FASTCONV_CUPY_EMULATE=1 only g++ (its unavailable_reason says which)
    "cupy": ("fastconv.backends.cupy_backend", ()),
}

#: Backends that run on one of several devices, chosen with ``'name:index'``.
DEVICE_BACKENDS: frozenset[str] = frozenset({"numba-cuda", "cupy"})

_instances: dict[str, Backend] = {}
#: (name, device index or None) of a ``use_backend`` block
_override: contextvars.ContextVar[tuple[str, int | None] | None] = contextvars.ContextVar(
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


def _parse(spec) -> tuple[str, int | None]:
    """(name, device) of ``'name'`` or ``'name:index'``, both checked."""
    name, device = config.parse_backend_spec(spec)
    _check_name(name)
    if device is not None and name not in DEVICE_BACKENDS:
        raise ValueError(
            f"backend {name!r} runs on the CPU and has no devices to choose from; name it "
            f"without ':{device}' (devices are for GPU backends, e.g. 'cupy:1')")
    return name, device


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
    """The backend object for ``name`` (default: the current backend); ``'name:index'`` is
    accepted for GPU backends and checked, the object being one per name."""
    name = current_backend_name() if name is None else _parse(name)[0]
    backend = _instances.get(name)
    if backend is None:
        reason = unavailable_reason(name)
        if reason is not None:
            raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
        module_name, _ = _REGISTRY[name]
        backend = _instances[name] = importlib.import_module(module_name).create_backend()
    return backend


def _initial_backend() -> tuple[str, int | None]:
    requested, device = _parse(config.env_backend())
    if requested == config.DEFAULT_BACKEND and _missing_package(requested) is not None:
        # The default backend needs Numba; without it fastconv still runs on NumPy.
        return "numpy", None
    return requested, device


_default = dict(zip(("name", "device"), _initial_backend()))


def current_backend_name() -> str:
    override = _override.get()
    return override[0] if override else _default["name"]


def current_device() -> int | None:
    """The device index the current backend was named with (``'cupy:1'`` -> 1), or None when
    none was named (a GPU backend then uses its first device; CPU backends have none)."""
    override = _override.get()
    return override[1] if override else _default.get("device")


def set_backend(name: str) -> None:
    """Make ``name`` (``'name'``, or ``'name:index'`` for GPU backends) the current backend;
    checks that it can run here."""
    name, device = _parse(name)
    backend = get_backend(name)
    if device is not None:
        backend.select_device(device)
    _default["name"], _default["device"] = name, device


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend('numpy'): ...`` runs the block on that backend (``'name:index'``
    for a GPU backend's device)."""
    name, device = _parse(name)
    backend = get_backend(name)
    previous = backend.select_device(device) if device is not None else None
    token = _override.set((name, device))
    try:
        yield backend
    finally:
        _override.reset(token)
        if previous is not None:
            backend.select_device(previous)


__all__ = [
    "PRIMITIVES", "FUSED_ACTIVATIONS", "Backend", "BackendUnavailableError", "backend_names",
    "available_backends", "unavailable_reason", "get_backend", "set_backend", "use_backend",
    "current_backend_name", "current_device", "DEVICE_BACKENDS",
]
