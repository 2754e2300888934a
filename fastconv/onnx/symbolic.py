"""Shape arithmetic that depends on the batch size.

An exported graph often computes shapes from its input's shape: ``x.view(x.size(0), -1)``
becomes Shape, Gather, Unsqueeze, Concat and Reshape. fastconv models keep the batch axis a
symbol, so every other dimension is known when a model is imported and only the batch size is
not. The importer folds such subgraphs at load time by evaluating them at two probe batch sizes,
``PROBES``: a result equal at both is a constant; one that differs is a ``BatchValue``, and each
consumer says what it accepts (a Reshape, a target whose first entry is the batch size;
nothing else). A comparison or a branch on a batch-dependent value is marked ``compared``: equal
results at the probes prove nothing about other batch sizes, so such a value is never taken as
a constant.

The probes differ in parity and are far from any real batch size, so that a result that merely
coincides at both (``N % 2``, ``N == 1``) is unlikely; the ``compared`` mark covers the cases
where it matters.
"""

from __future__ import annotations

import numpy as np

#: The batch sizes at which batch-dependent shape arithmetic is evaluated.
PROBES = (1_000_003, 1_048_576)

#: Operators whose result compares values: on a batch-dependent input, their result is
#: ``compared`` even where it is equal at both probes.
COMPARISONS = ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where", "If")


class BatchValue:
    """A folded value that depends on the batch size: its value at each of ``PROBES``."""

    __slots__ = ("values", "compared")

    def __init__(self, values, compared: bool = False):
        self.values = tuple(np.asarray(v) for v in values)
        self.compared = compared

    def at(self, probe: int) -> np.ndarray:
        return self.values[probe]

    def __repr__(self) -> str:
        return f"BatchValue({[v.tolist() for v in self.values]}, compared={self.compared})"


def at_probe(value, probe: int):
    """``value`` at probe ``probe`` (a constant is the same at every probe)."""
    return value.at(probe) if isinstance(value, BatchValue) else value


def combine(results, compared: bool = False):
    """One result per probe as a constant where they agree (and nothing was compared), a
    BatchValue otherwise."""
    first = np.asarray(results[0])
    same = all(np.shape(r) == first.shape and np.array_equal(np.asarray(r), first)
               for r in results[1:])
    if same and not compared:
        return results[0]
    return BatchValue(results, compared)


def batch_axis_target(value: BatchValue):
    """A Reshape target computed from the batch size: the target with its first entry 0 (copy
    the batch axis), or None where anything but the first entry depends on the batch size or
    the first entry is not the batch size itself."""
    if value.compared:
        return None
    arrays = [np.asarray(v).reshape(-1) for v in value.values]
    if any(a.shape != arrays[0].shape or a.size == 0 for a in arrays):
        return None
    if not all(int(a[0]) == probe for a, probe in zip(arrays, PROBES)):
        return None
    if any(not np.array_equal(a[1:], arrays[0][1:]) for a in arrays[1:]):
        return None
    return [0] + [int(v) for v in arrays[0][1:]]
