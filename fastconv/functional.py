"""The functional API: differentiable ops on Tensors (``conv2d``, ``max_pool2d``, ``add`` ...).

A stable facade over :mod:`fastconv.ops`, where the ops live split by family (conv, pool,
activation, shape, merge, normalization, losses ...). The ``<Name>Op`` Function classes are
importable from here too (``SigmoidOp.evaluate`` on raw arrays), but ``__all__`` lists the
functions only.

Layouts: NHWC activations, HWIO convolution kernels, (in, out) dense kernels.
"""

from __future__ import annotations

from .ops import (  # noqa: F401 - the Op classes are re-exported for array-level callers
    AddOp,
    AvgPool2DOp,
    ConcatenateOp,
    Conv2DOp,
    DenseOp,
    DropoutOp,
    MaxPool2DOp,
    MeanSquaredErrorOp,
    ProbabilityCrossEntropyOp,
    ReLUOp,
    ReshapeOp,
    ScaleOp,
    SigmoidOp,
    SoftmaxCrossEntropyOp,
    SoftmaxOp,
    SumOp,
    TanhOp,
    add,
    as_tensor,
    avg_pool1d,
    avg_pool2d,
    concatenate,
    conv2d,
    cross_entropy,
    dense,
    dropout,
    flatten,
    global_avg_pool2d,
    is_grad_enabled,
    linear,
    max_pool1d,
    max_pool2d,
    mean,
    mean_squared_error,
    relu,
    reshape,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    sum,
    tanh,
)

__all__ = [
    "as_tensor", "conv2d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "max_pool1d", "avg_pool1d", "relu", "sigmoid", "tanh", "softmax", "linear", "reshape",
    "flatten", "dropout", "add", "concatenate", "sum", "mean", "softmax_cross_entropy",
    "cross_entropy", "mean_squared_error", "is_grad_enabled",
]
