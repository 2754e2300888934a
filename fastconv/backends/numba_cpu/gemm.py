"""GEMM on the micro-kernel: row tiles of C = A @ op(B), and the backend's ``matmul``.

B is packed once into NR-column panels (``pack_panels``); rows of A are used in place through
the micro-kernel's row-pointer table. Edge tiles (fewer than MR rows or NR columns) go through a
small tile buffer.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import helper, sized_kernel
from .microkernel import (
    MR,
    microkernel,
    microkernel_bias_act,
    pack_panels,
    panel_size,
    tile_columns,
)


@helper
def store_tile(tile, rows, cols, c, c_off, ldc, accumulate):
    """The valid rows x cols corner of a tile buffer into flat C at c_off."""
    for r in range(rows):
        base = c_off + r * ldc
        if accumulate:
            for j in range(cols):
                c[base + j] += tile[r, j]
        else:
            for j in range(cols):
                c[base + j] = tile[r, j]


@helper
def row_tile(ptrs, nseg, seglen, bp, n, c, c_off, ldc, rows, accumulate, tile):
    """C[rows x n] at flat offset c_off (row stride ldc) (+)= A @ B for one tile of <= MR rows
    whose row pointers (per segment) are in ``ptrs``; ``bp`` packed panels of B."""
    nr = tile_columns(c)
    k = nseg * seglen
    item = c.itemsize
    for jp in range((n + nr - 1) // nr):
        cols = min(nr, n - jp * nr)
        panel = bp.ctypes.data + jp * k * nr * item
        if rows == MR and cols == nr:
            microkernel(nseg, seglen, ptrs, panel, c.ctypes.data + (c_off + jp * nr) * item, ldc,
                        accumulate, c)
        else:
            microkernel(nseg, seglen, ptrs, panel, tile.ctypes.data, nr, False, c)
            store_tile(tile, rows, cols, c, c_off + jp * nr, ldc, accumulate)


@helper
def row_tile_bias_act(ptrs, nseg, seglen, bp, n, c, c_off, ldc, rows, bias, relu, tile, a_like):
    """``row_tile`` storing act(A @ B + bias) (``microkernel_bias_act``); ``bias`` holds n
    values rounded up to whole panels (zeros beyond n); ``a_like`` an array of A's element type
    (uint16: A and the panels ``bp`` are bfloat16)."""
    nr = tile_columns(c)
    k = nseg * seglen
    item = c.itemsize
    for jp in range((n + nr - 1) // nr):
        cols = min(nr, n - jp * nr)
        panel = bp.ctypes.data + jp * k * nr * bp.itemsize
        b = bias.ctypes.data + jp * nr * item
        if rows == MR and cols == nr:
            microkernel_bias_act(nseg, seglen, ptrs, panel,
                                 c.ctypes.data + (c_off + jp * nr) * item, ldc, b, relu, c,
                                 a_like)
        else:
            microkernel_bias_act(nseg, seglen, ptrs, panel, tile.ctypes.data, nr, b, relu, c,
                                 a_like)
            store_tile(tile, rows, cols, c, c_off + jp * nr, ldc, False)


@helper
def matrix_rows(a, i0, rows, k, zeros, ptrs):
    """Row pointers of rows i0 .. i0+rows-1 of the C-ordered matrix ``a`` (k columns); the
    rest of the MR slots point at ``zeros``."""
    base = a.ctypes.data
    step = k * a.itemsize
    for r in range(MR):
        ptrs[r] = base + (i0 + r) * step if r < rows else zeros.ctypes.data


@sized_kernel(1 << 20)
def _matmul_rows(a, bp, n, c, rows_per):
    """c (m x n) = a (m x k) @ B, B packed; row blocks of ``rows_per`` in parallel."""
    m, k = a.shape
    zeros = np.zeros(max(k, 1), dtype=a.dtype)
    cflat = c.reshape(-1)
    for t in prange((m + rows_per - 1) // rows_per):
        ptrs = np.empty(MR, dtype=np.int64)
        tile = np.empty((MR, tile_columns(c)), dtype=c.dtype)
        r0 = t * rows_per
        r1 = min(m, r0 + rows_per)
        for i0 in range(r0, r1, MR):
            rows = min(MR, r1 - i0)
            matrix_rows(a, i0, rows, k, zeros, ptrs)
            row_tile(ptrs, 1, k, bp, n, cflat, i0 * n, n, rows, False, tile)


def rows_per_task(m: int, threads: int) -> int:
    """Rows per parallel task: one task per thread, in whole tiles."""
    per = -(-m // max(threads, 1))
    return max(MR, -(-per // MR) * MR)


def packed(b, trans_b: bool):
    """op(b) packed in micro-kernel panels, with its (k, n)."""
    k, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    bp = np.empty(panel_size(k, n, b.dtype), dtype=b.dtype)
    pack_panels(np.ascontiguousarray(b), k, n, trans_b, bp)
    return bp, k, n


def matmul_packed(a, bp, n: int, threads: int):
    """``a @ B`` for B already packed (``packed``)."""
    a = np.ascontiguousarray(a)
    m, k = a.shape
    c = np.empty((m, n), dtype=a.dtype)
    if m and n:
        _matmul_rows(m * n * max(k, 1), a, bp, n, c, rows_per_task(m, threads))
    return c


def matmul(a, b, trans_a: bool, trans_b: bool, threads: int):
    """``op(a) @ op(b)`` for 2D arrays of one float dtype."""
    if trans_a:
        a = np.ascontiguousarray(a.T)
    else:
        a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    m, k = a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    c = np.empty((m, n), dtype=a.dtype)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[...] = 0
        return c
    bp = np.empty(panel_size(k, n, a.dtype), dtype=a.dtype)
    pack_panels(b, k, n, trans_b, bp)
    _matmul_rows(m * n * k, a, bp, n, c, rows_per_task(m, threads))
    return c
