"""A process-wide setting that a ``with`` block can override for its own context.

The convolution algorithm and the inference precision are both such settings: a default read
from the environment and changed by ``set``, and ``use(value)`` blocks that hold another value
for the code they run (per thread and per asyncio task: a ``contextvars.ContextVar``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable


class ContextSetting:
    def __init__(self, name: str, check: Callable[[object], str], initial) -> None:
        self._check = check
        self._default = check(initial)
        self._override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            name, default=None)

    def current(self) -> str:
        return self._override.get() or self._default

    def set(self, value) -> None:
        self._default = self._check(value)

    @contextlib.contextmanager
    def use(self, value):
        token = self._override.set(self._check(value))
        try:
            yield
        finally:
            self._override.reset(token)
