"""The ONNX operators and patterns of modern classification networks, imported and exported:
shape arithmetic computed from the input's shape (the batch size a symbol), Slice and Split,
the channel shuffle, If on a constant condition, HardSigmoid/HardSwish, SiLU and GELU patterns,
Erf/Pow/Sqrt and the other unary functions, Mul/Sub/Div between two tensors with
broadcasting, LayerNormalization, and the bias of a MatMul's Add; each compared with
onnxruntime on the same file at a batch size other than the exported one, and each pattern's
fastconv layers checked, so that a slower fallback cannot pass unnoticed. Every fastconv layer
these operators become exports back, and onnxruntime runs the export."""

from __future__ import annotations

import collections
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import fastconv.onnx as fo
from fastconv import layers as L
from fastconv.models import Model

nn = torch.nn
TOLERANCE = 1e-5


def _export(module, path, shape):
    torch.manual_seed(0)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, *shape),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "n"}})


def _compare(path, shape, batch=3):
    """fastconv's loaded model against onnxruntime on ``batch`` samples; the model."""
    x = np.random.default_rng(1).standard_normal((batch, *shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})[0]
    model = fo.load(path)
    feed = x.transpose(0, 2, 3, 1) if len(shape) == 3 else x
    got = model.predict(np.ascontiguousarray(feed), verbose=0)
    if got.ndim == 4 and want.ndim == 4:
        got = got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())
    return model


def _kinds(model):
    return collections.Counter(type(layer).__name__ for layer in model.layers)


def _activations(model):
    return collections.Counter(layer.activation for layer in model.layers
                               if type(layer).__name__ == "Activation")


class ViewFlatten(nn.Module):
    """``x.view(x.size(0), -1)``: Shape, Gather, Unsqueeze, Concat and Reshape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 3 * 5, 6)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y.view(y.size(0), -1))


class Shuffle(nn.Module):
    """torchvision's ShuffleNetV2 unit: chunk, channel shuffle with shapes computed from the
    input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        y = torch.cat((a, self.conv(b)), dim=1)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous()
        return y.view(n, -1, h, w)


def test_shape_arithmetic_flatten(tmp_path):
    path = tmp_path / "view.onnx"
    _export(ViewFlatten(), path, (3, 5, 7))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Gather", "Reshape"} <= ops
    _compare(path, (3, 5, 7))


def test_channel_shuffle_keeps_channels_last(tmp_path):
    path = tmp_path / "shuffle.onnx"
    _export(Shuffle(), path, (8, 5, 6))
    model = _compare(path, (8, 5, 6))
    kinds = _kinds(model)
    assert kinds["Permute"] == 1, kinds  # the shuffle's own transpose, no layout round trips
    assert kinds["Slice"] == 2


class Modern(nn.Module):
    """Squeeze-and-excitation, SiLU, hard activations, GELU and a ConvNeXt block's layer norm
    and linear layers over channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.se1, self.se2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.norm = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.norm_chw = nn.LayerNorm([8, 6, 5])
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        with torch.no_grad():
            for p in (self.norm.weight, self.norm.bias, self.norm_chw.weight,
                      self.norm_chw.bias):
                p.add_(0.3 * torch.randn(p.shape))

    def forward(self, x):
        y = nn.functional.silu(self.conv(x))
        gate = nn.functional.hardsigmoid(self.se2(torch.relu(self.se1(y.mean((2, 3),
                                                                           keepdim=True)))))
        y = nn.functional.hardswish(y * gate)
        z = self.norm(y.permute(0, 2, 3, 1))
        z = self.fc2(nn.functional.gelu(self.fc1(z))).permute(0, 3, 1, 2)
        y = y + self.scale * z
        y = self.norm_chw(y)
        return torch.sigmoid(y) * y - y / (1 + y * y)


def test_modern_block_patterns(tmp_path):
    path = tmp_path / "modern.onnx"
    _export(Modern(), path, (3, 6, 5))
    model = _compare(path, (3, 6, 5))
    acts = _activations(model)
    assert acts["swish"] == 2 and acts["gelu"] == 1, acts  # silu, sigmoid(y) * y; the GELU
    assert acts["hard_sigmoid"] == 1 and acts["hard_swish"] == 1, acts
    kinds = _kinds(model)
    assert kinds["LayerNormalization"] == 2 and kinds["Elementwise"] == 0, kinds
    assert all(layer.use_bias for layer in model.layers if type(layer).__name__ == "Dense"), \
        "a MatMul's Add was not folded into its Dense"
    assert kinds["Permute"] == 0, kinds  # the ConvNeXt permutes only relabel the layout
    # the gate, y * y; the subtraction; the division
    assert kinds["Multiply"] == 2 and kinds["Subtract"] == 1 and kinds["Divide"] == 1, kinds


class ReluAfterConv(nn.Module):
    """A Relu that only a Conv feeds (fused into the Conv2D), and one whose Conv output is read
    twice (kept apart)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        z = self.b(y)
        return torch.relu(z) + z


def test_a_relu_after_a_conv_runs_in_its_epilogue(tmp_path):
    path = tmp_path / "relu.onnx"
    _export(ReluAfterConv(), path, (3, 6, 5))
    model = _compare(path, (3, 6, 5))
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.activation for c in convs] == ["relu", "linear"]
    assert _activations(model) == {"relu": 1}


