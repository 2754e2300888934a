"""Depthwise and grouped 3x3 convolutions, forward: fastconv's grouped kernels against
``torch.nn.functional.conv2d(groups=)`` measured in the same run.

Workloads (NHWC float32, 3x3 kernels, padding 1 on every side):

* MobileNetV2 (Sandler et al. 2018) depthwise layers: 112x112x96 with stride 2 (block 2's
  expansion, the largest depthwise input of the network) and 14x14x576 with stride 1 (blocks
  11-13), batch 1 and 8;
* ResNeXt-50 32x4d (Xie et al. 2017) stage 2: 28x28x256 -> 256 in 32 groups of 8 channels,
  batch 1 and 8.

Rows go to the report's convolution section (``section`` ``conv``, pass ``forward``), so each
fastconv row shows its speed-up over PyTorch. GFLOP counts the grouped convolution's own
multiply-adds x 2 (C_in / groups products per output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fastconv.ops.conv import grouped_geometry

from . import references, subjects


@dataclass(frozen=True)
class GroupedLayer:
    """``n x h x w x c`` -> ``o`` channels in ``groups`` groups, ``k x k`` kernels."""

    name: str
    source: str
    n: int
    h: int
    w: int
    c: int
    o: int
    groups: int
    k: int = 3
    stride: int = 1
    pad: int = 1

    @property
    def geometry(self):
        return grouped_geometry((self.n, self.h, self.w, self.c),
                                (self.k, self.k, self.c // self.groups, self.o), self.groups,
                                self.stride, self.pad)

    @property
    def flops(self) -> int:
        return self.geometry.flops // self.groups

    @property
    def shape_text(self) -> str:
        g = self.geometry
        kind = "depthwise" if self.groups == self.c else f"{self.groups} groups"
        return (f"{self.n}x{self.h}x{self.w}x{self.c} -> {g.oh}x{g.ow}x{self.o}, "
                f"{self.k}x{self.k} s{self.stride} p{self.pad}, {kind}")


def _full() -> tuple[GroupedLayer, ...]:
    layers = []
    for n in (1, 8):
        layers += [
            GroupedLayer(f"mobilenetv2-dw112s2-b{n}", "MobileNetV2", n, 112, 112, 96, 96, 96,
                         stride=2),
            GroupedLayer(f"mobilenetv2-dw14-b{n}", "MobileNetV2", n, 14, 14, 576, 576, 576),
            GroupedLayer(f"resnext50-g32-28-b{n}", "ResNeXt-50 32x4d", n, 28, 28, 256, 256, 32),
        ]
    return tuple(layers)


LAYERS = {
    "full": _full(),
    "quick": _full(),  # milliseconds each: the quick run keeps them all
    "smoke": (
        GroupedLayer("smoke-dw-s2", "smoke", 1, 12, 12, 16, 16, 16, stride=2),
        GroupedLayer("smoke-g8", "smoke", 1, 8, 8, 32, 32, 8),
    ),
}


def _arrays(layer, seed: int = 0):
    g = layer.geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g.x_shape, dtype=np.float32)
    w_shape = (layer.k, layer.k, layer.c // layer.groups, layer.o)
    scale = np.sqrt(2.0 / (layer.k * layer.k * (layer.c // layer.groups + layer.o // layer.groups)))
    w = (rng.standard_normal(w_shape, dtype=np.float32) * scale).astype(np.float32)
    b = rng.standard_normal(layer.o, dtype=np.float32) * np.float32(0.1)
    return x, w, b


def _info(layer) -> dict:
    return {"section": "conv", "workload": layer.name, "source": layer.source,
            "shape": layer.shape_text, "pass": "forward", "tags": ["grouped"],
            "batch": layer.n, "images": layer.n, "dtype": "float32", "flops": layer.flops}


def pytest_generate_tests(metafunc):
    if "grouped_layer" in metafunc.fixturenames:
        mode = "smoke" if metafunc.config.getoption("smoke") else (
            "quick" if metafunc.config.getoption("quick") else "full")
        metafunc.parametrize("grouped_layer", LAYERS[mode], ids=lambda la: la.name)


def test_grouped_fastconv(measure, settings, grouped_layer, fc_backend):
    layer = grouped_layer
    subjects.check_budget(settings, fc_backend, layer.flops / 1e9)
    g = layer.geometry
    x, w, b = (fc_backend.asarray(a) for a in _arrays(layer))
    sync = fc_backend.synchronize

    def fn():
        return sync(fc_backend.grouped_conv2d_forward(x, w, b, g, layer.groups, "linear"))

    measure(fn, {**_info(layer), **subjects.backend_info(fc_backend)})


def test_grouped_torch(measure, grouped_layer, torch_dev):
    torch, device = torch_dev
    layer = grouped_layer
    x, w, b = _arrays(layer)
    xt, wt = references.nchw(torch, x, device), references.oihw(torch, w, device)
    bt = torch.from_numpy(b).to(device)
    sync = references.torch_sync(torch, device)
    conv = torch.nn.functional.conv2d

    def fn():
        with torch.no_grad():
            y = conv(xt, wt, bt, layer.stride, layer.pad, 1, layer.groups)
        sync()
        return y

    measure(fn, {**_info(layer), "library": "torch", "impl": f"torch-{device}", "device": device,
                 "threads": torch.get_num_threads()})


@pytest.mark.parametrize("small", LAYERS["smoke"], ids=lambda la: la.name)
def test_grouped_subjects_compute_the_same(small):
    """The two sides of a row compute the same convolution (PyTorch's OIHW with groups against
    fastconv's grouped HWIO), checked on the small layers."""
    torch = references.torch_or_skip("cpu")
    import fastconv

    be = fastconv.get_backend("numpy")
    layer = small
    x, w, b = _arrays(layer)
    want = torch.nn.functional.conv2d(references.nchw(torch, x, "cpu"),
                                      references.oihw(torch, w, "cpu"), torch.from_numpy(b),
                                      layer.stride, layer.pad, 1, layer.groups).numpy()
    got = be.grouped_conv2d_forward(x, w, b, layer.geometry, layer.groups)
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
