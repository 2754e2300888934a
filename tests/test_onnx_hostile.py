"""fastconv.onnx.load against hostile ONNX files: external data read from the model's folder
only (and PyTorch's external data files loading), import in linear time, the constant budget
charged before every folded allocation, only InvalidModelFileError / UnsupportedOnnxError
naming the file, absurd attributes refused at load, and a sample of the mutation campaign
(``tests/campaign/onnx_mutations.py``)."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
import warnings

import numpy as np
import onnx
import pytest
import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastconv.onnx as fo  # noqa: E402
from fastconv.io.errors import InvalidModelFileError  # noqa: E402
from fastconv.onnx import _import  # noqa: E402

nn = torch.nn
MiB = 1 << 20


def _model(nodes, inits=None, inputs=(("x", (1, 3, 8, 8)),), outputs=("y",), opset=17):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(np.asarray(v), k)
         for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _save(model, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def _external(t, location, offset=0, length=None, **extra):
    """``t`` (a TensorProto) told to keep its data in ``location``."""
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.ClearField("float_data")
    del t.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length),
                       *extra.items()):
        if value is not None:
            e = t.external_data.add()
            e.key, e.value = key, str(value)
    return t


def _peak(fn):
    """(result or exception, peak bytes traced) of ``fn()``."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to check
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _sha(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.sigmoid(self.c2(y))
        return torch.softmax(self.fc(torch.flatten(y, 1)), 1)


def _against_onnxruntime(path, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = fo.load(path).predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)
    if got.ndim == 4:
        got = got.transpose(0, 3, 1, 2)
    assert got.shape == want.shape and np.ptp(want) > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- 1. external data --------------------------------------------------------------------------

def test_external_data_written_beside_the_model_loads_and_matches_onnxruntime(tmp_path):
    """The layout PyTorch's exporter writes (``model.onnx`` + ``model.onnx.data``), also for a
    Constant node's tensor; the user's files are left as they were."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "plain.onnx"), opset_version=17,
                          dynamo=False, input_names=["x"], output_names=["y"])
    model = onnx.load(str(tmp_path / "plain.onnx"))
    # the first Conv's kernel as a Constant node: its tensor goes external too
    w = next(t for t in model.graph.initializer if t.name == "c1.weight")
    model.graph.node.insert(0, helper.make_node("Constant", [], [w.name], value=w))
    model.graph.initializer.remove(w)
    path = tmp_path / "model.onnx"
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True,
                                   location="model.onnx.data", size_threshold=0,
                                   convert_attribute=True)
    onnx.save_model(model, str(path))
    reread = onnx.load(str(path), load_external_data=False)
    assert sum(t.data_location == TensorProto.EXTERNAL for t in reread.graph.initializer) >= 4
    assert reread.graph.node[0].attribute[0].t.data_location == TensorProto.EXTERNAL
    before = (_sha(path), _sha(tmp_path / "model.onnx.data"))
    _against_onnxruntime(path, x.numpy())
    assert (_sha(path), _sha(tmp_path / "model.onnx.data")) == before


def test_pytorch_dynamo_export_with_external_data_loads(tmp_path):
    """torch.onnx.export's default (dynamo) exporter keeps weights over a few hundred bytes in
    ``model.onnx.data``; it needs onnxscript (in the test extra)."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), verbose=False)
    reread = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in reread.graph.initializer)
    _against_onnxruntime(path, x.numpy())


def _conv_with_constant_kernel(value):
    """x -> Conv with a kernel from a Constant node holding ``value``."""
    return _model([helper.make_node("Constant", [], ["w"], value=value),
                   helper.make_node("Conv", ["x", "w"], ["y"])])


CANARY = np.arange(4 * 3 * 3 * 3, dtype=np.float32) + 0.5  # what a leak would load


