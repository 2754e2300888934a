"""The ``numba-cuda`` backend: fastconv's own ``@cuda.jit`` kernels, float32 and float64.

Convolutions: direct, im2col as an implicit GEMM (shared-memory tiles of the virtual patch
matrix, register blocking) and Winograd F(2x2,3x3) / F(4x4,3x3) (transform kernels and a tiled
batched GEMM), each with its three passes and the bias + ReLU epilogue fused. Grouped and
depthwise convolutions run as kernels of their own (``conv_grouped``: one launch per pass for
all groups). Pooling, the
epilogue's backward, the dense GEMM, Adam, batch normalisation, LRN and random numbers are
kernels too. Glue (softmax, losses, reshapes) runs on CuPy arrays, as in the ``cupy`` backend
(see ``fastconv.backends.device``).

On a GPU it needs CuPy; under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before
Numba is imported) it runs on the CPU on emulated device memory. Kernels compile lazily: nothing
touches CUDA at import.

Numba's host synchronisation on the stream of every CuPy array passed to a kernel
(``NUMBA_CUDA_ARRAY_INTERFACE_SYNC``) is turned off when the backend is created on a GPU, since
fastconv launches on the stream CuPy exports; an explicit ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC`` in
the environment is left as it is (see ``launch.configure_array_interface_sync``).
"""

from __future__ import annotations

import importlib.util

from ..base import conv_algorithm_table
from ..device import DeviceBackend
from . import conv, conv_grouped, elementwise, gemm, normalization, pool
from .launch import GPU_CONFIG, KERNELS, SIMULATED, configure_array_interface_sync, current_stream

_INSTALL = "pip install 'fastconv[cuda]'"


def unavailable_reason() -> str | None:
    """Why numba-cuda cannot run here (package, CuPy, driver or device missing), or None."""
    if importlib.util.find_spec("numba_cuda") is None:
        return f"the package 'numba-cuda' is not installed ({_INSTALL})"
    if SIMULATED:
        return None
    from numba import cuda

    if not cuda.is_available():
        reason = " ".join((cuda.cuda_error() or "").split()) or "no CUDA GPU was found"
        return (f"no usable CUDA GPU: {reason} (to run its kernels on the CPU instead, set "
                f"NUMBA_ENABLE_CUDASIM=1 before fastconv is imported)")
    if importlib.util.find_spec("cupy") is None:
        return ("CuPy is not installed; numba-cuda keeps its arrays in CuPy on a GPU (install "
                "the CuPy wheel matching your CUDA: cupy-cuda12x or cupy-cuda13x)")
    return None


class NumbaCudaBackend(DeviceBackend):
    name = "numba-cuda"
    emulated = SIMULATED
    #: timing kernels in the simulator measures the simulator: use the heuristics there
    autotune = not SIMULATED
    gemm, pool, elementwise, normalization = gemm, pool, elementwise, normalization
    conv_algorithm_classes = conv_algorithm_table(conv)

    def __init__(self):
        super().__init__()
        if not SIMULATED:
            import numba

            # fastconv sizes its own grids; small batches legitimately launch few blocks, and
            # Numba would warn about each such launch
            numba.config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
            # every launch goes to CuPy's current stream, the stream CuPy exports its arrays
            # on: Numba's host synchronisation per imported array is not needed (see launch)
            configure_array_interface_sync()

    # -- device --------------------------------------------------------------------------
    def synchronize(self, a=None):
        if not SIMULATED:
            current_stream().synchronize()
        return a

    def select_device(self, index: int) -> int:
        previous = super().select_device(index)
        if not SIMULATED:  # Numba's context follows the CUDA runtime's current device
            from numba import cuda

            cuda.select_device(index)
        return previous

    def describe_device(self) -> dict[str, object]:
        if SIMULATED:
            return {"name": "Numba CUDA simulator (kernels run on the CPU)",
                    "compute_capability": None, "memory_bytes": None}
        from numba import cuda

        dev = cuda.get_current_device()
        free, total = cuda.current_context().get_memory_info()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        return {"name": name, "compute_capability": dev.compute_capability,
                "memory_bytes": int(total), "free_bytes": int(free)}

    def device_errors(self):
        if SIMULATED:
            return ()
        from numba.cuda.cudadrv.driver import CudaAPIError

        return (CudaAPIError,)

    # -- grouped convolution (one launch per pass for all groups: conv_grouped) ---------------
    def grouped_conv2d_forward(self, x, w, b, geom, groups, activation="linear"):
        return conv_grouped.grouped_forward(self, x, w, b, geom, groups, activation)

    def prepare_grouped_conv2d_forward(self, geom, groups, activation):
        return conv_grouped.prepare_grouped_forward(self, geom, groups, activation)

    def grouped_conv2d_backward_data(self, dy, w, geom, groups):
        return conv_grouped.grouped_backward_data(self, dy, w, geom, groups)

    def grouped_conv2d_backward_weight(self, x, dy, geom, groups):
        return conv_grouped.grouped_backward_weight(self, x, dy, geom, groups)

    def heuristic_conv_algorithm(self, geom, conv_pass, candidates):
        # few products per output: one thread per output beats a GEMM's tiles; backward-weight
        # sums over the whole batch per output, which only the implicit GEMM splits
        if (geom.c * geom.kh * geom.kw <= 32 and conv_pass != "backward_weight"
                and "direct" in candidates):
            return "direct"
        return "im2col" if "im2col" in candidates else candidates[0]


def kernels_for_gpu() -> list:
    """Every kernel the backend launches on a GPU: those declared at import plus the variants
    that kernel factories make for the GPU's launch sizes (modules with factories offer
    ``declare_gpu_kernels(config)``). The PTX resource check compiles these."""
    from . import conv_implicit_gemm, conv_winograd

    for module in (conv, conv_implicit_gemm, conv_winograd, elementwise, gemm, normalization,
                   pool):
        declare = getattr(module, "declare_gpu_kernels", None)
        if declare is not None:
            declare(GPU_CONFIG)
    return list(KERNELS.values())


def create_backend() -> NumbaCudaBackend:
    return NumbaCudaBackend()
