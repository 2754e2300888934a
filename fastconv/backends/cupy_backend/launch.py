"""What the cupy backend's launchers share: kernel lookup by dtype, typed scalars, launch sizes.

Kernels are ``extern "C"`` functions named ``fc_<name>_f32`` / ``fc_<name>_f64`` in
``kernels/*.cu``, fetched through :func:`fastconv.backends.cupy_backend.loader.get_kernel`.
Every size goes to a kernel as ``np.int32`` and every real scalar as the array's dtype (CuPy
would pass Python ints as 64-bit integers unchecked; the CPU emulation refuses them).

Launch sizes come from :func:`config`: on a GPU 256-thread blocks and 64x64 GEMM tiles; under
the CPU emulation (``FASTCONV_CUPY_EMULATE=1``: one OS thread per CUDA thread, one block at a
time) 16-32-thread blocks, few blocks per grid-stride launch and 8x8 tiles, so that edge tiles
and several blocks are exercised on the tests' small shapes. Tile sizes reach the kernels as
``defines`` (each file's ``#ifndef`` defaults are the GPU sizes).
"""

from __future__ import annotations

import dataclasses

import numpy as np

_SUFFIX = {"float32": "f32", "float64": "f64"}
_INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """Threads per block of 1-D kernels and the cap on their blocks; tiled GEMM and implicit
    GEMM tiles (block rows, block cols, depth step, rows and cols per thread)."""

    threads_1d: int
    max_blocks: int
    gemm_tile: tuple[int, int, int, int, int]
    #: least pixels per block of the split reductions (backward-weight, column sums)
    chunk: int
    #: most blocks a split reduction is split into
    max_splits: int

    @property
    def gemm_threads(self) -> int:
        bm, bn, _, tm, tn = self.gemm_tile
        return (bm // tm) * (bn // tn)

    def gemm_defines(self) -> dict[str, int]:
        bm, bn, bk, tm, tn = self.gemm_tile
        return {"TILE_M": bm, "TILE_N": bn, "TILE_K": bk, "THREAD_M": tm, "THREAD_N": tn}


GPU_CONFIG = LaunchConfig(threads_1d=256, max_blocks=65535, gemm_tile=(64, 64, 8, 4, 4),
                          chunk=256, max_splits=256)
EMULATED_CONFIG = LaunchConfig(threads_1d=32, max_blocks=4, gemm_tile=(8, 8, 4, 2, 2),
                               chunk=32, max_splits=3)


def emulated() -> bool:
    """True when the kernels run on the CPU (``FASTCONV_CUPY_EMULATE=1``)."""
    from . import loader

    return bool(loader.EMULATED)


def config() -> LaunchConfig:
    return EMULATED_CONFIG if emulated() else GPU_CONFIG


#: suffix by the dtype object callers pass (``np.dtype(...).name`` costs microseconds a launch)
_suffix_of: dict = {}


def suffix(dtype) -> str:
    try:
        return _suffix_of[dtype]
    except (KeyError, TypeError):  # TypeError: an unhashable dtype-like
        pass
    name = np.dtype(dtype).name
    try:
        found = _SUFFIX[name]
    except KeyError:
        raise TypeError(f"the cupy backend's kernels take float32 or float64 arrays, got "
                        f"{name}") from None
    try:
        _suffix_of[dtype] = found
    except TypeError:
        pass
    return found


def kernel(source: str, name: str, dtype, defines: dict | None = None):
    """The compiled kernel ``fc_<name>_<f32|f64>`` of ``source`` for ``dtype`` (the loader
    keeps one module per source, defines and device, and one handle per kernel: a launch after
    the first looks the handle up, builds nothing and reads no file)."""
    from . import loader

    return loader.get_kernel(source, f"fc_{name}_{suffix(dtype)}", defines or None)


def launch(k, grid, block, args) -> None:
    """Launch ``k`` unless the grid or block is empty (zero-size arrays)."""
    grid = tuple(int(v) for v in grid)
    block = tuple(int(v) for v in block)
    if min(grid) > 0 and min(block) > 0:
        k(grid, block, args)


def i32(*values) -> tuple:
    """Sizes as np.int32, refusing any that does not fit."""
    out = []
    for v in values:
        v = int(v)
        if not -_INT32_MAX - 1 <= v <= _INT32_MAX:
            raise ValueError(f"a size of {v} exceeds the kernels' 32-bit indices")
        out.append(np.int32(v))
    return tuple(out)


def real(dtype, *values) -> tuple:
    """Real scalars as the array dtype's scalar type."""
    t = np.dtype(dtype).type
    return tuple(t(v) for v in values)


def check_sizes(*arrays) -> None:
    """Refuse arrays the kernels' 32-bit indices cannot address."""
    for a in arrays:
        if a is not None and a.size > _INT32_MAX:
            raise ValueError(f"an array of {a.size} elements exceeds the cupy kernels' 32-bit "
                             f"indices (split the batch)")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def blocks_1d(count: int) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) of a grid-stride kernel over ``count`` items."""
    cfg = config()
    blocks = max(1, min(ceil_div(count, cfg.threads_1d), cfg.max_blocks))
    return (blocks,), (cfg.threads_1d,)


def split(count: int, multiple: int = 1) -> tuple[int, int]:
    """(chunk, splits) of a reduction over ``count`` items split across blocks: chunks of at
    least ``config().chunk`` items, a multiple of ``multiple``, at most ``max_splits`` of them."""
    cfg = config()
    chunk = max(cfg.chunk, ceil_div(count, cfg.max_splits))
    chunk = ceil_div(chunk, multiple) * multiple
    return chunk, max(1, ceil_div(count, chunk))


def contiguous(be, a, dtype=None):
    """``a`` as C-contiguous device memory of ``dtype`` (no copy when it already is)."""
    if dtype is not None and a.dtype != np.dtype(dtype):
        a = a.astype(dtype)
    return be.device(a)


def same_dtype(what: str, dtype, *arrays) -> None:
    for a in arrays:
        if a is not None and a.dtype != dtype:
            raise TypeError(f"{what}: arrays of {a.dtype} and {np.dtype(dtype)} mixed")
