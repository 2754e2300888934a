"""The one place that sets Numba's compile options for this backend's kernels.

* ``cache=True``: the second run of a program compiles nothing.
* ``fastmath`` limited to re-association, contraction (FMA), no-signed-zero and reciprocal
  flags: sums vectorise, while NaN and infinity keep their IEEE meaning (no ``nnan``/``ninf``),
  so a NaN in the data still shows as NaN in the loss.
* ``error_model='numpy'``: no ZeroDivisionError checks inside loops.
* kernels called through ``SizedKernel`` run with denormals flushed to zero (``fpenv``).
"""

from __future__ import annotations

import contextlib
import threading
import types

import numba
import numba.core.event
from numba import njit

from . import contention, fpenv

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def kernel(fn=None, *, parallel: bool = True, fastmath: bool = True):
    """Compile a kernel: arrays and ints in, no Python objects."""
    options = dict(cache=True, nogil=True, parallel=parallel, error_model="numpy",
                   fastmath=FASTMATH if fastmath else False)
    if fn is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(fn)


def _renamed(fn, suffix: str):
    """A copy of ``fn`` under another qualified name. Numba's on-disk cache names its files
    after the function (not the compile options), so the serial and parallel compilations of
    one source need two names, or one would load the other's machine code."""
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__doc__ = fn.__doc__
    return clone


class SizedKernel:
    """A kernel compiled twice from one source: parallel for large inputs, serial below
    ``threshold`` elements, where starting the thread pool would cost more than the work.
    ``SizedKernel.mode`` ('auto', 'parallel' or 'serial') overrides the choice (tests use it to
    run both variants on small shapes)."""

    mode = "auto"
    #: while a list, calls are appended to it as (dispatcher, args) and not run (``recorded``)
    recording: list | None = None

    def __init__(self, fn, threshold: int, fastmath: bool = True):
        self.parallel = kernel(fn, fastmath=fastmath)
        self.serial = kernel(_renamed(fn, "_serial"), parallel=False, fastmath=fastmath)
        self.threshold = threshold
        self.__doc__ = fn.__doc__

    def __call__(self, size: int, *args):
        mode = SizedKernel.mode
        parallel = size >= self.threshold if mode == "auto" else mode == "parallel"
        if SizedKernel.recording is not None:
            SizedKernel.recording.append((self.parallel if parallel else self.serial, args))
            return None
        threads = restore = 0
        if parallel and mode == "auto":  # on a busy machine, as many threads as get a core
            budget = contention.budget()
            if budget is not None:
                configured = numba.get_num_threads()
                threads = budget.threads(configured)
                parallel = threads > 1
                if parallel and threads < configured:
                    restore = configured
                    numba.set_num_threads(threads)
        old = fpenv.enter(parallel)  # flush denormals to zero inside the kernel only
        try:
            return (self.parallel if parallel else self.serial)(*args)
        finally:
            fpenv.leave(old)
            if restore:
                numba.set_num_threads(restore)


def recorded(run) -> list[tuple]:
    """The kernel calls ``run()`` makes, in order, as (dispatcher, argument types), each once;
    the kernels are not run (their outputs keep whatever their buffers held), so ``run`` must
    not depend on the values they compute."""
    calls: list = []
    SizedKernel.recording = calls
    try:
        run()
    finally:
        SizedKernel.recording = None
    seen, unique = set(), []
    for dispatcher, args in calls:
        types = tuple(dispatcher.typeof_pyval(a) for a in args)
        if (id(dispatcher), types) not in seen:
            seen.add((id(dispatcher), types))
            unique.append((dispatcher, types))
    return unique


class NotCompiled(Exception):
    """A kernel would have had to compile (``refusing_to_compile``)."""


class _RefuseCompiling(numba.core.event.Listener):
    """Stops, in the thread that installed it, every Numba compilation before it starts: a
    kernel found compiled in this process or in the on-disk cache still loads and runs."""

    def __init__(self):
        self.thread = threading.get_ident()

    def on_start(self, event):
        if threading.get_ident() == self.thread:
            raise NotCompiled(str(event.data.get("dispatcher", "a kernel")))

    def on_end(self, event):
        pass


@contextlib.contextmanager
def refusing_to_compile():
    """Within the block, this thread's kernels run only from what is compiled already; one
    that would compile raises ``NotCompiled`` (the block yields that class). Other threads
    compile as usual."""
    with numba.core.event.install_listener("numba:compile", _RefuseCompiling()):
        yield NotCompiled


#: Work below which conv kernels run serially (FLOPs): about what one thread does in the time
#: it takes to wake the pool.
CONV_SERIAL_FLOPS = 1 << 21


def sized_kernel(threshold: int = 1 << 15, fastmath: bool = True):
    """``@sized_kernel(threshold)``: callers pass the amount of work first."""
    return lambda fn: SizedKernel(fn, threshold, fastmath)


def helper(fn):
    """A serial helper called from kernels (inlined by LLVM where it pays)."""
    return njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)(fn)
