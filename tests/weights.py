"""Weights that a comparison can see: a fresh model's biases are all zero and its batch-norm
statistics 0 and 1, so that a dropped or transposed bias, a mean never subtracted or a variance
never divided by gives the same numbers. ``randomize_weights`` gives them values away from
those; the kernels keep their random initial values."""

from __future__ import annotations

import numpy as np


def randomize_weights(model, rng, scale: float = 0.3):
    """Random biases, batch-norm gammas, betas and moving statistics for every layer of
    ``model`` (a model, nested ones included, or a layer); returns ``model``."""
    for var in model.weights:
        kind = var.name.rsplit("/", 1)[-1]
        if kind in ("bias", "beta", "moving_mean"):
            value = rng.normal(0.0, scale, var.shape)
        elif kind == "gamma":
            value = rng.uniform(0.5, 1.5, var.shape)
        elif kind == "moving_variance":
            value = rng.uniform(0.3, 2.0, var.shape)
        else:
            continue
        var.assign(np.asarray(value, dtype=var.dtype))
    return model
