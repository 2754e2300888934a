"""Differentiable ops, by family. Each primitive op keeps its forward and backward side by side in
one :class:`~fastconv.tensor.Function` subclass named ``<Name>Op`` (``Conv2DOp``, ``AddOp``: the
suffix tells an op from the layer of the same name); each is applied through a lower-case function
(``conv2d``, ``add``) that validates and normalises its arguments. Composite ops (flatten, 1D
pooling, global pooling) are built from primitives and define no backward of their own. The array
work goes to the current backend's primitives or its array module (``backend.xp``), never to NumPy
directly.

Layouts: NHWC activations, HWIO convolution kernels, (in, out) dense kernels.

``fastconv.functional`` re-exports the functions; this package is where they live.
"""

from ..tensor import is_grad_enabled
from .activation import (
    ClipOp,
    LeakyReLUOp,
    ReLUOp,
    SigmoidOp,
    SoftmaxOp,
    TanhOp,
    clip,
    leaky_relu,
    linear,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from .arithmetic import (
    DivideOp,
    MatMulOp,
    MultiplyOp,
    NegativeOp,
    ScaleOp,
    SubtractOp,
    SumOp,
    divide,
    matmul,
    mean,
    multiply,
    negative,
    subtract,
    sum,
)
from .base import as_tensor
from .conv import Conv2DOp, conv1d, conv2d
from .dense import DenseOp, dense
from .losses import (
    MeanSquaredErrorOp,
    ProbabilityCrossEntropyOp,
    SoftmaxCrossEntropyOp,
    cross_entropy,
    mean_squared_error,
    softmax_cross_entropy,
)
from .merge import AddOp, ConcatenateOp, add, concatenate
from .normalization import (
    BatchNormOp,
    LocalResponseNormOp,
    batch_norm,
    batch_norm_training,
    fold_batch_norm,
    local_response_normalization,
)
from .pool import (
    AvgPool2DOp,
    MaxPool2DOp,
    avg_pool1d,
    avg_pool2d,
    global_avg_pool2d,
    global_max_pool2d,
    max_pool1d,
    max_pool2d,
)
from .regularization import DropoutOp, dropout
from .shape import ReshapeOp, TransposeOp, ZeroPad2DOp, flatten, reshape, transpose, zero_pad2d

#: The functional API: what ``fastconv.functional`` exports.
FUNCTIONAL_API = (
    "as_tensor", "conv2d", "conv1d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "global_max_pool2d", "max_pool1d", "avg_pool1d", "relu", "sigmoid", "tanh", "softmax",
    "linear", "reshape", "flatten", "zero_pad2d", "dropout", "add", "subtract", "multiply",
    "divide", "negative", "matmul", "concatenate", "sum", "mean", "batch_norm",
    "batch_norm_training", "local_response_normalization", "softmax_cross_entropy",
    "cross_entropy", "mean_squared_error", "is_grad_enabled", "leaky_relu", "clip", "transpose",
)

__all__ = [
    *FUNCTIONAL_API,
    # not an op: arithmetic on arrays for inference plans
    "fold_batch_norm",
    # the Function classes, one per primitive op
    "Conv2DOp", "DenseOp", "MaxPool2DOp", "AvgPool2DOp", "ReLUOp", "SigmoidOp", "TanhOp",
    "SoftmaxOp", "ReshapeOp", "ZeroPad2DOp", "DropoutOp", "AddOp", "SubtractOp", "MultiplyOp",
    "DivideOp", "NegativeOp", "MatMulOp", "ConcatenateOp", "SumOp", "ScaleOp", "BatchNormOp",
    "LocalResponseNormOp", "SoftmaxCrossEntropyOp", "ProbabilityCrossEntropyOp",
    "MeanSquaredErrorOp", "LeakyReLUOp", "ClipOp", "TransposeOp",
]
