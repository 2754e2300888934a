"""Keras-style layers (channels_last)."""

from .base import Input, InputLayer, Layer
from .convolutional import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .core import (
    Activation,
    Clip,
    Dense,
    Dropout,
    Elementwise,
    Flatten,
    LeakyReLU,
    Permute,
    Reshape,
)
from .merge import Add, Average, Concatenate, Divide, Maximum, Minimum, Multiply, Subtract
from .normalization import (
    LRN,
    BatchNormalization,
    LayerNormalization,
    LocalResponseNormalization,
)
from .pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from .regularization import SpatialDropout2D
from .reshaping import Cropping1D, Cropping2D, Rescaling, Slice, UpSampling2D, ZeroPadding2D

# Keras aliases
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalMaxPool1D = GlobalMaxPooling1D
Convolution2DTranspose = Conv2DTranspose
Convolution1D = Conv1D
Convolution2D = Conv2D
SeparableConvolution2D = SeparableConv2D

__all__ = [
    "Layer", "Input", "InputLayer", "Conv1D", "Conv2D", "Dense", "Flatten", "Reshape", "Dropout",
    "Activation", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "MaxPooling1D", "AveragePooling1D", "MaxPool2D", "AvgPool2D",
    "MaxPool1D", "AvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool2D", "Convolution1D",
    "Convolution2D", "BatchNormalization", "LocalResponseNormalization", "LRN", "Add",
    "Concatenate", "ZeroPadding2D", "Rescaling", "LeakyReLU", "Clip", "Permute", "Slice",
    "DepthwiseConv2D", "SeparableConv2D", "SeparableConvolution2D", "LayerNormalization",
    "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Divide", "Elementwise",
    "Conv2DTranspose", "Convolution2DTranspose", "UpSampling2D", "Cropping2D", "Cropping1D",
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAvgPool1D", "GlobalMaxPool1D",
    "SpatialDropout2D",
]
