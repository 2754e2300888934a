"""VGG16 (Simonyan & Zisserman, 2014), layer for layer as ``keras.applications.VGG16``: the
same layer names, weight shapes and arguments, so Keras's weight files load unchanged."""

from __future__ import annotations

from ._common import check_arguments, finish, preprocess_caffe

#: (block, filters, convolutions)
_BLOCKS = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))


def VGG16(include_top=True, weights=None, input_tensor=None, input_shape=None,  # noqa: N802
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg16"):
    """VGG16. ``weights``: None (random) or the path of a Keras weights file, e.g.
    ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (with ``include_top=False``).
    Inputs: RGB images run through ``preprocess_input`` ('caffe' mode)."""
    from ..layers import Conv2D, Dense, Flatten, Input, MaxPooling2D

    shape = check_arguments("VGG16", include_top, weights, input_shape, pooling, classes,
                            default_size=224, min_size=32)
    inputs = Input(shape) if input_tensor is None else input_tensor
    x = inputs
    for block, filters, convs in _BLOCKS:
        for i in range(1, convs + 1):
            x = Conv2D(filters, (3, 3), activation="relu", padding="same",
                       name=f"block{block}_conv{i}")(x)
        x = MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)

    def top(x):
        x = Flatten(name="flatten")(x)
        x = Dense(4096, activation="relu", name="fc1")(x)
        x = Dense(4096, activation="relu", name="fc2")(x)
        return Dense(classes, activation=classifier_activation, name="predictions")(x)

    return finish(name, inputs, x, top, include_top, pooling, weights)


def preprocess_input(x):
    """'caffe' mode, as ``keras.applications.vgg16.preprocess_input``."""
    return preprocess_caffe(x)
