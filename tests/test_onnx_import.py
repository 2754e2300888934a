"""fastconv.onnx.load: PyTorch models exported with torch.onnx.export against PyTorch's outputs,
the real architectures shipped inside the onnx wheel against onnxruntime, fine-tuning an
imported model, and the errors for unsupported operators and foreign files."""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
import pytest
import torch  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

import fastconv.onnx as fo  # noqa: E402
from fastconv.saving import InvalidModelFileError  # noqa: E402

nn = torch.nn


def torch_export(net, x, path):
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
        with torch.no_grad():
            return net(x).numpy()


def nhwc(x):
    """Channels first (PyTorch, ONNX) to channels last (fastconv)."""
    return np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1) if x.dim() == 4
                                else x.numpy().transpose(0, 2, 1))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 6, 3, stride=2, dilation=1)
        self.fc1 = nn.Linear(6 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        y = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        y = torch.sigmoid(self.c2(y))
        y = torch.tanh(self.fc1(torch.flatten(y, 1)))
        return torch.softmax(self.fc2(y), 1)


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bna = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bnb = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bna(self.a(x)))
        y = self.bnb(self.b(y))
        y = torch.relu(x + y)
        y = nn.functional.relu6(self.down(y))
        y = torch.cat([y, nn.functional.leaky_relu(y, 0.2)], 1)
        y = y.mean((2, 3))
        return self.fc(y)


class Asymmetric(nn.Module):
    """Asymmetric zero padding, ceil_mode pooling, count_include_pad average pooling, dilation,
    global max pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, (3, 2), stride=2, padding=(2, 1))
        self.c2 = nn.Conv2d(6, 5, 3, dilation=2, padding=2)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        y = nn.functional.pad(x, (0, 1, 2, 0))
        y = torch.relu(self.c1(y))
        y = nn.functional.max_pool2d(y, 3, 2, padding=1, ceil_mode=True)
        y = nn.functional.avg_pool2d(y, 2, 1, padding=1, ceil_mode=True, count_include_pad=True)
        y = nn.functional.avg_pool2d(self.c2(y), 3, 2, ceil_mode=True, count_include_pad=False)
        y = nn.functional.adaptive_max_pool2d(y, 1)
        return self.fc(torch.flatten(y, 1))


class Sequence1D(nn.Module):
    """Conv1d with asymmetric padding and dilation, ceil_mode 1D pooling, then a Linear layer
    after a flatten of (channels, steps)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 5, 3, padding=2, dilation=2)
        self.c2 = nn.Conv1d(5, 4, 2, stride=2)
        self.fc = nn.Linear(4 * 5, 3)

    def forward(self, x):
        y = nn.functional.pad(torch.relu(self.c1(x)), (1, 0))
        y = nn.functional.max_pool1d(y, 3, 2, padding=1, ceil_mode=True)
        y = nn.functional.avg_pool1d(self.c2(y), 2, 1, padding=1, count_include_pad=True)
        return self.fc(torch.flatten(y, 1))


def _randomise_bn(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


@pytest.mark.parametrize("make,shape", [(SmallCNN, (2, 3, 12, 12)), (ResBlock, (2, 3, 10, 9)),
                                        (Asymmetric, (2, 3, 17, 14)), (Sequence1D, (2, 3, 13))],
                         ids=["small_cnn", "resnet_block", "asymmetric_ceil", "sequence_1d"])
def test_pytorch_exports_match_pytorch(tmp_path, make, shape):
    torch.manual_seed(0)
    net = make()
    _randomise_bn(net, 1)
    x = torch.randn(*shape)
    want = torch_export(net, x, tmp_path / "m.onnx")
    model = fo.load(tmp_path / "m.onnx")
    got = model.predict(nhwc(x), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    graph = model(nhwc(x)).numpy()  # the training graph agrees with the inference plan
    np.testing.assert_allclose(graph, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_imported_model_fine_tunes(tmp_path):
    torch.manual_seed(0)
    net = SmallCNN()
    x = torch.randn(16, 3, 12, 12)
    torch_export(net, x, tmp_path / "m.onnx")
    model = fo.load(tmp_path / "m.onnx")
    assert model.trainable_weights
    y = np.eye(5, dtype=np.float32)[np.arange(16) % 5]
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    before = model.evaluate(nhwc(x), y, verbose=0)
    kernel = model.trainable_weights[0].numpy().copy()
    model.fit(nhwc(x), y, epochs=5, batch_size=16, verbose=0)
    after = model.evaluate(nhwc(x), y, verbose=0)
    assert after < before
    assert not np.array_equal(model.trainable_weights[0].numpy(), kernel)  # gradients reached
    # the first layer's kernel: HWIO from PyTorch's OIHW
    first = next(la for la in model.layers if type(la).__name__ == "Conv2D")
    np.testing.assert_array_equal(kernel.shape, first.kernel.shape)


def _graph(nodes, inits, x_shape=(1, 3, 8, 8), out="y"):
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_op_table_names_a_converter_for_every_operator():
    from fastconv.onnx._import import _Importer

    folded = {"Constant", "ConstantOfShape"}  # always constants
    missing = [op for op in fo.OP_TABLE
               if op not in folded and not callable(getattr(_Importer, f"op_{op}", None))]
    assert not missing
    assert fo.SUPPORTED_OPS == tuple(fo.OP_TABLE)


def test_unsupported_operators_listed_in_one_error(tmp_path):
    nodes = [helper.make_node("Mish", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Celu", ["b"], ["c"]), helper.make_node("Mish", ["c"], ["y"])]
    onnx.save(_graph(nodes, {}), tmp_path / "u.onnx")
    with pytest.raises(fo.UnsupportedOnnxError) as err:
        fo.load(tmp_path / "u.onnx")
    msg = str(err.value)
    assert "Celu, Mish" in msg and str(tmp_path / "u.onnx") in msg
    assert "Supported: Conv, Relu" in msg and "ConstantOfShape" in msg


@pytest.mark.parametrize("group, shape", [(2, (4, 1, 3, 3)), (3, (6, 1, 3, 3)),
                                          (2, (6, 3, 3, 3))])
def test_grouped_and_depthwise_convs_load_as_grouped_layers(tmp_path, group, shape):
    """group > 1 becomes Conv2D(groups=group) (depthwise when each group holds one channel);
    expand_groups still runs it as one block-diagonal convolution, with the same result."""
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    b = np.random.default_rng(2).standard_normal(shape[0]).astype(np.float32)
    channels = shape[1] * group
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group,
                              pads=[1, 0, 1, 2], strides=[1, 2])]
    onnx.save(_graph(nodes, {"w": w, "b": b}, (1, channels, 7, 6)), tmp_path / "g.onnx")
    x = np.random.default_rng(1).standard_normal((2, channels, 7, 6)).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.tensor(x), (0, 2, 1, 1)),
                                      torch.tensor(w), torch.tensor(b), stride=(1, 2),
                                      groups=group).permute(0, 2, 3, 1).numpy()
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    model = fo.load(tmp_path / "g.onnx")
    conv = next(la for la in model.layers if type(la).__name__ == "Conv2D")
    assert conv.groups == group
    np.testing.assert_allclose(model.predict(nhwc, verbose=0), want, rtol=1e-5, atol=1e-5)
    expanded = fo.load(tmp_path / "g.onnx", expand_groups=True)
    assert all(getattr(la, "groups", 1) == 1 for la in expanded.layers)
    np.testing.assert_allclose(expanded.predict(nhwc, verbose=0), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all \x00\xff" * 10,
                                     b"\x08\x07\x12\x00\x3a\xff\xff\xff\xff\x0f"])
