"""What every application shares: Keras's argument checks, the input, the classifier head,
loading a weights file, and ImageNet preprocessing."""

from __future__ import annotations

import os

import numpy as np

#: ImageNet channel means in BGR order, as Keras's 'caffe' preprocessing subtracts them.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def check_arguments(name: str, include_top: bool, weights, input_shape, pooling, classes,
                    default_size: int, min_size: int) -> tuple:
    """Keras's ``obtain_input_shape`` and argument checks; returns the input shape: the
    default size with the classifier on top (``include_top``), any size from ``min_size`` up
    otherwise. As in Keras, only ImageNet's own weights fix the size, and fastconv takes them
    from a file whose shapes are checked when it loads."""
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"{name}: weights must be None or the path of a weights file, got "
                        f"{type(weights).__name__}")
    if weights == "imagenet":
        raise ValueError(f"{name}: fastconv does not download weights; pass the path of the "
                         f"file Keras downloads (e.g. from ~/.keras/models/) as weights=...")
    if weights is not None and not os.path.exists(os.fspath(weights)):
        raise FileNotFoundError(f"{name}: no such weights file: {os.fspath(weights)!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{name}: pooling must be None, 'avg' or 'max', got {pooling!r}")
    if not isinstance(classes, (int, np.integer)) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"{name}: classes must be a positive int, got {classes!r}")
    if input_shape is None:
        size = default_size if include_top else None
        return (size, size, 3)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{name}: input_shape must be a tuple (height, width, channels), got "
                        f"{input_shape!r}") from None
    if len(shape) != 3:
        raise ValueError(f"{name}: input_shape must be (height, width, channels), got {shape}")
    for d in shape[:2]:
        if d is not None and d < min_size:
            raise ValueError(f"{name}: input size must be at least {min_size}x{min_size}, got "
                             f"input_shape={shape}")
    if include_top and None in shape:
        raise ValueError(f"{name}: with include_top=True the input shape must be static, got "
                         f"input_shape={shape}")
    return shape


def finish(name: str, inputs, x, top, include_top: bool, pooling, weights,
           pool_names=(None, None)):
    """Add the head (``top(x)``: the classifier, or global pooling without it), make the
    model, load the weights."""
    from ..layers import GlobalAveragePooling2D, GlobalMaxPooling2D
    from ..models import Model

    if include_top:
        x = top(x)
    elif pooling == "avg":
        x = GlobalAveragePooling2D(name=pool_names[0])(x)
    elif pooling == "max":
        x = GlobalMaxPooling2D(name=pool_names[1])(x)
    model = Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def preprocess_caffe(x) -> np.ndarray:
    """Keras's 'caffe' mode: RGB -> BGR, then subtract the ImageNet mean of each channel (no
    scaling). Pixel values in [0, 255], channels last. Returns a new float32 array."""
    x = _float_image(x, "preprocess_input")
    x = x[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, dtype=x.dtype)
    return np.ascontiguousarray(x)


def preprocess_tf(x) -> np.ndarray:
    """Keras's 'tf' mode: scale pixels from [0, 255] to [-1, 1]. Returns a new float32 array."""
    x = _float_image(x, "preprocess_input")
    return x / np.float32(127.5) - np.float32(1.0)


def _float_image(x, where: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{where}: expected an array of pixel values, got dtype {a.dtype}")
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"{where}: expected RGB images with channels last (..., 3), got shape "
                         f"{a.shape}")
    return a.astype("float32" if a.dtype != np.float64 else "float64", copy=True)
