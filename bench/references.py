"""Reference libraries, measured in the same run: PyTorch (CPU, and CUDA/cuDNN where a GPU is
present) and onnxruntime. Imported lazily; a missing library or device skips the row with the
reason, never fails it.

PyTorch runs in its native NCHW layout with OIHW kernels; the NHWC/HWIO arrays are converted
before the timed region. Convolution backward passes call ``aten.convolution_backward`` and the
pooling backward passes ``aten.max_pool2d_with_indices_backward`` / ``aten.avg_pool2d_backward``
directly: the same primitives autograd would call, without building a graph.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

TORCH_DEVICES = ("cpu", "cuda")


def import_or_skip(module: str, what: str):
    """Import ``module`` or skip the test: '<what> is not installed ...'."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{what} is not installed ({exc}); pip install 'fastconv[bench]'")


def torch_or_skip(device: str = "cpu"):
    torch = import_or_skip("torch", "PyTorch")
    if device == "cuda" and not torch.cuda.is_available():
        build = torch.version.cuda or "a CPU-only build"
        pytest.skip(f"no CUDA device for PyTorch (torch.cuda.is_available() is False; "
                    f"PyTorch {torch.__version__}, CUDA {build})")
    return torch


def torch_sync(torch, device: str):
    """A function that waits for the device (a no-op on the CPU)."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def nchw(torch, x: np.ndarray, device: str):
    """NHWC host array -> contiguous NCHW tensor on ``device`` (outside any timed region)."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)


def oihw(torch, w: np.ndarray, device: str):
    """HWIO kernel -> OIHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).to(device)


def conv_fn(torch, layer, conv_pass: str, device: str, x, w, b, dy):
    """PyTorch's convolution of one layer: forward (with bias), or forward then the data, weight
    and bias gradients."""
    F = torch.nn.functional
    xt, wt, bt, dyt = nchw(torch, x, device), oihw(torch, w, device), \
        torch.from_numpy(b).to(device), nchw(torch, dy, device)
    stride, pad = (layer.stride,) * 2, (layer.pad,) * 2
    sync = torch_sync(torch, device)
    backward = torch.ops.aten.convolution_backward

    def forward():
        with torch.no_grad():
            y = F.conv2d(xt, wt, bt, stride, pad)
        sync()
        return y

    def forward_backward():
        with torch.no_grad():
            y = F.conv2d(xt, wt, bt, stride, pad)
            grads = backward(dyt, xt, wt, [layer.o], list(stride), list(pad), [1, 1], False,
                             [0, 0], 1, [True, True, True])
        sync()
        return y, grads

    return forward if conv_pass == "forward" else forward_backward


def pool_fn(torch, case, op: str, pool_pass: str, device: str, x, dy):
    """PyTorch's pooling: ``F.max_pool2d`` / ``F.avg_pool2d`` forward (what a PyTorch model
    calls; ``forward+argmax``: with ``return_indices``, as training needs), or the backward
    primitive given the forward's result. No tensor requires a gradient: no graph is built."""
    F = torch.nn.functional
    aten = torch.ops.aten
    xt, dyt = nchw(torch, x, device), nchw(torch, dy, device)
    k, s = [case.pool] * 2, [case.stride] * 2
    sync = torch_sync(torch, device)
    if op == "max" and pool_pass == "forward":
        def fn():
            y = F.max_pool2d(xt, k, s)
            sync()
            return y
    elif op == "max" and pool_pass == "forward+argmax":
        def fn():
            y = F.max_pool2d(xt, k, s, return_indices=True)
            sync()
            return y
    elif op == "max":
        _, indices = F.max_pool2d(xt, k, s, return_indices=True)

        def fn():
            dx = aten.max_pool2d_with_indices_backward(dyt, xt, k, s, [0, 0], [1, 1], False,
                                                       indices)
            sync()
            return dx
    elif pool_pass == "forward":
        def fn():
            y = F.avg_pool2d(xt, k, s, 0, False, False)
            sync()
            return y
    else:
        def fn():
            dx = aten.avg_pool2d_backward(dyt, xt, k, s, [0, 0], False, False, None)
            sync()
            return dx
    return fn


def ort_session(path, threads: int | None = None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (default: every core)."""
    ort = import_or_skip("onnxruntime", "onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
