"""The ``numpy`` backend: vectorised NumPy, float32 and float64.

The clear reference implementation of every primitive; it needs nothing but NumPy.
"""

from __future__ import annotations

import numpy as np

from ... import random as fc_random
from ..base import Backend, conv_algorithm_table
from ..host_memory import keep_freed_memory
from . import conv, grouped
from . import normalization as norm
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward


class NumpyBackend(Backend):
    name = "numpy"
    xp = np
    inference_chunk_bytes = 2 << 20
    autotune = False  # the reference backend always uses its heuristic (im2col)
    conv_algorithm_classes = conv_algorithm_table(conv)

    def __init__(self):
        super().__init__()
        keep_freed_memory()

    def to_host(self, a):
        return np.asarray(a)

    def gemm_description(self) -> str:
        return f"NumPy {np.__version__} matmul"

    def grouped_conv2d_forward(self, x, w, b, geom, groups, activation="linear"):
        return grouped.forward(self, x, w, b, geom, groups, activation)

    def grouped_conv2d_backward_data(self, dy, w, geom, groups):
        return grouped.backward_data(dy, w, geom, groups)

    def grouped_conv2d_backward_weight(self, x, dy, geom, groups):
        return grouped.backward_weight(x, dy, geom, groups)

    def max_pool2d_forward(self, x, geom, with_argmax=True):
        y, argmax = max_pool2d_forward(x, geom)
        return y, (argmax if with_argmax else None)

    def max_pool2d_backward(self, dy, argmax, geom):
        return max_pool2d_backward(dy, argmax, geom)

    def avg_pool2d_forward(self, x, geom):
        return avg_pool2d_forward(x, geom)

    def avg_pool2d_backward(self, dy, geom):
        return avg_pool2d_backward(dy, geom)

    def batch_norm_statistics(self, x):
        return norm.batch_norm_statistics(x)

    def batch_norm_forward(self, x, gamma, beta, mean, var, eps):
        return norm.batch_norm_forward(x, gamma, beta, mean, var, eps)

    def batch_norm_backward(self, dy, x, gamma, mean, var, eps, training):
        return norm.batch_norm_backward(dy, x, gamma, mean, var, eps, training)

    def lrn_forward(self, x, radius, bias, alpha, beta):
        return norm.lrn_forward(x, radius, bias, alpha, beta)

    def lrn_backward(self, dy, x, y, scale, radius, alpha, beta):
        return norm.lrn_backward(dy, x, y, scale, radius, alpha, beta)

    def random_uniform(self, shape, dtype):
        return fc_random.host_rng().random(shape, dtype=np.dtype(dtype))


def create_backend() -> NumpyBackend:
    return NumpyBackend()
