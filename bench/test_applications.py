"""Whole networks from ``fastconv.applications``, inference: VGG16 without its top at 224x224
(batch 1 and 8) and ResNet50 with its top at 224x224 (batch 1 and 8); PyTorch (the same
networks written with ``torch.nn``, holding the same weights) and onnxruntime (PyTorch's copy
exported to ONNX) measured alongside.

fastconv runs ``model.predict_on_batch`` (host NumPy arrays in and out). Each reference copy is
checked once against fastconv before anything is timed. The quick run keeps batch 1; the smoke
run has VGG16 at 32x32, batch 1, only.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import fastconv

from . import references, subjects

#: network -> (builder keyword arguments, GFLOP per 224x224 image: multiply-adds x 2)
NETWORKS = {
    "vgg16-notop": ({"include_top": False}, 30.7),
    "resnet50": ({"include_top": True}, 7.7),
}
BATCHES = (1, 8)


def image_size(settings) -> int:
    return 32 if settings.mode == "smoke" else 224


def check_batch(settings, batch: int) -> None:
    if settings.mode != "full" and batch != 1:
        pytest.skip(f"the {settings.mode} run keeps batch 1 only")


def images(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(3).random((batch, size, size, 3), dtype=np.float32)


def info(network: str, batch: int, size: int) -> dict:
    return {"section": "apps", "workload": f"{network}-{size}-b{batch}", "batch": batch,
            "images": batch, "shape": f"{batch}x{size}x{size}x3"}


def build(network: str, size: int):
    """The fastconv network with random weights (He-scaled kernels, BatchNormalization
    statistics away from 0 and 1, so that the reference copies are really checked)."""
    from fastconv import applications
    from fastconv.utils import clear_session, set_random_seed

    clear_session()
    set_random_seed(0)
    kwargs, _ = NETWORKS[network]
    name = "VGG16" if network.startswith("vgg16") else "ResNet50"
    model = getattr(applications, name)(input_shape=(size, size, 3), **kwargs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif cls == "Conv2D":
            w = layer.get_weights()
            fan_in = np.prod(w[0].shape[:3])
            w[0] = rng.normal(0, np.sqrt(2.0 / fan_in), w[0].shape)
            layer.set_weights(w)
    return model


# -- the same networks in torch.nn --------------------------------------------------------------

def _conv(torch, layer, padding):
    kernel, *bias = layer.get_weights()
    conv = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2],
                           stride=layer.strides, padding=padding, bias=bool(bias))
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
        if bias:
            conv.bias.copy_(torch.from_numpy(bias[0]))
    return conv


def _bn(torch, layer):
    gamma, beta, mean, var = layer.get_weights()
    bn = torch.nn.BatchNorm2d(len(gamma), eps=layer.epsilon)
    with torch.no_grad():
        for param, value in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean),
                             (bn.running_var, var)):
            param.copy_(torch.from_numpy(value))
    return bn


def torch_vgg16_notop(torch, model):
    nn = torch.nn
    layers = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "Conv2D":
            layers += [_conv(torch, layer, padding=1), nn.ReLU()]
        elif cls == "MaxPooling2D":
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def torch_resnet50(torch, model):
    """ResNet50 v1 as Keras builds it: the stride on each block's first 1x1 convolution,
    BatchNormalization epsilon 1.001e-5, softmax output."""
    nn = torch.nn
    get = model.get_layer

    def conv_bn(prefix, padding):
        return _conv(torch, get(f"{prefix}_conv"), padding), _bn(torch, get(f"{prefix}_bn"))

    class Block(nn.Module):
        def __init__(self, name, shortcut):
            super().__init__()
            self.c1, self.b1 = conv_bn(f"{name}_1", 0)
            self.c2, self.b2 = conv_bn(f"{name}_2", 1)
            self.c3, self.b3 = conv_bn(f"{name}_3", 0)
            self.shortcut = (nn.Sequential(_conv(torch, get(f"{name}_0_conv"), 0),
                                           _bn(torch, get(f"{name}_0_bn"))) if shortcut
                             else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = torch.relu(self.b2(self.c2(y)))
            return torch.relu(self.shortcut(x) + self.b3(self.c3(y)))

    blocks = []
    for stage, count in (("conv2", 3), ("conv3", 4), ("conv4", 6), ("conv5", 3)):
        blocks += [Block(f"{stage}_block{i}", i == 1) for i in range(1, count + 1)]
    dense = get("predictions")
    kernel, bias = dense.get_weights()
    fc = nn.Linear(*kernel.shape)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
        fc.bias.copy_(torch.from_numpy(bias))
    # conv1_pad + 7x7 valid = padding 3; pool1_pad (zeros, after a ReLU) + 3x3/2 max = padding 1
    return nn.Sequential(_conv(torch, get("conv1_conv"), 3), _bn(torch, get("conv1_bn")),
                         nn.ReLU(), nn.MaxPool2d(3, 2, padding=1), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc, nn.Softmax(dim=1))


TORCH_BUILDERS = {"vgg16-notop": torch_vgg16_notop, "resnet50": torch_resnet50}


def nhwc(y):
    """PyTorch's NCHW feature maps as NHWC (what fastconv returns)."""
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


