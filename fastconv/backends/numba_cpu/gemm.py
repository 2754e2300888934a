"""GEMM tiles for kernels and the backend's ``matmul`` primitive.

Every call goes through a CBLAS-compatible function pointer (see ``blas.py``) on flat, C-ordered
arrays: ``gemm_tile`` multiplies one tile on the calling thread; ``matmul`` splits the rows of the
result across Numba's threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .blas import NO_TRANS, call_gemm
from .jit import helper, sized_kernel


@helper
def gemm_tile(blas, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """C[c_off:] (m x n, row stride ldc) = op(A) @ op(B) + beta * C; arrays flat, offsets in
    elements. ``blas`` = (gemm address, ILP64 flag)."""
    pa = a.ctypes.data + a_off * a.itemsize
    pb = b.ctypes.data + b_off * b.itemsize
    pc = c.ctypes.data + c_off * c.itemsize
    if blas[1]:
        call_gemm(blas[0], True, ta, tb, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc, c)
    else:
        call_gemm(blas[0], False, ta, tb, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc, c)


@sized_kernel(threshold=1 << 20)
def _matmul_rows(blas, a, b, c, ta, tb, m, n, k, rows_per):
    """c (m x n) = op(a) @ op(b), row blocks of ``rows_per`` in parallel.

    op(a) is (m x k): a is (m x k) when ta is NO_TRANS, else (k x m). op(b) is (k x n)."""
    lda = k if ta == NO_TRANS else m
    ldb = n if tb == NO_TRANS else k
    for t in prange((m + rows_per - 1) // rows_per):
        r0 = t * rows_per
        rows = min(rows_per, m - r0)
        a_off = r0 * lda if ta == NO_TRANS else r0
        gemm_tile(blas, ta, tb, rows, n, k, a, a_off, lda, b, 0, ldb, 0.0, c, r0 * n, n)


def rows_per_task(m: int, threads: int, minimum: int = 16) -> int:
    """Rows per parallel task: one task per thread, never tiny."""
    return max(minimum, -(-m // max(threads, 1)))


def matmul(blas, a, b, trans_a: bool, trans_b: bool, threads: int):
    """``op(a) @ op(b)`` for 2D C-ordered arrays of one dtype (the caller keeps the BLAS
    single-threaded, see ``Blas.single_threaded``)."""
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    n = b.shape[0] if trans_b else b.shape[1]
    c = np.empty((m, n), dtype=a.dtype)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[...] = 0
        return c
    _matmul_rows(m * n * k, blas.kernel_args(a.dtype), a.reshape(-1), b.reshape(-1),
                 c.reshape(-1), 112 if trans_a else 111, 112 if trans_b else 111, m, n, k,
                 rows_per_task(m, threads, 64))
    return c
