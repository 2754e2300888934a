"""Inference plans: a model's forward pass for one input shape, decided once.

``predict`` runs the same layers as training, but a plan does the per-call work of the graph
path only once per input shape: argument checks, output shapes, convolution geometries and
algorithm choices. What remains per call is one backend primitive per layer on raw arrays (no
Tensors, no graph), reading each layer's current weights, so training between two predictions
needs no new plan. Layers without a specialised step run their ordinary ``call`` on Tensors.

On backends that set ``inference_chunk_bytes`` (the CPU ones), a large batch goes through the
network a chunk of images at a time, the chunk sized so that its largest activation stays in
cache: the images are independent, and memory traffic, not arithmetic, bounds the early layers
of a CNN at large batch sizes.
"""

from __future__ import annotations

from .backends import algorithms as algos
from .backends import get_backend
from .tensor import Tensor, no_grad


class InferencePlan:
    """Runs ``model``'s layers on backend arrays of shape ``batch_shape``."""

    def __init__(self, model, batch_shape: tuple, backend=None):
        self.backend = backend if backend is not None else get_backend()
        self.batch_shape = tuple(batch_shape)
        self.steps = []
        shape = self.batch_shape
        for layer in model.layers:
            self.steps.append(layer.inference_step(shape, self.backend))
            shape = (shape[0], *layer.compute_output_shape(shape)[1:])
        self.output_shape = shape

    def __call__(self, x):
        with no_grad():
            for step in self.steps:
                x = step(x)
        return x


def chunk_size(model, item_shape: tuple, backend) -> int:
    """Images per chunk: the largest per-image activation times the chunk fits the budget."""
    budget = backend.inference_chunk_bytes
    if not budget:
        return 0
    itemsize = 8 if model.dtype == "float64" else 4
    largest, shape = 1, (1, *item_shape)
    for layer in model.layers:
        shape = (1, *layer.compute_output_shape(shape)[1:])
        size = 1
        for d in shape[1:]:
            size *= d
        largest = max(largest, size)
    return max(1, budget // (largest * itemsize))


def generic_step(layer, backend):
    """A layer's ordinary ``call`` on a Tensor, for layers without a specialised step."""
    def step(a):
        return layer.call(Tensor(a, backend=backend), training=False).data

    return step


def plan_key(model, batch_shape: tuple, backend) -> tuple:
    """What a plan depends on besides the weights' values."""
    return (tuple(batch_shape), backend.name, algos.current_conv_algo(), backend.num_threads(),
            model.dtype)
