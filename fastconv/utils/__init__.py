"""Keras-style utilities: to_categorical, set_random_seed, clear_session."""

from __future__ import annotations

import numpy as np

from .. import random as fc_random
from ..layers.base import reset_names


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """Integer class ids -> one-hot rows (Keras's ``to_categorical``)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise TypeError(f"to_categorical: y must hold integer class ids, got dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class ids must be >= 0, got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be a positive int, got "
                         f"{num_classes!r}")
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: class id {int(y.max())} does not fit num_classes="
                         f"{num_classes}")
    out = np.zeros((*y.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def set_random_seed(seed: int) -> None:
    """Seed Python, NumPy and every fastconv generator (weights, shuffling, dropout)."""
    fc_random.seed(seed)


def clear_session() -> None:
    """Restart layer and model naming (``conv2d``, ``conv2d_1`` ...) from scratch."""
    reset_names()


__all__ = ["to_categorical", "set_random_seed", "clear_session"]
