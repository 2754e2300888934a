"""InceptionV3 (Szegedy et al., 2015), layer for layer as ``keras.applications.InceptionV3``:
the same call order, so the same automatic layer names (``conv2d``, ``batch_normalization``,
``activation`` ... numbered in a fresh session) and the same layer order, which is how Keras's
legacy weight files (whose names date from older Keras versions) are matched."""

from __future__ import annotations

from ._common import check_arguments, finish, preprocess_tf


def _conv_bn(x, filters, rows, cols, padding="same", strides=(1, 1)):
    """Keras's ``conv2d_bn``: convolution without bias, BatchNormalization without scale,
    ReLU."""
    from ..layers import Activation, BatchNormalization, Conv2D

    x = Conv2D(filters, (rows, cols), strides=strides, padding=padding, use_bias=False)(x)
    x = BatchNormalization(axis=3, scale=False)(x)
    return Activation("relu")(x)


def _concat(tensors, name=None):
    from ..layers import Concatenate

    return Concatenate(axis=3, name=name)(tensors)


def _avg_branch(x, filters):
    from ..layers import AveragePooling2D

    branch = AveragePooling2D((3, 3), strides=(1, 1), padding="same")(x)
    return _conv_bn(branch, filters, 1, 1)


def _block_35(x, pool_filters, name):
    b1 = _conv_bn(x, 64, 1, 1)
    b5 = _conv_bn(x, 48, 1, 1)
    b5 = _conv_bn(b5, 64, 5, 5)
    b3 = _conv_bn(x, 64, 1, 1)
    b3 = _conv_bn(b3, 96, 3, 3)
    b3 = _conv_bn(b3, 96, 3, 3)
    bp = _avg_branch(x, pool_filters)
    return _concat([b1, b5, b3, bp], name=name)


def _block_17(x, width, name):
    b1 = _conv_bn(x, 192, 1, 1)
    b7 = _conv_bn(x, width, 1, 1)
    b7 = _conv_bn(b7, width, 1, 7)
    b7 = _conv_bn(b7, 192, 7, 1)
    bd = _conv_bn(x, width, 1, 1)
    bd = _conv_bn(bd, width, 7, 1)
    bd = _conv_bn(bd, width, 1, 7)
    bd = _conv_bn(bd, width, 7, 1)
    bd = _conv_bn(bd, 192, 1, 7)
    bp = _avg_branch(x, 192)
    return _concat([b1, b7, bd, bp], name=name)


def _block_8(x, i):
    b1 = _conv_bn(x, 320, 1, 1)
    b3 = _conv_bn(x, 384, 1, 1)
    b3 = _concat([_conv_bn(b3, 384, 1, 3), _conv_bn(b3, 384, 3, 1)], name=f"mixed9_{i}")
    bd = _conv_bn(x, 448, 1, 1)
    bd = _conv_bn(bd, 384, 3, 3)
    bd = _concat([_conv_bn(bd, 384, 1, 3), _conv_bn(bd, 384, 3, 1)])
    bp = _avg_branch(x, 192)
    return _concat([b1, b3, bd, bp], name=f"mixed{9 + i}")


def InceptionV3(include_top=True, weights=None, input_tensor=None,  # noqa: N802
                input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax", name="inception_v3"):
    """InceptionV3. ``weights``: None or the path of a Keras weights file (e.g.
    ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``). Inputs: RGB images run
    through ``preprocess_input`` ('tf' mode, [-1, 1]). Default input 299x299, smallest 75x75."""
    from ..layers import Dense, GlobalAveragePooling2D, Input, MaxPooling2D

    shape = check_arguments("InceptionV3", include_top, weights, input_shape, pooling, classes,
                            default_size=299, min_size=75)
    inputs = Input(shape) if input_tensor is None else input_tensor
    x = _conv_bn(inputs, 32, 3, 3, strides=(2, 2), padding="valid")
    x = _conv_bn(x, 32, 3, 3, padding="valid")
    x = _conv_bn(x, 64, 3, 3)
    x = MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = _conv_bn(x, 80, 1, 1, padding="valid")
    x = _conv_bn(x, 192, 3, 3, padding="valid")
    x = MaxPooling2D((3, 3), strides=(2, 2))(x)

    x = _block_35(x, 32, "mixed0")
    x = _block_35(x, 64, "mixed1")
    x = _block_35(x, 64, "mixed2")

    b3 = _conv_bn(x, 384, 3, 3, strides=(2, 2), padding="valid")
    bd = _conv_bn(x, 64, 1, 1)
    bd = _conv_bn(bd, 96, 3, 3)
    bd = _conv_bn(bd, 96, 3, 3, strides=(2, 2), padding="valid")
    bp = MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = _concat([b3, bd, bp], name="mixed3")

    x = _block_17(x, 128, "mixed4")
    x = _block_17(x, 160, "mixed5")
    x = _block_17(x, 160, "mixed6")
    x = _block_17(x, 192, "mixed7")

    b3 = _conv_bn(x, 192, 1, 1)
    b3 = _conv_bn(b3, 320, 3, 3, strides=(2, 2), padding="valid")
    b7 = _conv_bn(x, 192, 1, 1)
    b7 = _conv_bn(b7, 192, 1, 7)
    b7 = _conv_bn(b7, 192, 7, 1)
    b7 = _conv_bn(b7, 192, 3, 3, strides=(2, 2), padding="valid")
    bp = MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = _concat([b3, b7, bp], name="mixed8")

    for i in range(2):
        x = _block_8(x, i)

    def top(x):
        x = GlobalAveragePooling2D(name="avg_pool")(x)
        return Dense(classes, activation=classifier_activation, name="predictions")(x)

    return finish(name, inputs, x, top, include_top, pooling, weights)


def preprocess_input(x):
    """'tf' mode, as ``keras.applications.inception_v3.preprocess_input``."""
    return preprocess_tf(x)
