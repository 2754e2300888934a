"""LeNet-5, AlexNet and the lesson's network: small Sequential models."""

from __future__ import annotations

#: AlexNet's local response normalisation (Krizhevsky et al. 2012, section 3.3):
#: b = a / (k + alpha * sum over n adjacent channels of a^2) ** beta with k=2, n=5,
#: alpha=1e-4, beta=0.75. fastconv's LRN takes TensorFlow's parameters
#: (tf.nn.local_response_normalization): the window runs depth_radius channels on each side,
#: so n=5 is depth_radius=2; bias is k; alpha multiplies the plain sum, as in the paper
#: (Caffe divides it by n, TensorFlow and the paper do not); beta is beta.
ALEXNET_LRN = {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}


def LeNet5(input_shape=(32, 32, 1), classes=10, name="lenet5"):  # noqa: N802
    """LeNet-5 (LeCun et al. 1998): C1 6@5x5 tanh, S2 2x2 average pooling, C3 16@5x5 tanh,
    S4, C5 120@5x5 tanh, F6 84 tanh, and a softmax over ``classes`` (the paper's RBF output
    layer replaced by softmax, as usual today). The paper's input is 32x32: MNIST's 28x28
    digits padded by 2 pixels on each side. 61,706 parameters with 10 classes."""
    from ..layers import AveragePooling2D, Conv2D, Dense, Flatten, Input
    from ..models import Sequential

    return Sequential([
        Input(input_shape),
        Conv2D(6, 5, activation="tanh", name="c1"),
        AveragePooling2D(2, name="s2"),
        Conv2D(16, 5, activation="tanh", name="c3"),
        AveragePooling2D(2, name="s4"),
        Conv2D(120, 5, activation="tanh", name="c5"),
        Flatten(name="flatten"),
        Dense(84, activation="tanh", name="f6"),
        Dense(classes, activation="softmax", name="predictions"),
    ], name=name)


def AlexNet(input_shape=(227, 227, 3), classes=1000, dropout=0.5, name="alexnet"):  # noqa: N802
    """AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
    Convolutional Neural Networks"), as one tower: the paper splits conv2, conv4, conv5 and
    the dense layers over two GPUs; here each layer sees all channels of the one before
    (62,378,344 parameters with 1000 classes). Local response normalisation follows conv1 and
    conv2 with the paper's k=2, n=5, alpha=1e-4, beta=0.75 (``ALEXNET_LRN``), max pooling is
    overlapping (3x3, stride 2), and dropout 0.5 precedes fc7 and fc8. The paper's 224x224
    input does not divide evenly by conv1's stride; 227x227, as in most implementations, does.
    Keras has no AlexNet, so this follows the paper."""
    from ..layers import (
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        Input,
        LocalResponseNormalization,
        MaxPooling2D,
    )
    from ..models import Sequential

    return Sequential([
        Input(input_shape),
        Conv2D(96, 11, strides=4, activation="relu", name="conv1"),
        LocalResponseNormalization(**ALEXNET_LRN, name="norm1"),
        MaxPooling2D(3, strides=2, name="pool1"),
        Conv2D(256, 5, padding="same", activation="relu", name="conv2"),
        LocalResponseNormalization(**ALEXNET_LRN, name="norm2"),
        MaxPooling2D(3, strides=2, name="pool2"),
        Conv2D(384, 3, padding="same", activation="relu", name="conv3"),
        Conv2D(384, 3, padding="same", activation="relu", name="conv4"),
        Conv2D(256, 3, padding="same", activation="relu", name="conv5"),
        MaxPooling2D(3, strides=2, name="pool5"),
        Flatten(name="flatten"),
        Dense(4096, activation="relu", name="fc6"),
        Dropout(dropout, name="drop6"),
        Dense(4096, activation="relu", name="fc7"),
        Dropout(dropout, name="drop7"),
        Dense(classes, activation="softmax", name="fc8"),
    ], name=name)


def lesson_model(input_shape=(28, 28, 1), classes=10):
    """The lesson's network (../shared/lesson/lesson_keras.py): three 3x3 ReLU convolutions
    with 2x2 max pooling between them, a 64-unit ReLU layer and a softmax over ``classes``
    (93,322 parameters on MNIST)."""
    from ..layers import Conv2D, Dense, Flatten, MaxPooling2D
    from ..models import Sequential

    model = Sequential()
    model.add(Conv2D(32, (3, 3), activation="relu", input_shape=input_shape))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(Flatten())
    model.add(Dense(64, activation="relu"))
    model.add(Dense(classes, activation="softmax"))
    return model
