"""The ``cupy`` backend's kernel loader: fastconv's ``kernels/*.cu`` files, by name.

``get_kernel("pool.cu", "fc_max_pool_forward_f32", {"POOL_BLOCK": 64})`` returns a kernel called
as a ``cupy.RawKernel``: ``k(grid, block, args, shared_mem=0)``, with ``args`` a tuple of device
arrays and typed NumPy scalars (``np.int32``, ``np.uint64``, ``np.float32``, ``np.float64``;
a Python ``int`` or ``float`` is refused, since CuPy would pass it as a 64-bit value whatever the
kernel declares).

* On a GPU, each (source, defines, device) is one ``cupy.RawModule``, compiled by NVRTC from
  ``#define NAME value`` lines, a ``#line`` directive and the file, with ``kernels/`` on the
  include path; kernels are fetched with ``get_function``. Nothing is compiled, and CuPy is not
  imported, before the first ``get_kernel``.
* Under ``FASTCONV_CUPY_EMULATE=1`` (:data:`EMULATED`), the same file is compiled with g++ and
  runs on the CPU on NumPy memory (:mod:`.emulation`); ``FASTCONV_CUPY_SANITIZE=address`` or
  ``thread`` builds it with that sanitizer (the process must preload the sanitizer's runtime).

Kernel handles are cached per process: the first ``get_kernel`` of a (source, kernel name,
defines, device) resolves the file, compiles (or loads) its module and fetches the function;
every later one is one dictionary lookup, with no file system access and no new kernel object
(:data:`kernel_builds` counts the handles built). The key holds the source's identity (its name
in ``kernels/``, or the resolved path for :func:`get_kernel_at`), the defines, the device and
the build mode (GPU, emulation, sanitizer); the NVRTC options are fixed per process. As with
the modules, an edit of a ``.cu`` file reaches a process started after it.

A source that does not compile raises :class:`KernelCompileError` naming the file, the line and
the compiler's message. The sources are package data (``fastconv.kernels``, mapped to the
repository's top-level ``kernels/``), so a wheel finds them as the source tree does.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path

import numpy as np

from ... import config
from .errors import KernelCompileError, KernelLaunchError, KernelNotFoundError

__all__ = ["EMULATED", "SANITIZER", "KernelCompileError", "KernelLaunchError",
           "KernelNotFoundError", "get_kernel",
           "get_kernel_at", "get_module", "kernels_dir", "sources", "clear_memory"]

#: True when kernels run on the CPU (FASTCONV_CUPY_EMULATE=1, read once at import)
EMULATED: bool = config.env_cupy_emulate()
#: The sanitizer emulated kernels are built with (FASTCONV_CUPY_SANITIZE), or None
SANITIZER: str | None = config.env_cupy_sanitizer() if EMULATED else None

#: NVRTC options: C++17, and CuPy's own (it adds the arch, -ftz and the default execution space)
NVRTC_OPTIONS = ("-std=c++17",)

_modules: dict[tuple, object] = {}
#: kernel handles by (source identity, kernel name, defines, device, build mode)
_kernels: dict[tuple, object] = {}
#: how many kernel handles this process built (a cached launch builds none)
kernel_builds = 0
_lock = threading.Lock()
_kernels_dir: Path | None = None


def kernels_dir() -> Path:
    """The folder of the ``.cu`` sources: the package data ``fastconv.kernels`` of an installed
    wheel, else the repository's ``kernels/`` beside the ``fastconv`` package."""
    global _kernels_dir
    if _kernels_dir is None:
        candidates = []
        spec = importlib.util.find_spec("fastconv.kernels")
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) for p in spec.submodule_search_locations]
        candidates.append(Path(__file__).resolve().parents[3] / "kernels")
        for folder in candidates:
            if (folder / "emulation" / "cuda_emulation.h").is_file():
                _kernels_dir = folder.resolve()
                break
        else:
            raise FileNotFoundError(
                "fastconv's CUDA sources (kernels/*.cu) were not found in "
                + " or ".join(str(c) for c in candidates)
                + "; reinstall fastconv (they ship as the package data 'fastconv.kernels')")
    return _kernels_dir


