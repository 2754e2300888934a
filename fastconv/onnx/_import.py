"""ONNX -> fastconv: a (trainable) functional model from an ONNX graph.

Layout: ONNX images are NCHW, fastconv's NHWC. A 4D tensor of the ONNX graph is held in
fastconv as NHWC (layout ``"nchw"``: the ONNX axes (N, C, H, W) are fastconv's (0, 3, 1, 2)), and
a 3D tensor that a Conv or a pooling reads as (N, C, L) is held as (N, L, C) (layout ``"nchw"``
too); every other tensor keeps the ONNX axes (layout ``"plain"``). 1D convolutions and poolings
run as 2D ones over a (1, L) image. Kernels go from OIHW to HWIO, a
Gemm's ``transB`` is applied to its kernel, and a Flatten of an image gives fastconv's H, W, C
order, so the first Dense layer after it gets its rows reordered from ONNX's C, H, W order
(the flattened tensor remembers ``(C, H, W)`` until a Gemm/MatMul absorbs it). Where no weight
can absorb a layout change, a ``Permute`` layer makes it.

Constants (initializers, Constant, ConstantOfShape and a few shape ops whose inputs are all
constant) are folded here, within an allocation budget set by the file's size; every other node
becomes layers of fastconv's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..saving import InvalidModelFileError

#: The op-to-layer table: each ONNX operator fastconv reads, and the layers it becomes (the
#: ``_Importer.op_<Name>`` method makes them). Operators whose inputs are all constants fold
#: into constants instead.
OP_TABLE = {
    "Conv": "Conv2D (ZeroPadding2D first for pads 'same' cannot express; 1D: Reshape around)",
    "Relu": "Activation('relu')",
    "LeakyRelu": "LeakyReLU",
    "Sigmoid": "Activation('sigmoid')",
    "Tanh": "Activation('tanh')",
    "Clip": "Clip",
    "MaxPool": "MaxPooling2D (explicit padding, ceil_mode; 1D: Reshape around)",
    "AveragePool": "AveragePooling2D (explicit padding, ceil_mode, count_include_pad)",
    "GlobalAveragePool": "GlobalAveragePooling2D(keepdims=True)",
    "GlobalMaxPool": "GlobalMaxPooling2D(keepdims=True)",
    "ReduceMean": "GlobalAveragePooling2D over H, W; other axes: AveragePooling2D over them",
    "Gemm": "Dense (transB applied; rows reordered after a flatten)",
    "MatMul": "Dense without bias",
    "Flatten": "Flatten (the next Dense reorders its rows from C, H, W to H, W, C)",
    "Reshape": "Flatten or Reshape",
    "Add": "Add; with a constant: Rescaling",
    "Sum": "Add",
    "Mul": "Rescaling (by a constant)",
    "Sub": "Rescaling (a constant)",
    "Div": "Rescaling (by a constant)",
    "Concat": "Concatenate",
    "BatchNormalization": "BatchNormalization (inference statistics)",
    "LRN": "LocalResponseNormalization (odd size)",
    "Softmax": "Activation('softmax'), Permute around for an inner axis",
    "Dropout": "nothing (inference)",
    "Identity": "nothing",
    "Constant": "a constant",
    "ConstantOfShape": "a constant",
    "Pad": "ZeroPadding2D (plus Rescaling for another value)",
    "Transpose": "Permute, or nothing where it only changes NCHW to fastconv's NHWC",
}
#: ONNX operators that become layers (or fold into constants).
SUPPORTED_OPS = tuple(OP_TABLE)
#: Operators folded when every input is a constant (besides the supported ones).
CONSTANT_ONLY_OPS = ("Unsqueeze", "Squeeze", "Shape", "Cast", "Gather", "Slice")

#: Constants the import may materialise: at least this, or 16x the file's size.
MIN_CONSTANT_BUDGET = 1 << 30

_NCHW_TO_NHWC = (0, 2, 3, 1)
_NHWC_TO_NCHW = (0, 3, 1, 2)
#: fastconv's axes of a channels-last tensor -> ONNX's channels-first, by rank
_TO_ONNX = {3: (0, 2, 1), 4: _NHWC_TO_NCHW}
#: Permute layer dims taking ONNX's channels-first order to fastconv's, and back
_PERMUTE_IN = {3: (2, 1), 4: (2, 3, 1)}
_PERMUTE_OUT = {3: (2, 1), 4: (3, 1, 2)}


class UnsupportedOnnxError(ValueError):
    """The ONNX file uses operators (or operator options) fastconv does not implement."""


@dataclass
class Sym:
    """A fastconv symbolic tensor standing for an ONNX tensor."""

    t: object  # KerasTensor
    layout: str = "plain"  # or "nchw"
    flat_chw: tuple | None = None  # a flattened image in H, W, C order; ONNX's is (C, H, W)

    @property
    def onnx_shape(self) -> tuple:
        shape = tuple(self.t.shape)
        if self.layout == "nchw":
            return tuple(shape[i] for i in _TO_ONNX[len(shape)])
        return shape


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _name(text: str, used: set) -> str:
    base = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_") or "onnx"
    base = base[:60]
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


class _Importer:
    def __init__(self, model, where: str, budget: int, constants: dict | None = None,
                 expand_groups: bool = False):
        from onnx import numpy_helper

        self.expand_groups = expand_groups
        self.model = model
        self.graph = model.graph
        self.where = where
        self.budget = budget
        self.values: dict[str, object] = {}  # name -> np.ndarray (constant) or Sym
        self.used_names: set = set()
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        for init in self.graph.initializer:
            self._charge(_tensor_nbytes(init), init.name)
            try:
                self.values[init.name] = numpy_helper.to_array(init)
            except (ValueError, TypeError, KeyError) as exc:
                raise InvalidModelFileError(f"{where}: initializer '{init.name}' is corrupt "
                                            f"({exc})") from None
        for name, value in (constants or {}).items():
            self.values[name] = np.asarray(value)
        self.inputs = []
        self.input_layouts = []
        self.pending_weights = []  # (layer, weights) set once the model is made
        self.declared_batch = None  # the batch size the file's first input names, if any
        # fastconv's own exports say that their inputs are channels-last (NHWC)
        self.channels_last_inputs = any(p.key == "fastconv.input_layout" and p.value == "NHWC"
                                        for p in model.metadata_props)

    # -- helpers -----------------------------------------------------------------------------
    def _charge(self, nbytes: int, what: str) -> None:
        self.budget -= int(nbytes)
        if self.budget < 0:
            raise InvalidModelFileError(
                f"{self.where}: constant '{what}' would take the import past its memory budget "
                f"(the file's constants may not exceed {MIN_CONSTANT_BUDGET >> 20} MiB or 16x "
                f"the file's size)")

    def _fail(self, node, why: str):
        return UnsupportedOnnxError(f"{self.where}: node '{node.name or node.output[0]}' "
                                    f"({node.op_type}): {why}")

    def layer_name(self, node, suffix: str = "") -> str:
        return _name((node.name or node.output[0]) + suffix, self.used_names)

    def const(self, node, i: int, what: str, optional: bool = False):
        if i >= len(node.input) or node.input[i] == "":
            if optional:
                return None
            raise self._fail(node, f"missing input {what}")
        v = self.values.get(node.input[i])
        if isinstance(v, Sym):
            raise self._fail(node, f"{what} must be a constant (an initializer), not a computed "
                                   f"tensor")
        if v is None:
            raise self._fail(node, f"input '{node.input[i]}' is never produced")
        return v

    def sym(self, node, i: int) -> Sym:
        v = self.values.get(node.input[i])
        if not isinstance(v, Sym):
            raise self._fail(node, f"input {i} ('{node.input[i]}') must be a computed tensor, "
                                   f"not a constant")
        return v

    def apply(self, layer, x, layout="plain", flat_chw=None) -> Sym:
        out = layer(x.t if isinstance(x, Sym) else [s.t for s in x])
        return Sym(out, layout, flat_chw)

    def permute(self, s: Sym, dims, name) -> object:
        return L.Permute(dims, name=_name(name, self.used_names))(s.t)

    def as_nchw(self, node, s: Sym, ranks=(4,)) -> Sym:
        """``s`` held as NHWC (a 4D tensor)."""
        rank = len(s.t.shape)
        if s.layout == "nchw" and (rank == 4 or rank in ranks):
            return s
        if rank != 4 and rank not in ranks:
            raise self._fail(node, f"expects a 4D (N, C, H, W) input, got shape {s.onnx_shape}")
        s = self.as_plain(node, s)
        return Sym(self.permute(s, _PERMUTE_IN[rank], f"{node.output[0]}_to_nhwc"), "nchw")

    def as_plain(self, node, s: Sym) -> Sym:
        """``s`` with ONNX's axis order."""
        if s.flat_chw is not None:
            c, h, w = s.flat_chw
            t = L.Reshape((h, w, c), name=_name(f"{node.output[0]}_unflat", self.used_names))(s.t)
            t = L.Permute((3, 1, 2), name=_name(f"{node.output[0]}_chw", self.used_names))(t)
            t = L.Flatten(name=_name(f"{node.output[0]}_reflat", self.used_names))(t)
            return Sym(t)
        if s.layout == "nchw":
            return Sym(self.permute(s, _PERMUTE_OUT[len(s.t.shape)], f"{node.output[0]}_to_nchw"))
        return s

    # -- the graph ---------------------------------------------------------------------------
    def check_operators(self) -> None:
        """One error listing every operator the file uses that fastconv cannot run."""
        known = set(self.values)
        bad = set()
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                bad.add(f"{node.domain}.{node.op_type}")
            elif node.op_type not in SUPPORTED_OPS:
                constant = node.op_type in CONSTANT_ONLY_OPS and all(
                    i == "" or i in known for i in node.input)
                if not constant:
                    bad.add(node.op_type)
            if all(i == "" or i in known for i in node.input) and node.op_type in (
                    "Constant", "ConstantOfShape") + CONSTANT_ONLY_OPS + _FOLDABLE:
                known.update(node.output)
        if bad:
            raise UnsupportedOnnxError(
                f"{self.where}: unsupported ONNX operator(s): {', '.join(sorted(bad))}. "
                f"Supported: {', '.join(SUPPORTED_OPS)} (and {', '.join(CONSTANT_ONLY_OPS)} on "
                f"constants)")

    def make_inputs(self) -> None:
        from onnx import TensorProto

        for vi in self.graph.input:
            if vi.name in self.values:
                continue  # an initializer listed as an input (older exporters)
            tt = vi.type.tensor_type
            if tt.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
                raise UnsupportedOnnxError(
                    f"{self.where}: input '{vi.name}' has element type "
                    f"{TensorProto.DataType.Name(tt.elem_type)}; fastconv models take float32")
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if len(dims) < 2:
                raise UnsupportedOnnxError(
                    f"{self.where}: input '{vi.name}' of shape {dims} has no batch axis "
                    f"(fastconv models take a batch of at least 1D samples)")
            name = _name(vi.name, self.used_names)
            if self.declared_batch is None:
                self.declared_batch = dims[0]
            consumers = [n for n in self.graph.node if vi.name in n.input]
            channels_last = self.channels_last_inputs or consumers and all(
                n.op_type == "Transpose" and list(_attrs(n).get("perm", ())) == [0, 3, 1, 2]
                for n in consumers)  # an NHWC input, as fastconv exports them
            if len(dims) == 4 and not channels_last:
                t = L.Input((dims[2], dims[3], dims[1]), name=name)
                s = Sym(t, "nchw")
            elif len(dims) == 3 and consumers and all(
                    n.op_type in ("Conv", "MaxPool", "AveragePool") for n in consumers):
                s = Sym(L.Input((dims[2], dims[1]), name=name), "nchw")
            else:
                s = Sym(L.Input(tuple(dims[1:]), name=name))
            self.values[vi.name] = s
            self.inputs.append(s.t)
            self.input_layouts.append(s.layout)

    def run(self):
        from ..models import Model

        self.check_operators()
        self.make_inputs()
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self._fail(node, "operator of a custom domain")
            known = [i for i in node.input if i]
            if all(not isinstance(self.values.get(i), Sym) for i in known) and (
                    node.op_type in ("Constant", "ConstantOfShape") + CONSTANT_ONLY_OPS
                    or (known and node.op_type in _FOLDABLE)):
                outs = self.fold(node)
            else:
                handler = getattr(self, f"op_{node.op_type}", None)
                if handler is None:
                    raise self._fail(node, "unsupported on computed tensors")
                outs = handler(node, _attrs(node))
                if not isinstance(outs, (list, tuple)):
                    outs = [outs]
            for name, value in zip(node.output, outs):
                if name:
                    self.values[name] = value
            for extra in node.output[len(outs):]:
                if extra and any(extra in n.input for n in self.graph.node) or extra in {
                        o.name for o in self.graph.output}:
                    raise self._fail(node, f"its output '{extra}' is used, and fastconv "
                                           f"produces only the first output of {node.op_type}")
        outputs, layouts = [], []
        for vo in self.graph.output:
            v = self.values.get(vo.name)
            if not isinstance(v, Sym):
                raise UnsupportedOnnxError(f"{self.where}: output '{vo.name}' is a constant or "
                                           f"is never computed; fastconv models compute their "
                                           f"outputs from their inputs")
            if v.flat_chw is not None or (self.channels_last_inputs and v.layout == "nchw"):
                v = self.as_plain(_FakeNode(vo.name), v)  # fastconv's exports: outputs as named
            outputs.append(v.t)
            layouts.append(v.layout)
        name = _name(self.graph.name or "onnx_model", set())
        model = Model(self.inputs if len(self.inputs) > 1 else self.inputs[0],
                      outputs if len(outputs) > 1 else outputs[0], name=name)
        for layer, weights in self.pending_weights:
            layer.set_weights(weights)
        return model, self.input_layouts, layouts

    # -- constant folding --------------------------------------------------------------------
    def fold(self, node):
        from onnx import numpy_helper

        a = _attrs(node)
        ins = [self.values[i] if i else None for i in node.input]
        for i, v in zip(node.input, ins):
            if i and v is None:
                raise self._fail(node, f"input '{i}' is never produced")
        op = node.op_type
        if op == "Constant":
            if "value" in a:
                out = numpy_helper.to_array(a["value"])
            else:
                key = next(iter(a), None)
                if key not in ("value_float", "value_floats", "value_int", "value_ints"):
                    raise self._fail(node, f"constant attribute {key!r} is not supported")
                out = np.asarray(a[key], dtype=np.float32 if "float" in key else np.int64)
            self._charge(out.nbytes, node.output[0])
            return [out]
        if op == "ConstantOfShape":
            shape = [int(d) for d in np.asarray(ins[0]).reshape(-1)]
            if any(d < 0 for d in shape):
                raise self._fail(node, f"negative shape {shape}")
            value = (numpy_helper.to_array(a["value"]).reshape(-1) if "value" in a
                     else np.zeros(1, np.float32))
            self._charge(math.prod(shape) * value.dtype.itemsize, node.output[0])
            return [np.full(shape, value[0], dtype=value.dtype)]
        if op in ("Add", "Sub", "Mul", "Div", "Gather"):
            # these may produce more than their inputs: charged before they allocate
            if op == "Gather":
                axis = int(a.get("axis", 0))
                shape = list(np.shape(ins[0]))
                size = math.prod(shape[:axis] + list(np.shape(ins[1])) + shape[axis + 1:])
            else:
                try:
                    size = math.prod(np.broadcast_shapes(np.shape(ins[0]), np.shape(ins[1])))
                except ValueError:
                    raise self._fail(node, f"inputs of shapes {np.shape(ins[0])} and "
                                           f"{np.shape(ins[1])} do not broadcast") from None
            self._charge(size * 8, node.output[0])
            self.budget += size * 8  # charged again, at its real size, below
        out = _fold(op, a, ins, self.opset)
        if out is None:
            raise self._fail(node, "cannot be evaluated on constants")
        self._charge(out.nbytes, node.output[0])
        return [out]

    # -- operators -----------------------------------------------------------------------------
    def _elementwise(self, node, layer):
        x = self.sym(node, 0)
        return self.apply(layer, x, x.layout, x.flat_chw)

    def op_Relu(self, node, a):  # noqa: N802
        return self._elementwise(node, L.Activation("relu", name=self.layer_name(node)))

    def op_Sigmoid(self, node, a):  # noqa: N802
        return self._elementwise(node, L.Activation("sigmoid", name=self.layer_name(node)))

    def op_Tanh(self, node, a):  # noqa: N802
        return self._elementwise(node, L.Activation("tanh", name=self.layer_name(node)))

    def op_LeakyRelu(self, node, a):  # noqa: N802
        return self._elementwise(node, L.LeakyReLU(float(a.get("alpha", 0.01)),
                                                   name=self.layer_name(node)))

    def op_Clip(self, node, a):  # noqa: N802
        if self.opset < 11:
            low, high = a.get("min"), a.get("max")
        else:
            lo = self.const(node, 1, "min", optional=True)
            hi = self.const(node, 2, "max", optional=True)
            low = None if lo is None else float(np.asarray(lo).reshape(-1)[0])
            high = None if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if low is not None and high is not None and low > high:
            # ONNX: every value becomes max (numpy.clip's rule)
            low = high
        return self._elementwise(node, L.Clip(low, high, name=self.layer_name(node)))

    def op_Dropout(self, node, a):  # noqa: N802
        if a.get("is_test", 1) == 0 and self.opset < 7:
            raise self._fail(node, "training-mode dropout")
        if len(node.input) > 2 and node.input[2]:
            mode = self.const(node, 2, "training_mode")
            if bool(np.asarray(mode).reshape(-1)[0]):
                raise self._fail(node, "training_mode=True (dropout at inference)")
        x = self.sym(node, 0)
        return Sym(x.t, x.layout, x.flat_chw)

    def op_Identity(self, node, a):  # noqa: N802
        x = self.values.get(node.input[0])
        return x

    def op_Softmax(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        rank = len(x.t.shape)
        default = -1 if self.opset >= 13 else 1
        axis = int(a.get("axis", default))
        axis = axis + rank if axis < 0 else axis
        if self.opset < 13 and axis != rank - 1:
            raise self._fail(node, f"softmax over axes {axis}.. flattened (opset < 13) is "
                                   f"supported on the last axis only")
        if x.layout == "nchw" and axis == 1:
            return self.apply(L.Activation("softmax", name=self.layer_name(node)), x, "nchw")
        x = self.as_plain(node, x)
        if axis == 0:
            raise self._fail(node, "softmax over the batch axis")
        if axis == rank - 1:
            return self.apply(L.Activation("softmax", name=self.layer_name(node)), x)
        # the axis moved last, softmax, and back
        order = [d for d in range(1, rank) if d != axis] + [axis]
        back = [order.index(d) + 1 for d in range(1, rank)]
        t = L.Permute(tuple(order), name=self.layer_name(node, "_last"))(x.t)
        t = L.Activation("softmax", name=self.layer_name(node))(t)
        return Sym(L.Permute(tuple(back), name=self.layer_name(node, "_back"))(t))

    def _spatial(self, node, a, x: Sym, kernel):
        """(strides, dilations, (top, bottom, left, right)) of a Conv or a pooling."""
        if len(kernel) != 2:
            raise self._fail(node, f"only 2D windows are supported (kernel_shape {list(kernel)})")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        _, _, h, w = x.onnx_shape
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, s, d in zip((h, w), kernel, strides, dil):
                if size is None:
                    raise self._fail(node, "auto_pad SAME needs known H and W")
                out = -(-size // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
            pads = (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
        elif auto == "VALID":
            pads = (0, 0, 0, 0)
        elif auto in ("NOTSET", ""):
            p = [int(v) for v in a.get("pads", (0, 0, 0, 0))]
            pads = (p[0], p[2], p[1], p[3])
        else:
            raise self._fail(node, f"auto_pad {auto!r}")
        if min(pads) < 0:
            raise self._fail(node, f"negative pads {pads}")
        return strides, dil, pads

    def _as_2d(self, node, x: Sym, a: dict) -> tuple[Sym, dict]:
        """A (N, C, L) tensor as a (N, C, 1, L) image, and a 1D window's attributes as 2D."""
        _, steps, c = x.t.shape
        t = L.Reshape((1, steps, c), name=self.layer_name(node, "_2d"))(x.t)
        a = dict(a)
        for key in ("kernel_shape", "strides", "dilations"):
            if key in a:
                a[key] = [1, *a[key]]
        if "pads" in a:
            a["pads"] = [0, a["pads"][0], 0, a["pads"][1]]
        return Sym(t, "nchw"), a

    def _as_1d(self, node, y: Sym) -> Sym:
        _, one, steps, c = y.t.shape
        t = L.Reshape((steps, c), name=self.layer_name(node, "_1d"))(y.t)
        return Sym(t, "nchw")

    def op_Conv(self, node, a):  # noqa: N802
        x = self.as_nchw(node, self.sym(node, 0), ranks=(3, 4))
        w = np.asarray(self.const(node, 1, "W (the kernel)"), dtype=np.float32)
        if len(x.t.shape) == 3:
            if w.ndim != 3:
                raise self._fail(node, f"a {w.ndim}D kernel for a 1D input")
            x2, a2 = self._as_2d(node, x, a)
            return self._as_1d(node, self._conv2d(node, a2, x2, w[:, :, None, :]))
        return self._conv2d(node, a, x, w)

    def _conv2d(self, node, a, x: Sym, w):
        b = self.const(node, 2, "B (the bias)", optional=True)
        group = int(a.get("group", 1))
        if w.ndim == 4 and group != 1:
            if not self.expand_groups:
                raise self._fail(node, f"group={group}: grouped and depthwise convolutions are "
                                       f"not supported (group=1 only; load(..., "
                                       f"expand_groups=True) runs them as one convolution with "
                                       f"a block-diagonal kernel)")
            o, ig = w.shape[:2]
            if o % group:
                raise self._fail(node, f"group={group} does not divide {o} output channels")
            full = np.zeros((o, ig * group, *w.shape[2:]), np.float32)
            og = o // group
            for g in range(group):
                full[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = w[g * og:(g + 1) * og]
            w = full
        if w.ndim != 4:
            raise self._fail(node, f"only 2D convolutions are supported (kernel shape "
                                   f"{w.shape})")
        kernel = tuple(a.get("kernel_shape", w.shape[2:]))
        strides, dil, pads = self._spatial(node, a, x, kernel)
        if strides != (1, 1) and dil != (1, 1):
            raise self._fail(node, "strides > 1 together with dilations > 1")
        t = x
        padding = "valid"
        if any(pads):
            geom_same = None
            _, _, h, wd = x.onnx_shape
            if h is not None and wd is not None:
                from ..geometry import resolve_padding
                geom_same = resolve_padding("same", kernel, strides, dil, (h, wd))
            if geom_same == pads:
                padding = "same"
            else:
                t = self.apply(L.ZeroPadding2D(((pads[0], pads[1]), (pads[2], pads[3])),
                                               name=self.layer_name(node, "_pad")), x, "nchw")
        # zeros: the file's weights replace them at once (no random draw of a large kernel)
        layer = L.Conv2D(w.shape[0], kernel, strides, padding, dilation_rate=dil,
                         use_bias=b is not None, kernel_initializer="zeros",
                         name=self.layer_name(node))
        out = self.apply(layer, t, "nchw")
        weights = [w.transpose(2, 3, 1, 0)]
        if b is not None:
            weights.append(np.asarray(b, np.float32).reshape(-1))
        self.pending_weights.append((layer, weights))
        return out

    def _pool(self, node, a, cls):
        x = self.as_nchw(node, self.sym(node, 0), ranks=(3, 4))
        if len(x.t.shape) == 3:
            x2, a2 = self._as_2d(node, x, a)
            return self._as_1d(node, self._pool2d(node, a2, x2, cls))
        return self._pool2d(node, a, x, cls)

    def _pool2d(self, node, a, x: Sym, cls):
        kernel = tuple(int(k) for k in a["kernel_shape"])
        strides, dil, pads = self._spatial(node, a, x, kernel)
        if dil != (1, 1):
            raise self._fail(node, f"dilations {list(dil)}: dilated pooling is not supported")
        if a.get("storage_order", 0):
            raise self._fail(node, "storage_order=1")
        ceil = bool(a.get("ceil_mode", 0))
        kwargs = {}
        if cls is L.AveragePooling2D and a.get("count_include_pad", 0):
            kwargs["count_include_pad"] = True
        padding = "valid" if not any(pads) else ((pads[0], pads[1]), (pads[2], pads[3]))
        if any(p >= k for p, k in zip(pads, (kernel[0], kernel[0], kernel[1], kernel[1]))):
            raise self._fail(node, f"pads {pads} as large as the window {kernel}")
        layer = cls(kernel, strides, padding, ceil_mode=ceil, name=self.layer_name(node),
                    **kwargs)
        return self.apply(layer, x, "nchw")

    def op_MaxPool(self, node, a):  # noqa: N802
        return self._pool(node, a, L.MaxPooling2D)

    def op_AveragePool(self, node, a):  # noqa: N802
        return self._pool(node, a, L.AveragePooling2D)

    def op_GlobalAveragePool(self, node, a):  # noqa: N802
        x = self.as_nchw(node, self.sym(node, 0))
        return self.apply(L.GlobalAveragePooling2D(keepdims=True, name=self.layer_name(node)), x,
                          "nchw")

    def op_GlobalMaxPool(self, node, a):  # noqa: N802
        x = self.as_nchw(node, self.sym(node, 0))
        return self.apply(L.GlobalMaxPooling2D(keepdims=True, name=self.layer_name(node)), x,
                          "nchw")

    def op_ReduceMean(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes").reshape(-1).tolist()
        rank = len(x.t.shape)
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return Sym(x.t, x.layout, x.flat_chw)
            raise self._fail(node, "a mean over every axis (the batch too)")
        axes = sorted({int(v) % rank for v in axes})
        keep = bool(a.get("keepdims", 1))
        if 0 in axes:
            raise self._fail(node, f"a mean over axes {axes}, the batch axis among them")
        if rank == 4 and axes == [2, 3]:
            x = self.as_nchw(node, x)
            layer = L.GlobalAveragePooling2D(keepdims=keep, name=self.layer_name(node))
            return self.apply(layer, x, "nchw" if keep else "plain")
        # any other axes: the reduced axes brought first, (R, K, 1), an R x 1 average pooling
        x = self.as_plain(node, x)
        shape = x.onnx_shape
        kept = [d for d in range(1, rank) if d not in axes]
        if None in shape[1:] or (not keep and not kept):
            raise self._fail(node, f"a mean over axes {axes} of shape {shape}")
        reduced, rest = math.prod(shape[d] for d in axes), math.prod(shape[d] for d in kept)
        t = x.t
        if axes + kept != list(range(1, rank)):
            t = L.Permute(tuple(axes + kept), name=self.layer_name(node, "_order"))(t)
        t = L.Reshape((reduced, rest, 1), name=self.layer_name(node, "_3d"))(t)
        t = L.AveragePooling2D((reduced, 1), name=self.layer_name(node))(t)
        out = [1 if d in axes else shape[d] for d in range(1, rank)] if keep else [
            shape[d] for d in kept]
        return Sym(L.Reshape(tuple(out), name=self.layer_name(node, "_out"))(t))

    def _dense(self, node, x: Sym, w: np.ndarray, b):
        """A Dense layer with kernel ``w`` (in, out) in ONNX's feature order."""
        if x.flat_chw is not None:
            c, h, wd = x.flat_chw
            w = w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(c * h * wd, -1)
            x = Sym(x.t)
        elif x.layout == "nchw":
            x = self.as_plain(node, x)
        if x.t.shape[-1] != w.shape[0]:
            raise self._fail(node, f"the kernel has {w.shape[0]} rows but the input has "
                                   f"{x.t.shape[-1]} features")
        layer = L.Dense(w.shape[1], use_bias=b is not None, kernel_initializer="zeros",
                        name=self.layer_name(node))
        out = self.apply(layer, x)
        weights = [np.ascontiguousarray(w, dtype=np.float32)]
        if b is not None:
            weights.append(np.asarray(b, np.float32))
        self.pending_weights.append((layer, weights))
        return out

    def op_Gemm(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        if a.get("transA", 0):
            raise self._fail(node, "transA=1 (the batch must stay the first axis of A)")
        w = np.asarray(self.const(node, 1, "B (the weights)"), np.float32)
        if a.get("transB", 0):
            w = w.T  # a view: _dense makes the one contiguous copy
        alpha = float(a.get("alpha", 1.0))
        if alpha != 1.0:
            w = w * np.float32(alpha)
        c = self.const(node, 2, "C (the bias)", optional=True)
        b = None
        if c is not None:
            c = np.asarray(c, np.float64) * float(a.get("beta", 1.0))
            if c.size == 1:
                b = np.full(w.shape[1], c.reshape(-1)[0])
            elif c.ndim == 1 or (c.ndim == 2 and c.shape[0] == 1):
                b = c.reshape(-1)
            else:
                raise self._fail(node, f"C of shape {c.shape}: only a bias per output feature "
                                       f"(shape (N,), (1, N) or a scalar) is supported")
            if b.shape[0] != w.shape[1]:
                raise self._fail(node, f"C of shape {c.shape} does not fit {w.shape[1]} outputs")
        if len(x.onnx_shape) != 2 and x.flat_chw is None:
            raise self._fail(node, f"A must be 2D, got shape {x.onnx_shape}")
        return self._dense(node, x, w, b)

    def op_MatMul(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        w = np.asarray(self.const(node, 1, "B (the weights)"), np.float32)
        if w.ndim != 2:
            raise self._fail(node, f"B must be a 2D constant, got shape {w.shape}")
        if len(x.onnx_shape) < 2:
            raise self._fail(node, f"A must have a batch axis, got shape {x.onnx_shape}")
        return self._dense(node, x, w, None)

    def op_Flatten(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        rank = len(x.t.shape)
        axis = int(a.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis != 1:
            raise self._fail(node, f"axis={a.get('axis')}: fastconv keeps the batch axis, so "
                                   f"only axis=1 is supported")
        return self._flatten(node, x)

    def _flatten(self, node, x: Sym):
        if x.flat_chw is not None or len(x.t.shape) == 2:
            return Sym(x.t, "plain", x.flat_chw)
        out = self.apply(L.Flatten(name=self.layer_name(node)), x)
        if x.layout == "nchw":
            _, h, w, c = x.t.shape if len(x.t.shape) == 4 else (None, 1, *x.t.shape[1:])
            if None in (h, w, c):
                raise self._fail(node, "flattening an image of unknown size")
            if c > 1 and h * w > 1:
                out.flat_chw = (c, h, w)
        return out

    def op_Reshape(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        shape = [int(v) for v in np.asarray(self.const(node, 1, "shape")).reshape(-1)]
        src = x.onnx_shape
        if x.flat_chw is not None:
            src = (src[0], math.prod(x.flat_chw))
        allowzero = bool(a.get("allowzero", 0))
        rest = math.prod(src[1:]) if None not in src[1:] else None
        target = [src[i] if (d == 0 and not allowzero and i < len(src)) else d
                  for i, d in enumerate(shape)][1:]
        first = shape[0] if shape else None
        kept = ((first == 0 and not allowzero) or (first is not None and first > 0
                                                   and first == self.declared_batch)
                or (first == -1 and rest is not None and all(d > 0 for d in target)
                    and math.prod(target) == rest))
        if not kept:
            raise self._fail(node, f"reshaping {src} to {shape} changes the batch axis; "
                                   f"fastconv keeps the batch axis")
        if any(d == 0 for d in target):
            raise self._fail(node, f"zero-sized target shape {shape}")
        if len(target) == 1 and target[0] in (-1, rest):
            return self._flatten(node, x)
        x = self.as_plain(node, x)
        return self.apply(L.Reshape(tuple(target), name=self.layer_name(node)), x)

    def op_Transpose(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        perm = [int(p) for p in a.get("perm", ())]
        rank = len(x.t.shape)
        if rank in (3, 4) and x.flat_chw is None:
            # fastconv holds images channels-last: these transposes only relabel the layout
            if x.layout == "plain" and perm == list(_TO_ONNX[rank]):
                return Sym(x.t, "nchw")
            if x.layout == "nchw" and perm == list(np.argsort(_TO_ONNX[rank])):
                return Sym(x.t, "plain")
        x = self.as_plain(node, x)
        rank = len(x.t.shape)
        perm = [int(p) for p in a.get("perm", range(rank - 1, -1, -1))]
        if perm[0] != 0:
            raise self._fail(node, f"perm {perm} moves the batch axis")
        return self.apply(L.Permute(tuple(perm[1:]), name=self.layer_name(node)), x)

    def _harmonise(self, node, xs):
        layouts = {x.layout for x in xs}
        if any(x.flat_chw is not None for x in xs):
            if len({x.flat_chw for x in xs}) == 1:
                return xs
            return [self.as_plain(node, x) for x in xs]
        if layouts == {"nchw"}:
            return xs
        if all(len(x.t.shape) == 4 for x in xs):
            return [self.as_nchw(node, x) for x in xs]
        return [self.as_plain(node, x) for x in xs]

    def _sum(self, node, names):
        vals = [self.values.get(n) for n in names]
        syms = [v for v in vals if isinstance(v, Sym)]
        consts = [v for v in vals if not isinstance(v, Sym)]
        if any(v is None for v in vals):
            raise self._fail(node, "an input is never produced")
        if len(syms) == 1 and not consts:
            return syms[0]
        if syms and consts:
            if len(syms) > 1:
                raise self._fail(node, "a sum of several tensors and constants")
            offset = sum(np.asarray(c, np.float64) for c in consts)
            return self._scale(node, syms[0], 1.0, offset)
        xs = self._harmonise(node, syms)
        shapes = [x.onnx_shape for x in xs]
        if len(set(shapes)) > 1 and len({len(s) for s in shapes}) > 1:
            raise self._fail(node, f"broadcasting between ranks {shapes}")
        layer = L.Add(name=self.layer_name(node))
        return self.apply(layer, xs, xs[0].layout, xs[0].flat_chw)

    def op_Add(self, node, a):  # noqa: N802
        return self._sum(node, list(node.input))

    def op_Sum(self, node, a):  # noqa: N802
        return self._sum(node, list(node.input))

    def _scale(self, node, x: Sym, scale, offset):
        """``x * scale + offset`` with constants broadcast in ONNX's axes."""
        def held(v):
            v = np.asarray(v, np.float64)
            if v.ndim == 0 or v.size == 1:
                return float(v.reshape(-1)[0])
            if v.ndim > len(x.onnx_shape):
                raise self._fail(node, f"a constant of shape {v.shape} broadcasts over the batch")
            v = v.reshape((1,) * (len(x.onnx_shape) - v.ndim) + v.shape)
            if v.shape[0] != 1:
                raise self._fail(node, f"a constant of shape {v.shape} varies along the batch")
            if x.layout == "nchw":
                v = v.transpose(np.argsort(_TO_ONNX[v.ndim]))
            return v[0]

        if x.flat_chw is not None:
            x = self.as_plain(node, x)
        layer = L.Rescaling(held(scale), held(offset), name=self.layer_name(node))
        return self.apply(layer, x, x.layout)

    def _binary_const(self, node, kind):
        v0, v1 = (self.values.get(n) for n in node.input[:2])
        if isinstance(v0, Sym) and not isinstance(v1, Sym):
            c = np.asarray(v1, np.float64)
            if kind == "Mul":
                return self._scale(node, v0, c, 0.0)
            if kind == "Sub":
                return self._scale(node, v0, 1.0, -c)
            return self._scale(node, v0, 1.0 / c, 0.0)
        if isinstance(v1, Sym) and not isinstance(v0, Sym):
            c = np.asarray(v0, np.float64)
            if kind == "Mul":
                return self._scale(node, v1, c, 0.0)
            if kind == "Sub":
                return self._scale(node, v1, -1.0, c)
        raise self._fail(node, f"{kind} is supported between a tensor and a constant only")

    def op_Mul(self, node, a):  # noqa: N802
        return self._binary_const(node, "Mul")

    def op_Sub(self, node, a):  # noqa: N802
        return self._binary_const(node, "Sub")

    def op_Div(self, node, a):  # noqa: N802
        return self._binary_const(node, "Div")

    def op_Concat(self, node, a):  # noqa: N802
        xs = [self.values.get(n) for n in node.input]
        if not all(isinstance(x, Sym) for x in xs):
            raise self._fail(node, "concatenating constants with tensors")
        xs = [self.as_plain(node, x) if x.flat_chw is not None else x for x in xs]
        xs = self._harmonise(node, xs)
        rank = len(xs[0].t.shape)
        axis = int(a["axis"])
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise self._fail(node, "concatenation along the batch axis")
        if len(xs) == 1:
            return xs[0]
        if xs[0].layout == "nchw":
            axis = {4: {1: 3, 2: 1, 3: 2}, 3: {1: 2, 2: 1}}[rank][axis]
        layer = L.Concatenate(axis=axis, name=self.layer_name(node))
        return self.apply(layer, xs, xs[0].layout)

    def op_BatchNormalization(self, node, a):  # noqa: N802
        if a.get("training_mode", 0):
            raise self._fail(node, "training_mode=1 (batch statistics at inference)")
        x = self.sym(node, 0)
        if x.flat_chw is not None:
            x = self.as_plain(node, x)
        params = [np.asarray(self.const(node, i, what), np.float32).reshape(-1)
                  for i, what in enumerate(("scale", "B", "mean", "var"), start=1)]
        rank = len(x.t.shape)
        axis = -1 if x.layout == "nchw" or rank == 2 else 1
        layer = L.BatchNormalization(axis=axis, epsilon=float(a.get("epsilon", 1e-5)),
                                     momentum=float(a.get("momentum", 0.9)),
                                     name=self.layer_name(node))
        out = self.apply(layer, x, x.layout)
        self.pending_weights.append((layer, params))
        return out

    def op_LRN(self, node, a):  # noqa: N802
        size = int(a["size"])
        if size % 2 == 0:
            raise self._fail(node, f"size={size}: an even window is asymmetric; fastconv's LRN "
                                   f"takes odd sizes")
        x = self.as_nchw(node, self.sym(node, 0))
        layer = L.LocalResponseNormalization(
            (size - 1) // 2, float(a.get("bias", 1.0)), float(a.get("alpha", 1e-4)) / size,
            float(a.get("beta", 0.75)), name=self.layer_name(node))
        return self.apply(layer, x, "nchw")

    def op_Pad(self, node, a):  # noqa: N802
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise self._fail(node, f"mode={mode!r}: only constant (zero) padding is supported")
        x = self.sym(node, 0)
        rank = len(x.onnx_shape)
        if self.opset < 11:
            pads = [int(p) for p in a["pads"]]
            value = float(a.get("value", 0.0))
            axes = list(range(rank))
        else:
            pads = [int(p) for p in np.asarray(self.const(node, 1, "pads")).reshape(-1)]
            cv = self.const(node, 2, "constant_value", optional=True)
            value = 0.0 if cv is None or np.asarray(cv).size == 0 else float(
                np.asarray(cv).reshape(-1)[0])
            ax = self.const(node, 3, "axes", optional=True)
            axes = (list(range(rank)) if ax is None
                    else [int(v) % rank for v in np.asarray(ax).reshape(-1)])
        k = len(axes)
        before = dict(zip(axes, pads[:k]))
        after = dict(zip(axes, pads[k:]))
        if rank not in (3, 4) or any(before.get(i, 0) or after.get(i, 0) for i in (0, 1)):
            raise self._fail(node, f"pads {pads}: only padding of H and W (axes 2, 3 of NCHW) "
                                   f"or of L (axis 2 of NCL) is supported")
        if min(pads) < 0:
            raise self._fail(node, f"negative pads {pads} (cropping)")
        x = self.as_nchw(node, x, ranks=(3,))
        if rank == 3:
            if value != 0.0:
                raise self._fail(node, f"constant_value={value}: 1D padding takes zeros only")
            x2, _ = self._as_2d(node, x, {})
            layer = L.ZeroPadding2D(((0, 0), (before.get(2, 0), after.get(2, 0))),
                                    name=self.layer_name(node))
            return self._as_1d(node, self.apply(layer, x2, "nchw"))
        padding = ((before.get(2, 0), after.get(2, 0)), (before.get(3, 0), after.get(3, 0)))
        y = self.apply(L.ZeroPadding2D(padding, name=self.layer_name(node)), x, "nchw")
        if value == 0.0:
            return y
        # another value: added where the zeros are (x * 1 + 0 inside, exactly x)
        _, h, w, _ = y.t.shape
        (t, b), (left, r) = padding
        border = np.full((h, w, 1), value)
        border[t:h - b, left:w - r] = 0.0
        layer = L.Rescaling(1.0, border, name=self.layer_name(node, "_value"))
        return self.apply(layer, y, "nchw")


class _FakeNode:
    def __init__(self, name):
        self.output = [name]
        self.name = name
        self.op_type = "output"


_FOLDABLE = ("Add", "Sub", "Mul", "Div", "Reshape", "Flatten", "Transpose", "Identity", "Concat")


def _fold(op, a, ins, opset):
    """``op`` on constant NumPy inputs, or None."""
    x = None if not ins else ins[0]
    if op in ("Add", "Sub", "Mul", "Div"):
        np.broadcast_shapes(np.shape(ins[0]), np.shape(ins[1]))
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        out = f(ins[0], ins[1])
        return np.asarray(out, dtype=np.result_type(ins[0], ins[1]))
    if op == "Identity":
        return np.asarray(x)
    if op == "Cast":
        from onnx import helper

        return np.asarray(x).astype(helper.tensor_dtype_to_np_dtype(a["to"]))
    if op == "Shape":
        return np.asarray(np.shape(x), dtype=np.int64)
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = np.asarray(ins[1]).reshape(-1).tolist()
        x = np.asarray(x)
        if op == "Squeeze":
            return np.squeeze(x, axis=None if axes is None else tuple(int(v) for v in axes))
        rank = x.ndim + len(axes)
        for ax in sorted(int(v) % rank for v in axes):
            x = np.expand_dims(x, ax)
        return x
    if op == "Gather":
        return np.take(np.asarray(x), np.asarray(ins[1]), axis=int(a.get("axis", 0)))
    if op == "Reshape":
        shape = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
        shape = [np.shape(x)[i] if d == 0 and not a.get("allowzero", 0) else d
                 for i, d in enumerate(shape)]
        return np.reshape(x, shape)
    if op == "Flatten":
        axis = int(a.get("axis", 1)) % max(np.ndim(x), 1)
        return np.reshape(x, (math.prod(np.shape(x)[:axis]), -1))
    if op == "Transpose":
        perm = a.get("perm")
        return np.transpose(x, perm)
    if op == "Slice":
        x = np.asarray(x)
        if len(ins) == 1:  # opset < 10: attributes
            starts, ends = a["starts"], a["ends"]
            axes, steps = a.get("axes", range(len(starts))), [1] * len(starts)
        else:
            starts = np.asarray(ins[1]).reshape(-1).tolist()
            ends = np.asarray(ins[2]).reshape(-1).tolist()
            axes = (range(len(starts)) if len(ins) < 4 or ins[3] is None
                    else np.asarray(ins[3]).reshape(-1).tolist())
            steps = ([1] * len(starts) if len(ins) < 5 or ins[4] is None
                     else np.asarray(ins[4]).reshape(-1).tolist())
        index = [slice(None)] * x.ndim
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            index[int(ax) % x.ndim] = slice(int(st), int(en), int(sp))
        return x[tuple(index)]
    if op == "Concat":
        return np.concatenate([np.asarray(v) for v in ins], axis=int(a["axis"]))
    return None


def _tensor_nbytes(init) -> int:
    from onnx import helper

    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 8
    return math.prod(init.dims) * itemsize


def require_onnx():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError("fastconv.onnx needs the onnx package: pip install "
                          "'fastconv[onnx]' (or pip install onnx)") from None
    return onnx


def read_model(path):
    """The ModelProto in ``path``; InvalidModelFileError naming the file otherwise."""
    onnx = require_onnx()
    from google.protobuf.message import DecodeError

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InvalidModelFileError(f"{path}: cannot read the ONNX file: {exc}") from None
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError, OSError) as exc:
        raise InvalidModelFileError(f"{path}: not an ONNX model file ({exc})") from None
    if not model.graph.node or not model.graph.output:
        raise InvalidModelFileError(f"{path}: not an ONNX model file (no graph)")
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidModelFileError(f"{path}: initializer '{init.name}' keeps its data in an "
                                        f"external file, which fastconv does not read")
    return model, size


def import_model(model, where: str = "ONNX model", size: int | None = None,
                 constants: dict | None = None, expand_groups: bool = False):
    """``(fastconv model, input layouts, output layouts)`` from a ModelProto; a layout is
    ``"nchw"`` where fastconv holds the tensor as NHWC. ``constants`` binds graph inputs to
    values (weights given as inputs); ``expand_groups`` runs a grouped Conv as one convolution
    with a block-diagonal kernel (``group`` times the work, exact; fine-tuning may then fill the
    zero blocks) instead of refusing it."""
    if size is None:
        size = model.ByteSize()
    budget = max(MIN_CONSTANT_BUDGET, 16 * size)
    return _Importer(model, where, budget, constants, expand_groups).run()


def load(path, expand_groups: bool = False):
    """A trainable fastconv functional model from the ONNX file ``path``.

    ONNX's NCHW images become fastconv's NHWC (a 4D input ``(N, C, H, W)`` becomes
    ``Input((H, W, C))``, a 4D output comes out NHWC); kernels are converted to HWIO.
    Raises UnsupportedOnnxError listing every unsupported operator of the file, and
    fastconv.saving.InvalidModelFileError naming the file when it is not a readable ONNX model.
    ``expand_groups``: see ``import_model``.
    """
    model, size = read_model(path)
    out, _, _ = import_model(model, os.fspath(path), size, expand_groups=expand_groups)
    return out