@pytest.fixture
def layout(tmp_path):
    """tmp_path/model/ for the model, tmp_path/canary.bin outside it (the working folder)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "canary.bin").write_bytes(CANARY.tobytes())
    return folder


def test_constant_with_external_data_outside_the_folder_does_not_leak(layout, monkeypatch):
    """A Constant's tensor naming ``canary.bin`` relative to the working folder: the file
    exists there, not in the model's folder; it must not be read (before: its bytes loaded as
    the kernel)."""
    monkeypatch.chdir(layout.parent)
    value = _external(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"),
                      "canary.bin")
    path = _save(_conv_with_constant_kernel(value), layout / "m.onnx")
    with pytest.raises(InvalidModelFileError, match=r"m\.onnx.*tensor 'w'.*not in the model's"):
        fo.load(path)


def test_constant_naming_etc_passwd_from_the_root_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    value = _external(numpy_helper.from_array(np.zeros(16, np.uint8), "secret"), "etc/passwd")
    model = _model([helper.make_node("Constant", [], ["c"], value=value),
                    helper.make_node("Add", ["x", "c"], ["y"])], inputs=(("x", (1, 16)),))
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(InvalidModelFileError, match=r"m\.onnx.*tensor 'secret'"):
        fo.load(path)


def _fifo(folder):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    os.mkfifo(folder / "fifo.bin")
    return "fifo.bin"


def _link(folder, target):
    os.symlink(target, folder / "link.bin")
    return "link.bin"


HOSTILE_LOCATIONS = {
    "absolute": (lambda f: str(f.parent / "canary.bin"), {}, "absolute path"),
    "dotdot": (lambda f: "../canary.bin", {}, r"climbs out with '\.\.'"),
    "dotdot_inside": (lambda f: "sub/../../canary.bin", {}, r"'\.\.'"),
    "backslash": (lambda f: "..\\canary.bin", {}, r"'\.\.'"),
    "link_out": (lambda f: _link(f, f.parent / "canary.bin"), {}, "outside the model's folder"),
    "dev_zero": (lambda f: _link(f, "/dev/zero"), {}, "outside the model's folder"),
    "fifo": (_fifo, {}, "FIFO"),
    "folder": (lambda f: ".", {}, "folder"),
    "missing": (lambda f: "absent.bin", {}, "not in the model's folder"),
    "huge_offset": (lambda f: "data.bin", {"offset": 2**62}, "starts at offset"),
    "negative_offset": (lambda f: "data.bin", {"offset": -4}, "non-negative decimal"),
    "text_offset": (lambda f: "data.bin", {"offset": "1e3"}, "non-negative decimal"),
    "underscore_offset": (lambda f: "data.bin", {"offset": "1_0"}, "non-negative decimal"),
    "negative_length": (lambda f: "data.bin", {"length": -108 * 4}, "non-negative decimal"),
    "wrong_length": (lambda f: "data.bin", {"length": 4}, r"takes 4 bytes .* need 432 bytes"),
    "past_end": (lambda f: "data.bin", {"offset": 8, "length": 432}, "holds only 432"),
    "no_location": (lambda f: "", {}, "names no location"),
}


def _site(where, value):
    """A model holding the external tensor ``value`` (a Conv kernel) at ``where``."""
    if where == "initializer":
        return _model([helper.make_node("Conv", ["x", "w"], ["y"])], {"w": value})
    if where == "constant":
        return _conv_with_constant_kernel(value)
    if where == "attribute":  # the value of a ConstantOfShape
        v = numpy_helper.from_array(np.ones(1, np.float32), "w")
        v.CopyFrom(value)
        del v.dims[:]
        v.dims.append(108)
        return _model([helper.make_node("ConstantOfShape", ["s"], ["c"], value=v),
                       helper.make_node("Add", ["x", "c"], ["y"])], {"s": np.array([1, 1])},
                      inputs=(("x", (1, 1)),))
    # inside an If's branch
    branch = helper.make_graph([helper.make_node("Constant", [], ["b"], value=value)], "b", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    return _model([helper.make_node("If", ["cond"], ["w"], then_branch=branch,
                                    else_branch=branch),
                   helper.make_node("Conv", ["x", "w"], ["y"])], {"cond": np.array(True)})


@pytest.mark.parametrize("where", ["initializer", "constant", "attribute", "subgraph"])
@pytest.mark.parametrize("kind", sorted(HOSTILE_LOCATIONS))
def test_external_data_is_read_from_the_model_folder_only(layout, monkeypatch, where, kind):
    monkeypatch.chdir(layout.parent)
    make, info, message = HOSTILE_LOCATIONS[kind]
    (layout / "data.bin").write_bytes(np.zeros(108, np.float32).tobytes())
    value = _external(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"),
                      make(layout), **{"offset": 0, **info})
    path = _save(_site(where, value), layout / "m.onnx")
    with pytest.raises(InvalidModelFileError) as err:
        fo.load(path)
    text = str(err.value)
    assert path in text and "'w'" in text, text
    assert __import__("re").search(message, text), text


def test_symlink_inside_the_folder_and_valid_offsets_load(layout):
    data = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    (layout / "pad_and_data.bin").write_bytes(b"\0" * 12 + data.tobytes())
    os.symlink("pad_and_data.bin", layout / "weights.bin")
    value = _external(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"),
                      "weights.bin", offset=12, length=data.nbytes)
    model = fo.load(_save(_model([helper.make_node("Conv", ["x", "w"], ["y"])], {"w": value}),
                          layout / "m.onnx"))
    np.testing.assert_array_equal(model.get_weights()[0], data.transpose(2, 3, 1, 0))


def test_external_data_of_a_model_given_without_its_file_is_refused(layout):
    value = _external(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"),
                      "data.bin")
    (layout / "data.bin").write_bytes(np.zeros(108, np.float32).tobytes())
    with pytest.raises(InvalidModelFileError, match="tensor 'w'.*without its file"):
        fo.import_model(_model([helper.make_node("Conv", ["x", "w"], ["y"])], {"w": value}))


def test_external_reads_are_charged_to_the_budget_before_reading(layout, monkeypatch):
    """40 tensors reading the same MiB of one data file: refused once the budget (16x the
    files' size here) is spent, without reading the rest."""
    monkeypatch.setattr(_import, "MIN_CONSTANT_BUDGET", 1 * MiB)
    (layout / "data.bin").write_bytes(b"\0" * MiB)
    inits = {f"w{i}": _external(numpy_helper.from_array(np.zeros(MiB // 4, np.float32),
                                                        f"w{i}"), "data.bin")
             for i in range(40)}
    nodes = [helper.make_node("Sum", ["x", *inits], ["y"])]
    path = _save(_model(nodes, inits, inputs=(("x", (1, MiB // 4)),)), layout / "m.onnx")
    err, peak = _peak(lambda: fo.load(path))
    assert isinstance(err, InvalidModelFileError) and "budget" in str(err), err
    assert path in str(err) and "tensor 'w" in str(err)
    assert peak < 24 * MiB, peak


# -- 2. linear time ------------------------------------------------------------------------------

def test_a_long_dropout_chain_imports_in_linear_time(tmp_path):
    """8,000 Dropout nodes, each with an unused mask output: the old importer scanned every
    node's inputs for each mask (111 s); the consumers are now indexed once."""
    n = 8000
    nodes = [helper.make_node("Dropout", [f"t{i}"], [f"t{i + 1}", f"mask{i}"])
             for i in range(n)]
    nodes[0].input[0] = "x"
    nodes.append(helper.make_node("Relu", [f"t{n}"], ["y"]))
    path = _save(_model(nodes, inputs=(("x", (1, 4)),)), tmp_path / "chain.onnx")
    start = time.perf_counter()
    model = fo.load(path)
    assert time.perf_counter() - start < 20.0
    np.testing.assert_array_equal(model.predict(np.array([[-1, 0, 1, 2]], np.float32),
                                                verbose=0), [[0, 0, 1, 2]])


def test_thousands_of_graph_inputs_import_in_linear_time(tmp_path):
    """3,000 inputs, each read by its own node: the old importer scanned every node for each
    input (about 50 s)."""
    n = 3000
    nodes = [helper.make_node("Relu", [f"x{i}"], [f"r{i}"]) for i in range(n)]
    nodes.append(helper.make_node("Sum", [f"r{i}" for i in range(n)], ["y"]))
    path = _save(_model(nodes, inputs=[(f"x{i}", (1, 2)) for i in range(n)]),
                 tmp_path / "wide.onnx")
    start = time.perf_counter()
    model = fo.load(path)
    assert time.perf_counter() - start < 20.0
    assert len(model.inputs) == n


def test_many_nodes_of_one_name_get_unique_layer_names_in_linear_time():
    names = _import._Names()
    start = time.perf_counter()
    got = [names.take("x" * 100) for _ in range(20000)]
    assert len(set(got)) == 20000 and time.perf_counter() - start < 5.0


# -- 3. the constant budget ------------------------------------------------------------------------

def _bomb(nodes, inits):
    return _model(nodes + [helper.make_node("Add", ["x", "big"], ["y"])], inits,
                  inputs=(("x", (1, 4)),))


BOMBS = {
    # 256 MiB of float32, then 12 copies of it: 3.3 GB at its peak before
    "concat": ([helper.make_node("ConstantOfShape", ["s"], ["c"]),
                helper.make_node("Concat", ["c"] * 12, ["big"], axis=0)],
               {"s": np.array([1 << 26])}),
    # 256 MiB of uint8 cast to float64: 2.3 GB at its peak before
    "cast": ([helper.make_node("ConstantOfShape", ["s"], ["c"],
                               value=numpy_helper.from_array(np.ones(1, np.uint8))),
              helper.make_node("Cast", ["c"], ["big"], to=TensorProto.DOUBLE)],
             {"s": np.array([1 << 28])}),
    # a broadcast of a small constant taken whole by Concat
    "broadcast_then_concat": ([helper.make_node("ConstantOfShape", ["s"], ["c"]),
                               helper.make_node("Mul", ["c", "two"], ["d"]),
                               helper.make_node("Concat", ["d", "d", "d", "d"], ["big"],
                                                axis=1)],
                              {"s": np.array([1 << 14, 1 << 14]),
                               "two": np.float32(2)}),
    # a Gather of a million indices from a small table
    "gather": ([helper.make_node("Gather", ["t", "i"], ["big"])],
               {"t": np.zeros((4, 1 << 14), np.float32),
                "i": numpy_helper.from_array(np.zeros(1 << 14, np.int64), "i")}),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_folding_bombs_are_refused_before_allocating(tmp_path, name):
    nodes, inits = BOMBS[name]
    path = _save(_bomb(nodes, inits), tmp_path / "bomb.onnx")
    err, peak = _peak(lambda: fo.load(path))
    assert isinstance(err, InvalidModelFileError), err
    assert path in str(err) and "budget" in str(err)
    assert peak < 64 * MiB, f"{peak / MiB:.0f} MiB"


@pytest.mark.parametrize("dims,message", [
    ([-1, 2**40], "negative dims"), ([-1, 4], "negative dims"),
    ([2**40, 2**40], "more than the"), ([-(2**62), -4], "negative dims")])
def test_initializers_with_negative_or_overflowing_dims_are_refused(tmp_path, dims, message):
    """Before: ``dims=[-1, 4]`` loaded (NumPy read -1 as 'the rest'), and its negative size
    was credited to the budget."""
    w = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    del w.dims[:]
    w.dims.extend(dims)
    path = _save(_model([helper.make_node("Add", ["x", "w"], ["y"])], {"w": w},
                        inputs=(("x", (1, 4)),)), tmp_path / "m.onnx")
    with pytest.raises(InvalidModelFileError, match=rf"m\.onnx: initializer 'w' has .*{message}"):
        fo.load(path)


def test_constant_tensors_with_negative_dims_are_refused(tmp_path):
    value = numpy_helper.from_array(np.zeros(4, np.float32), "c")
    del value.dims[:]
    value.dims.extend([-1, 4])
    model = _model([helper.make_node("Constant", [], ["c"], value=value),
                    helper.make_node("Add", ["x", "c"], ["y"])], inputs=(("x", (1, 4)),))
    with pytest.raises(InvalidModelFileError, match=r"m\.onnx: tensor of node 'c'.*negative"):
        fo.load(_save(model, tmp_path / "m.onnx"))


@pytest.mark.parametrize("shape", [[-4, 4], [2**40, 2**40], [1] * 65])
def test_constant_of_shape_with_negative_or_overflowing_shape_is_invalid(tmp_path, shape):
    model = _bomb([helper.make_node("ConstantOfShape", ["s"], ["big"])],
                  {"s": np.array(shape, np.int64)})
    with pytest.raises(InvalidModelFileError, match=r"m\.onnx: node 'big'.*the shape \('s'\)"):
        fo.load(_save(model, tmp_path / "m.onnx"))


@pytest.mark.parametrize("target", [[-2, 2], [-1, -1], [3, 5], [0, 0, 0]])
def test_folded_reshape_to_an_impossible_target_is_invalid(tmp_path, target):
    model = _bomb([helper.make_node("Reshape", ["c", "t"], ["big"])],
                  {"c": np.zeros((2, 2), np.float32), "t": np.array(target, np.int64)})
    with pytest.raises(InvalidModelFileError, match=r"m\.onnx: node 'big' \(Reshape\)"):
        fo.load(_save(model, tmp_path / "m.onnx"))


def test_folding_still_computes_the_constants_pytorch_exports(tmp_path):
    """The shape arithmetic of a TorchScript export (ConstantOfShape, Concat, Reshape, Slice,
    Transpose, Cast before a Pad) folds to the right pads."""
    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.c(nn.functional.pad(x, (1, 2, 0, 3)))

    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Padded().eval(), (x,), str(tmp_path / "p.onnx"), opset_version=17,
                          dynamo=False, input_names=["x"], output_names=["y"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "p.onnx")).graph.node}
    assert {"ConstantOfShape", "Concat", "Slice", "Cast"} <= ops, ops
    _against_onnxruntime(tmp_path / "p.onnx", x.numpy())


# -- 4. only the two errors, naming the file and the node ------------------------------------

def _with_attribute(node, name, value, kind):
    """``node`` with the attribute ``name`` (of no type at all where ``kind`` is None)."""
    if kind is None:
        node.attribute.append(onnx.AttributeProto(name=name))
    else:
        node.attribute.append(helper.make_attribute(name, value, attr_type=kind))
    return node


W = np.ones((4, 3, 3, 3), np.float32)
DAMAGED = {
    # each: a graph fastconv would load but for one damaged attribute or input
    "axis_list": ([helper.make_node("Softmax", ["x"], ["y"], axis=[1, 2])], {}, (1, 4),
                  "attribute 'axis'"),
    "axis_out_of_range": ([helper.make_node("Softmax", ["x"], ["y"], axis=7)], {}, (1, 4),
                          "axis 7 is out of range"),
    "concat_no_axis": ([helper.make_node("Concat", ["x", "x"], ["y"])], {}, (1, 4),
                       "missing attribute 'axis'"),
    "pads_wrong_length": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1])],
                          {"w": W}, (1, 3, 8, 8), "attribute 'pads'.*4 integers"),
    "strides_text": ([helper.make_node("Conv", ["x", "w"], ["y"], strides=b"SAME")],
                     {"w": W}, (1, 3, 8, 8), "attribute 'strides'"),
    "stride_zero": ([helper.make_node("Conv", ["x", "w"], ["y"], strides=[0, 1])],
                    {"w": W}, (1, 3, 8, 8), "attribute 'strides'"),
    "group_zero": ([helper.make_node("Conv", ["x", "w"], ["y"], group=0)], {"w": W},
                   (1, 3, 8, 8), "attribute 'group'"),
    "kernel_disagrees": ([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[5, 5])],
                         {"w": W}, (1, 3, 8, 8), "kernel_shape"),
    "kernel_channels": ([helper.make_node("Conv", ["x", "w"], ["y"])],
                        {"w": np.ones((4, 5, 3, 3), np.float32)}, (1, 3, 8, 8),
                        "does not fit an input of 3 channels"),
    "bias_size": ([helper.make_node("Conv", ["x", "w", "b"], ["y"])],
                  {"w": W, "b": np.ones(7, np.float32)}, (1, 3, 8, 8), "bias of 7 values"),
    "kernel_too_big": ([helper.make_node("Conv", ["x", "w"], ["y"])],
                       {"w": np.ones((1, 3, 9, 9), np.float32)}, (1, 3, 8, 8), "does not fit"),
    "pool_without_kernel": ([helper.make_node("MaxPool", ["x"], ["y"])], {}, (1, 3, 8, 8),
                            "kernel_shape"),
    "pool_kernel_text": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=b"3")], {},
                         (1, 3, 8, 8), "kernel_shape"),
    "transpose_bad_perm": ([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 0, 1, 2])],
                           {}, (1, 3, 8, 8), "not a permutation"),
    "transpose_short_perm": ([_with_attribute(helper.make_node("Transpose", ["x"], ["y"]),
                                              "perm", [], onnx.AttributeProto.INTS)], {},
                             (1, 3, 8, 8), "not a permutation"),
    "missing_input": ([helper.make_node("Relu", ["nowhere"], ["y"])], {}, (1, 4),
                      "never produced"),
    "no_input": ([helper.make_node("Relu", [], ["y"])], {}, (1, 4), r"takes 1 input\(s\), got 0"),
    "gemm_3d_weights": ([helper.make_node("Gemm", ["x", "w"], ["y"])],
                        {"w": np.ones((4, 2, 2), np.float32)}, (1, 4), "2D"),
    "batchnorm_sizes": ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                                          ["y"])],
                        {"s": np.ones(3, np.float32), "b": np.ones(3, np.float32),
                         "m": np.ones(2, np.float32), "v": np.ones(3, np.float32)},
                        (1, 3, 8, 8), "for 3 channels"),
    "clip_empty_min": ([helper.make_node("Clip", ["x", "lo"], ["y"])],
                       {"lo": np.zeros(0, np.float32)}, (1, 4), "min must be a number"),
    "pad_odd_pads": ([helper.make_node("Pad", ["x", "p"], ["y"])],
                     {"p": np.array([0, 0, 1], np.int64)}, (1, 3, 8, 8), "two pads"),
    "slice_zero_step": ([helper.make_node("Slice", ["c", "s", "e", "a", "st"], ["d"]),
                         helper.make_node("Add", ["x", "d"], ["y"])],
                        {"c": np.ones(4, np.float32), "s": np.array([0]), "e": np.array([4]),
                         "a": np.array([0]), "st": np.array([0])}, (1, 4), "zero step"),
    "unsqueeze_axis": ([helper.make_node("Unsqueeze", ["c", "a"], ["d"]),
                        helper.make_node("Add", ["x", "d"], ["y"])],
                       {"c": np.ones(4, np.float32), "a": np.array([5])}, (1, 4),
                       "out of range"),
    "gather_out_of_range": ([helper.make_node("Gather", ["c", "i"], ["d"]),
                             helper.make_node("Add", ["x", "d"], ["y"])],
                            {"c": np.ones(4, np.float32), "i": np.array([9])}, (1, 4),
                            "out of range"),
    "cast_to_nothing": ([helper.make_node("Cast", ["c"], ["d"], to=999),
                         helper.make_node("Add", ["x", "d"], ["y"])],
                        {"c": np.ones(4, np.float32)}, (1, 4), "not an ONNX element type"),
    "constant_two_values": ([helper.make_node("Constant", [], ["d"], value_float=1.0,
                                              value_int=2),
                             helper.make_node("Add", ["x", "d"], ["y"])], {}, (1, 4),
                            "exactly one attribute"),
    "node_without_outputs": ([helper.make_node("Relu", ["x"], []),
                              helper.make_node("Relu", ["x"], ["y"])], {}, (1, 4), None),
    "batchnorm_negative_epsilon": ([helper.make_node("BatchNormalization", ["x", *"sbmv"],
                                                     ["y"], epsilon=-1.0)],
                                   {k: np.ones(3, np.float32) for k in "sbmv"}, (1, 3, 8, 8),
                                   "epsilon must be > 0"),
    "sum_constants_do_not_broadcast": ([helper.make_node("Sum", ["x", "a", "b"], ["y"])],
                                       {"a": np.ones((6, 4, 3, 3), np.float32),
                                        "b": np.ones(6, np.float32)}, (1, 4),
                                       "do not broadcast"),
    "attribute_without_value": ([_with_attribute(helper.make_node("Gemm", ["x", "w", "b"],
                                                                  ["y"]), "beta", None, None)],
                                {"w": np.ones((4, 2), np.float32), "b": np.ones(2, np.float32)},
                                (1, 4), "attribute 'beta' has no type"),
    "unsqueeze_rank_65": ([helper.make_node("Unsqueeze", ["c", "a"], ["d"]),
                           helper.make_node("Add", ["x", "d"], ["y"])],
                          {"c": np.ones(4, np.float32), "a": np.arange(64)}, (1, 4),
                          "65 axes"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_attributes_and_inputs_raise_a_named_error(tmp_path, name):
    """Each raised a raw TypeError, KeyError, IndexError, ZeroDivisionError, numpy AxisError or
    ValueError from a layer before (or loaded without a word)."""
    nodes, inits, shape, message = DAMAGED[name]
    path = _save(_model(nodes, inits, inputs=(("x", shape),)), tmp_path / "m.onnx")
    if message is None:  # valid: a node with no outputs is dead code
        fo.load(path)
        return
    with pytest.raises((InvalidModelFileError, fo.UnsupportedOnnxError)) as err:
        fo.load(path)
    text = str(err.value)
    assert path in text and "node '" in text and __import__("re").search(message, text), text
    assert err.value.__cause__ is None, "fixed at its source, not by the last-line wrap"


@pytest.mark.parametrize("name", ["bn_node", "bn_output"])
def test_names_that_are_not_utf8_are_reported_not_raised(tmp_path, name):
    """A damaged file's node names and tensor names may not be UTF-8 (protobuf then gives
    bytes): before, a TypeError from building a layer name."""
    w = {k: np.ones(3, np.float32) for k in "sbmv"}
    nodes = [helper.make_node("BatchNormalization", ["x", *"sbmv"], ["bn_output"],
                              name="bn_node"),
             helper.make_node("Relu", ["bn_output"], ["y"])]
    blob = _model(nodes, w).SerializeToString()
    assert blob.count(name.encode()) >= 1
    path = tmp_path / "m.onnx"
    path.write_bytes(blob.replace(name.encode(), b"\x80" + name.encode()[1:]))
    try:
        fo.load(path)
    except (InvalidModelFileError, fo.UnsupportedOnnxError) as exc:
        assert str(path) in str(exc) and exc.__cause__ is None, exc


def test_an_unforeseen_error_still_names_the_file_and_the_node(tmp_path, monkeypatch):
    def broken(self, node, a):
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(_import._Importer, "op_Relu", broken)
    path = _save(_model([helper.make_node("Relu", ["x"], ["y"], name="the_relu")],
                        inputs=(("x", (1, 4)),)), tmp_path / "m.onnx")
    with pytest.raises(InvalidModelFileError, match=r"m\.onnx: node 'the_relu' \(Relu\).*"
                                                    r"IndexError"):
        fo.load(path)


# -- 5. absurd attributes, refused at load -------------------------------------------------------

ABSURD = {
    "conv_pads_1e9": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[10**9] * 4)],
                      {"w": W}, (1, 3, 8, 8), r"padding of 1000000000.*bytes"),
    "pad_1e5": ([helper.make_node("Pad", ["x", "p"], ["y"])],
                {"p": np.array([0, 0, 10**5, 10**5, 0, 0, 10**5, 10**5])}, (1, 3, 8, 8),
                r"node 'y' \(Pad\).*padding of 100000.*bytes"),
    "pool_pads_1e9": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2],
                                        pads=[0, 0, 10**9, 10**9])], {}, (1, 3, 8, 8),
                      "padding of 1000000000"),
    "huge_strides": ([helper.make_node("Conv", ["x", "w"], ["y"], strides=[2**40, 2**40])],
                     {"w": W}, (1, 3, 8, 8), "attribute 'strides'"),
    "huge_dilations": ([helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2**40, 1])],
                       {"w": W}, (1, 3, 8, 8), "attribute 'dilations'"),
    "huge_pool_kernel": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[10**6, 3])],
                         {}, (1, 3, 8, 8), "larger than the input"),
    "huge_output": ([helper.make_node("Conv", ["x", "w"], ["y"])],
                    {"w": np.ones((64, 1, 1, 1), np.float32)}, (1, 1, 8192, 8192),
                    r"layer 'y' would make tensors of shape \(None, 8192, 8192, 64\).*"
                    r"17179869184 bytes"),
    "huge_input": ([helper.make_node("Relu", ["x"], ["y"])], {}, (1, 3, 2**20, 2**20),
                   r"input 'x' of shape .*elements \(13194139533312 bytes"),
    "lrn_size_zero": ([helper.make_node("LRN", ["x"], ["y"], size=0)], {}, (1, 3, 8, 8),
                      "attribute 'size' is 0"),
}