def sources() -> list[str]:
    """The names of every kernel source (``kernels/*.cu``)."""
    return sorted(p.name for p in kernels_dir().glob("*.cu"))


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*\Z")


def _normalize_defines(defines) -> tuple[tuple[str, str], ...]:
    if not defines:
        return ()
    out = []
    for name, value in dict(defines).items():
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise ValueError(f"define name {name!r} is not a C identifier")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, np.integer)):
            text = str(int(value))
        elif isinstance(value, (float, np.floating)):
            text = repr(float(value))
        elif isinstance(value, str):
            text = value
        else:
            raise TypeError(f"define {name}: value must be an int, float or str, got "
                            f"{type(value).__name__}")
        if "\n" in text:
            raise ValueError(f"define {name}: value must be one line, got {text!r}")
        out.append((name, text))
    return tuple(sorted(out))


def get_module(source: str, defines: dict | None = None):
    """The compiled module of ``kernels/<source>`` with ``defines`` (one per source, defines and
    device; compiled on first use)."""
    if "/" in source or "\\" in source or not source.endswith(".cu"):
        raise ValueError(f"source must be the name of a .cu file in kernels/, got {source!r}")
    path = kernels_dir() / source
    if not path.is_file():
        raise FileNotFoundError(f"no kernel source {source!r} in {kernels_dir()}; sources: "
                                f"{', '.join(sources()) or 'none'}")
    return _module_at(path, _normalize_defines(defines))


def get_kernel(source: str, name: str, defines: dict | None = None):
    """The kernel ``name`` (an ``extern "C" __global__`` function) of ``kernels/<source>``,
    compiled with ``#define``\\ s for ``defines``; called as ``k(grid, block, args)``. Cached:
    a second call with the same source, name, defines and device returns the same handle."""
    key = _kernel_key(("kernels", source), name, defines)
    kernel = _lookup(key)
    if kernel is None:
        kernel = _remember(key, lambda: _function(get_module(source, defines), name, source))
    return kernel


def get_kernel_at(path, name: str, defines: dict | None = None):
    """As :func:`get_kernel` for a ``.cu`` file anywhere (tests, experiments); ``kernels/``
    stays on the include path."""
    path = Path(path).resolve()
    key = _kernel_key(("path", str(path)), name, defines)
    kernel = _lookup(key)
    if kernel is None:
        kernel = _remember(key, lambda: _function(_module_at(path, _normalize_defines(defines)),
                                                  name, path.name))
    return kernel


def _kernel_key(source_id: tuple, name: str, defines) -> tuple:
    """The cache key of a kernel handle: source identity, kernel name, defines (with their
    values' types: 1 and 1.0 are equal keys but different ``#define``\\ s), device, build
    mode. The NVRTC options are fixed per process."""
    items = (tuple(defines.items()), tuple(map(type, defines.values()))) if defines else ()
    return (source_id, name, items, _device_id(), EMULATED, SANITIZER)


def _lookup(key: tuple):
    """The cached handle of ``key``, or None (also when ``key`` cannot be hashed: a define
    value of a type the loader refuses, refused when the kernel is built)."""
    try:
        return _kernels.get(key)
    except TypeError:
        return None


def _device_id() -> int | None:
    """The current CUDA device (None under emulation, which has one)."""
    if EMULATED:
        return None
    import cupy

    return cupy.cuda.Device().id


def _remember(key: tuple, build):
    global kernel_builds
    kernel = build()
    with _lock:
        kernel_builds += 1
        try:
            kernel = _kernels.setdefault(key, kernel)
        except TypeError:  # an unhashable define value that the loader accepted
            pass
    return kernel


def clear_memory() -> None:
    """Forget the modules compiled and the kernel handles built in this process (disk caches
    stay)."""
    with _lock:
        _modules.clear()
        _kernels.clear()
    if EMULATED:
        from . import emulation

        emulation.clear_memory()


