"""CBLAS GEMM for Numba kernels: the BLAS that NumPy ships, called from inside parallel loops.

The convolution kernels split their GEMMs into tiles inside one ``prange`` loop and call a
single-threaded CBLAS ``?gemm`` per tile. One thread pool (Numba's) then does all the work: a
multithreaded BLAS called from several threads at once, or NumPy's own ``matmul`` running
between Numba's parallel regions, would leave two pools fighting over the same cores (measured:
a 2-tile GEMM ran no faster than one tile, and a training step took 7x longer).

The GEMM is found, in this order, among the libraries NumPy loaded: SciPy-OpenBLAS (NumPy's
wheels; ILP64 symbols ``scipy_cblas_sgemm64_``), an ILP64 ``cblas_sgemm64_``, a plain LP64
``cblas_sgemm`` (OpenBLAS, MKL, BLIS). While a kernel runs, the library's own thread count is
set to one (:meth:`Blas.single_threaded`) and restored afterwards, so NumPy keeps its threads
between fastconv's calls. When no CBLAS is found, a blocked GEMM written in Numba (``@cfunc``
with the same C signature) stands in: slower, equally correct.

Kernels receive the functions' addresses as integer arguments and call them through the
``call_gemm`` intrinsic, so that Numba's on-disk cache stays valid across processes (addresses
differ from run to run) and calls cost no more than passing an int.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@dataclass(frozen=True)
class Blas:
    sgemm: int  # address of a CBLAS-compatible sgemm
    dgemm: int  # address of a CBLAS-compatible dgemm
    ilp64: bool  # 64-bit integer arguments
    source: str
    get_threads: object = None  # ctypes functions of the library's global thread count
    set_threads: object = None

    def kernel_args(self, dtype) -> tuple[int, int]:
        """What kernels receive: (gemm address, ILP64 flag)."""
        gemm = self.sgemm if np.dtype(dtype) == np.float32 else self.dgemm
        return (gemm, int(self.ilp64))

    @contextlib.contextmanager
    def single_threaded(self):
        """Run a kernel with the BLAS single-threaded, restoring its thread count after."""
        if self.set_threads is None:
            yield
            return
        before = self.get_threads()
        if before != 1:
            self.set_threads(1)
        try:
            yield
        finally:
            if before != 1:
                self.set_threads(before)


def _address(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value or 0


def _candidate_libraries() -> list[str]:
    base = os.path.dirname(np.__file__)
    found = []
    for pattern in ("../numpy.libs/*blas*", ".dylibs/*blas*", "../numpy.libs/*mkl*",
                    "_core/_multiarray_umath*"):
        found += sorted(glob.glob(os.path.join(base, pattern)))
    for name in ("openblas", "cblas", "mkl_rt", "blis"):
        path = ctypes.util.find_library(name)
        if path:
            found.append(path)
    return found


# (sgemm symbol, dgemm symbol, ILP64?)
_SYMBOLS = (
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", True),
    ("cblas_sgemm64_", "cblas_dgemm64_", True),
    ("cblas_sgemm", "cblas_dgemm", False),
)


# (thread-count getter, setter) of the libraries above
_THREAD_FUNCTIONS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
    ("bli_thread_get_num_threads", "bli_thread_set_num_threads"),
)


def _thread_functions(lib):
    for get_name, set_name in _THREAD_FUNCTIONS:
        getter, setter = getattr(lib, get_name, None), getattr(lib, set_name, None)
        if getter is not None and setter is not None:
            getter.argtypes, getter.restype = [], ctypes.c_int
            setter.argtypes, setter.restype = [ctypes.c_int], None
            return getter, setter
    return None, None


def _find_system_blas() -> Blas | None:
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for s_name, d_name, ilp64 in _SYMBOLS:
            sgemm, dgemm = getattr(lib, s_name, None), getattr(lib, d_name, None)
            if sgemm is None or dgemm is None:
                continue
            getter, setter = _thread_functions(lib)
            return Blas(_address(sgemm), _address(dgemm), ilp64,
                        f"{os.path.basename(path)} ({s_name})", getter, setter)
    return None


_state: dict = {}


def get_blas() -> Blas:
    """The GEMM the kernels use (found once per process)."""
    blas = _state.get("blas")
    if blas is None:
        blas = _find_system_blas()
        if blas is None:
            from .fallback_gemm import fallback_blas

            blas = fallback_blas()
        _state["blas"] = blas
    return blas


# -- calling from kernels ----------------------------------------------------------------------

def _int_to(builder, value, to):
    width = value.type.width
    if width > to.width:
        return builder.trunc(value, to)
    if width < to.width:
        return builder.sext(value, to)
    return value


@intrinsic
def call_gemm(typingctx, addr, ilp64, ta, tb, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr,
              ldc, like):
    """``cblas_?gemm(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`` at the
    address ``addr``; single or double precision after the dtype of the array ``like``; integer
    width after the literal bool ``ilp64``."""
    if not isinstance(ilp64, types.BooleanLiteral) or not isinstance(like, types.Array):
        return None
    wide = ilp64.literal_value
    sig = types.void(addr, ilp64, ta, tb, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr,
                     ldc, like)

    def codegen(context, builder, signature, args):
        (addr_v, _, ta_v, tb_v, m_v, n_v, k_v, alpha_v, a_v, lda_v, b_v, ldb_v, beta_v, c_v,
         ldc_v, _) = args
        i32 = ir.IntType(32)
        it = ir.IntType(64) if wide else i32
        real = context.get_value_type(like.dtype)
        vp = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, it, it, it, real, vp, it, vp, it,
                                               real, vp, it])
        fn = builder.inttoptr(addr_v, fnty.as_pointer())

        def to_real(v, t):
            return context.cast(builder, v, t, like.dtype)

        builder.call(fn, [
            ir.Constant(i32, ROW_MAJOR), _int_to(builder, ta_v, i32), _int_to(builder, tb_v, i32),
            _int_to(builder, m_v, it), _int_to(builder, n_v, it), _int_to(builder, k_v, it),
            to_real(alpha_v, signature.args[7]), builder.inttoptr(a_v, vp),
            _int_to(builder, lda_v, it), builder.inttoptr(b_v, vp), _int_to(builder, ldb_v, it),
            to_real(beta_v, signature.args[12]), builder.inttoptr(c_v, vp),
            _int_to(builder, ldc_v, it)])
        return context.get_dummy_value()

    return sig, codegen
