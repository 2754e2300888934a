"""The ``cupy`` backend's class: CuPy (or emulated) device memory and the CUDA C launchers."""

from __future__ import annotations

from ..base import conv_algorithm_table
from ..device import DeviceBackend
from . import conv, conv_grouped, elementwise, gemm, normalization, pool
from .loader import EMULATED


class CupyBackend(DeviceBackend):
    name = "cupy"
    emulated = EMULATED
    #: timing kernels in the emulation measures the CPU: use the heuristics there
    autotune = not EMULATED
    gemm, pool, elementwise, normalization = gemm, pool, elementwise, normalization
    conv_algorithm_classes = conv_algorithm_table(conv)

    # -- device --------------------------------------------------------------------------
    def synchronize(self, a=None):
        if not EMULATED:
            self.xp.cuda.get_current_stream().synchronize()
        return a

    def describe_device(self) -> dict[str, object]:
        if EMULATED:
            from . import emulation, loader

            sanitizer = f", built with -fsanitize={loader.SANITIZER}" if loader.SANITIZER else ""
            return {"name": f"CUDA C emulated on the CPU ({emulation.compiler_version()}"
                            f"{sanitizer})",
                    "compute_capability": None, "memory_bytes": None}
        import cupy

        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        free, total = device.mem_info
        cc = device.compute_capability  # "90"
        return {"name": name, "compute_capability": (int(cc[:-1]), int(cc[-1])),
                "memory_bytes": int(total), "free_bytes": int(free)}

    def device_errors(self):
        from .errors import KernelLaunchError

        if EMULATED:
            return (KernelLaunchError,)
        import cupy

        return (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError)

    # -- grouped convolution (kernels/conv_grouped.cu: one launch per pass for all groups) ----
    def grouped_conv2d_forward(self, x, w, b, geom, groups, activation="linear"):
        return conv_grouped.grouped_forward(self, x, w, b, geom, groups, activation)

    def prepare_grouped_conv2d_forward(self, geom, groups, activation):
        return conv_grouped.prepare_grouped_forward(self, geom, groups, activation)

    def grouped_conv2d_backward_data(self, dy, w, geom, groups):
        return conv_grouped.grouped_backward_data(self, dy, w, geom, groups)

    def grouped_conv2d_backward_weight(self, x, dy, geom, groups):
        return conv_grouped.grouped_backward_weight(self, x, dy, geom, groups)

    def heuristic_conv_algorithm(self, geom, conv_pass, candidates):
        if geom.c * geom.kh * geom.kw <= 32 and "direct" in candidates:
            return "direct"
        return "im2col" if "im2col" in candidates else candidates[0]
