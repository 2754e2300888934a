"""ResNet50 (He et al., 2015, v1), layer for layer as ``keras.applications.ResNet50``."""

from __future__ import annotations

from ._common import check_arguments, finish, preprocess_caffe

_EPSILON = 1.001e-5


def _block(x, filters, stride=1, conv_shortcut=True, name=""):
    """Keras's ``residual_block_v1``: 1x1 -> 3x3 -> 1x1 (4x filters), plus the shortcut."""
    from ..layers import Activation, Add, BatchNormalization, Conv2D

    if conv_shortcut:
        shortcut = Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_1_bn")(x)
    x = Activation("relu", name=f"{name}_1_relu")(x)
    x = Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_2_bn")(x)
    x = Activation("relu", name=f"{name}_2_relu")(x)
    x = Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_3_bn")(x)
    x = Add(name=f"{name}_add")([shortcut, x])
    return Activation("relu", name=f"{name}_out")(x)


def _stack(x, filters, blocks, stride1=2, name=""):
    x = _block(x, filters, stride=stride1, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = _block(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


def ResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None,  # noqa: N802
             pooling=None, classes=1000, classifier_activation="softmax", name="resnet50"):
    """ResNet50. ``weights``: None or the path of a Keras weights file (e.g.
    ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``). Inputs: RGB images run through
    ``preprocess_input`` ('caffe' mode). Smallest input: 32x32."""
    from ..layers import (
        Activation,
        BatchNormalization,
        Conv2D,
        Dense,
        GlobalAveragePooling2D,
        Input,
        MaxPooling2D,
        ZeroPadding2D,
    )

    shape = check_arguments("ResNet50", include_top, weights, input_shape, pooling, classes,
                            default_size=224, min_size=32)
    inputs = Input(shape) if input_tensor is None else input_tensor
    x = ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = BatchNormalization(axis=3, epsilon=_EPSILON, name="conv1_bn")(x)
    x = Activation("relu", name="conv1_relu")(x)
    x = ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _stack(x, 64, 3, stride1=1, name="conv2")
    x = _stack(x, 128, 4, name="conv3")
    x = _stack(x, 256, 6, name="conv4")
    x = _stack(x, 512, 3, name="conv5")

    def top(x):
        x = GlobalAveragePooling2D(name="avg_pool")(x)
        return Dense(classes, activation=classifier_activation, name="predictions")(x)

    return finish(name, inputs, x, top, include_top, pooling, weights,
                  pool_names=("avg_pool", "max_pool"))


def preprocess_input(x):
    """'caffe' mode, as ``keras.applications.resnet50.preprocess_input``."""
    return preprocess_caffe(x)
