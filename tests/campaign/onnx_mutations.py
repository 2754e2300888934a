"""The ONNX importer's mutation campaign: hostile ONNX files made from two small valid models
(a CNN exported by ``fastconv.onnx.export``, one exported by ``torch.onnx.export`` with
``dynamo=False``), each loaded by ``fastconv.onnx.load`` in this process.

    nice -n 19 python -m tests.campaign.onnx_mutations --examples 3000 --seed 1

Classes of mutation (``CLASSES``):

* ``external``: tensors (initializers, Constant values, tensor attributes, tensors inside If
  subgraphs, sparse values) moved to external data: a valid data file in the model's folder,
  or an absolute path, ``..``, a symbolic link out of the folder, a FIFO, ``/dev/zero``, a
  folder, a missing file, huge/negative/non-integer offsets and lengths, wrong lengths;
* ``dims``: huge, negative and overflowing dims in initializers, Constant tensors,
  ConstantOfShape shapes, Reshape targets and graph inputs, and folding bombs (Concat and Cast
  of a ConstantOfShape, broadcasting arithmetic, Gather);
* ``deep``: chains of 10,000 nodes (layers, Dropouts, folded constants);
* ``wide``: thousands of graph inputs, outputs, initializers, consumers of one tensor;
* ``attributes``: attribute values replaced (huge, negative, wrong type), attributes dropped
  or added, inputs dropped or pointed at missing names, op types changed;
* ``bytes``: random byte flips, truncations and insertions of the serialized file.

Each load is classified: ``loaded``, ``refused`` (InvalidModelFileError or
UnsupportedOnnxError whose message names the file; ``refused (last-line wrap)`` when the error
is an unforeseen one that the importer's last line turned into InvalidModelFileError, a cause
to fix at its source) or a defect: any other exception (a warning
included), a message without the file's name, a load over ``TIME_BOUND_S`` seconds of CPU
time (the largest legitimate loads here, 10,000-layer chains, take about 5 s), a peak of
traced memory over ``memory_bound`` (the constant budget's floor is lowered to
``BUDGET_FLOOR`` during the run, so that an allocation outside the budget stands out), a file
opened outside the example's folder (an ``open`` audit hook), the bytes of a canary file placed
outside the folder found in a loaded model's weights, or a loaded model whose prediction on one
zero sample fails (models of up to ``PREDICT_ELEMENTS`` activations per sample are run). The
command prints the counts per class and outcome and exits with 1 on any defect. CI runs a
sample (``tests/test_onnx_hostile.py::test_mutation_sample_has_no_defect``).

Figures (the project's 2-core machine, shared with other work): ``--examples 1500`` with
``--seed 21`` (606 s) and with ``--seed 22`` (1172 s, beside another run), 3,000 files in all:
external 35 loaded / 465 refused, dims 9 / 491, deep 412 / 88, wide 500 / 0, attributes
36 / 464, bytes 27 / 473; 0 defects, 0 last-line wraps, largest peak of traced memory 32 MiB,
slowest load 8.1 s of CPU (a 10,000-node chain). Before the fixes the first hundred files gave
TypeErrors (names that are not UTF-8), ValueErrors from layers and NumPy, and the last-line
wrap for BatchNormalization's epsilon, Sum's constants and attributes without a value.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import random
import shutil
import stat
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np

CLASSES = ("external", "dims", "deep", "wide", "attributes", "bytes")
#: A load taking more CPU time than this is a defect.
TIME_BOUND_S = 30.0
#: The floor of the constant budget while the campaign runs (fastconv's default is 1 GiB).
BUDGET_FLOOR = 64 << 20
#: Memory a load may take besides its constants.
MEMORY_SLACK = 48 << 20
#: The canary's bytes: a distinctive pattern, float32-aligned.
CANARY = (b"FASTCONV-CANARY!" * 256)
#: The lengths of deep chains and the widths of wide graphs: the campaign's, and the CI
#: sample's (which must take a few seconds).
SIZES = {"deep": (2000, 10000), "wide": (1000, 3000)}
SMALL_SIZES = {"deep": (200, 600), "wide": (100, 300)}
#: Loaded models whose activations hold at most this many elements per sample are run once.
PREDICT_ELEMENTS = 1 << 22


def memory_bound(nbytes: int) -> int:
    """The peak of traced memory allowed for a model of ``nbytes`` (file and data files): twice
    the constant budget (the constants and the layers' copies of them) plus the slack."""
    return 2 * max(BUDGET_FLOOR, 16 * nbytes) + MEMORY_SLACK


# -- base models ---------------------------------------------------------------------------------

def fastconv_base(path) -> None:
    """A small CNN exported by fastconv (NHWC inputs, Transpose first)."""
    import fastconv.onnx as fo
    from fastconv import layers as L
    from fastconv.models import Sequential

    model = Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same", activation="relu"),
                        L.BatchNormalization(), L.MaxPooling2D(2),
                        L.Conv2D(3, 3, strides=1, activation="sigmoid"), L.Flatten(),
                        L.Dense(6, activation="tanh"), L.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.0, w.shape).astype(np.float32)
                       for w in model.weights])
    fo.export(model, path)


