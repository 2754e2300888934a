"""fastconv: a custom-kernel convolution engine with a Keras-style API.

Backends (``FASTCONV_BACKEND``): ``numba-cpu`` (default), ``numpy`` (the float64 reference),
``numba-cuda`` and ``cupy`` (NVIDIA GPUs; ``cupy:1`` names a device). Convolution algorithms
(``FASTCONV_CONV_ALGO``): ``auto`` (default), ``direct``, ``im2col``, ``winograd`` (F(2x2,3x3)),
``winograd4`` (F(4x4,3x3)).
"""

from ._version import __version__
from .backends import (
    BackendUnavailableError,
    available_backends,
    backend_names,
    current_backend_name,
    get_backend,
    set_backend,
    use_backend,
)
from .backends.algorithms import current_conv_algo, set_conv_algo, use_conv_algo
from .backends.precision import (
    current_inference_precision,
    set_inference_precision,
    use_inference_precision,
)
from .tensor import Tensor, no_grad


def set_num_threads(n: int) -> None:
    """Threads for the current backend's kernels (Numba's and BLAS's thread pools)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    get_backend().set_num_threads(n)


def get_num_threads() -> int:
    return get_backend().num_threads()


__all__ = [
    "__version__", "Tensor", "no_grad", "available_backends", "backend_names",
    "current_backend_name", "get_backend", "set_backend", "use_backend", "BackendUnavailableError",
    "current_conv_algo", "set_conv_algo", "use_conv_algo", "set_num_threads", "get_num_threads",
    "current_inference_precision", "set_inference_precision", "use_inference_precision",
]