def check(expected, actual, what: str) -> None:
    scale = max(float(np.abs(expected).max()), 1e-30)
    err = float(np.abs(np.asarray(actual, np.float64) - expected).max()) / scale
    if expected.shape != actual.shape or err > 1e-3:
        raise AssertionError(f"{what} does not compute what fastconv does (relative "
                             f"difference {err:.2e}); its ratios would be meaningless")


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=list(NETWORKS))
def network(request, settings):
    """(name, fastconv model, image size). The smoke run keeps VGG16 only, at 32x32."""
    if settings.mode == "smoke" and request.param != "vgg16-notop":
        pytest.skip(f"{request.param}: whole networks other than VGG16 are left out of the "
                    f"smoke run")
    size = image_size(settings)
    return request.param, build(request.param, size), size


@pytest.fixture(scope="module")
def torch_network(torch_cpu, network):
    name, model, size = network
    net = TORCH_BUILDERS[name](torch_cpu, model).eval()
    x = images(1, size)
    with torch_cpu.no_grad():
        actual = net(torch_cpu.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    check(model.predict_on_batch(x), nhwc(actual), f"the PyTorch copy of {name}")
    return net


@pytest.fixture(scope="module")
def onnx_network(torch_cpu, torch_network, network, tmp_path_factory):
    name, model, size = network
    path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch_cpu.onnx.export(torch_network.cpu().eval(), (torch_cpu.zeros((1, 3, size, size)),),
                              str(path), dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    session = references.ort_session(path)
    x = images(1, size)
    actual = session.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0]
    check(model.predict_on_batch(x), nhwc(actual), f"the ONNX export of {name}")
    return path


# -- the rows -----------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_apps_fastconv(measure, network, fc_backend, settings, batch):
    check_batch(settings, batch)
    name, model, size = network
    if settings.mode == "smoke" and fc_backend.name == "numpy":
        pytest.skip("the smoke run times whole networks on numba-cpu only (numpy takes seconds)")
    gflop = NETWORKS[name][1] * batch * (size / 224) ** 2
    subjects.check_budget(settings, fc_backend, gflop)
    x = images(batch, size)
    with fastconv.use_backend(fc_backend.name):
        model.predict_on_batch(x)  # plans and packed kernels for this backend
        measure(lambda: model.predict_on_batch(x),
                {**info(name, batch, size), **subjects.backend_info(fc_backend, "auto")})


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_apps_torch(measure, network, torch_network, torch_cpu, settings, batch):
    check_batch(settings, batch)
    name, _, size = network
    torch = torch_cpu
    x = references.nchw(torch, images(batch, size), "cpu")

    def predict():
        with torch.inference_mode():
            return torch_network(x)

    measure(predict, {**info(name, batch, size), "library": "torch", "impl": "torch-cpu",
                      "device": "cpu", "threads": torch.get_num_threads()})


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_apps_onnxruntime(measure, network, onnx_network, settings, batch):
    check_batch(settings, batch)
    name, _, size = network
    threads = os.cpu_count() or 1
    session = references.ort_session(onnx_network, threads)
    x = images(batch, size).transpose(0, 3, 1, 2).copy()
    measure(lambda: session.run(None, {"input": x}),
            {**info(name, batch, size), "library": "onnxruntime", "impl": "onnxruntime",
             "device": "cpu", "threads": threads})