def _function(module, name: str, source: str):
    if EMULATED:
        return module.get_function(name)
    return CheckedKernel(_gpu_function(module, name, source), name)


def _module_at(path: Path, defines: tuple[tuple[str, str], ...]):
    if EMULATED:
        from . import emulation

        return emulation.load(path, kernels_dir(), defines, SANITIZER)
    import cupy

    key = (str(path), defines, cupy.cuda.Device().id)
    module = _modules.get(key)
    if module is None:
        with _lock:
            module = _modules.get(key)
            if module is None:
                module = _modules[key] = _compile_gpu(cupy, path, defines)
    return module


def _compile_gpu(cupy, path: Path, defines):
    header = "".join(f"#define {name} {value}\n" for name, value in defines)
    code = f'{header}#line 1 "{path.name}"\n{path.read_text()}'
    module = cupy.RawModule(code=code, options=(*NVRTC_OPTIONS, f"-I{kernels_dir()}"))
    compile_now = getattr(module, "compile", None)  # else the first get_function compiles
    if compile_now is not None:
        try:
            compile_now()
        except cupy.cuda.compiler.CompileException as exc:
            raise nvrtc_error(str(exc), path.name) from exc
    return module


def _gpu_function(module, name: str, source: str):
    import cupy

    try:
        return module.get_function(name)
    except cupy.cuda.compiler.CompileException as exc:
        raise nvrtc_error(str(exc), source) from exc
    except Exception as exc:  # CuPy raises the driver's "named symbol not found"
        if "NOT_FOUND" in str(exc) or "not found" in str(exc):
            raise KernelNotFoundError(f"{source} has no kernel {name!r} (kernels are found as "
                           f"'extern \"C\" __global__ void name(...)')") from exc
        raise


_NVRTC_ERROR = re.compile(r"^(.*?)\((\d+)\): (?:catastrophic )?error:?\s*(.*)$", re.M)


def nvrtc_error(log: str, source: str) -> KernelCompileError:
    """The :class:`KernelCompileError` of an NVRTC log (``file(line): error: message``)."""
    m = _NVRTC_ERROR.search(log)
    if m is None:
        lines = [line for line in log.splitlines() if line.strip()]
        return KernelCompileError(source, None, lines[-1] if lines else "NVRTC failed", log)
    return KernelCompileError(Path(m.group(1).strip()).name, int(m.group(2)), m.group(3), log)


# -- typed arguments on a GPU ------------------------------------------------------------------
_SCALARS = (np.int32, np.uint32, np.int64, np.uint64, np.float32, np.float64)


class CheckedKernel:
    """A ``cupy.RawKernel`` whose scalar arguments must be NumPy scalars of a fixed width, as
    under emulation (CuPy would pass a Python ``int`` as 64 bits, a ``float`` as a double)."""

    def __init__(self, kernel, name: str):
        self.kernel = kernel
        self.name = name

    def __call__(self, grid, block, args, shared_mem=0):
        for pos, arg in enumerate(args, start=1):
            if isinstance(arg, (bool, int, float)) and not isinstance(arg, np.generic):
                raise TypeError(
                    f"kernel {self.name}: argument {pos} of {len(args)} is a Python "
                    f"{type(arg).__name__} ({arg!r}), which CuPy passes as a 64-bit value "
                    f"whatever the kernel declares; pass np.int32 (int), np.uint64 (unsigned "
                    f"long long), np.float32 (float) or np.float64 (double)")
            if isinstance(arg, np.generic) and not isinstance(arg, _SCALARS):
                raise TypeError(f"kernel {self.name}: argument {pos} of {len(args)} is "
                                f"{type(arg).__name__}; pass np.int32, np.uint64, np.float32 or "
                                f"np.float64")
        self.kernel(grid, block, args, shared_mem=shared_mem)

    def __repr__(self) -> str:
        return f"<CUDA kernel {self.name}>"
