"""Keep freed host memory for reuse (glibc only).

Every layer allocates its outputs and gradients afresh at each step. glibc's defaults serve
arrays above a dynamic threshold with fresh ``mmap`` pages and give freed memory back to the
system at once, so each step page-faults its way through the same megabytes again: on the
lesson network that doubled the time of a training step. The CPU backends therefore raise the
mmap threshold to its maximum (32 MiB) and the trim threshold to 512 MiB when they start: freed
blocks stay in the process and are reused at the next step. Elsewhere (musl, macOS, Windows)
this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_done = {"tuned": None}


def keep_freed_memory() -> bool:
    """Apply the malloc settings once per process; True where they took effect."""
    if _done["tuned"] is not None:
        return _done["tuned"]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(
                mallopt(M_TRIM_THRESHOLD, 512 << 20)) and bool(mallopt(M_TOP_PAD, 16 << 20))
        except (OSError, AttributeError):
            ok = False
    _done["tuned"] = ok
    return ok
