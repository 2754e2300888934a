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
    AbsOp,
    ClipOp,
    ELUOp,
    ErfOp,
    ExpOp,
    GELUOp,
    HardSigmoidOp,
    HardSwishOp,
    LeakyReLUOp,
    LogOp,
    PowerOp,
    ReciprocalOp,
    ReLUOp,
    SigmoidOp,
    SoftmaxOp,
    SoftplusOp,
    SqrtOp,
    SquareOp,
    SwishOp,
    TanhOp,
    abs,
    clip,
    elementwise,
    elu,
    erf,
    exp,
    gelu,
    hard_sigmoid,
    hard_silu,
    hard_swish,
    leaky_relu,
    linear,
    log,
    power,
    reciprocal,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    sqrt,
    square,
    swish,
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
from .conv import Conv2DOp, Conv2DTransposeOp, conv1d, conv2d, conv2d_transpose
from .dense import DenseOp, dense
from .losses import (
    BinaryCrossEntropyLogitsOp,
    BinaryCrossEntropyOp,
    MeanSquaredErrorOp,
    ProbabilityCrossEntropyOp,
    SoftmaxCrossEntropyOp,
    binary_crossentropy,
    cross_entropy,
    mean_squared_error,
    softmax_cross_entropy,
)
from .merge import AddOp, ConcatenateOp, MaximumOp, MinimumOp, add, concatenate, maximum, minimum
from .normalization import (
    BatchNormOp,
    LayerNormOp,
    LocalResponseNormOp,
    batch_norm,
    batch_norm_training,
    fold_batch_norm,
    layer_norm,
    local_response_normalization,
)
from .pool import (
    AvgPool2DOp,
    MaxPool2DOp,
    avg_pool1d,
    avg_pool2d,
    global_avg_pool1d,
    global_avg_pool2d,
    global_max_pool1d,
    global_max_pool2d,
    max_pool1d,
    max_pool2d,
)
from .regularization import DropoutOp, SpatialDropoutOp, dropout, spatial_dropout
from .shape import (
    ReshapeOp,
    SliceOp,
    TransposeOp,
    UpSamplingBilinear2DOp,
    UpSamplingNearest2DOp,
    ZeroPad2DOp,
    crop,
    flatten,
    reshape,
    slice_axis,
    transpose,
    upsampling2d,
    zero_pad2d,
)

#: The functional API: what ``fastconv.functional`` exports.
FUNCTIONAL_API = (
    "as_tensor", "conv2d", "conv1d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "global_max_pool2d", "max_pool1d", "avg_pool1d", "relu", "sigmoid", "tanh", "softmax",
    "linear", "reshape", "flatten", "zero_pad2d", "dropout", "add", "subtract", "multiply",
    "divide", "negative", "matmul", "concatenate", "sum", "mean", "batch_norm",
    "batch_norm_training", "local_response_normalization", "softmax_cross_entropy",
    "cross_entropy", "mean_squared_error", "is_grad_enabled", "leaky_relu", "clip", "transpose",
    "swish", "silu", "gelu", "hard_sigmoid", "hard_swish", "hard_silu", "elu", "selu",
    "softplus", "relu6", "erf", "sqrt", "square", "exp", "log", "abs", "reciprocal", "power",
    "elementwise", "maximum", "minimum", "layer_norm", "slice_axis", "binary_crossentropy",
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
    "MeanSquaredErrorOp", "LeakyReLUOp", "ClipOp", "TransposeOp", "SwishOp", "GELUOp",
    "HardSigmoidOp", "HardSwishOp", "ELUOp", "SoftplusOp", "ErfOp", "SqrtOp", "SquareOp", "ExpOp",
    "LogOp", "AbsOp", "ReciprocalOp", "PowerOp", "MaximumOp", "MinimumOp", "LayerNormOp",
    "SliceOp", "BinaryCrossEntropyOp", "BinaryCrossEntropyLogitsOp",
    "Conv2DTransposeOp", "UpSamplingNearest2DOp", "UpSamplingBilinear2DOp", "SpatialDropoutOp",
    # ops the layers use that stay outside FUNCTIONAL_API (their gradients are checked in
    # tests/test_classic_layers.py)
    "conv2d_transpose", "upsampling2d", "crop", "spatial_dropout", "global_avg_pool1d",
    "global_max_pool1d",
]
