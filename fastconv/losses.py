"""Losses by Keras name: categorical, sparse categorical and binary cross-entropy, mean squared
error.

Each loss maps (labels, prediction Tensor) to a scalar Tensor: the mean over the batch.
"""

from __future__ import annotations

import math
import numbers

from . import functional as F
from .ops import losses as loss_ops


class Loss:
    name = "loss"

    def __call__(self, y_true, y_pred):
        raise NotImplementedError

    def labels(self, y_true, y_pred):
        """``y_true`` checked and moved to ``y_pred``'s backend once, for this loss and the
        step's metrics (a ``fastconv.ops.losses.Labels``); losses that do not check their
        labels return them as they are."""
        return y_true

    def get_config(self) -> dict:
        return {}

    #: which flavour of 'accuracy' goes with this loss (see fastconv.metrics)
    accuracy_kind = "auto"


class CategoricalCrossentropy(Loss):
    """Cross-entropy against one-hot (or soft) labels; ``from_logits=False`` expects
    probabilities, and uses the logits of a softmax output directly when they exist."""

    name = "categorical_crossentropy"
    accuracy_kind = "categorical"

    def __init__(self, from_logits: bool = False):
        self.from_logits = bool(from_logits)

    sparse = False

    def __call__(self, y_true, y_pred):
        return F.cross_entropy(y_pred, y_true, sparse=self.sparse, from_logits=self.from_logits)

    def labels(self, y_true, y_pred):
        return loss_ops.cross_entropy_labels(y_pred, y_true, self.sparse)

    def get_config(self):
        return {"from_logits": self.from_logits}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Cross-entropy against integer class ids."""

    name = "sparse_categorical_crossentropy"
    accuracy_kind = "sparse_categorical"
    sparse = True


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def __call__(self, y_true, y_pred):
        return F.mean_squared_error(y_pred, y_true)

    def labels(self, y_true, y_pred):
        return loss_ops.mean_squared_error_labels(y_pred, y_true)


class BinaryCrossentropy(Loss):
    """Keras's binary cross-entropy: ``-(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to
    ``[1e-7, 1 - 1e-7]`` (or computed from logits, stably, with ``from_logits=True``), averaged
    over every element; ``label_smoothing`` ``s`` uses ``y (1 - s) + s / 2`` as targets. Its
    'accuracy' is ``binary_accuracy``."""

    name = "binary_crossentropy"
    accuracy_kind = "binary"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size"):
        self.from_logits = bool(from_logits)
        if (not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool)
                or not math.isfinite(label_smoothing) or not 0 <= label_smoothing <= 1):
            raise ValueError(f"BinaryCrossentropy: label_smoothing must be in [0, 1], got "
                             f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        if axis != -1:
            raise ValueError(f"BinaryCrossentropy: axis={axis!r} is not supported (only -1, "
                             f"the last axis)")
        if reduction != "sum_over_batch_size":
            raise ValueError(f"BinaryCrossentropy: reduction={reduction!r} is not supported "
                             f"(only 'sum_over_batch_size', the batch mean)")

    def __call__(self, y_true, y_pred):
        return loss_ops.binary_crossentropy(y_pred, y_true, from_logits=self.from_logits,
                                            label_smoothing=self.label_smoothing)

    def labels(self, y_true, y_pred):
        return loss_ops.binary_crossentropy_labels(y_pred, y_true)

    def get_config(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


_LOSSES = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier) -> Loss:
    """A Loss from a Keras name, a Loss instance, or a ``{"name", "config"}`` dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return get(identifier.get("name")).__class__(**identifier.get("config", {}))
    if isinstance(identifier, str) and identifier.lower() in _LOSSES:
        return _LOSSES[identifier.lower()]()
    raise ValueError(f"unknown loss {identifier!r}; valid losses: {', '.join(_LOSSES)}")


def serialize(loss: Loss) -> dict:
    return {"name": loss.name, "config": loss.get_config()}
