"""Keras-style layers (channels_last)."""

from .base import Input, InputLayer, Layer
from .convolutional import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling2D,
    MaxPooling1D,
    MaxPooling2D,
)

# Keras aliases
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D

__all__ = [
    "Layer", "Input", "InputLayer", "Conv2D", "Dense", "Flatten", "Reshape", "Dropout",
    "Activation", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "MaxPooling1D",
    "AveragePooling1D", "MaxPool2D", "AvgPool2D", "MaxPool1D", "AvgPool1D", "GlobalAvgPool2D",
]
