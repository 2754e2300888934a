"""Flush-to-zero and denormals-are-zero while this backend's kernels run (x86's MXCSR).

Denormal (subnormal) floats, below 1.18e-38 in float32 and 2.23e-308 in float64, take a
micro-code assist on many x86 cores at each arithmetic instruction that reads or produces one:
a convolution over denormal inputs measured 61x (direct), 171x (im2col) and 69x (Winograd)
slower on an Intel core. With the MXCSR bits DAZ (denormal inputs read as zero) and FTZ
(denormal results written as zero) set, the kernels run at full speed whatever the data.

Effect on results: a value whose magnitude is below the smallest normal float of its dtype
counts as 0, as an input and as a result, inside the kernels (never in NumPy code around them,
nor in the numpy backend). Relative to the values that matter in a network (weights and
activations near 1e-3..1e3) this is a change of at most 1.2e-38 (float32) per operation.

Who gets the bits:

* the calling thread: set by ``enter()`` before a kernel call and restored by ``leave()`` after,
  so the caller's own NumPy arithmetic keeps IEEE denormals;
* Numba's worker threads: set once per (calling thread, thread count), by a parallel loop of
  one iteration per worker that checks every worker ran it (``numba.get_thread_id``), and left
  set: the workers run only Numba code (fastconv's kernels, and any other Numba parallel code
  of the same process, which then also flushes denormals).

On other architectures (no MXCSR) nothing is changed and denormals keep their IEEE meaning.
"""

from __future__ import annotations

import platform
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

#: MXCSR bits: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
FTZ = 1 << 15
DAZ = 1 << 6
FLUSH = FTZ | DAZ
#: Whether this machine has an MXCSR (x86 and x86-64).
SUPPORTED = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _mxcsr_call(builder, name, slot):
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, i8p)])


@intrinsic
def read_csr(typingctx):
    """MXCSR of the running thread (``stmxcsr``)."""
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.zext(builder.load(slot), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def write_csr(typingctx, value):
    """Set the running thread's MXCSR to ``value`` (``ldmxcsr``)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        v = builder.trunc(v, ir.IntType(32)) if v.type.width > 32 else builder.zext(
            v, ir.IntType(32)) if v.type.width < 32 else v
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(v, slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(value), codegen


@njit(cache=True, nogil=True)
def _enter():
    old = read_csr()
    write_csr(old | FLUSH)
    return old


@njit(cache=True, nogil=True)
def _leave(old):
    write_csr(old)


@njit(cache=True, nogil=True, parallel=True)
def _flush_workers(ran):
    """One iteration per worker (Numba's static schedule): set FTZ and DAZ, and mark the
    worker's thread id in ``ran``."""
    for _ in prange(ran.size):
        write_csr(read_csr() | FLUSH)
        ran[numba.get_thread_id()] = 1


@njit(cache=True, nogil=True, parallel=True)
def worker_csrs(out):
    """Each worker's MXCSR at ``out[thread id]`` (tests)."""
    for _ in prange(out.size):
        out[numba.get_thread_id()] = read_csr()


_local = threading.local()


def _workers_ready() -> None:
    """Set FTZ and DAZ on the workers this thread's parallel kernels run on, once per
    thread count. Called between ``enter`` and ``leave``: the caller takes part in the loop."""
    n = numba.get_num_threads()
    done = getattr(_local, "done", None)
    if done is None:
        done = _local.done = set()
    if n in done:
        return
    for _ in range(8):
        ran = np.zeros(n, dtype=np.uint8)
        _flush_workers(ran)
        if ran.all():
            done.add(n)
            return
    # not every worker was reached: try again at the next call


def enter(parallel: bool) -> int:
    """Set FTZ and DAZ for a kernel call; returns what ``leave`` restores."""
    if not SUPPORTED:
        return -1
    old = _enter()
    if parallel:
        _workers_ready()
    return old


def leave(old: int) -> None:
    """Restore the calling thread's MXCSR saved by ``enter``."""
    if old >= 0:
        _leave(old)


def calling_thread_csr() -> int:
    """The calling thread's MXCSR (tests)."""
    return int(_read()) if SUPPORTED else -1


@njit(cache=True, nogil=True)
def _read():
    return read_csr()
