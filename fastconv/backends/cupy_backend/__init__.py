"""The ``cupy`` backend: fastconv's own CUDA C kernels (``kernels/*.cu``), float32 and float64.

The kernels are real ``.cu`` files with ``extern "C"`` entry points, compiled by NVRTC through
``cupy.RawModule`` once per (source, defines, device) (:mod:`.loader`); the launchers
(``conv``, ``pool``, ``elementwise``, ``normalization``, ``gemm``) pass them CuPy arrays and
typed scalars (the class is in :mod:`.backend`, imported by :func:`create_backend`, so that the
loader imports alone). Glue (softmax, losses, reshapes) runs on CuPy arrays, as in the
``numba-cuda`` backend (see ``fastconv.backends.device``).

Without a GPU, ``FASTCONV_CUPY_EMULATE=1`` compiles the same files with g++ under an emulation
header and runs them on the CPU on emulated device memory (:mod:`.emulation`), so CI exercises
the kernels and their launchers. Nothing touches CUDA, and CuPy is not imported, at import.
"""

from __future__ import annotations

import ctypes
import importlib.util

from .loader import EMULATED

_EMULATE_HINT = "to run its kernels on the CPU instead, set FASTCONV_CUPY_EMULATE=1"


def _driver_version() -> int | None:
    """The CUDA driver's version (12080 for 12.8) from libcuda, or None without a driver; asks
    the driver nothing else (no context is created)."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    try:
        status = libcuda.cuDriverGetVersion(ctypes.byref(version))
    except AttributeError:
        return None
    return version.value if status == 0 else None


def _cupy_wheel(driver: int | None) -> str:
    if driver is not None and driver < 12000:
        return (f"a newer NVIDIA driver first: this one supports CUDA "
                f"{driver // 1000}.{driver % 1000 // 10}, and fastconv's CuPy wheels need CUDA 12 "
                f"or 13; then pip install 'fastconv[cuda12]' (cupy-cuda12x)")
    if driver is not None and driver >= 13000:
        return "the driver supports CUDA 13: pip install 'fastconv[cuda13]' (cupy-cuda13x)"
    if driver is not None:
        return (f"the driver supports CUDA {driver // 1000}.{driver % 1000 // 10}: "
                f"pip install 'fastconv[cuda12]' (cupy-cuda12x)")
    return ("the CuPy wheel matching your CUDA driver: pip install 'fastconv[cuda12]' "
            "(cupy-cuda12x) or 'fastconv[cuda13]' (cupy-cuda13x)")


def unavailable_reason() -> str | None:
    """Why the cupy backend cannot run here (g++, CuPy, driver or device missing), or None."""
    from . import loader

    try:
        loader.kernels_dir()
    except FileNotFoundError as exc:
        return str(exc)
    if EMULATED:
        from . import emulation

        if emulation.compiler() is None:
            return ("FASTCONV_CUPY_EMULATE=1 compiles the CUDA C kernels with g++ (C++20: g++ 10 "
                    "or newer), which is not on the PATH")
        return _launchers_missing()
    if importlib.util.find_spec("cupy") is None:
        driver = _driver_version()
        if driver is None:
            return (f"CuPy is not installed and there is no CUDA driver (libcuda.so.1 not "
                    f"found) ({_EMULATE_HINT})")
        return f"CuPy is not installed; install {_cupy_wheel(driver)} ({_EMULATE_HINT})"
    try:
        import cupy
    except Exception as exc:  # a CuPy wheel built for another CUDA, missing libraries
        return (f"importing CuPy failed: {' '.join(str(exc).split())} (install "
                f"{_cupy_wheel(_driver_version())})")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old, no device
        driver = _driver_version()
        missing = "no CUDA driver (libcuda.so.1 not found)" if driver is None else \
            f"CUDA runtime error with driver {driver // 1000}.{driver % 1000 // 10}"
        return f"no usable CUDA GPU: {missing}: {' '.join(str(exc).split())} ({_EMULATE_HINT})"
    if count == 0:
        return f"no usable CUDA GPU: the driver found no CUDA device ({_EMULATE_HINT})"
    return _launchers_missing()


def _launchers_missing() -> str | None:
    try:
        from . import backend  # noqa: F401  (the class and its launchers)
    except ImportError as exc:
        return f"importing the cupy backend's launchers failed: {exc}"
    return None


def create_backend():
    from .backend import CupyBackend

    return CupyBackend()