def torch_base(path) -> None:
    """A small CNN exported by PyTorch's TorchScript exporter (opset 17)."""
    import torch

    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.c2 = nn.Conv2d(4, 6, 3, stride=2)
            self.fc = nn.Linear(6 * 3 * 3, 5)

        def forward(self, x):
            y = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2, 1)
            y = nn.functional.pad(torch.sigmoid(self.c2(y)), (1, 0, 0, 1))
            y = nn.functional.avg_pool2d(y, 2, 1, ceil_mode=True)
            return torch.softmax(self.fc(torch.flatten(y, 1)), 1)

    torch.manual_seed(0)
    net = Net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 9, 9),), os.fspath(path), opset_version=17,
                          dynamo=False, input_names=["x"], output_names=["y"])


def base_models(folder) -> dict:
    """{name: ModelProto} of the two base models, written under ``folder``."""
    import onnx

    out = {}
    for name, make in (("fastconv", fastconv_base), ("torch", torch_base)):
        path = os.path.join(folder, f"base_{name}.onnx")
        make(path)
        out[name] = onnx.load(path)
    return out


# -- mutations ---------------------------------------------------------------------------------

class Example:
    """A mutated model: ``proto`` (or ``blob``, raw bytes) to write as ``model.onnx``, and the
    extra files of its folder (``files``: name -> bytes, or a special: 'fifo', 'folder', a
    ('link', target) pair)."""

    def __init__(self, cls: str, what: str, proto=None, blob: bytes | None = None):
        self.cls, self.what, self.proto, self.blob = cls, what, proto, blob
        self.files: dict = {}


def _copy(proto):
    from onnx import ModelProto

    out = ModelProto()
    out.CopyFrom(proto)
    return out


def _float_inits(model):
    from onnx import TensorProto

    return [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT]


def _image_input(model):
    return model.graph.input[0].name


def _prepend(model, nodes, name) -> None:
    """``nodes`` put first in the graph, and their output ``name`` added to the image input
    (a constant folded into a Rescaling) before any node reads it."""
    from onnx import helper

    g = model.graph
    x = _image_input(model)
    for n in g.node:
        for i, v in enumerate(n.input):
            if v == x:
                n.input[i] = f"{name}_in"
    rest = list(g.node)
    del g.node[:]
    g.node.extend(list(nodes) + [helper.make_node("Add", [x, name], [f"{name}_in"])] + rest)


def _set_external(t, location: str, offset=None, length=None, extra=()):
    from onnx import TensorProto

    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.ClearField("int64_data")
    t.ClearField("int32_data")
    del t.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length),
                       *extra):
        if value is not None:
            e = t.external_data.add()
            e.key, e.value = key, str(value)


def _tensor_bytes(t) -> bytes:
    from onnx import numpy_helper

    return numpy_helper.to_array(t).tobytes()