@pytest.mark.parametrize("name", sorted(ABSURD))
def test_absurd_attributes_are_refused_at_load_naming_the_node(tmp_path, name):
    nodes, inits, shape, message = ABSURD[name]
    path = _save(_model(nodes, inits, inputs=(("x", shape),)), tmp_path / "m.onnx")
    err, peak = _peak(lambda: fo.load(path))
    assert isinstance(err, InvalidModelFileError), err
    assert path in str(err) and __import__("re").search(message, str(err)), str(err)
    assert peak < 64 * MiB


def test_lrn_wider_than_the_channels_runs_as_the_window_over_all_of_them(tmp_path):
    """ONNX LRN of size 2**31 - 1 over 3 channels: every window holds all the channels, so it
    is the size-5 LRN with the same alpha / size (onnxruntime cannot allocate the first, nor
    could fastconv's NumPy backend before)."""
    import onnxruntime as ort
    huge = 2**31 - 1
    path = _save(_model([helper.make_node("LRN", ["x"], ["y"], size=huge, alpha=0.5 * huge,
                                          beta=0.75, bias=1.0)], inputs=(("x", (2, 3, 8, 8)),)),
                 tmp_path / "m.onnx")
    same = _model([helper.make_node("LRN", ["x"], ["y"], size=5, alpha=0.5 * 5, beta=0.75,
                                    bias=1.0)], inputs=(("x", (2, 3, 8, 8)),))
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(same.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    import fastconv.predictor

    for backend in ("numpy", "numba-cpu"):  # NumPy's padded window sum: 2**31 columns before
        predictor = fastconv.predictor.load(path, backend=backend)
        got = predictor.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-6)


# -- 6. the campaign, sampled ----------------------------------------------------------------------

def test_mutation_sample_has_no_defect(tmp_path):
    """60 mutated files (10 per class; deep and wide graphs of hundreds of nodes here), each
    loaded with its time, peak memory and opened paths checked
    (tests/campaign/onnx_mutations.py; the long run is documented there)."""
    from tests.campaign import onnx_mutations

    report = onnx_mutations.run(60, seed=20240601, folder=tmp_path, small=True)
    assert sum(report.counts.values()) == 60
    assert not report.defects, "\n".join(report.lines())
    outcomes = {o for (_, o) in report.counts}
    assert "loaded" in outcomes and "refused" in outcomes, report.counts
