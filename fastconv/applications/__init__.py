"""Ready-made networks.

* ``VGG16``, ``ResNet50``, ``InceptionV3``: layer for layer as ``keras.applications`` (names,
  arguments ``include_top``, ``weights``, ``input_shape``, ``pooling``, ``classes``,
  ``classifier_activation``), so the weight files Keras downloads load with
  ``weights="path/to/file.h5"``; each module has Keras's ``preprocess_input``.
* ``LeNet5`` and ``AlexNet``, after their papers (Keras has neither).
* ``lesson_model``: the lesson's MNIST network (``fastconv train-mnist`` trains it).
"""

from . import inception_v3, resnet50, vgg16
from .classic import ALEXNET_LRN, AlexNet, LeNet5, lesson_model
from .inception_v3 import InceptionV3
from .resnet50 import ResNet50
from .vgg16 import VGG16

__all__ = ["VGG16", "ResNet50", "InceptionV3", "LeNet5", "AlexNet", "lesson_model",
           "ALEXNET_LRN", "vgg16", "resnet50", "inception_v3"]
