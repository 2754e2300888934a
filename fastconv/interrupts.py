"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` in whatever Python code runs when SIGINT arrives. When that
code is a callback that C calls (Numba compiling a kernel calls back into Python through ctypes),
the exception is printed as "Exception ignored" and dropped, and a long ``fit`` goes on as if
nothing had been pressed. ``remembered()`` wraps a long loop: while it is active, a SIGINT is
also written down, and ``check()``, called between steps, raises the ``KeyboardInterrupt`` that a
callback swallowed.

Only the main thread receives signals, and only Python's own default handler is wrapped: a
handler the program installed itself is left alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_pending = False


def _note_and_raise(signum, frame):
    global _pending
    _pending = True
    signal.default_int_handler(signum, frame)


@contextlib.contextmanager
def remembered():
    """Within the block, a SIGINT swallowed by a C callback is raised again by ``check()``."""
    global _pending
    install = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if not install:
        yield
        return
    _pending = False
    signal.signal(signal.SIGINT, _note_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _pending = False


def check() -> None:
    """Raise the ``KeyboardInterrupt`` of a SIGINT that arrived and was swallowed."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
