"""Convolution layers: forward and forward+backward, every backend x algorithm, and PyTorch.

Workloads: ``bench.workloads`` (``FULL_CONV``, ``QUICK_CONV``, ``SMOKE_CONV``). Algorithms that
cannot compute a layer (Winograd on 5x5, 11x11, 1x1 or strided kernels) have no row.
"""

from __future__ import annotations

import pytest

from . import references, subjects


def layer_info(layer, conv_pass: str) -> dict:
    return {"section": "conv", "workload": layer.name, "source": layer.source,
            "shape": layer.shape_text, "pass": conv_pass, "tags": list(layer.tags),
            "batch": layer.n, "images": layer.n, "dtype": "float32",
            "flops": layer.flops * (1 if conv_pass == "forward" else 3)}


@pytest.mark.parametrize("conv_pass", subjects.CONV_PASSES)
def test_conv_fastconv(measure, settings, layer, fc_backend, algo, conv_pass):
    subjects.check_algorithm(fc_backend, algo)
    subjects.check_budget(settings, fc_backend, layer.flops / 1e9)
    fn, chosen = subjects.conv_fn(fc_backend, layer, algo, conv_pass, subjects.conv_arrays(layer))
    measure(fn, {**layer_info(layer, conv_pass), **subjects.backend_info(fc_backend, algo),
                 "algorithms used": chosen})


@pytest.mark.parametrize("conv_pass", subjects.CONV_PASSES)
def test_conv_torch(measure, layer, torch_dev, conv_pass):
    torch, device = torch_dev
    fn = references.conv_fn(torch, layer, conv_pass, device, *subjects.conv_arrays(layer))
    measure(fn, {**layer_info(layer, conv_pass), "library": "torch", "impl": f"torch-{device}",
                 "device": device, "threads": torch.get_num_threads()})
