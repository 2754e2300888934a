"""Metrics accumulated over an epoch (batch-size weighted).

``values`` uses only array methods and operators, so it runs where the arrays live: on the host
for :meth:`Metric.update`, on the backend (a GPU) in a training step, where only the sum comes
back (:meth:`Metric.add`)."""

from __future__ import annotations

import numpy as np


class Metric:
    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._total = 0.0
        self._count = 0

    def values(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """Per-sample values."""
        raise NotImplementedError

    def update(self, y_true, y_pred) -> None:
        v = self.values(np.asarray(y_true), np.asarray(y_pred))
        self.add(float(v.sum()), int(v.size))

    def add(self, total: float, count: int) -> None:
        """Add the sum of ``count`` per-sample values (computed wherever the arrays live)."""
        self._total += total
        self._count += count

    def result(self) -> float:
        return self._total / self._count if self._count else 0.0


class CategoricalAccuracy(Metric):
    def values(self, y_true, y_pred):
        return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(np.float64)


class SparseCategoricalAccuracy(Metric):
    def values(self, y_true, y_pred):
        return (y_true.reshape(-1) == y_pred.argmax(axis=-1)).astype(np.float64)


class BinaryAccuracy(Metric):
    def values(self, y_true, y_pred):
        return ((y_pred > 0.5) == (y_true > 0.5)).astype(np.float64).reshape(len(y_true), -1).mean(
            axis=1)


class MeanAbsoluteError(Metric):
    def values(self, y_true, y_pred):
        return abs(y_pred - y_true.reshape(y_pred.shape)).reshape(len(y_pred), -1).mean(axis=1)


class MeanSquaredError(Metric):
    def values(self, y_true, y_pred):
        return ((y_pred - y_true.reshape(y_pred.shape)) ** 2).reshape(len(y_pred), -1).mean(axis=1)


class AutoAccuracy(Metric):
    """Keras's 'accuracy' for a loss that does not fix the flavour: categorical for several
    outputs, binary for one."""

    def values(self, y_true, y_pred):
        if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
            if y_true.shape == y_pred.shape:
                return CategoricalAccuracy.values(self, y_true, y_pred)
            return SparseCategoricalAccuracy.values(self, y_true, y_pred)
        return BinaryAccuracy.values(self, y_true, y_pred)


_ACCURACY = {"categorical": CategoricalAccuracy, "sparse_categorical": SparseCategoricalAccuracy,
             "auto": AutoAccuracy}

_METRICS = {
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(identifier, loss) -> Metric:
    """A metric from a Keras name; 'accuracy'/'acc' takes its flavour from the loss."""
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        return _ACCURACY[loss.accuracy_kind](identifier)
    if isinstance(identifier, str) and identifier in _METRICS:
        return _METRICS[identifier](identifier)
    raise ValueError(f"unknown metric {identifier!r}; valid metrics: accuracy, "
                     f"{', '.join(_METRICS)}")