def test_corrupt_or_foreign_file_names_the_file(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFileError, match="bad.onnx"):
        fo.load(path)
    with pytest.raises(InvalidModelFileError, match="missing.onnx"):
        fo.load(tmp_path / "missing.onnx")


def test_constant_of_shape_bomb_is_refused_before_allocating(tmp_path):
    shape = np.array([1 << 20, 1 << 20], np.int64)  # 4 TiB of float32 from a tiny file
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["w"]),
             helper.make_node("Add", ["x", "w"], ["y"])]
    onnx.save(_graph(nodes, {"s": shape}), tmp_path / "bomb.onnx")
    with pytest.raises(InvalidModelFileError, match="bomb.onnx.*budget"):
        fo.load(tmp_path / "bomb.onnx")


def test_initializer_that_lies_about_its_size_is_refused(tmp_path):
    w = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    del w.dims[:]
    w.dims.extend([1 << 40])  # a terabyte claimed, 16 bytes stored
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 4))],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "liar.onnx")
    with pytest.raises(InvalidModelFileError, match="liar.onnx"):
        fo.load(tmp_path / "liar.onnx")
    g.initializer[0].dims[0] = 8  # a small lie: the stored data does not fill the shape
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "liar.onnx")
    with pytest.raises(InvalidModelFileError, match="liar.onnx.*corrupt"):
        fo.load(tmp_path / "liar.onnx")


def test_broadcast_bomb_is_refused_before_allocating(tmp_path):
    a = np.zeros((1 << 17, 1), np.float32)
    b = np.zeros((1, 1 << 17), np.float32)  # 2 x 512 KiB that broadcast to 64 GiB
    nodes = [helper.make_node("Mul", ["a", "b"], ["w"]),
             helper.make_node("Add", ["x", "w"], ["y"])]
    onnx.save(_graph(nodes, {"a": a, "b": b}), tmp_path / "bomb.onnx")
    with pytest.raises(InvalidModelFileError, match="bomb.onnx.*budget"):
        fo.load(tmp_path / "bomb.onnx")


# -- the real architectures inside the onnx wheel ---------------------------------------------

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def with_random_weights(model, seed=0):
    """The light model with its ConstantOfShape placeholder weights replaced by random
    initializers (He-scaled kernels, variances in [0.5, 1.5])."""
    rng = np.random.default_rng(seed)
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    keep, new = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in consts:
            shape = consts[n.input[0]].astype(int).tolist()
            if "riv" in n.output[0] or "var" in n.output[0]:
                a = rng.uniform(0.5, 1.5, shape)
            elif len(shape) > 1:
                a = rng.standard_normal(shape) * np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))
            else:
                a = rng.uniform(-0.1, 0.1, shape)
            new.append(numpy_helper.from_array(a.astype(np.float32), n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    inits = [i for i in g.initializer if i.name in used] + new
    del g.initializer[:]
    g.initializer.extend(inits)
    names = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in names and i.name in used]
    del g.input[:]
    g.input.extend(inputs)
    return model


def compare_light(name, expand_groups=False):
    import onnxruntime as ort
    model = with_random_weights(onnx.load(os.path.join(LIGHT, f"light_{name}.onnx")))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(dims).astype(np.float32)
    net, _, layouts = fo.import_model(model, expand_groups=expand_groups)
    got = net.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {model.graph.input[0].name: x})[0]
    assert layouts == ["plain"] and got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", ["inception_v1", "inception_v2", "resnet50"])
def test_light_models_match_onnxruntime(name):
    """The ones that fit a CI run (a few seconds each); bench/onnx_light.py measures all six
    (AlexNet, ZFNet-512 and VGG19 take 6 to 20 s each)."""
    assert compare_light(name) < 1e-5
