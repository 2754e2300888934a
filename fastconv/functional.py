"""The functional API: differentiable ops on Tensors (``conv2d``, ``max_pool2d``, ``add`` ...).

A stable facade over :mod:`fastconv.ops`, where the ops live split by family (conv, pool,
activation, shape, merge, normalization, losses ...). The ``<Name>Op`` Function classes are
importable from here too (``SigmoidOp.evaluate`` on raw arrays), but ``__all__`` lists the
functions only.

Layouts: NHWC activations, HWIO convolution kernels, (in, out) dense kernels.
"""

from __future__ import annotations

from .ops import (  # noqa: F401 - the Op classes and fold_batch_norm are importable too
    AddOp,
    AvgPool2DOp,
    BatchNormOp,
    ConcatenateOp,
    Conv2DOp,
    DenseOp,
    DivideOp,
    DropoutOp,
    LocalResponseNormOp,
    MatMulOp,
    MaxPool2DOp,
    MeanSquaredErrorOp,
    MultiplyOp,
    NegativeOp,
    ProbabilityCrossEntropyOp,
    ReLUOp,
    ReshapeOp,
    ScaleOp,
    SigmoidOp,
    SoftmaxCrossEntropyOp,
    SoftmaxOp,
    SubtractOp,
    SumOp,
    TanhOp,
    ZeroPad2DOp,
    add,
    as_tensor,
    avg_pool1d,
    avg_pool2d,
    batch_norm,
    batch_norm_training,
    concatenate,
    conv1d,
    conv2d,
    cross_entropy,
    dense,
    divide,
    dropout,
    flatten,
    fold_batch_norm,
    global_avg_pool2d,
    global_max_pool2d,
    is_grad_enabled,
    linear,
    local_response_normalization,
    matmul,
    max_pool1d,
    max_pool2d,
    mean,
    mean_squared_error,
    multiply,
    negative,
    relu,
    reshape,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    subtract,
    sum,
    tanh,
    zero_pad2d,
)

__all__ = [
    "as_tensor", "conv2d", "conv1d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "global_max_pool2d", "max_pool1d", "avg_pool1d", "relu", "sigmoid", "tanh", "softmax",
    "linear", "reshape", "flatten", "zero_pad2d", "dropout", "add", "subtract", "multiply",
    "divide", "negative", "matmul", "concatenate", "sum", "mean", "batch_norm",
    "batch_norm_training", "local_response_normalization", "softmax_cross_entropy",
    "cross_entropy", "mean_squared_error", "is_grad_enabled",
]