def _external_sites(rng, model):
    """Tensors of ``model`` to move to external data (adding a Constant, a ConstantOfShape
    value, an If subgraph or a sparse Constant where the site asks for one)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    site = rng.choice(["initializer", "constant", "attribute", "subgraph", "sparse", "all"])
    tensors = []
    if site in ("initializer", "all"):
        inits = _float_inits(model)
        tensors += rng.sample(inits, k=min(len(inits), rng.randint(1, 3)))
    if site in ("constant", "all"):
        # an initializer turned into a Constant node holding the same tensor
        inits = _float_inits(model)
        t = rng.choice(inits)
        node = helper.make_node("Constant", [], [t.name], value=numpy_helper.from_array(
            numpy_helper.to_array(t), t.name))
        g.initializer.remove(t)
        g.node.insert(0, node)
        tensors.append(g.node[0].attribute[0].t)
    if site in ("attribute", "all"):
        # a ConstantOfShape whose value tensor is external, added to the first input
        shape = numpy_helper.from_array(np.array([1], np.int64), "cos_shape")
        g.initializer.append(shape)
        node = helper.make_node("ConstantOfShape", ["cos_shape"], ["cos_out"],
                                value=numpy_helper.from_array(np.array([0.0], np.float32)))
        _prepend(model, [node], "cos_out")
        tensors.append(g.node[0].attribute[0].t)
    if site in ("subgraph", "all"):
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(
                np.arange(16, dtype=np.float32), "branch_value"))], "branch", [],
            [helper.make_tensor_value_info("b", TensorProto.FLOAT, [16])])
        cond = numpy_helper.from_array(np.array(True), "cond")
        g.initializer.append(cond)
        node = helper.make_node("If", ["cond"], ["if_out"], then_branch=branch,
                                else_branch=branch)
        g.node.insert(0, node)
        tensors.append(g.node[0].attribute[0].g.node[0].attribute[0].t)
    if site in ("sparse", "all"):
        values = numpy_helper.from_array(np.ones(4, np.float32), "sv")
        indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "si")
        sparse = helper.make_sparse_tensor(values, indices, [8])
        node = helper.make_node("Constant", [], ["sparse_out"], sparse_value=sparse)
        g.node.insert(0, node)
        tensors.append(g.node[0].attribute[0].sparse_tensor.values)
    return site, tensors


def mutate_external(rng, base):
    model = _copy(base)
    site, tensors = _external_sites(rng, model)
    kind = rng.choice(["valid", "valid", "absolute", "dotdot", "link_out", "link_in", "fifo",
                       "dev_zero", "folder", "missing", "huge_offset", "negative_offset",
                       "text_offset", "wrong_length", "past_end", "no_location", "twice",
                       "unknown_key", "nul", "backslash", "passwd"])
    ex = Example("external", f"external {kind} at {site} ({len(tensors)} tensors)", model)
    data = bytearray()
    for t in tensors:
        payload = _tensor_bytes(t)
        offset, length = len(data), len(payload)
        data += payload
        location, extra = "model.onnx.data", ()
        if kind == "absolute":
            location = "{canary}"
        elif kind == "dotdot":
            location = rng.choice(["../canary.bin", "sub/../../canary.bin", "./../canary.bin"])
        elif kind == "link_out":
            location = "link.bin"
            ex.files["link.bin"] = ("link", "{canary}")
        elif kind == "link_in":
            location = "link.bin"
            ex.files["link.bin"] = ("link", "model.onnx.data")
        elif kind == "fifo":
            location = "fifo.bin"
            ex.files["fifo.bin"] = "fifo"
        elif kind == "dev_zero":
            location = "zero.bin"
            ex.files["zero.bin"] = ("link", "/dev/zero")
        elif kind == "folder":
            location = rng.choice(["sub", ".", "sub/"])
            ex.files["sub"] = "folder"
        elif kind == "missing":
            location = "absent.bin"
        elif kind == "huge_offset":
            offset = rng.choice([2**40, 2**63 - 1, 10**30])
        elif kind == "negative_offset":
            offset = rng.choice([-1, -length, -(2**63)])
        elif kind == "text_offset":
            offset = rng.choice(["1.5", "0x10", "1_0", " 4", "+4", "", "nan", "\u0664"])
        elif kind == "wrong_length":
            length = rng.choice([0, length - 1, length + 4, 2**62])
        elif kind == "past_end":
            offset = offset + 4
        elif kind == "no_location":
            location = ""
        elif kind == "twice":
            extra = (("location", "../canary.bin"),)
        elif kind == "unknown_key":
            extra = (("basepath", "/"), ("checksum", "0"), ("colour", "red"))
        elif kind == "nul":
            location = "model.onnx.data\x00../canary.bin"
        elif kind == "backslash":
            location = rng.choice(["..\\canary.bin", "C:\\canary.bin", "\\canary.bin"])
        elif kind == "passwd":
            location = rng.choice(["etc/passwd", "/etc/passwd", "../../../../../../etc/passwd"])
        _set_external(t, location, offset, length, extra)
    ex.files["model.onnx.data"] = bytes(data)
    return ex


def _huge_dims(rng):
    return rng.choice([[-1, 2**40], [-1, 4], [2**31, 2**31], [2**62, 4], [-5], [0, -1],
                       [2**40], [1 << 26, 12], [3, -2**62], [2**63 - 1], [2**20, 2**20, 2**20],
                       [1 << 24, 16]])


def mutate_dims(rng, base):
    from onnx import TensorProto, helper, numpy_helper

    model = _copy(base)
    g = model.graph
    kind = rng.choice(["initializer", "constant", "constant_of_shape", "reshape", "input",
                       "concat_bomb", "cast_bomb", "broadcast_bomb", "gather_bomb"])
    what = kind
    if kind == "initializer":
        t = rng.choice(list(g.initializer))
        dims = _huge_dims(rng)
        del t.dims[:]
        t.dims.extend(dims)
        what = f"initializer '{t.name}' dims {dims}"
    elif kind == "constant":
        value = numpy_helper.from_array(np.zeros(4, np.float32), "c")
        dims = _huge_dims(rng)
        del value.dims[:]
        value.dims.extend(dims)
        _prepend(model, [helper.make_node("Constant", [], ["cdims"], value=value)], "cdims")
        what = f"Constant dims {dims}"
    elif kind == "constant_of_shape":
        dims = _huge_dims(rng) + rng.choice([[], [1]])
        g.initializer.append(numpy_helper.from_array(np.array(dims, np.int64)
                                                     if max(map(abs, dims)) < 2**63
                                                     else np.array([1], np.int64), "shape"))
        _prepend(model, [helper.make_node("ConstantOfShape", ["shape"], ["cos"])], "cos")
        what = f"ConstantOfShape {dims}"
    elif kind == "reshape":
        shapes = [t for t in g.initializer if t.data_type == TensorProto.INT64]
        target = rng.choice([[1, -1, -1], [-2, 4], [1, 2**40], [0, 0, 0, 0, 0], [-1],
                             [1, -(2**62)], [2**31, 2**31, 2**31]])
        if shapes:
            t = rng.choice(shapes)
            t.CopyFrom(numpy_helper.from_array(np.array(target, np.int64), t.name))
        else:
            g.initializer.append(numpy_helper.from_array(np.array(target, np.int64), "rs"))
            _prepend(model, [helper.make_node("Constant", [], ["cdummy"], value=(
                numpy_helper.from_array(np.zeros(16, np.float32)))),
                helper.make_node("Reshape", ["cdummy", "rs"], ["rsout"])], "rsout")
        what = f"Reshape target {target}"
    elif kind == "input":
        dims = rng.choice([[1, 3, 2**31, 2**31], [1, -3, 8, 8], [1, 3, 0, 8],
                           [1, 3, 50000, 50000], [-1, 3, 8, 8], [2**62, 3, 8, 8],
                           [1, 2**40, 1, 1]])
        shape = g.input[0].type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            shape.dim.add().dim_value = d
        what = f"input dims {dims}"
    elif kind == "concat_bomb":
        n = rng.choice([2, 12, 64])
        g.initializer.append(numpy_helper.from_array(np.array([1 << 26], np.int64), "s"))
        _prepend(model, [helper.make_node("ConstantOfShape", ["s"], ["big"]),
                         helper.make_node("Concat", ["big"] * n, ["bigger"], axis=0)], "bigger")
        what = f"Concat of {n} ConstantOfShape([1 << 26])"
    elif kind == "cast_bomb":
        to = rng.choice([TensorProto.DOUBLE, TensorProto.INT64, TensorProto.FLOAT])
        size = rng.choice([1 << 26, 1 << 28, 1 << 30])
        g.initializer.append(numpy_helper.from_array(np.array([size], np.int64), "s"))
        _prepend(model, [helper.make_node("ConstantOfShape", ["s"], ["u8"],
                                          value=numpy_helper.from_array(np.ones(1, np.uint8))),
                         helper.make_node("Cast", ["u8"], ["wide"], to=to),
                         helper.make_node("Concat", ["wide", "wide"], ["wider"], axis=0)],
                 "wider")
        what = f"Cast of ConstantOfShape([{size}]) uint8 to {TensorProto.DataType.Name(to)}"
    elif kind == "broadcast_bomb":
        n = rng.choice([1 << 12, 1 << 15, 1 << 17])
        g.initializer.append(numpy_helper.from_array(np.ones((n, 1), np.float32), "a"))
        g.initializer.append(numpy_helper.from_array(np.ones((1, n), np.float32), "b"))
        _prepend(model, [helper.make_node(rng.choice(["Mul", "Add", "Sub", "Div"]), ["a", "b"],
                                          ["ab"])], "ab")
        what = f"broadcast of ({n}, 1) and (1, {n})"
    else:
        n = rng.choice([1 << 10, 1 << 16, 1 << 20])
        g.initializer.append(numpy_helper.from_array(np.arange(1024, dtype=np.float32), "d"))
        g.initializer.append(numpy_helper.from_array(np.zeros((n, 1024), np.int64)
                                                     if n <= 1 << 10 else
                                                     np.zeros(n, np.int64), "i"))
        _prepend(model, [helper.make_node("Gather", ["d", "i"], ["gathered"])], "gathered")
        what = f"Gather of {n} indices"
    return Example("dims", f"dims {what}", model)


def mutate_deep(rng, base, sizes=SIZES):
    from onnx import helper, numpy_helper

    model = _copy(base)
    g = model.graph
    n = rng.choice(sizes["deep"])
    kind = rng.choice(["relu", "dropout", "identity", "constant_chain", "concat_doubling",
                       "scale_chain"])
    x = _image_input(model)
    names = [x] + [f"deep{i}" for i in range(n)]
    if kind == "relu":
        nodes = [helper.make_node("Relu", [names[i]], [names[i + 1]]) for i in range(n)]
    elif kind == "dropout":
        nodes = [helper.make_node("Dropout", [names[i]], [names[i + 1], f"mask{i}"])
                 for i in range(n)]
    elif kind == "identity":
        nodes = [helper.make_node("Identity", [names[i]], [names[i + 1]]) for i in range(n)]
    elif kind == "scale_chain":
        g.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
        nodes = [helper.make_node("Mul", [names[i], "one"], [names[i + 1]]) for i in range(n)]
    elif kind == "constant_chain":
        g.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), "z0"))
        nodes = [helper.make_node("Squeeze" if i % 2 else "Unsqueeze", [f"z{i}", "ax"],
                                  [f"z{i + 1}"]) for i in range(n)]
        g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "ax"))
        nodes.append(helper.make_node("Add", [x, f"z{n}"], [names[-1]]))
        if model.opset_import[0].version < 13:
            for node in nodes:
                if node.op_type in ("Unsqueeze", "Squeeze"):
                    del node.input[1:]
                    node.attribute.append(helper.make_attribute("axes", [0]))
    else:  # each Concat doubles a constant: refused by the budget long before the end
        g.initializer.append(numpy_helper.from_array(np.zeros(4, np.float32), "c0"))
        nodes = [helper.make_node("Concat", [f"c{i}", f"c{i}"], [f"c{i + 1}"], axis=0)
                 for i in range(64)]
        nodes.append(helper.make_node("Add", [x, f"c{64}"], [names[-1]]))
        n = 64
    for node in g.node:
        for i, v in enumerate(node.input):
            if v == x:
                node.input[i] = names[-1]
    for i, node in enumerate(nodes):
        g.node.insert(i, node)
    return Example("deep", f"deep {kind} x {n}", model)


def mutate_wide(rng, base, sizes=SIZES):
    from onnx import TensorProto, helper, numpy_helper

    model = _copy(base)
    g = model.graph
    n = rng.choice(sizes["wide"])
    kind = rng.choice(["inputs", "outputs", "initializers", "consumers", "sum_inputs",
                       "dropout_fanout"])
    x = _image_input(model)
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if kind == "inputs":
        for i in range(n):
            g.input.append(helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT,
                                                         [1, 4]))
            g.node.append(helper.make_node("Relu", [f"extra{i}"], [f"extra_out{i}"]))
        g.node.append(helper.make_node("Sum", [f"extra_out{i}" for i in range(n)], ["extras"]))
        g.output.append(helper.make_tensor_value_info("extras", TensorProto.FLOAT, None))
    elif kind == "outputs":
        for i in range(n):
            g.node.append(helper.make_node("Relu", [x], [f"many{i}"]))
            g.output.append(helper.make_tensor_value_info(f"many{i}", TensorProto.FLOAT, None))
    elif kind == "initializers":
        for i in range(n):
            g.initializer.append(numpy_helper.from_array(np.full(4, i, np.float32), f"w{i}"))
    elif kind == "consumers":
        for i in range(n):
            g.node.append(helper.make_node("Sigmoid", [x], [f"use{i}"]))
        g.output.append(helper.make_tensor_value_info(f"use{n - 1}", TensorProto.FLOAT, None))
    elif kind == "sum_inputs":
        g.node.append(helper.make_node("Sum", [x] * n, ["summed"]))
        g.output.append(helper.make_tensor_value_info("summed", TensorProto.FLOAT, None))
    else:
        prev = x
        for i in range(n):
            g.node.append(helper.make_node("Dropout", [prev], [f"d{i}", f"dm{i}"]))
            prev = f"d{i}"
        g.output.append(helper.make_tensor_value_info(prev, TensorProto.FLOAT, None))
    return Example("wide", f"wide {kind} x {n} (input {dims})", model)


def _random_attribute_value(rng):
    from onnx import helper, numpy_helper

    return rng.choice([
        lambda: rng.choice([0, -1, 1, 2, 3, 2**31 - 1, 2**31, 2**62, -(2**63), 10**9]),
        lambda: rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf"), 0.5]),
        lambda: rng.choice([b"", b"SAME_UPPER", b"VALID", b"reflect", b"\xff\xfe", b"x" * 300]),
        lambda: [rng.choice([0, -1, 1, 2, 10**9, 2**62, -(2**62)])
                 for _ in range(rng.randint(0, 9))],
        lambda: [rng.random() * 10 for _ in range(rng.randint(0, 4))],
        lambda: [b"a", b"b"],
        lambda: numpy_helper.from_array(np.array(rng.choice([0, 1, 2**40]), np.int64)),
        lambda: helper.make_graph([], "g", [], []),
        lambda: _lying_tensor([2**40]),
        lambda: _lying_tensor([-1, 4]),
    ])()


def _describe(value) -> str:
    """An attribute value, short and on one line."""
    if hasattr(value, "DESCRIPTOR"):
        return f"a {type(value).__name__}" + (f" of dims {list(value.dims)}"
                                              if hasattr(value, "dims") else "")
    return repr(value)[:60]


def _lying_tensor(dims):
    """A float tensor of 4 values whose dims claim ``dims``."""
    from onnx import numpy_helper

    t = numpy_helper.from_array(np.ones(4, np.float32), "t")
    del t.dims[:]
    t.dims.extend(dims)
    return t


def mutate_attributes(rng, base):
    from onnx import helper

    model = _copy(base)
    g = model.graph
    steps = []
    wanted = rng.randint(1, 3)
    while len(steps) < wanted:
        node = rng.choice(list(g.node))
        who = f"{node.op_type} '{node.name}'"
        kind = rng.choice(["value", "value", "value", "drop_attr", "add_attr", "drop_input",
                           "missing_input", "op_type", "swap_inputs", "drop_output",
                           "extra_input", "domain"])
        if kind == "value" and node.attribute:
            a = rng.choice(list(node.attribute))
            value = _random_attribute_value(rng)
            try:
                new = helper.make_attribute(a.name, value)
            except (ValueError, TypeError):
                continue
            node.attribute.remove(a)
            node.attribute.append(new)
            steps.append(f"{who}.{a.name} = {_describe(value)}")
        elif kind == "drop_attr" and node.attribute:
            a = rng.choice(list(node.attribute))
            node.attribute.remove(a)
            steps.append(f"{who} without {a.name}")
        elif kind == "add_attr":
            name = rng.choice(["pads", "strides", "dilations", "kernel_shape", "group", "axis",
                               "perm", "size", "auto_pad", "ceil_mode", "alpha", "to", "axes",
                               "allowzero", "transB", "count_include_pad", "mode", "value"])
            value = _random_attribute_value(rng)
            try:
                node.attribute.append(helper.make_attribute(name, value))
            except (ValueError, TypeError):
                continue
            steps.append(f"{who} + {name} = {_describe(value)}")
        elif kind == "drop_input" and node.input:
            i = rng.randrange(len(node.input))
            del node.input[i]
            steps.append(f"{who} without input {i}")
        elif kind == "missing_input" and node.input:
            i = rng.randrange(len(node.input))
            node.input[i] = rng.choice(["", "nowhere", node.output[0] if node.output else "o"])
            steps.append(f"{who} input {i} -> {node.input[i]!r}")
        elif kind == "op_type":
            node.op_type = rng.choice(["Conv", "Relu", "Gemm", "MaxPool", "Reshape", "Concat",
                                       "Pad", "LRN", "Flatten", "Softmax", "Transpose",
                                       "BatchNormalization", "ConstantOfShape", "Cast",
                                       "Squeeze", "Unsqueeze", "Gather", "Slice", "Shape",
                                       "AveragePool", "ReduceMean", "Sum", "Div", "Identity",
                                       "Dropout", "Clip", "If", "Loop", "NoSuchOp"])
            steps.append(f"{who} -> {node.op_type}")
        elif kind == "swap_inputs" and len(node.input) > 1:
            inputs = list(node.input)
            rng.shuffle(inputs)
            del node.input[:]
            node.input.extend(inputs)
            steps.append(f"{who} inputs shuffled")
        elif kind == "drop_output" and node.output:
            del node.output[:]
            steps.append(f"{who} without outputs")
        elif kind == "extra_input":
            node.input.append(rng.choice([g.initializer[0].name if g.initializer else "",
                                          _image_input(model)]))
            steps.append(f"{who} + input")
        elif kind == "domain":
            node.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "ai.onnx"])
            steps.append(f"{who} domain {node.domain}")
    return Example("attributes", "attributes " + "; ".join(steps), model)


def mutate_bytes(rng, base):
    blob = bytearray(base.SerializeToString())
    steps = []
    for _ in range(rng.randint(1, 8)):
        if not blob:  # all cut away: one byte to go on from
            blob = bytearray(b"\x08")
        kind = rng.choice(["flip", "flip", "byte", "truncate", "insert", "delete"])
        i = rng.randrange(len(blob))
        if kind == "flip":
            blob[i] ^= 1 << rng.randrange(8)
        elif kind == "byte":
            blob[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif kind == "truncate":
            del blob[i:]
        elif kind == "insert":
            blob[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del blob[i:i + rng.randint(1, 16)]
        steps.append(f"{kind}@{i}")
    return Example("bytes", "bytes " + " ".join(steps), blob=bytes(blob))


MUTATORS = {"external": mutate_external, "dims": mutate_dims, "deep": mutate_deep,
            "wide": mutate_wide, "attributes": mutate_attributes, "bytes": mutate_bytes}


def examples(n: int, seed: int, bases: dict, sizes=SIZES):
    """``n`` mutated examples, the classes taken in turn, drawn from ``seed``."""
    rng = random.Random(seed)
    names = sorted(bases)
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        base = bases[names[(i // len(CLASSES)) % len(names)]]
        if cls in ("deep", "wide"):
            ex = MUTATORS[cls](rng, base, sizes)
        else:
            ex = MUTATORS[cls](rng, base)
        ex.what = f"[{names[(i // len(CLASSES)) % len(names)]}] {ex.what}"
        yield ex


# -- loading and judging ---------------------------------------------------------------------

def _write(ex: Example, folder: str, canary: str) -> str:
    os.makedirs(folder)
    path = os.path.join(folder, "model.onnx")
    for name, content in ex.files.items():
        target = os.path.join(folder, name)
        if content == "fifo":
            os.mkfifo(target)
        elif content == "folder":
            os.makedirs(target, exist_ok=True)
        elif isinstance(content, tuple):
            os.symlink(content[1].replace("{canary}", canary), target)
        else:
            with open(target, "wb") as fh:
                fh.write(content)
    if ex.proto is not None:
        for t in _all_tensors(ex.proto):
            for e in t.external_data:
                e.value = e.value.replace("{canary}", canary)
        blob = ex.proto.SerializeToString()
    else:
        blob = ex.blob
    with open(path, "wb") as fh:
        fh.write(blob)
    return path


def _all_tensors(model):
    from fastconv.io.onnx_file import iter_tensors

    return [t for _, t in iter_tensors(model)]


def _folder_bytes(folder: str) -> int:
    total = 0
    for name in os.listdir(folder):
        st = os.lstat(os.path.join(folder, name))
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


class _Audit:
    """Paths opened while ``active``, under ``root`` but outside ``allowed``."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.allowed = None
        self.bad: list = []
        sys.addaudithook(self.hook)

    def hook(self, event, args):
        if self.allowed is None or event != "open" or not args:
            return
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # a file descriptor
        try:
            text = os.fsdecode(path)
            real = os.path.realpath(text)
        except (ValueError, OSError):
            return
        for p in (os.path.abspath(text), real):
            inside = p == self.allowed or p.startswith(self.allowed + os.sep)
            if p.startswith(self.root + os.sep) and not inside:
                self.bad.append(text)
                return
            if p.startswith(("/etc/", "/dev/")):
                self.bad.append(text)
                return


