"""Weight initialisers by Keras name; they draw on the host from the seeded generator."""

from __future__ import annotations

import math

import numpy as np

from . import random as fc_random


def _fans(shape) -> tuple[int, int]:
    """Keras's fan-in/fan-out: HWIO kernels count the receptive field."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(shape, limit):
    return fc_random.host_rng().uniform(-limit, limit, size=shape)


def _truncated_normal(shape, stddev):
    """Normal samples redrawn until within two standard deviations (Keras's truncated normal);
    Keras scales the stddev by 1/0.87962566103423978 to keep the variance."""
    rng = fc_random.host_rng()
    stddev = stddev / 0.87962566103423978
    out = rng.normal(0.0, stddev, size=shape)
    bad = np.abs(out) > 2 * stddev
    while bad.any():
        out[bad] = rng.normal(0.0, stddev, size=int(bad.sum()))
        bad = np.abs(out) > 2 * stddev
    return out


def glorot_uniform(shape):
    fan_in, fan_out = _fans(shape)
    return _uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(shape):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(shape):
    return _uniform(shape, math.sqrt(6.0 / _fans(shape)[0]))


def he_normal(shape):
    return _truncated_normal(shape, math.sqrt(2.0 / _fans(shape)[0]))


def lecun_uniform(shape):
    return _uniform(shape, math.sqrt(3.0 / _fans(shape)[0]))


def lecun_normal(shape):
    return _truncated_normal(shape, math.sqrt(1.0 / _fans(shape)[0]))


def zeros(shape):
    return np.zeros(shape)


def ones(shape):
    return np.ones(shape)


def random_normal(shape):
    """Keras's RandomNormal defaults: mean 0, standard deviation 0.05."""
    return fc_random.host_rng().normal(0.0, 0.05, size=shape)


def random_uniform(shape):
    """Keras's RandomUniform defaults: uniform in [-0.05, 0.05]."""
    return _uniform(shape, 0.05)


def truncated_normal(shape):
    """Keras's TruncatedNormal defaults: standard deviation 0.05, redrawn beyond two."""
    return _truncated_normal(shape, 0.05 * 0.87962566103423978)


_INITIALIZERS = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal,
                                         lecun_uniform, lecun_normal, zeros, ones, random_normal,
                                         random_uniform, truncated_normal)}


def check(name, where: str) -> str:
    if not isinstance(name, str) or name not in _INITIALIZERS:
        raise ValueError(f"{where}: unknown initializer {name!r}; valid initializers: "
                         f"{', '.join(_INITIALIZERS)}")
    return name


def get(name):
    return _INITIALIZERS[check(name, "initializer")]
