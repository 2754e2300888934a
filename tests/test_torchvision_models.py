"""torchvision's convolutional classification models, as users export them to ONNX, loaded with
``fastconv.onnx.load`` and compared with onnxruntime on the same file.

Each model is built with random weights and then given non-trivial statistics (every
batch-norm's running mean and variance, scale and shift, every bias, away from 0 and 1), so
that a dropped or transposed term shows; it is exported in ``eval()`` with a dynamic batch axis,
by the TorchScript exporter (``dynamo=False``, opset 17, PyTorch's default constant folding) and,
for three families whose graphs differ most, by PyTorch's default (dynamo) exporter, which keeps
the weights in an external ``.onnx.data`` file. Inputs are small where the model allows; the
batch predicted (3) differs from the one exported (2). The error is relative to the output's
magnitude: ``max |fastconv - onnxruntime| / max |onnxruntime| <= 1e-4``.

torchvision's compiled operators do not load against the CPU build of PyTorch the test extra
installs; its models do once ``torch.library.register_fake`` is stubbed before the import,
which this module does (it registers nothing the models use).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
import torchvision  # noqa: E402

import fastconv  # noqa: E402
import fastconv.onnx  # noqa: E402

#: model -> input size (H = W): the smallest convenient size the model allows (alexnet's and
#: vgg's adaptive pooling exports only where its output divides the last feature map: at 224)
MODELS = {
    "alexnet": 224, "vgg11": 224, "resnet18": 32, "resnet50": 32, "wide_resnet50_2": 32,
    "resnext50_32x4d": 32, "squeezenet1_1": 48, "googlenet": 32, "inception_v3": 75,
    "densenet121": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 32, "mobilenet_v3_large": 32,
    "mnasnet0_5": 32, "shufflenet_v2_x1_0": 32, "shufflenet_v2_x2_0": 32,
    "efficientnet_b0": 32, "efficientnet_v2_s": 32, "regnet_x_400mf": 32,
    "regnet_y_400mf": 32, "convnext_tiny": 32,
}
#: exported by the default (dynamo) exporter too, with its external data file: the families
#: whose graphs differ most (hard activations with squeeze-and-excitation, shape arithmetic,
#: layer norm with GELU)
DYNAMO = ("mobilenet_v3_small", "shufflenet_v2_x1_0", "convnext_tiny")
TOLERANCE = 1e-4
#: the batch predicted (the files are exported with 2): 1 for the 224 x 224 models
BATCH = 3


def build(name: str, seed: int = 0):
    """torchvision's ``name`` in eval mode, with random non-trivial statistics and biases."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet/inception's init_weights notices
        net = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                c = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                module.running_var.copy_(0.5 + torch.rand(c, generator=g))
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) and (
                    module.weight is not None):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=g))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and (
                    module.bias is not None):
                module.bias.add_(0.05 * torch.randn(module.bias.shape, generator=g))
    return net


def export(net, path, size: int, dynamo: bool = False) -> None:
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=64)
            torch.onnx.export(net, (x,), str(path), input_names=["x"],
                              dynamic_shapes={"x": {0: batch}})
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], dynamic_axes={"x": {0: "n"}})


def relative_error(path, size: int, seed: int = 2) -> float:
    """fastconv's prediction of a batch of images against onnxruntime's, relative to the
    largest output."""
    batch = 1 if size >= 224 else BATCH
    x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    model = fastconv.onnx.load(path)
    got = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_export_matches_onnxruntime(name, tmp_path):
    path = tmp_path / f"{name}.onnx"
    export(build(name), path, MODELS[name])
    assert relative_error(path, MODELS[name]) <= TOLERANCE


@pytest.mark.parametrize("name", DYNAMO)
def test_default_exporter_with_external_data_matches_onnxruntime(name, tmp_path):
    path = tmp_path / f"{name}.onnx"
    export(build(name), path, MODELS[name], dynamo=True)
    assert (tmp_path / f"{name}.onnx.data").exists(), "the exporter kept its weights inline"
    assert relative_error(path, MODELS[name]) <= TOLERANCE


def test_grouped_models_need_no_option(tmp_path):
    """A depthwise network imports as grouped layers, not as dense convolutions with
    block-diagonal kernels."""
    path = tmp_path / "mnasnet0_5.onnx"
    export(build("mnasnet0_5"), path, 32)
    model = fastconv.onnx.load(path)
    grouped = [layer for layer in model.layers if getattr(layer, "groups", 1) > 1]
    assert grouped, "no layer kept the file's groups"
    for layer in grouped:
        assert layer.kernel.shape[2] * layer.groups == layer.input_shape[-1]


def test_imported_mobilenet_v2_trains(tmp_path):
    """A loaded mobilenet_v2 fits: a few steps on random data lower the loss."""
    path = tmp_path / "mobilenet_v2.onnx"
    export(build("mobilenet_v2"), path, 32)
    model = fastconv.onnx.load(path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 1000, 16)
    model.compile(optimizer=fastconv.optimizers.Adam(1e-3),
                  loss=fastconv.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < 0.9 * before