_AUDIT = None


def _predict_once(model) -> None:
    shapes = [tuple(t.shape) for t in (model.inputs if isinstance(model.inputs, list)
                                       else [model.inputs])]
    total = sum(math.prod(d or 1 for d in t.shape[1:]) for layer in model.layers
                for node in layer._inbound_nodes for t in node.outputs)
    if total > PREDICT_ELEMENTS or any(None in s[1:] for s in shapes):
        return
    xs = [np.zeros((1, *s[1:]), np.float32) for s in shapes]
    model.predict(xs if len(xs) > 1 else xs[0], verbose=0)


def load_one(path: str) -> tuple[str, str, float, int, object]:
    """(outcome, detail, seconds, peak bytes, model or None) of ``fastconv.onnx.load(path)``;
    the seconds are the process's CPU time (at nice 19 beside other work, wall-clock time
    measures the neighbours)."""
    import fastconv.onnx as fo
    from fastconv.io.errors import InvalidModelFileError

    tracemalloc.start()
    start = time.process_time()
    model = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = fo.load(path)
        outcome, detail = "loaded", ""
    except (InvalidModelFileError, fo.UnsupportedOnnxError) as exc:
        outcome = "refused" if path in str(exc) else "defect: unnamed file"
        if outcome == "refused" and exc.__cause__ is not None:
            outcome = "refused (last-line wrap)"  # an unforeseen error, reported as damage
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
    except BaseException as exc:  # noqa: BLE001 - every other exception is the defect sought
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome = f"defect: {type(exc).__name__}"
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
    seconds = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, detail, seconds, peak, model


