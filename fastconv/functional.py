"""The functional API: differentiable ops on Tensors (``conv2d``, ``max_pool2d``, ``add`` ...).

A stable facade over :mod:`fastconv.ops`, where the ops live split by family (conv, pool,
activation, shape, merge, normalization, losses ...). The ``<Name>Op`` Function classes are
importable from here too (``SigmoidOp.evaluate`` on raw arrays), but ``__all__`` lists the
functions only.

Layouts: NHWC activations, HWIO convolution kernels, (in, out) dense kernels.
"""

from __future__ import annotations

from .ops import *  # noqa: F403 - the functional API, the Op classes and fold_batch_norm
from .ops import FUNCTIONAL_API

__all__ = list(FUNCTIONAL_API)
