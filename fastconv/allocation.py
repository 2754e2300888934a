"""Weight allocations: their size in bytes, a clear error when one cannot be made, and a
budget that a loader sets so that a file's configuration cannot make fastconv allocate more
than the file itself declares.

``Layer.add_weight`` calls ``reserve`` before it allocates anything and ``too_large`` when the
allocation fails; ``saving`` rebuilds a model from a file inside ``budget(nbytes, why)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

_budget: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "fastconv_weight_budget", default=None)


class BudgetExceededError(ValueError):
    """A weight asked for more bytes than the current budget has left."""


def weight_bytes(shape, dtype) -> int:
    """Bytes of a weight of ``shape`` and ``dtype`` (exact, no overflow)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


@contextlib.contextmanager
def budget(nbytes: int, why: str):
    """Within the block, weights may take at most ``nbytes`` bytes in all; ``why`` says where
    the limit comes from (it ends the error message)."""
    token = _budget.set([int(nbytes), why])
    try:
        yield
    finally:
        _budget.reset(token)


def reserve(layer: str, weight: str, shape, dtype) -> int:
    """Count a weight against the current budget (if any); returns its size in bytes."""
    for d in shape:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
            raise ValueError(f"layer '{layer}': weight '{weight}' has an invalid shape "
                             f"{tuple(shape)} (sizes must be non-negative integers)")
    nbytes = weight_bytes(shape, dtype)
    current = _budget.get()
    if current is not None:
        left, why = current
        if nbytes > left:
            raise BudgetExceededError(
                f"layer '{layer}': weight '{weight}' of shape {tuple(shape)} needs {nbytes} "
                f"bytes, more than {why} ({left} bytes left)")
        current[0] = left - nbytes
    return nbytes


def too_large(layer: str, weight: str, shape, dtype, nbytes: int) -> MemoryError:
    """The error for a weight that could not be allocated."""
    return MemoryError(f"layer '{layer}': cannot allocate weight '{weight}' of shape "
                       f"{tuple(shape)} and dtype {np.dtype(dtype).name}: {nbytes} bytes "
                       f"({nbytes / 2**30:.3g} GiB) requested")
