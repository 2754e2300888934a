"""How numba-cuda kernels are declared, compiled and launched.

* Every kernel is declared with :func:`kernel` and an explicit signature per dtype (arrays
  C-contiguous, sizes int32, geometries ``UniTuple(int32, n)``). On a GPU it compiles lazily, on
  its first launch with a dtype, from exactly that signature: nothing touches CUDA at import,
  and the signature compiled is the one the PTX resource check
  (``fastconv.backends.gpu_resources``) compiles.
* Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same Python function runs on the
  CPU. The simulator costs about a millisecond per simulated thread, so launch sizes come from
  :data:`CONFIG`, which is tiny there; kernels are written for any block size (grid-stride
  loops, tiles as parameters of the kernel factories).
* Launches go to CuPy's current stream on a GPU, so Numba kernels and CuPy glue code order
  correctly on one stream.
* Numba, as a consumer of the CUDA Array Interface, synchronises the host with the ``stream``
  an imported array names before launching (``NUMBA_CUDA_ARRAY_INTERFACE_SYNC``, default 1):
  one host synchronisation per CuPy array argument of every launch. CuPy names its *current*
  stream there, and fastconv launches on that very stream (:func:`current_stream`, read at
  the same moment in the same thread), so stream order already puts the kernel after all
  earlier work on its arrays; the CUDA Array Interface lets a consumer that enqueues its work
  on the exported stream skip that synchronisation. :func:`configure_array_interface_sync`
  therefore sets Numba's ``CUDA_ARRAY_INTERFACE_SYNC`` to 0 before the first GPU launch
  (backend creation, or a kernel's first compile), unless ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC``
  is set in the environment, which is left to decide. It sets the config attribute, not the
  environment variable: changing a ``NUMBA_*`` variable makes Numba's next compile re-read
  every setting from the environment, which would undo settings made in the config module
  (fastconv's ``numba.config.CACHE_DIR`` among them). The setting is process-wide: a program
  that also launches its own Numba kernels on CuPy arrays on a stream other than CuPy's current
  one should set ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC=1`` (fastconv then still runs correctly,
  with a host synchronisation per array). numba-cuda 0.30 and newer read objects that offer
  DLPack (CuPy arrays do) through DLPack first, handing the launch stream to the producer
  instead of synchronising; the setting covers the releases and objects that go through the
  CUDA Array Interface.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import threading
from collections.abc import Callable

import numba
import numpy as np
from numba import cuda, types

from ...geometry import CONV_FIELDS, POOL_FIELDS

#: True when kernels run in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 at Numba's import).
SIMULATED = bool(numba.config.ENABLE_CUDASIM)


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """Launch sizes: threads per block of 1D kernels, the cap on blocks of grid-stride kernels,
    and the tile shapes of the tiled kernels (factories take them as arguments)."""

    threads_1d: int
    max_blocks: int
    #: tiled GEMM / implicit GEMM: block tile (rows, cols), depth step, per-thread (rows, cols)
    gemm_tile: tuple[int, int, int, int, int]
    #: 2D blocks of per-pixel kernels (pooling, direct convolution)
    threads_2d: tuple[int, int]


#: Sizes on a GPU: 256-thread blocks, 64x64 GEMM tiles with 4x4 outputs per thread.
GPU_CONFIG = LaunchConfig(threads_1d=256, max_blocks=65535, gemm_tile=(64, 64, 8, 4, 4),
                          threads_2d=(32, 8))
#: Sizes under the simulator: a few threads, tiles smaller than most test shapes so that edge
#: tiles and several blocks are exercised. The simulator pays two thread barriers per depth
#: step and a Python thread per CUDA thread: 16-deep steps of 4x4 outputs per thread (4 threads
#: a block) run the tiled kernels 2-4x faster than 4-deep steps of 2x2 (16 threads). Tests
#: still reach partial last steps and several steps (depths 9, 21, 27, 36...).
SIM_CONFIG = LaunchConfig(threads_1d=8, max_blocks=4, gemm_tile=(8, 8, 16, 4, 4),
                          threads_2d=(4, 2))
CONFIG = SIM_CONFIG if SIMULATED else GPU_CONFIG

# -- types of signatures ---------------------------------------------------------------------
I32 = types.int32
I64 = types.int64
U64 = types.uint64
CONV_GEOM = types.UniTuple(types.int32, len(CONV_FIELDS))
POOL_GEOM = types.UniTuple(types.int32, len(POOL_FIELDS))
_SCALARS = {"float32": types.float32, "float64": types.float64}


def real(dtype) -> types.Type:
    """The Numba scalar type of a floating dtype."""
    return _SCALARS[np.dtype(dtype).name]


def array(dtype, ndim: int) -> types.Array:
    """A C-contiguous array of ``dtype`` (a NumPy dtype, or 'int32')."""
    name = np.dtype(dtype).name
    scalar = _SCALARS.get(name) or getattr(types, name)
    return types.Array(scalar, ndim, "C")


def geometry(values) -> tuple:
    """A geometry tuple as int32 scalars (typed ``UniTuple(int32, n)``, as the signatures)."""
    return tuple(np.int32(v) for v in values)


# -- declared kernels ------------------------------------------------------------------------
class Kernel:
    """A ``@cuda.jit`` kernel compiled per dtype from its declared signature.

    ``signature(dtype)`` returns the argument types; ``kernel[grid, block](dtype, *args)``
    launches it (``dtype`` picks the compiled version).
    """

    def __init__(self, pyfunc: Callable, signature: Callable, name: str, options: dict):
        self.pyfunc = pyfunc
        self.signature = signature
        self.name = name
        self.options = options
        self._compiled: dict[str, object] = {}

    def argtypes(self, dtype) -> tuple:
        return tuple(self.signature(np.dtype(dtype)))

    def compiled(self, dtype):
        key = np.dtype(dtype).name
        fn = self._compiled.get(key)
        if fn is None:
            if SIMULATED:
                fn = cuda.jit(self.pyfunc)
            else:
                fn = cuda.jit(types.void(*self.argtypes(key)), **self.options)(self.pyfunc)
                # after the compile, which re-reads Numba's settings if NUMBA_* changed
                configure_array_interface_sync()
            self._compiled[key] = fn
        return fn

    def __getitem__(self, launch):
        grid, block = launch

        def run(dtype, *args):
            if _nonempty(grid) and _nonempty(block):
                if SIMULATED:  # the simulator runs one launch at a time, its grid on the kernel
                    with _SIMULATOR_LOCK:
                        self.compiled(dtype)[grid, block, current_stream()](*args)
                else:
                    self.compiled(dtype)[grid, block, current_stream()](*args)

        return run

    def __repr__(self) -> str:
        return f"<numba-cuda kernel {self.name}>"


#: Numba's simulator keeps the launch's grid on the kernel object and one kernel context per
#: process: launches from several host threads take turns
_SIMULATOR_LOCK = threading.Lock()


def _nonempty(dims) -> bool:
    return all(d > 0 for d in dims) if isinstance(dims, tuple) else dims > 0


#: every kernel declared, by name (the PTX resource check compiles them all)
KERNELS: dict[str, Kernel] = {}


def kernel(signature: Callable, name: str | None = None, **options):
    """Declare a kernel: ``@kernel(lambda dt: (array(dt, 2), I32))``; ``name`` distinguishes
    the variants a factory makes (tile sizes)."""

    def wrap(pyfunc: Callable) -> Kernel:
        qualified = name or pyfunc.__name__
        k = Kernel(pyfunc, signature, qualified, options)
        KERNELS[qualified] = k
        return k

    return wrap


# -- launch sizes -------------------------------------------------------------------------
def blocks_for(n: int, threads: int | None = None) -> tuple[int, int]:
    """(blocks, threads) of a grid-stride kernel over ``n`` items."""
    threads = threads or CONFIG.threads_1d
    return max(1, min(-(-n // threads), CONFIG.max_blocks)), threads


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- streams ------------------------------------------------------------------------------
_streams: dict[int, object] = {}


def current_stream():
    """CuPy's current stream as a Numba stream (0, the default stream, in the simulator)."""
    if SIMULATED:
        return 0
    import cupy

    ptr = cupy.cuda.get_current_stream().ptr
    stream = _streams.get(ptr)
    if stream is None:  # ptr 0: CuPy's default stream, the legacy default stream (whatever
        # NUMBA_CUDA_PER_THREAD_DEFAULT_STREAM makes Numba's own default stream)
        stream = _streams[ptr] = (cuda.external_stream(ptr) if ptr
                                  else cuda.legacy_default_stream())
    return stream


