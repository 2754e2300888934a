"""SpatialDropout2D: dropout of whole feature maps."""

from __future__ import annotations

import numbers

from ..ops.regularization import spatial_dropout
from .base import Layer, _identity, register
from .convolutional import check_data_format
from .core import unsupported


@register
class SpatialDropout2D(Layer):
    """Zero whole channels of each NHWC image with probability ``rate`` while training, the
    others scaled by 1 / (1 - rate) (Keras's SpatialDropout2D: one draw per sample and channel,
    from fastconv's seeded stream, ``fastconv.utils.set_random_seed``); the identity at
    inference."""

    input_ndim = 4

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        where = f"SpatialDropout2D layer '{self.name}'"
        unsupported(where, seed=seed)
        check_data_format(where, data_format)
        if not isinstance(rate, numbers.Real) or isinstance(rate, bool) or not 0 <= rate < 1:
            raise ValueError(f"{where}: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def call(self, x, training=False):
        return spatial_dropout(x, self.rate, training=training)

    def inference_step(self, input_shape, backend):
        return _identity

    def get_config(self):
        # Keras's SpatialDropout2D takes no 'trainable' argument (it has no weights)
        config = {k: v for k, v in super().get_config().items() if k != "trainable"}
        return {**config, "rate": self.rate}