class Report:
    def __init__(self):
        self.counts = collections.Counter()  # (class, outcome) -> n
        self.defects: list = []
        self.log: list = []  # (class, outcome, what) of every example
        self.worst_peak = (0, "")
        self.slowest = (0.0, "")
        self.seconds = 0.0

    def add(self, cls, outcome, what):
        self.counts[cls, outcome] += 1
        self.log.append((cls, outcome, what))
        if outcome.startswith("defect"):
            self.defects.append(f"{outcome}: {what}")

    def lines(self) -> list:
        out = []
        for cls in CLASSES:
            row = {o: n for (c, o), n in self.counts.items() if c == cls}
            if row:
                out.append(f"{cls:>10}: " + ", ".join(f"{o} {n}" for o, n in sorted(row.items())))
        out.append(f"defects: {len(self.defects)}; largest peak of traced memory "
                   f"{self.worst_peak[0] / 2**20:.1f} MiB ({self.worst_peak[1][:120]}); "
                   f"slowest load {self.slowest[0]:.2f} s of CPU ({self.slowest[1][:120]}); "
                   f"{self.seconds:.0f} s in all")
        out += self.defects[:50]
        return out


@contextlib.contextmanager
def _budget_floor(floor: int):
    from fastconv.onnx import _import

    old = _import.MIN_CONSTANT_BUDGET
    _import.MIN_CONSTANT_BUDGET = floor
    try:
        yield
    finally:
        _import.MIN_CONSTANT_BUDGET = old


