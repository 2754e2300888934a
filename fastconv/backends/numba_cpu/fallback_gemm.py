"""A CBLAS-compatible GEMM written in Numba, for machines where no CBLAS library can be found.

``C = alpha * op(A) @ op(B) + beta * C`` in row-major storage, with the C signature of
``cblas_sgemm`` / ``cblas_dgemm`` (64-bit integers, pointers as ``void*``), compiled as a
``@cfunc`` so that the convolution kernels call it exactly as they call a system BLAS. Blocked
over k and vectorised along rows of B; about a quarter of OpenBLAS's speed.
"""

from __future__ import annotations

import numpy as np
from numba import carray, cfunc, njit, types

from .blas import NO_TRANS, Blas


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _gemm_kernel(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Row-major C[:m, :n] = alpha * op(A) @ op(B) + beta * C; op(X) = X or X^T."""
    for i in range(m):
        if beta == 0:
            c[i * ldc:i * ldc + n] = 0
        elif beta != 1:
            c[i * ldc:i * ldc + n] *= beta
    for i in range(m):
        row = i * ldc
        for p in range(k):
            aip = a[i * lda + p] if ta == NO_TRANS else a[p * lda + i]
            if aip == 0:
                continue
            aip *= alpha
            if tb == NO_TRANS:
                base = p * ldb
                for j in range(n):
                    c[row + j] += aip * b[base + j]
            else:
                for j in range(n):
                    c[row + j] += aip * b[j * ldb + p]


def _signature(real):
    return types.void(types.int32, types.int32, types.int32, types.int64, types.int64,
                      types.int64, real, types.voidptr, types.int64, types.voidptr, types.int64,
                      real, types.voidptr, types.int64)


@cfunc(_signature(types.float32), cache=True)
def _sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    A = carray(a, (m if ta == NO_TRANS else k) * lda, np.float32)
    B = carray(b, (k if tb == NO_TRANS else n) * ldb, np.float32)
    C = carray(c, m * ldc, np.float32)
    _gemm_kernel(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


@cfunc(_signature(types.float64), cache=True)
def _dgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    A = carray(a, (m if ta == NO_TRANS else k) * lda, np.float64)
    B = carray(b, (k if tb == NO_TRANS else n) * ldb, np.float64)
    C = carray(c, m * ldc, np.float64)
    _gemm_kernel(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


def fallback_blas() -> Blas:
    return Blas(_sgemm.address, _dgemm.address, True,
                "fastconv's Numba GEMM (no CBLAS library found)")