# -- CUDA Array Interface synchronisation ---------------------------------------------------
#: the environment variable of Numba's synchronisation on imported arrays' streams
CAI_SYNC_VARIABLE = "NUMBA_CUDA_ARRAY_INTERFACE_SYNC"


def _numba_config_modules() -> list:
    """Numba's config module(s) holding ``CUDA_ARRAY_INTERFACE_SYNC``: ``numba.core.config``
    and, where numba-cuda keeps its own, ``numba.cuda.core.config`` (the same module when both
    are installed together)."""
    modules = []
    for name in ("numba.core.config", "numba.cuda.core.config"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "CUDA_ARRAY_INTERFACE_SYNC") and all(m is not module
                                                                 for m in modules):
            modules.append(module)
    return modules


def configure_array_interface_sync(environ=None) -> bool:
    """Turn off Numba's host synchronisation on the streams of arrays imported through the
    CUDA Array Interface (see the module's docstring), unless ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC``
    is set in ``environ`` (default ``os.environ``). Returns True when the setting is now off
    by fastconv's doing. Idempotent, and applied again after a compile where Numba re-read its
    settings from a changed environment."""
    environ = os.environ if environ is None else environ
    if environ.get(CAI_SYNC_VARIABLE, "").strip():
        return False  # the user's explicit choice
    for module in _numba_config_modules():
        if module.CUDA_ARRAY_INTERFACE_SYNC:
            module.CUDA_ARRAY_INTERFACE_SYNC = 0
    return True


def array_interface_sync() -> bool:
    """Whether Numba synchronises on imported arrays' streams now."""
    return any(bool(m.CUDA_ARRAY_INTERFACE_SYNC) for m in _numba_config_modules())
