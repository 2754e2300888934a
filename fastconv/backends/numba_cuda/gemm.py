"""The tiled GEMM kernel (dense layers; batched for Winograd's GEMM stage).

``C[z] = op(A[z]) @ op(B[z])`` with ``op`` a transpose where asked. One block computes a
``BM x BN`` tile of ``C``: it steps through the shared dimension ``BK`` at a time, its threads
copying a ``BM x BK`` tile of ``op(A)`` and a ``BK x BN`` tile of ``op(B)`` into shared memory
(zeros beyond the edges), then each thread accumulates ``TM x TN`` outputs in registers: rows
``ty + i * (BM / TM)`` and columns ``tx + j * (BN / TN)``, strided so that a warp reads
consecutive shared-memory words and writes consecutive columns of ``C``.

The tile sizes ``(BM, BN, BK, TM, TN)`` are arguments of the kernel factory
(:func:`gemm_kernel`); launchers take them from ``launch.CONFIG.gemm_tile``. The implicit-GEMM
convolutions (``conv_implicit_gemm``) reuse the per-tile pieces (:func:`tile_pieces`).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from . import launch
from .launch import I32, array

_DTYPES = ("float32", "float64")
#: CUDA's limit on the y and z dimensions of a grid (x, the row tiles, goes to 2**31 - 1)
MAX_GRID_YZ = 65535


def check_tile(tile) -> tuple[int, int, int, int, int]:
    """``(BM, BN, BK, TM, TN)`` as ints, checked: TM divides BM and TN divides BN."""
    bm, bn, bk, tm, tn = (int(v) for v in tile)
    if min(bm, bn, bk, tm, tn) < 1 or bm % tm or bn % tn:
        raise ValueError(f"GEMM tile (BM, BN, BK, TM, TN) = {tuple(tile)}: sizes must be "
                         f"positive, TM must divide BM and TN divide BN")
    return bm, bn, bk, tm, tn


def threads_per_block(tile) -> int:
    """Threads of a block of the tiled kernels: (BM / TM) * (BN / TN)."""
    bm, bn, _, tm, tn = check_tile(tile)
    return (bm // tm) * (bn // tn)


@functools.cache
def tile_pieces(tile):
    """Device functions of one tile shape, shared by the GEMM and the implicit GEMMs:

    * ``clear(acc)``: zero the ``TM x TN`` accumulators;
    * ``multiply(As, Bs, acc, ar, br, ty, tx)``: ``acc += As^T[rows] @ Bs[:, cols]`` over the
      ``BK`` rows of the shared tiles ``As`` (``BK x BM``) and ``Bs`` (``BK x BN``), through
      registers ``ar`` (TM) and ``br`` (TN); the thread's rows are ``ty + i * BM/TM``, its
      columns ``tx + j * BN/TN``.
    """
    bm, bn, bk, tm, tn = check_tile(tile)
    ty_step, tx_step = bm // tm, bn // tn

    @cuda.jit(device=True, inline="always")
    def clear(acc):
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0

    @cuda.jit(device=True, inline="always")
    def multiply(As, Bs, acc, ar, br, ty, tx):
        for kk in range(bk):
            for i in range(tm):
                ar[i] = As[kk, ty + i * ty_step]
            for j in range(tn):
                br[j] = Bs[kk, tx + j * tx_step]
            for i in range(tm):
                for j in range(tn):
                    acc[i, j] += ar[i] * br[j]

    return clear, multiply


def _gemm_signature(dt):
    return (array(dt, 3), array(dt, 3), array(dt, 3), I32, I32, I32, I32, I32)


@functools.cache
def gemm_kernel(tile):
    """The batched tiled GEMM for one tile shape ``(BM, BN, BK, TM, TN)`` (declared once per
    shape, named ``gemm_{BM}x{BN}x{BK}_{TM}x{TN}``).

    ``gemm(a, b, c, m, n, k, trans_a, trans_b)``: ``c[z] = op(a[z]) @ op(b[z])`` with ``c``
    (batch, m, n); ``a`` is (batch, m, k), or (batch, k, m) with ``trans_a``; ``b`` is
    (batch, k, n), or (batch, n, k) with ``trans_b``. A batch of 1 in ``a`` or ``b`` is
    broadcast. Grid: (ceil(m / BM), ceil(n / BN), batch); block: (BM/TM) * (BN/TN) threads.
    """
    bm, bn, bk, tm, tn = check_tile(tile)
    ty_step, tx_step = bm // tm, bn // tn
    nt = ty_step * tx_step
    clear, multiply = tile_pieces(tile)

    @launch.kernel(_gemm_signature, name=f"gemm_{bm}x{bn}x{bk}_{tm}x{tn}")
    def gemm(a, b, c, m, n, k, trans_a, trans_b):
        """C[z] = op(A[z]) @ op(B[z]): BM x BN tiles, BK deep in shared memory, TM x TN
        outputs per thread in registers."""
        tid = cuda.threadIdx.x
        tx = tid % tx_step
        ty = tid // tx_step
        row0 = cuda.blockIdx.x * bm
        col0 = cuda.blockIdx.y * bn
        z = cuda.blockIdx.z
        za = z if a.shape[0] > 1 else 0
        zb = z if b.shape[0] > 1 else 0
        As = cuda.shared.array((bk, bm), c.dtype)
        Bs = cuda.shared.array((bk, bn), c.dtype)
        acc = cuda.local.array((tm, tn), c.dtype)
        ar = cuda.local.array(tm, c.dtype)
        br = cuda.local.array(tn, c.dtype)
        clear(acc)
        for k0 in range(0, k, bk):
            # op(A) tile: consecutive threads read consecutive addresses of a
            for e in range(tid, bm * bk, nt):
                if trans_a:
                    r = e % bm
                    kk = e // bm
                else:
                    kk = e % bk
                    r = e // bk
                gr = row0 + r
                gk = k0 + kk
                if gr < m and gk < k:
                    if trans_a:
                        As[kk, r] = a[za, gk, gr]
                    else:
                        As[kk, r] = a[za, gr, gk]
                else:
                    As[kk, r] = 0
            # op(B) tile
            for e in range(tid, bn * bk, nt):
                if trans_b:
                    kk = e % bk
                    col = e // bk
                else:
                    col = e % bn
                    kk = e // bn
                gc = col0 + col
                gk = k0 + kk
                if gc < n and gk < k:
                    if trans_b:
                        Bs[kk, col] = b[zb, gc, gk]
                    else:
                        Bs[kk, col] = b[zb, gk, gc]
                else:
                    Bs[kk, col] = 0
            cuda.syncthreads()
            multiply(As, Bs, acc, ar, br, ty, tx)
            cuda.syncthreads()
        for i in range(tm):
            gr = row0 + ty + i * ty_step
            if gr < m:
                for j in range(tn):
                    gc = col0 + tx + j * tx_step
                    if gc < n:
                        c[z, gr, gc] = acc[i, j]

    return gemm


def _check_operands(a, b, ndim: int, what: str):
    if a.ndim != ndim or b.ndim != ndim:
        raise ValueError(f"{what} expects {ndim}D operands, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype or a.dtype.name not in _DTYPES:
        raise TypeError(f"{what} expects two float32 or two float64 operands, got {a.dtype} and "
                        f"{b.dtype}")


def _launch(be, a3, b3, trans_a, trans_b, tile=None):
    """``op(a3[z]) @ op(b3[z])`` for 3D device arrays (a batch of 1 broadcast)."""
    tile = check_tile(tile or launch.CONFIG.gemm_tile)
    batch = max(a3.shape[0], b3.shape[0])
    m, ka = (a3.shape[2], a3.shape[1]) if trans_a else (a3.shape[1], a3.shape[2])
    kb, n = (b3.shape[2], b3.shape[1]) if trans_b else (b3.shape[1], b3.shape[2])
    if ka != kb or a3.shape[0] not in (1, batch) or b3.shape[0] not in (1, batch):
        raise ValueError(f"matmul: shapes {a3.shape}{' (transposed)' if trans_a else ''} and "
                         f"{b3.shape}{' (transposed)' if trans_b else ''} do not match")
    bm, bn = tile[0], tile[1]
    grid = (launch.ceil_div(m, bm), launch.ceil_div(n, bn), batch)
    if grid[1] > MAX_GRID_YZ or grid[2] > MAX_GRID_YZ:
        raise ValueError(f"matmul: {n} columns and a batch of {batch} exceed the grid of the "
                         f"tiled GEMM ({MAX_GRID_YZ} column tiles of {bn}, {MAX_GRID_YZ} "
                         f"matrices)")
    c = be.empty((batch, m, n), a3.dtype)
    gemm_kernel(tile)[grid, threads_per_block(tile)](
        a3.dtype, be.device(a3), be.device(b3), c, np.int32(m), np.int32(n), np.int32(ka),
        np.int32(bool(trans_a)), np.int32(bool(trans_b)))
    return c


def describe() -> str:
    bm, bn, bk, tm, tn = launch.CONFIG.gemm_tile
    return (f"fastconv tiled GEMM (numba-cuda): {bm}x{bn} block tiles, {bk} deep in shared "
            f"memory, {tm}x{tn} outputs per thread")


def matmul(be, a, b, trans_a, trans_b):
    """``op(a) @ op(b)`` of 2D device arrays (op = transpose where asked)."""
    _check_operands(a, b, 2, "matmul")
    c = _launch(be, a.reshape(1, *a.shape), b.reshape(1, *b.shape), trans_a, trans_b)
    return c.reshape(c.shape[1], c.shape[2])


def batched_matmul(be, a, b, trans_a=False, trans_b=False, tile=None):
    """``op(a[z]) @ op(b[z])`` for 3D device arrays (batch, rows, cols); a batch of 1 in one
    operand is broadcast. ``tile`` overrides ``launch.CONFIG.gemm_tile``."""
    _check_operands(a, b, 3, "batched matmul")
    return _launch(be, a, b, trans_a, trans_b, tile)


def declare_gpu_kernels(config) -> None:
    """Declare the GEMM variant the GPU launch sizes use (for the PTX resource check)."""
    gemm_kernel(config.gemm_tile)
