"""Pooling kernels (max, average; forward and backward) -- contract for the backend class.

Every function takes the backend ``be`` first; arrays are device arrays (``be.empty``/``be.zeros``
allocate), NHWC, C-contiguous; ``geom`` is a PoolGeometry (``g.astuple()`` in POOL_FIELDS order).
"""


def max_forward(be, x, geom, with_argmax):
    """-> (y, argmax int32 or None); semantics of Backend.max_pool2d_forward."""
    raise NotImplementedError


def max_backward(be, dy, argmax, geom):
    raise NotImplementedError


def avg_forward(be, x, geom):
    raise NotImplementedError


def avg_backward(be, dy, geom):
    raise NotImplementedError
