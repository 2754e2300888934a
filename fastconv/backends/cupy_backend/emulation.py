"""CUDA C on the CPU: fastconv's ``.cu`` kernels compiled with g++ and run on NumPy memory.

Under ``FASTCONV_CUPY_EMULATE=1`` the ``cupy`` backend runs the very files it gives NVRTC on a
GPU. A source is compiled as C++20 with ``-include kernels/emulation/cuda_emulation.h`` (which
defines ``threadIdx``, ``__syncthreads``, ``__shared__``, atomics...), the loader's ``#define``\\ s
as ``-D`` options, and an exported launch entry point (plus a signature string) generated for
every ``extern "C" __global__`` kernel; the shared library is cached on disk under
``fastconv.config.cache_dir()``, keyed by the source, the headers, the defines, the options and
the compiler's version, and written atomically; the emulation header is precompiled once per
options and compiler (parsing the standard headers was most of a build). Kernels are called
through ctypes; the argument marshalling is stricter than CuPy's: a Python ``int``/``float`` is
refused (CuPy would pass it as a 64-bit value whatever the kernel declares), and every argument
is checked against the type the kernel declares (``np.int32`` for ``int``, ``float32`` arrays
for ``float*``...), so that the launchers are proven to pass what the GPU expects. Grid and
block sizes are checked as CUDA does; dynamic shared memory is refused (static only).

How CUDA threads run (see ``kernels/emulation/cuda_emulation.h``): blocks one at a time; within
a block, by default one fiber (``ucontext``) per CUDA thread on the calling OS thread, each
running to its next ``__syncthreads`` before the next starts; in the sanitizer builds
(``FASTCONV_CUPY_SANITIZE``) one OS thread per CUDA thread, with ``__syncthreads`` a
``std::barrier`` and atomics ``std::atomic_ref``, which ThreadSanitizer understands: a missing
``__syncthreads`` is reported as a data race on the shared-memory line, and AddressSanitizer
checks every thread's accesses. Fibers because OS threads woken at every barrier are slow (a
tiled GEMM has two barriers per depth step): a block reduction over 391 blocks of 256 threads
took 2.9 s with OS threads here, 0.65 s with ucontext fibers (a system call per switch) and
0.06-0.12 s with the header's x86-64 switch; and with fibers a missing barrier reads stale shared
memory every time rather than by chance. Why not HIP-CPU (header-only, fibers
too, about 10x faster than OS threads): it is unmaintained since 2024, has a 64-wide warp, needs a
macro for dynamic shared memory and a TBB dependency, and its fibers would hide races from TSan;
the header here is some 300 lines covering exactly what fastconv's kernels use, and both of its
schedulers run the same kernel code. Launchers still use tiny blocks under emulation
(``loader.EMULATED``), so that edge tiles and several blocks are exercised on small shapes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ... import config
from .errors import KernelCompileError, KernelLaunchError, KernelNotFoundError

#: g++ options of every emulation build (the sanitizer's are added to them)
CXXFLAGS = ("-std=c++20", "-x", "c++", "-fPIC", "-shared", "-O1", "-pthread",
            "-fvisibility=hidden", "-fno-gnu-unique", "-w")
#: (FC_EMU_THREADS: one OS thread per CUDA thread, so that the sanitizers see every thread's
#: accesses and the barriers between them; -O0: instrumented kernels compile twice as fast, and
#: the sanitizer runs use tiny shapes; -g1: line tables, so that reports name the kernel's lines)
SANITIZER_FLAGS = {
    "address": ("-DFC_EMU_THREADS", "-fsanitize=address", "-fno-omit-frame-pointer", "-g1",
                "-O0"),
    "thread": ("-DFC_EMU_THREADS", "-fsanitize=thread", "-g1", "-O0"),
}
#: bump when the generated entry points change, so that cached libraries are rebuilt
_GENERATOR_VERSION = "7"

#: how many shared libraries this process compiled (tests check the disk cache with it)
compilations = 0
#: names of the kernels launched in this process (the sanitizer tests check that all ran)
launched: set[str] = set()

_libraries: dict[tuple, EmulatedModule] = {}
_build_lock = threading.Lock()
# Emulated kernels share process-wide state (blockDim, the block's barrier, static __shared__
# storage), so launches run one at a time, as on one GPU stream.
_launch_lock = threading.Lock()


def compiler() -> str | None:
    """The C++ compiler used (``$CXX`` is not read: g++ on the PATH), or None when missing."""
    return shutil.which("g++")


_compiler_version: str | None = None


def compiler_version() -> str:
    global _compiler_version
    if _compiler_version is None:
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("CUDA emulation needs g++ (C++20), which is not on the PATH")
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True)
        _compiler_version = out.stdout.splitlines()[0] if out.stdout else cxx
    return _compiler_version


def header_path(kernels_dir: Path) -> Path:
    return kernels_dir / "emulation" / "cuda_emulation.h"


# -- kernel names ------------------------------------------------------------------------------
_GLOBAL = re.compile(
    r'__fc_emu_global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r'(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(')
_EXTERN_C = re.compile(r'extern\s+"C"\s*$')
_EXTERN_C_BLOCK = re.compile(r'extern\s+"C"\s*\{')


def kernel_names(preprocessed: str) -> list[str]:
    """The ``extern "C" __global__`` kernels of a preprocessed source (macros expanded, the
    header's ``__global__`` turned into the marker ``__fc_emu_global__``)."""
    blocks = []
    for m in _EXTERN_C_BLOCK.finditer(preprocessed):
        depth, i = 1, m.end()
        while depth and i < len(preprocessed):
            depth += {"{": 1, "}": -1}.get(preprocessed[i], 0)
            i += 1
        blocks.append((m.end(), i))
    names = []
    for m in _GLOBAL.finditer(preprocessed):
        before = preprocessed[max(0, m.start() - 64):m.start()]
        if _EXTERN_C.search(before) or any(a <= m.start() < b for a, b in blocks):
            if m.group(1) not in names:
                names.append(m.group(1))
    return names


def _entry_points(source: Path, names: list[str]) -> str:
    lines = [f'#include "{source}"', "", 'extern "C" {']
    for name in names:
        lines += [
            f'__attribute__((visibility("default"))) void fc_emu_launch__{name}('
            f"const unsigned int* g, const unsigned int* b, void** a) "
            f"{{ ::fc_emu::run_grid(&::fc_emu::thunk<&{name}>, a, g, b); }}",
            f'__attribute__((visibility("default"))) const char* fc_emu_signature__{name}() '
            f"{{ return ::fc_emu::signature(&{name}); }}",
        ]
    lines += [f'__attribute__((visibility("default"))) const char* fc_emu_kernels() '
              f'{{ return "{",".join(names)}"; }}', "}", ""]
    return "\n".join(lines)


# -- building ----------------------------------------------------------------------------------
def _define_options(defines: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"-D{name}={value}" for name, value in defines]


def _parse_gcc_log(log: str, source: Path) -> tuple[str, int | None, str]:
    """(file, line, message) of the first error in g++'s output."""
    for line in log.splitlines():
        m = re.match(r"^(.*?):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$", line)
        if m:
            return m.group(1), int(m.group(2)), m.group(3)
    for line in log.splitlines():
        m = re.match(r"^(.*?): (?:fatal )?error: (.*)$", line)
        if m:
            return m.group(1), None, m.group(2)
    return str(source), None, (log.strip().splitlines() or ["g++ failed"])[-1]


def _run_gcc(args: list[str], source: Path, kernels_dir: Path) -> str:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        log = proc.stderr + proc.stdout
        file, line, message = _parse_gcc_log(log, source)
        file = _short(file, kernels_dir)
        raise KernelCompileError(file, line, message, log, compiler="g++ (CUDA emulation)")
    return proc.stdout


def _short(file: str, kernels_dir: Path) -> str:
    try:
        return str(Path(file).resolve().relative_to(kernels_dir.resolve()))
    except ValueError:
        return file


def _cache_key(source: Path, kernels_dir: Path, defines, sanitizer: str | None) -> str:
    h = hashlib.sha256()
    h.update(_GENERATOR_VERSION.encode())
    h.update(compiler_version().encode())
    h.update(repr((CXXFLAGS, SANITIZER_FLAGS.get(sanitizer, ()), defines)).encode())
    h.update(source.read_bytes())
    # every header a kernel may include (common.cuh, the emulation header)
    for path in sorted(kernels_dir.rglob("*")):
        if path.suffix in (".cuh", ".h") and path.is_file():
            h.update(str(path.relative_to(kernels_dir)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:24]


def _precompiled_header(cxx: str, kernels_dir: Path, sanitizer: str | None) -> Path:
    """The emulation header to ``-include``: a copy beside its precompiled ``.gch`` (built once
    per header, options and compiler: parsing the standard headers is most of a build), or the
    header itself when precompiling fails."""
    header = header_path(kernels_dir)
    h = hashlib.sha256()
    h.update(repr((compiler_version(), CXXFLAGS, SANITIZER_FLAGS.get(sanitizer, ()))).encode())
    h.update(header.read_bytes())
    kind = f"pch-{sanitizer or 'plain'}-"
    folder = config.cache_dir() / "cupy-emulation" / f"{kind}{h.hexdigest()[:24]}"
    copy = folder / header.name
    if (folder / f"{header.name}.gch").exists():
        return copy
    folder.parent.mkdir(parents=True, exist_ok=True)
    _prune(folder.parent, kind, keep=folder)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".pch-") as tmp:
        staged = Path(tmp) / "pch"
        staged.mkdir()
        shutil.copy2(header, staged / header.name)
        flags = [f for f in CXXFLAGS if f not in ("-x", "c++", "-shared")]
        # debug information names the header where it will be, not the staging folder
        proc = subprocess.run([cxx, *flags, *SANITIZER_FLAGS.get(sanitizer, ()),
                               f"-fdebug-prefix-map={staged}={folder}", "-x",
                               "c++-header", str(staged / header.name), "-o",
                               str(staged / f"{header.name}.gch")], capture_output=True)
        if proc.returncode != 0:
            return header
        try:
            os.rename(staged, folder)  # atomic; another process may have won the race
        except OSError:
            if not (folder / f"{header.name}.gch").exists():
                return header
    return copy


def _prune(cache: Path, prefix: str, keep: Path, age_s: float = 3600.0) -> None:
    """Remove precompiled headers of older versions of the header or compiler (about 60 MB
    each), unused for ``age_s``: a fresh one may still be in use by another process."""
    now = time.time()
    for old in cache.glob(f"{prefix}*"):
        try:
            if old != keep and now - old.stat().st_mtime > age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def build(source: Path, kernels_dir: Path, defines=(), sanitizer: str | None = None) -> Path:
    """The shared library of ``source`` (built now, or found in the disk cache)."""
    global compilations
    if sanitizer is not None and sanitizer not in SANITIZER_FLAGS:
        raise ValueError(f"unknown sanitizer {sanitizer!r}; valid: {', '.join(SANITIZER_FLAGS)}")
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("CUDA emulation needs g++ (C++20), which is not on the PATH")
    key = _cache_key(source, kernels_dir, defines, sanitizer)
    folder = config.cache_dir() / "cupy-emulation"
    suffix = f"-{sanitizer}" if sanitizer else ""
    target = folder / f"{source.stem}-{key}{suffix}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    header = header_path(kernels_dir)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        # 1. the kernel names, from the preprocessed source (kernels made by macros included)
        pre = _run_gcc([cxx, "-std=c++20", "-x", "c++", "-E", "-P", "-DFC_EMU_PREPROCESS",
                        "-include", str(header), f"-I{kernels_dir}", *_define_options(defines),
                        str(source)], source, kernels_dir)
        names = kernel_names(pre)
        # 2. the library: the source plus one launch entry point per kernel
        wrapper = Path(tmp) / "entry_points.cpp"
        wrapper.write_text(_entry_points(source.resolve(), names))
        out = Path(tmp) / "kernels.so"
        pch = _precompiled_header(cxx, kernels_dir, sanitizer)
        for include in (pch, header):
            try:
                _run_gcc([cxx, *CXXFLAGS, *SANITIZER_FLAGS.get(sanitizer, ()), "-include",
                          str(include), f"-I{kernels_dir}", *_define_options(defines),
                          str(wrapper), "-o", str(out)], source, kernels_dir)
                break
            except KernelCompileError:
                if include == header or pch.exists():
                    raise  # a real error (the precompiled header is still there)
        compilations += 1
        os.replace(out, target)
    return target


class EmulatedModule:
    """A compiled source: its kernels by name (``get_function``), as a ``cupy.RawModule``."""

    def __init__(self, path: Path, source_name: str):
        self.path = path
        self.source_name = source_name
        self._lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
        self._kernels: dict[str, EmulatedKernel] = {}
        listing = self._lib.fc_emu_kernels
        listing.restype = ctypes.c_char_p
        #: every ``extern "C" __global__`` kernel of the source
        self.kernel_names: tuple[str, ...] = tuple(n for n in listing().decode().split(",") if n)

    def get_function(self, name: str) -> EmulatedKernel:
        kernel = self._kernels.get(name)
        if kernel is None:
            try:
                launch = getattr(self._lib, f"fc_emu_launch__{name}")
                signature = getattr(self._lib, f"fc_emu_signature__{name}")
            except AttributeError:
                raise KernelNotFoundError(
                    f"{self.source_name} has no kernel {name!r} (kernels are found as "
                    f"'extern \"C\" __global__ void name(...)')") from None
            launch.restype = None
            launch.argtypes = (ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                               ctypes.POINTER(ctypes.c_void_p))
            signature.restype = ctypes.c_char_p
            codes = tuple(c for c in signature().decode().split(",") if c)
            kernel = self._kernels[name] = EmulatedKernel(name, launch, codes)
        return kernel


def load(source: Path, kernels_dir: Path, defines=(), sanitizer: str | None = None):
    """The :class:`EmulatedModule` of ``source`` with ``defines`` (built once per process)."""
    key = (str(source.resolve()), defines, sanitizer, str(config.cache_dir()))
    module = _libraries.get(key)
    if module is None:
        with _build_lock:
            module = _libraries.get(key)
            if module is None:
                path = build(source, kernels_dir, defines, sanitizer)
                module = _libraries[key] = EmulatedModule(path, source.name)
    return module


def clear_memory() -> None:
    """Forget the libraries loaded in this process (the disk cache stays)."""
    _libraries.clear()


# -- launching ---------------------------------------------------------------------------------
_CTYPES = {"i": ctypes.c_int32, "I": ctypes.c_uint32, "q": ctypes.c_int64,
           "Q": ctypes.c_uint64, "f": ctypes.c_float, "d": ctypes.c_double}
_NUMPY = {"i": np.int32, "I": np.uint32, "q": np.int64, "Q": np.uint64, "f": np.float32,
          "d": np.float64}
_C_NAMES = {"i": "int", "I": "unsigned int", "q": "long long", "Q": "unsigned long long",
            "f": "float", "d": "double", "?": "void"}


def _code_of(dtype: np.dtype) -> str | None:
    for code, scalar in _NUMPY.items():
        if dtype == np.dtype(scalar):
            return code
    return None


def check_launch_size(name: str, grid, block) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """``grid`` and ``block`` as 3-tuples, checked as CUDA checks them."""
    dims = []
    for what, value in (("grid", grid), ("block", block)):
        if not isinstance(value, tuple) or not 1 <= len(value) <= 3 or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise TypeError(f"kernel {name}: {what} must be a tuple of 1 to 3 ints, got "
                            f"{value!r}")
        dims.append(tuple(int(v) for v in value) + (1,) * (3 - len(value)))
    g, b = dims
    problem = None
    if min(g) < 1 or min(b) < 1:
        problem = "every grid and block dimension must be at least 1"
    elif b[0] > 1024 or b[1] > 1024 or b[2] > 64:
        problem = "block dimensions are limited to (1024, 1024, 64)"
    elif b[0] * b[1] * b[2] > 1024:
        problem = f"a block has {b[0] * b[1] * b[2]} threads; at most 1024"
    elif g[0] > 2**31 - 1 or g[1] > 65535 or g[2] > 65535:
        problem = "grid dimensions are limited to (2**31 - 1, 65535, 65535)"
    if problem is not None:
        raise KernelLaunchError(f"cudaErrorInvalidConfiguration: invalid configuration argument "
                                f"launching {name} with grid {grid} and block {block}: {problem}")
    return g, b


class EmulatedKernel:
    """One kernel, called as a ``cupy.RawKernel``: ``k(grid, block, args, shared_mem=0)``."""

    def __init__(self, name: str, launch, codes: tuple[str, ...]):
        self.name = name
        self._launch = launch
        self.codes = codes

    def __repr__(self) -> str:
        return f"<emulated CUDA kernel {self.name}({', '.join(map(self._c_type, self.codes))})>"

    @staticmethod
    def _c_type(code: str) -> str:
        return _C_NAMES[code[1]] + "*" if code.startswith("P") else _C_NAMES[code]

    def _refuse(self, pos: int, message: str):
        raise TypeError(f"kernel {self.name}: argument {pos} of {len(self.codes)} "
                        f"({self._c_type(self.codes[pos - 1])}): {message}")

    def marshal(self, args) -> tuple[list, ctypes.Array]:
        """ctypes objects for ``args`` (kept alive by the caller) and the ``void*`` array."""
        if not isinstance(args, tuple):
            raise TypeError(f"kernel {self.name}: args must be a tuple, got "
                            f"{type(args).__name__}")
        if len(args) != len(self.codes):
            raise TypeError(f"kernel {self.name} takes {len(self.codes)} arguments "
                            f"({', '.join(map(self._c_type, self.codes))}), got {len(args)}")
        holders = []
        for pos, (arg, code) in enumerate(zip(args, self.codes), start=1):
            if code.startswith("P"):
                if not isinstance(arg, np.ndarray):
                    self._refuse(pos, f"expected an array, got {type(arg).__name__}")
                if not arg.flags.c_contiguous:
                    self._refuse(pos, "the array is not C-contiguous")
                if code[1] != "?" and _code_of(arg.dtype) != code[1]:
                    self._refuse(pos, f"expected a {np.dtype(_NUMPY[code[1]]).name} array, got "
                                      f"{arg.dtype.name}")
                holders.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                expected = _NUMPY.get(code)
                if isinstance(arg, (bool, int, float)) and not isinstance(arg, np.generic):
                    hint = f"np.{np.dtype(expected).name}" if expected else "a NumPy scalar"
                    self._refuse(pos, f"a Python {type(arg).__name__} ({arg!r}) is passed by "
                                      f"CuPy as a 64-bit value whatever the kernel declares; "
                                      f"pass {hint}")
                if expected is None:
                    self._refuse(pos, "parameters of this type cannot be passed (use int, "
                                      "unsigned long long, float, double or a pointer)")
                if type(arg) is not expected:
                    self._refuse(pos, f"expected np.{np.dtype(expected).name}, got "
                                      f"{type(arg).__name__}")
                holders.append(_CTYPES[code](arg))
        argv = (ctypes.c_void_p * max(1, len(holders)))(
            *[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders])
        return holders, argv

    def __call__(self, grid, block, args, shared_mem=0):
        g, b = check_launch_size(self.name, grid, block)
        if shared_mem:
            raise ValueError(f"kernel {self.name}: dynamic shared memory ({shared_mem} bytes) "
                             f"is not supported; fastconv's kernels use static __shared__ "
                             f"arrays only")
        holders, argv = self.marshal(args)
        grid_c = (ctypes.c_uint * 3)(*g)
        block_c = (ctypes.c_uint * 3)(*b)
        with _launch_lock:
            self._launch(grid_c, block_c, argv)
            launched.add(self.name)
        del holders