class Unary(nn.Module):
    def forward(self, x):
        y = torch.sqrt(x * x + 1) + torch.abs(x) ** 3 - torch.exp(-x * x) + torch.erf(x)
        return torch.log(1 + y * y) + 1 / (2 + torch.abs(x)) + x ** 2


def test_unary_functions(tmp_path):
    path = tmp_path / "unary.onnx"
    _export(Unary(), path, (4, 5))
    model = _compare(path, (4, 5))
    functions = collections.Counter(layer.function for layer in model.layers
                                    if type(layer).__name__ == "Elementwise")
    assert {"sqrt", "abs", "pow", "exp", "erf", "log", "reciprocal", "square"} <= set(functions)


def _graph_model(nodes, inits, out_shape, in_shape=("N", 3, 4)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_if_on_a_constant_condition_takes_its_branch(tmp_path):
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    for cond, want in ((True, lambda x: np.maximum(x, 0)), (False, lambda x: -x)):
        nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
        path = tmp_path / f"if_{cond}.onnx"
        onnx.save(_graph_model(nodes, {"c": np.array(cond)}, ("N", 3, 4)), str(path))
        x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
        np.testing.assert_allclose(fo.load(path).predict(x, verbose=0), want(x))


def test_a_branch_on_the_batch_size_is_refused(tmp_path):
    """Shape arithmetic is evaluated at probe batch sizes: a comparison of the batch size
    would hold there and fail elsewhere, so it is refused, naming the node."""
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Equal", ["n", "one"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then)]
    path = tmp_path / "batch_if.onnx"
    onnx.save(_graph_model(nodes, {"zero": np.array(0), "one": np.array(1)}, ("N", 3, 4)),
              str(path))
    with pytest.raises(fo.UnsupportedOnnxError, match="depends on the batch size"):
        fo.load(path)


def test_a_reshape_merging_the_batch_is_refused(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Mul", ["n", "three"], ["m"]),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m1"]),
             helper.make_node("Concat", ["m1", "four"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = {"zero": np.array(0), "three": np.array(3), "axes": np.array([0]),
             "four": np.array([4])}
    path = tmp_path / "merge.onnx"
    onnx.save(_graph_model(nodes, inits, ("N", 4)), str(path))
    with pytest.raises(fo.UnsupportedOnnxError, match="'Reshape'|Reshape.*batch"):
        fo.load(path)


def test_split_and_slice_match_onnxruntime(tmp_path):
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=2),
             helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["d"]),
             helper.make_node("Concat", ["c", "a", "d", "b"], ["y"], axis=2)]
    inits = {"sizes": np.array([1, 2, 1]), "st": np.array([3, 2]), "en": np.array([-100, -100]),
             "ax": np.array([2, 1]), "sp": np.array([-2, -1])}
    path = tmp_path / "split.onnx"
    onnx.save(_graph_model(nodes, inits, ("N", 3, 6), in_shape=("N", 3, 4)), str(path))
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_array_equal(fo.load(path).predict(x, verbose=0), want)


def test_a_cast_to_a_narrower_float_is_refused(tmp_path):
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    path = tmp_path / "half.onnx"
    onnx.save(_graph_model(nodes, {}, ("N", 3, 4)), str(path))
    with pytest.raises(fo.UnsupportedOnnxError, match="element type 10"):
        fo.load(path)


def _modern_fastconv_model():
    """A model of every layer the new operators import as, with random weights (layer norm
    scales around 1)."""
    rng = np.random.default_rng(3)
    x = L.Input((6, 5, 4))
    y = L.Conv2D(8, 3, padding="same", activation="swish")(x)
    g = L.GlobalAveragePooling2D(keepdims=True)(y)
    g = L.Activation("hard_sigmoid")(L.Dense(8)(g))
    y = L.Multiply()([y, g])
    y = L.Activation("hard_swish")(y)
    y = L.LayerNormalization()(y)
    z = L.Dense(8, activation="gelu")(y)
    y = L.Subtract()([y, L.Elementwise("square")(z)])
    y = L.Divide()([y, L.Elementwise("exp")(L.Activation("softplus")(z))])
    y = L.Maximum()([y, L.Activation("elu")(z)])
    y = L.Average()([y, L.Activation("selu")(z), L.Activation("relu6")(z)])
    first = L.Slice(axis=-1, start=0, stop=3)(y)
    flipped = L.Slice(axis=1, start=5, stop=None, step=-1)(y)
    out = L.Concatenate(axis=-1)([first, flipped])
    model = Model(x, L.Activation("leaky_relu")(out))
    for layer in model.layers:
        weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.5
                   for w in layer.get_weights()]
        if isinstance(layer, L.LayerNormalization):
            weights[0] += 1.0
        if weights:
            layer.set_weights(weights)
    return model


def test_new_layers_export_and_run_in_onnxruntime(tmp_path):
    model = _modern_fastconv_model()
    path = tmp_path / "export.onnx"
    fo.export(model, path)
    x = np.random.default_rng(4).standard_normal((3, 6, 5, 4)).astype(np.float32)
    want = model.predict(x, verbose=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    back = fo.load(path)
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())
