"""fastconv's side of the benchmarks: backend primitives on raw arrays, ready to time.

Layers call the backend's primitives directly (``conv2d_forward``, ``conv2d_backward_data``,
``conv2d_backward_weight``, ``epilogue_backward`` for the bias gradient, pooling), with arrays
already on the backend, so the timed region holds kernels only: no Tensor, graph or argument
checking. ``auto`` is resolved per pass (autotuning included) before anything is timed.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from fastconv.backends import algorithms
from fastconv.backends.base import CONV_PASSES as PRIMITIVE_PASSES

CONV_PASSES = ("forward", "forward+backward")
#: (op, pass) of the pooling benchmarks. Max pooling's "forward" is inference's (no argmax, as
#: PyTorch's ``F.max_pool2d``); "forward+argmax" is training's (the argmax / indices that the
#: backward pass takes).
POOL_CASES = (("max", "forward"), ("max", "forward+argmax"), ("max", "backward"),
              ("avg", "forward"), ("avg", "backward"))


def device_of(backend) -> str:
    """``cuda`` for the GPU backends, else ``cpu``; decides
    which reference (PyTorch CPU or PyTorch/cuDNN) a row is compared with."""
    from fastconv.backends.device import DeviceBackend

    return "cuda" if isinstance(backend, DeviceBackend) else "cpu"


def backend_info(backend, algo: str | None = None) -> dict:
    info = {"library": "fastconv", "backend": backend.name, "device": device_of(backend),
            "threads": backend.num_threads()}
    if algo is not None:
        info.update(algo=algo, impl=f"{backend.name}/{algo}")
    else:
        info["impl"] = backend.name
    return info


def check_algorithm(backend, algo: str) -> None:
    if algo != "auto" and algo not in backend.conv_algorithms:
        pytest.skip(f"backend {backend.name} does not implement the {algo} algorithm")


def check_budget(settings, backend, gflop: float) -> None:
    """Skip a convolution too large for a slow backend in this mode (keeps runs short)."""
    budget = settings.gflop_budget.get(backend.name)
    if budget is not None and gflop > budget:
        pytest.skip(f"{backend.name} backend: {gflop:.2f} GFLOP per call is above the "
                    f"{settings.mode} run's {budget:g} GFLOP budget for this slow backend")


def conv_arrays(layer, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Host arrays (x NHWC, w HWIO, b, dy NHWC) for ``layer``, float32, Glorot-scaled kernel."""
    g = layer.geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g.x_shape, dtype=np.float32)
    scale = np.sqrt(2.0 / (g.kh * g.kw * (g.c + g.o)))
    w = (rng.standard_normal(g.w_shape, dtype=np.float32) * scale).astype(np.float32)
    b = rng.standard_normal(g.o, dtype=np.float32) * np.float32(0.1)
    dy = rng.standard_normal(g.y_shape, dtype=np.float32)
    return x, w, b, dy


def conv_fn(backend, layer, algo: str, conv_pass: str, arrays):
    """(fn, {pass: algorithm actually used}) for one layer on one backend."""
    g = layer.geometry
    x, w, b, dy = (backend.asarray(a) for a in arrays)
    passes = ("forward",) if conv_pass == "forward" else PRIMITIVE_PASSES
    chosen = {p: algorithms.resolve(backend, g, x.dtype, p, algo) for p in passes}
    sync = backend.synchronize
    fwd = chosen["forward"]

    if conv_pass == "forward":
        def fn():
            return sync(backend.conv2d_forward(x, w, b, g, fwd, "linear"))
    else:
        bwd_data, bwd_weight = chosen["backward_data"], chosen["backward_weight"]

        def fn():
            y = backend.conv2d_forward(x, w, b, g, fwd, "linear")
            dx = backend.conv2d_backward_data(dy, w, g, bwd_data)
            dw = backend.conv2d_backward_weight(x, dy, g, bwd_weight)
            _, db = backend.epilogue_backward(dy, None, "linear", True)  # the bias gradient
            return y, dx, dw, sync(db)
    return fn, chosen


def pool_arrays(case, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = case.geometry
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(g.x_shape, dtype=np.float32),
            rng.standard_normal(g.y_shape, dtype=np.float32))


def pool_fn(backend, case, op: str, pool_pass: str, arrays):
    g = case.geometry
    x, dy = (backend.asarray(a) for a in arrays)
    sync = backend.synchronize
    if op == "max":
        if pool_pass == "forward" and _takes_with_argmax(backend):
            return lambda: sync(backend.max_pool2d_forward(x, g, with_argmax=False)[0])
        if pool_pass.startswith("forward"):
            return lambda: sync(backend.max_pool2d_forward(x, g)[0])
        _, argmax = backend.max_pool2d_forward(x, g)
        return lambda: sync(backend.max_pool2d_backward(dy, argmax, g))
    if pool_pass == "forward":
        return lambda: sync(backend.avg_pool2d_forward(x, g))
    return lambda: sync(backend.avg_pool2d_backward(dy, g))


def _takes_with_argmax(backend) -> bool:
    """Whether the backend's max pooling can skip the argmax (inference)."""
    try:
        return "with_argmax" in inspect.signature(backend.max_pool2d_forward).parameters
    except (TypeError, ValueError):
        return False


def pool_bytes(case) -> int:
    """Bytes of the float32 input and output: read and written once by each pass."""
    g = case.geometry
    size_x = int(np.prod(g.x_shape))
    size_y = int(np.prod(g.y_shape))
    return 4 * (size_x + size_y)