def run(n: int, seed: int, folder, progress=None, small: bool = False) -> Report:
    """Make ``n`` examples from ``seed`` under ``folder``, load each, and judge it (see the
    module's docstring). ``progress(report, i)`` is called after each example; ``small``
    takes the CI sample's sizes of deep and wide graphs (``SMALL_SIZES``)."""
    global _AUDIT
    folder = os.path.realpath(os.fspath(folder))
    canary = os.path.join(folder, "canary.bin")
    with open(canary, "wb") as fh:
        fh.write(CANARY)
    os.makedirs(os.path.join(folder, "bases"), exist_ok=True)
    bases = base_models(os.path.join(folder, "bases"))
    if _AUDIT is None:
        _AUDIT = _Audit(folder)
    _AUDIT.root = folder
    report = Report()
    start = time.perf_counter()
    with _budget_floor(BUDGET_FLOOR):
        for i, ex in enumerate(examples(n, seed, bases, SMALL_SIZES if small else SIZES)):
            where = os.path.join(folder, f"ex{i}")
            path = _write(ex, where, canary)
            nbytes = _folder_bytes(where)
            _AUDIT.allowed, _AUDIT.bad = os.path.realpath(where), []
            try:
                outcome, detail, seconds, peak, model = load_one(path)
            finally:
                _AUDIT.allowed = None
            what = f"{ex.what} -> {detail}" if detail else ex.what
            if _AUDIT.bad:
                outcome = "defect: opened outside the folder"
                what += f" (opened {_AUDIT.bad[:3]})"
            elif seconds > TIME_BOUND_S:
                outcome = "defect: slow"
                what += f" ({seconds:.1f} s)"
            elif peak > memory_bound(nbytes):
                outcome = "defect: memory"
                what += f" (peak {peak} bytes for {nbytes} bytes of files)"
            elif model is not None:
                if any(CANARY[:64] in np.asarray(w).tobytes() for w in model.get_weights()):
                    outcome = "defect: canary bytes in the weights"
                else:
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("error")
                            _predict_once(model)
                    except Exception as exc:  # noqa: BLE001 - a loaded model must predict
                        outcome = f"defect: predict {type(exc).__name__}"
                        what += f" (predict: {str(exc)[:200]})"
            if peak > report.worst_peak[0]:
                report.worst_peak = (peak, ex.what)
            if seconds > report.slowest[0]:
                report.slowest = (seconds, ex.what)
            report.add(ex.cls, outcome, what)
            shutil.rmtree(where, ignore_errors=True)
            if progress is not None:
                progress(report, i)
    report.seconds = time.perf_counter() - start
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print every example")
    parser.add_argument("--folder", default=None, help="where the files go (a temporary "
                                                       "folder by default, removed after)")
    args = parser.parse_args(argv)
    folder = args.folder or tempfile.mkdtemp(prefix="fastconv-onnx-mutations-")

    def progress(report, i):
        if (i + 1) % 500 == 0:
            print(f"{i + 1} examples, {len(report.defects)} defects", flush=True)

    try:
        report = run(args.examples, args.seed, folder, progress)
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"python -m tests.campaign.onnx_mutations --examples {args.examples} "
          f"--seed {args.seed}")
    if args.verbose:
        for _, outcome, what in report.log:
            print(f"{outcome}: {what}")
    for line in report.lines():
        print(line)
    return 1 if report.defects else 0


if __name__ == "__main__":
    sys.exit(main())
