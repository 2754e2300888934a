"""Losses by Keras name: categorical and sparse categorical cross-entropy, mean squared error.

Each loss maps (labels, prediction Tensor) to a scalar Tensor: the mean over the batch.
"""

from __future__ import annotations

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


_LOSSES = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
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
