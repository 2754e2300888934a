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
constant) are folded here, within an allocation budget set by the file's size (its external
data included): every folded result is sized from its inputs' shapes and the op's attributes
and charged before it is computed, and a ConstantOfShape stays one broadcast value until a
layer needs it whole. Every other node becomes layers of fastconv's.

A hostile or damaged file raises InvalidModelFileError, a valid one using what fastconv lacks
UnsupportedOnnxError, both naming the file and the node: attributes are type- and
range-checked, dims must be non-negative, no tensor of a sample may exceed
``MAX_SAMPLE_ELEMENTS`` elements, no padding may exceed ``MAX_PAD_FACTOR`` times its axis
(or window), and external data is read only from the model's folder (``fastconv.io.onnx_file``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

import numpy as np

from ..io import onnx_file
from ..io.errors import InvalidModelFileError
from ._common import (
    _PERMUTE_IN,
    _PERMUTE_OUT,
    _TO_ONNX,
    MAX_PAD_FACTOR,
    MAX_RANK,
    MAX_SAMPLE_ELEMENTS,
    MAX_WINDOW,
    L,
    Sym,
    UnsupportedOnnxError,
    _is_int,
    _LayerArgumentError,
    _lazy,
    _name,
    _Names,
    _perm,
    _short,
    _show,
    _text,
)
from ._ops_math import MathOps
from ._ops_shape import ShapeOps
from .symbolic import COMPARISONS, PROBES, BatchValue, at_probe, batch_axis_target, combine

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
    "MatMul": "Dense (on the last axis; the bias of an Add after it folded in)",
    "Flatten": "Flatten (the next Dense reorders its rows from C, H, W to H, W, C)",
    "Reshape": "Flatten or Reshape",
    "Add": "Add (broadcasting); with a constant: Rescaling, or the bias of the Dense before",
    "Sum": "Add",
    "Mul": "Multiply (broadcasting); with a constant: Rescaling; x * Sigmoid(x): "
           "Activation('swish'); GELU's Div, Erf, Add, Mul, Mul: Activation('gelu')",
    "Sub": "Subtract (broadcasting); with a constant: Rescaling",
    "Div": "Divide (broadcasting); by a constant: Rescaling",
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
    "Shape": "a constant: every axis is known at load time but the batch, a symbol that a "
             "Reshape's first entry may carry",
    "Cast": "nothing (to a float type)",
    "Unsqueeze": "Reshape",
    "Squeeze": "Reshape",
    "Slice": "Slice, one per sliced axis",
    "Split": "Slice, one per output",
    "If": "the branch that its constant condition selects",
    "HardSigmoid": "Activation('hard_sigmoid') (alpha 1/6, beta 1/2); otherwise Rescaling, "
                   "Clip",
    "HardSwish": "Activation('hard_swish')",
    "Gelu": "Activation('gelu') (approximate='none')",
    "Elu": "Activation('elu') (alpha 1)",
    "Selu": "Activation('selu') (the standard constants)",
    "Softplus": "Activation('softplus')",
    "Max": "Maximum (broadcasting); with a constant number: Clip",
    "Min": "Minimum (broadcasting); with a constant number: Clip",
    "Erf": "Elementwise('erf')",
    "Pow": "Elementwise('square', 'sqrt' or 'pow') (a constant exponent)",
    "Sqrt": "Elementwise('sqrt')",
    "Exp": "Elementwise('exp')",
    "Log": "Elementwise('log')",
    "Abs": "Elementwise('abs')",
    "Neg": "Elementwise('neg')",
    "Reciprocal": "Elementwise('reciprocal')",
    "LayerNormalization": "LayerNormalization",
}
#: ONNX operators that become layers (or fold into constants).
SUPPORTED_OPS = tuple(OP_TABLE)
#: Operators folded when every input is a constant (besides the supported ones).
CONSTANT_ONLY_OPS = ("Gather", "Equal", "Less", "Greater", "Not", "Where", "Range")

#: The deepest nesting of If branches read.
MAX_BRANCH_DEPTH = 16
#: Constants the import may materialise: at least this, or 16x the file's size (the file and
#: its external data files).
MIN_CONSTANT_BUDGET = 1 << 30

#: Exceptions that a damaged file may still provoke somewhere unforeseen: ``load`` reports
#: them as InvalidModelFileError naming the file and the node.
_DAMAGE = (ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError,
           AttributeError, RecursionError, UnicodeError)


class _Importer(ShapeOps, MathOps):
    def __init__(self, model, where: str, budget: int, constants: dict | None = None,
                 expand_groups: bool = False):
        self.expand_groups = expand_groups
        self.model = model
        self.graph = model.graph
        self.where = where
        self.budget = budget
        self.current = None  # the node being imported, named by errors
        self.values: dict[str, object] = {}  # name -> np.ndarray (constant) or Sym
        self.used_names = _Names()
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        self.constants = constants or {}
        self.inputs = []
        self.input_layouts = []
        self.pending_weights = []  # (layer, weights) set once the model is made
        self.declared_batch = None  # the batch size the file's first input names, if any
        self.producers = {}  # output name -> the node that makes it
        self.consumed: set = set()  # every name a node reads or the graph returns
        self.readers = defaultdict(int)  # name -> how many nodes (and graph outputs) read it
        self.first_reader = {}  # name -> the first node of the graph that reads it
        #: a node's output -> the value the layer before it already computes (an Add whose bias
        #: a Dense took, a Relu that a Conv2D or Dense applies in its epilogue)
        self.absorbed = {}
        # fastconv's own exports say that their inputs are channels-last (NHWC)
        self.channels_last_inputs = any(p.key == "fastconv.input_layout" and p.value == "NHWC"
                                        for p in model.metadata_props)

    def load_initializers(self, initializers=None) -> None:
        """The initializers (their data inline by now) and the bound constants as arrays; or
        only ``initializers`` (a branch's)."""
        from onnx import TensorProto, numpy_helper

        for init in self.graph.initializer if initializers is None else initializers:
            what = f"initializer '{_short(init.name)}'"
            if init.data_type == TensorProto.STRING:
                onnx_file.checked_dims(init.dims, self.where, what)
                nbytes = sum(len(s) + 64 for s in init.string_data)
            else:
                nbytes = onnx_file.tensor_nbytes(init, self.where, what)
            self._charge(nbytes, init.name)
            try:
                self.values[init.name] = numpy_helper.to_array(init)
            except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
                raise InvalidModelFileError(f"{self.where}: initializer '{_short(init.name)}' "
                                            f"is corrupt ({_short(exc, 200)})") from None
        if initializers is None:
            for name, value in self.constants.items():
                self.values[name] = np.asarray(value)

    # -- helpers -----------------------------------------------------------------------------
    def _charge(self, nbytes: int, what: str, described: bool = False) -> None:
        """Take ``nbytes`` for the constant named ``what`` (or so ``described``) from the
        budget, before they are allocated."""
        nbytes = int(nbytes)
        what = what if described else f"constant '{_short(what)}'"
        if nbytes < 0:
            raise InvalidModelFileError(f"{self.where}: {what} has a negative size ({nbytes} "
                                        f"bytes)")
        self.budget -= nbytes
        if self.budget < 0:
            raise InvalidModelFileError(
                f"{self.where}: {what} ({nbytes} bytes) would take the import past its memory "
                f"budget (the file's constants may not exceed {MIN_CONSTANT_BUDGET >> 20} MiB "
                f"or 16x the size of the file and its external data)")

    @staticmethod
    def _who(node) -> str:
        name = node.name or (node.output[0] if len(node.output) else "") or "(unnamed)"
        return f"node '{_short(_text(name))}' ({_short(_text(node.op_type), 40)})"

    def _fail(self, node, why: str):
        return UnsupportedOnnxError(f"{self.where}: {self._who(node)}: {why}")

    def _invalid(self, node, why: str):
        return InvalidModelFileError(f"{self.where}: {self._who(node)}: {why}")

    def layer_name(self, node, suffix: str = "") -> str:
        base = node.name or (node.output[0] if len(node.output) else "") or node.op_type
        return _name(_text(base) + suffix, self.used_names)

    def _out(self, node) -> str:
        """A name for what ``node`` makes (its first output, or its name)."""
        return _text((node.output[0] if len(node.output) and node.output[0] else node.name)
                     or "onnx")

    # typed attributes: a damaged file's wrong types and values are named, never raised raw
    def _attr(self, node, a, key, default, kinds, what):
        v = a.get(key, default)
        if v is not None and not isinstance(v, kinds):
            raise self._invalid(node, f"attribute '{key}' is {_show(v)}; expected "
                                      f"{what}")
        return v

    def _int(self, node, a, key, default=None, lo=None, hi=None):
        v = a.get(key, default)
        if v is None:
            return None
        if not _is_int(v):
            raise self._invalid(node, f"attribute '{key}' is {_show(v)}; expected "
                                      f"an integer")
        v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self._invalid(node, f"attribute '{key}' is {v}; expected an integer in "
                                      f"[{lo if lo is not None else '-inf'}, "
                                      f"{hi if hi is not None else 'inf'}]")
        return v

    def _ints(self, node, a, key, default=None, n=None, lo=None, hi=None):
        v = a.get(key, default)
        if v is None:
            return None
        if not isinstance(v, (list, tuple)) or not all(_is_int(i) for i in v):
            raise self._invalid(node, f"attribute '{key}' is {_show(v)}; expected "
                                      f"a list of integers")
        v = [int(i) for i in v]
        if n is not None and len(v) != n:
            raise self._invalid(node, f"attribute '{key}' is {_short(v, 60)}; expected {n} "
                                      f"integers")
        if (lo is not None and any(i < lo for i in v)) or (hi is not None and
                                                           any(i > hi for i in v)):
            raise self._invalid(node, f"attribute '{key}' is {_short(v, 60)}; expected "
                                      f"integers in [{lo}, {hi if hi is not None else 'inf'}]")
        return v

    def _float(self, node, a, key, default=None):
        v = a.get(key, default)
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise self._invalid(node, f"attribute '{key}' is {_show(v)}; expected "
                                      f"a number")
        return float(v)

    def _str(self, node, a, key, default=None):
        v = a.get(key, default)
        if isinstance(v, bytes):
            try:
                return v.decode()
            except UnicodeDecodeError:
                raise self._invalid(node, f"attribute '{key}' is not UTF-8 text") from None
        if v is not None and not isinstance(v, str):
            raise self._invalid(node, f"attribute '{key}' is {_show(v)}; expected "
                                      f"a string")
        return v

    def _axis(self, node, axis, rank, what="axis", inclusive=False):
        """``axis`` in [-rank, rank) (or [-rank, rank] where ``inclusive``), made >= 0."""
        hi = rank + 1 if inclusive else rank
        if not _is_int(axis) or not -rank <= int(axis) < hi:
            raise self._invalid(node, f"{what} {_short(repr(axis), 40)} is out of range for "
                                      f"rank {rank}")
        axis = int(axis)
        return axis + rank if axis < 0 else axis

    def _scalar(self, node, v, what):
        v = np.asarray(v)
        if v.size < 1 or v.dtype.kind not in "biuf":
            raise self._invalid(node, f"{what} must be a number, got a {v.dtype} tensor of "
                                      f"shape {v.shape}")
        return v.reshape(-1)[0]

    def _int_list(self, node, v, what):
        """A shape, pads, axes ...: at most two entries per axis a tensor may have."""
        v = np.asarray(v)
        if v.ndim > 1 or v.dtype.kind not in "iu" or v.size > 2 * MAX_RANK:
            raise self._invalid(node, f"{what} must be a 1D tensor of at most {2 * MAX_RANK} "
                                      f"integers, got a {v.dtype} tensor of shape {v.shape}")
        return [int(i) for i in v.reshape(-1)]

    def const(self, node, i: int, what: str, optional: bool = False):
        if i >= len(node.input) or node.input[i] == "":
            if optional:
                return None
            raise self._invalid(node, f"missing input {what}")
        v = self.values.get(node.input[i])
        if isinstance(v, Sym):
            raise self._fail(node, f"{what} must be a constant (an initializer), not a computed "
                                   f"tensor")
        if isinstance(v, BatchValue):
            raise self._fail(node, f"{what} depends on the batch size; fastconv needs it at "
                                   f"load time, for every batch size")
        if v is None:
            raise self._invalid(node, f"input '{_short(node.input[i])}' is never produced")
        if _lazy(v):
            v = np.array(v)  # charged when it was made
        return v

    def sym(self, node, i: int) -> Sym:
        if i >= len(node.input) or not node.input[i]:
            raise self._invalid(node, f"missing input {i}")
        v = self.values.get(node.input[i])
        if v is None:
            raise self._invalid(node, f"input '{_short(node.input[i])}' is never produced")
        if not isinstance(v, Sym):
            raise self._fail(node, f"input {i} ('{_short(node.input[i])}') must be a computed "
                                   f"tensor, not a constant")
        return v

    def _check_size(self, node, layer_name: str, shape) -> None:
        per_sample = [d for d in tuple(shape)[1:] if d is not None]
        count = math.prod(per_sample)
        if count > MAX_SAMPLE_ELEMENTS:
            raise self._invalid(node, f"layer '{layer_name}' would make tensors of shape "
                                      f"{tuple(shape)}: {count} elements ({4 * count} bytes of "
                                      f"float32) per sample, more than the "
                                      f"{MAX_SAMPLE_ELEMENTS} elements "
                                      f"({4 * MAX_SAMPLE_ELEMENTS} bytes) fastconv accepts")

    def call(self, node, layer, t):
        """``layer`` called on the KerasTensor(s) ``t``: its errors name the node, and an
        output larger than ``MAX_SAMPLE_ELEMENTS`` per sample is refused."""
        try:
            out = layer(t)
        except (ValueError, TypeError) as exc:
            raise self._invalid(node, _short(exc, 300)) from None
        self._check_size(node, layer.name, out.shape)
        return out

    def apply(self, layer, x, layout="plain", flat_chw=None) -> Sym:
        out = self.call(self.current, layer, x.t if isinstance(x, Sym) else [s.t for s in x])
        return Sym(out, layout, flat_chw)

    def permute(self, s: Sym, dims, name) -> object:
        return self.call(self.current, L.Permute(dims, name=_name(name, self.used_names)), s.t)

    def as_nchw(self, node, s: Sym, ranks=(4,)) -> Sym:
        """``s`` held as NHWC (a 4D tensor)."""
        rank = len(s.t.shape)
        if s.layout == "nchw" and (rank == 4 or rank in ranks):
            return s
        if rank != 4 and rank not in ranks:
            raise self._fail(node, f"expects a 4D (N, C, H, W) input, got shape {s.onnx_shape}")
        s = self.as_plain(node, s)
        return Sym(self.permute(s, _PERMUTE_IN[rank], f"{self._out(node)}_to_nhwc"), "nchw")

    def as_plain(self, node, s: Sym) -> Sym:
        """``s`` with ONNX's axis order."""
        out = self._out(node)
        if s.flat_chw is not None:
            c, h, w = s.flat_chw
            t = self.call(node, L.Reshape((h, w, c), name=_name(f"{out}_unflat",
                                                                self.used_names)), s.t)
            t = self.call(node, L.Permute((3, 1, 2), name=_name(f"{out}_chw", self.used_names)),
                          t)
            t = self.call(node, L.Flatten(name=_name(f"{out}_reflat", self.used_names)), t)
            return Sym(t)
        if s.layout == "nchw":
            return Sym(self.permute(s, _PERMUTE_OUT[len(s.t.shape)], f"{out}_to_nchw"))
        return s

    # -- the graph ---------------------------------------------------------------------------
    def check_operators(self) -> None:
        """One error listing every operator the file uses that fastconv cannot run."""
        known = {i.name for i in self.graph.initializer} | set(self.constants)
        bad = set()
        self._scan(self.graph.node, known, bad, 0)
        if bad:
            shown = sorted(bad)
            more = f" and {len(shown) - 20} more" if len(shown) > 20 else ""
            raise UnsupportedOnnxError(
                f"{self.where}: unsupported ONNX operator(s): {', '.join(shown[:20])}{more}. "
                f"Supported: {', '.join(SUPPORTED_OPS)} (and {', '.join(CONSTANT_ONLY_OPS)} on "
                f"constants)")

    def _scan(self, nodes, known: set, bad: set, depth: int) -> None:
        """Add to ``bad`` the operators of ``nodes`` (and of their branches) that fastconv cannot
        run, tracking in ``known`` the names that fold into constants (a Shape's output is one:
        only the batch size stays a symbol)."""
        if depth > MAX_BRANCH_DEPTH:
            raise InvalidModelFileError(f"{self.where}: branches nested more than "
                                        f"{MAX_BRANCH_DEPTH} deep")
        for node in nodes:
            if node.domain not in ("", "ai.onnx"):
                bad.add(f"{_short(node.domain, 40)}.{_short(node.op_type, 40)}")
                continue
            inputs_known = all(i == "" or i in known for i in node.input)
            if node.op_type not in SUPPORTED_OPS and not (
                    node.op_type in CONSTANT_ONLY_OPS and inputs_known):
                bad.add(_short(node.op_type, 40))
            if node.op_type == "If":
                branches = [a.g for a in node.attribute if a.name in ("then_branch",
                                                                       "else_branch")]
                for branch in branches:
                    inner = set(known) | {i.name for i in branch.initializer}
                    self._scan(branch.node, inner, bad, depth + 1)
                    if all(o.name in inner for o in branch.output) and inputs_known:
                        known.update(node.output)
            elif node.op_type == "Shape" or (inputs_known and node.op_type in (
                    "Constant", "ConstantOfShape") + CONSTANT_ONLY_OPS + _FOLDABLE):
                known.update(node.output)

    def make_inputs(self) -> None:
        from onnx import TensorProto

        consumers = defaultdict(list)
        for n in self.graph.node:
            for i in set(n.input):
                consumers[i].append(n)
        for vi in self.graph.input:
            if vi.name in self.values:
                continue  # an initializer listed as an input (older exporters)
            tt = vi.type.tensor_type
            if tt.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
                name = (TensorProto.DataType.Name(tt.elem_type)
                        if tt.elem_type in TensorProto.DataType.values() else tt.elem_type)
                raise UnsupportedOnnxError(
                    f"{self.where}: input '{_short(vi.name)}' has element type {name}; fastconv "
                    f"models take float32")
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if len(dims) > MAX_RANK:
                raise InvalidModelFileError(f"{self.where}: input '{_short(vi.name)}' has "
                                            f"{len(dims)} axes, more than {MAX_RANK}")
            if len(dims) < 2:
                raise UnsupportedOnnxError(
                    f"{self.where}: input '{_short(vi.name)}' of shape {dims} has no batch axis "
                    f"(fastconv models take a batch of at least 1D samples)")
            if any(d is not None and d < 0 for d in dims):
                raise InvalidModelFileError(f"{self.where}: input '{_short(vi.name)}' has "
                                            f"negative dims {dims}")
            if any(d == 0 for d in dims[1:]):
                raise UnsupportedOnnxError(f"{self.where}: input '{_short(vi.name)}' of shape "
                                           f"{dims} is empty")
            count = math.prod(d for d in dims[1:] if d is not None)
            if count > MAX_SAMPLE_ELEMENTS:
                raise InvalidModelFileError(
                    f"{self.where}: input '{_short(vi.name)}' of shape {dims} holds {count} "
                    f"elements ({4 * count} bytes of float32) per sample, more than the "
                    f"{MAX_SAMPLE_ELEMENTS} elements fastconv accepts")
            name = _name(vi.name, self.used_names)
            if self.declared_batch is None:
                self.declared_batch = dims[0]
            users = consumers.get(vi.name, [])
            channels_last = self.channels_last_inputs or users and all(
                n.op_type == "Transpose" and _perm(n) == [0, 3, 1, 2]
                for n in users)  # an NHWC input, as fastconv exports them
            if len(dims) == 4 and not channels_last:
                t = L.Input((dims[2], dims[3], dims[1]), name=name)
                s = Sym(t, "nchw")
            elif len(dims) == 3 and users and all(
                    n.op_type in ("Conv", "MaxPool", "AveragePool") for n in users):
                s = Sym(L.Input((dims[2], dims[1]), name=name), "nchw")
            else:
                s = Sym(L.Input(tuple(dims[1:]), name=name))
            self.values[vi.name] = s
            self.inputs.append(s.t)
            self.input_layouts.append(s.layout)

    def _node_attrs(self, node) -> dict:
        from onnx import helper

        out = {}
        for a in node.attribute:
            try:
                out[a.name] = helper.get_attribute_value(a)
            except (ValueError, TypeError) as exc:
                raise self._invalid(node, f"attribute '{_short(a.name)}' cannot be read "
                                          f"({_short(exc, 100)})") from None
            if out[a.name] is None:
                raise self._invalid(node, f"attribute '{_short(a.name)}' has no type and no "
                                          f"value")
        return out

    def import_node(self, node, consumed) -> None:
        """One node: folded where its inputs are constants, made into layers otherwise."""
        self.current = node
        if node.domain not in ("", "ai.onnx"):
            raise self._fail(node, "operator of a custom domain")
        fewest, most = _ARITY.get(node.op_type, (0, _MANY))
        if not fewest <= len(node.input) <= most:
            takes = (f"{fewest}" if fewest == most else f"at least {fewest}"
                     if most == _MANY else f"{fewest} to {most}")
            raise self._invalid(node, f"{node.op_type} takes {takes} input(s), got "
                                      f"{len(node.input)}")
        known = [i for i in node.input if i]
        if node.output and node.output[0] in self.absorbed:
            outs = [self.absorbed.pop(node.output[0])]
        elif all(not isinstance(self.values.get(i), Sym) for i in known) and (
                node.op_type in ("Constant", "ConstantOfShape") + CONSTANT_ONLY_OPS
                or (known and node.op_type in _FOLDABLE)):
            outs = self.fold(node)
        else:
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise self._fail(node, "unsupported on computed tensors")
            try:
                outs = handler(node, self._node_attrs(node))
            except _LayerArgumentError as exc:
                raise self._invalid(node, _short(exc, 300)) from None
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
        for name, value in zip(node.output, outs):
            if name:
                if value is None:
                    raise self._invalid(node, f"its input is never produced, so its output "
                                              f"'{_short(name)}' cannot be")
                self.values[name] = value
        for extra in node.output[len(outs):]:
            if extra and extra in consumed:
                raise self._fail(node, f"its output '{_short(extra)}' is used, and fastconv "
                                       f"produces only the first output of {node.op_type}")
        for name in node.output:
            if name:
                self.producers[name] = node

    def run(self):
        from ..models import Model

        self.make_inputs()
        # every name some node reads or the graph returns, indexed once
        consumed = {o.name for o in self.graph.output}
        for n in self.graph.node:
            consumed.update(n.input)
        self.consumed = consumed
        for name in (o.name for o in self.graph.output):
            self.readers[name] += 1
        for n in self.graph.node:
            for name in set(n.input):
                self.readers[name] += 1
                self.first_reader.setdefault(name, n)
            for branch in (a.g for a in n.attribute if a.name in ("then_branch", "else_branch")):
                for inner in branch.node:  # a branch may read any name of the graph
                    for name in set(inner.input):
                        self.readers[name] += 1
        for node in self.graph.node:
            self.import_node(node, consumed)
        self.current = None
        outputs, layouts = [], []
        for vo in self.graph.output:
            kind = vo.type.tensor_type.elem_type
            if kind not in _FLOAT_ELEMENTS:
                raise UnsupportedOnnxError(f"{self.where}: output '{_short(vo.name)}' has element "
                                           f"type {_element_name(kind)}; fastconv models compute "
                                           f"float32")
            v = self.values.get(vo.name)
            if not isinstance(v, Sym):
                raise UnsupportedOnnxError(f"{self.where}: output '{_short(vo.name)}' is a "
                                           f"constant or is never computed; fastconv models "
                                           f"compute their outputs from their inputs")
            if v.flat_chw is not None or (self.channels_last_inputs and v.layout == "nchw"):
                v = self.as_plain(_FakeNode(vo.name), v)  # fastconv's exports: outputs as named
            outputs.append(v.t)
            layouts.append(v.layout)
        if not self.inputs or not outputs:
            raise UnsupportedOnnxError(f"{self.where}: the graph has no input or no output "
                                       f"computed from its inputs")
        name = _name(self.graph.name or "onnx_model", _Names())
        try:
            model = Model(self.inputs if len(self.inputs) > 1 else self.inputs[0],
                          outputs if len(outputs) > 1 else outputs[0], name=name)
        except (ValueError, TypeError) as exc:
            raise UnsupportedOnnxError(f"{self.where}: the graph does not make a fastconv model "
                                       f"({_short(exc, 300)})") from None
        for layer, weights in self.pending_weights:
            try:
                layer.set_weights(weights)
            except (ValueError, TypeError) as exc:
                raise InvalidModelFileError(f"{self.where}: layer '{layer.name}': the file's "
                                            f"weights do not fit ({_short(exc, 300)})") from None
        return model, self.input_layouts, layouts

    # -- constant folding --------------------------------------------------------------------
    def fold(self, node):
        """The node on constant inputs: its result sized from the inputs' shapes and the
        attributes, charged to the budget, and only then computed."""
        a = self._node_attrs(node)
        ins = []
        for i in node.input:
            v = self.values.get(i) if i else None
            if i and v is None:
                raise self._invalid(node, f"input '{_short(i)}' is never produced")
            ins.append(v)
        op = node.op_type
        what = self._out(node)
        if op == "Constant":
            return [self._constant(node, a, what)]
        if any(isinstance(v, BatchValue) for v in ins):
            if op in ("ConstantOfShape", "Range"):
                raise self._fail(node, "makes a tensor whose size depends on the batch size; "
                                       "fastconv needs its size at load time")
            results = [self._fold_values(node, op, a, [at_probe(v, k) for v in ins], what)
                       for k in range(len(PROBES))]
            compared = op in COMPARISONS or any(v.compared for v in ins
                                                 if isinstance(v, BatchValue))
            return [combine(results, compared)]
        return [self._fold_values(node, op, a, ins, what)]

    def _fold_values(self, node, op, a, ins, what):
        """``op`` on the constant inputs ``ins``."""
        if op == "ConstantOfShape":
            return self._constant_of_shape(node, a, ins, what)
        shape, dtype, extra = self._fold_shape(node, op, a, ins)
        if len(shape) > MAX_RANK:
            raise self._invalid(node, f"folds to a tensor of {len(shape)} axes, more than the "
                                      f"{MAX_RANK} fastconv accepts")
        nbytes = math.prod(shape) * dtype.itemsize
        if op == "Div" and dtype.kind in "iu":
            nbytes += math.prod(shape) * 8  # the float64 quotient before the cast
        self._charge(0 if op == "Identity" else nbytes, what)
        with np.errstate(all="ignore"):
            out = _fold(op, ins, shape, dtype, extra)
        if tuple(out.shape) != tuple(shape):  # the sizing above and NumPy disagree
            raise self._invalid(node, f"folds to shape {out.shape}, not the {tuple(shape)} its "
                                      f"inputs give")
        return out

    def _constant(self, node, a, what):
        from onnx import TensorProto, numpy_helper

        if len(a) != 1:
            raise self._invalid(node, f"a Constant takes exactly one attribute, got "
                                      f"{sorted(_short(k, 40) for k in a)[:5]}")
        key, value = next(iter(a.items()))
        if key == "value":
            if not isinstance(value, TensorProto):
                raise self._invalid(node, "attribute 'value' is not a tensor")
            desc = f"tensor of {self._who(node)}"
            if value.data_type == TensorProto.STRING:
                onnx_file.checked_dims(value.dims, self.where, desc)
                self._charge(sum(len(s) + 64 for s in value.string_data), what)
            else:
                self._charge(onnx_file.tensor_nbytes(value, self.where, desc), what)
            try:
                return numpy_helper.to_array(value)
            except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
                raise self._invalid(node, f"its tensor is corrupt ({_short(exc, 200)})") from None
        if key in ("value_float", "value_floats", "value_int", "value_ints"):
            kinds = (float, int) if "float" in key else int
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
                raise self._invalid(node, f"attribute '{key}' holds {_show(value)}")
            self._charge(8 * len(values), what)
            return np.asarray(value, dtype=np.float32 if "float" in key else np.int64)
        raise self._fail(node, f"constant attribute {_short(key, 40)!r} is not supported")

    def _constant_of_shape(self, node, a, ins, what):
        from onnx import TensorProto, numpy_helper

        if not ins or ins[0] is None:
            raise self._invalid(node, "missing input (the shape)")
        shape = self._int_list(node, ins[0], f"the shape ('{_short(node.input[0])}')")
        if (len(shape) > MAX_RANK or any(d < 0 for d in shape)
                or math.prod(shape) > onnx_file.MAX_ELEMENTS):
            raise self._invalid(node, f"the shape ('{_short(node.input[0])}') is "
                                      f"{_short(shape, 100)}; expected at most {MAX_RANK} "
                                      f"dimensions, each >= 0, their product at most "
                                      f"{onnx_file.MAX_ELEMENTS}")
        if "value" in a:
            t = a["value"]
            if not isinstance(t, TensorProto):
                raise self._invalid(node, "attribute 'value' is not a tensor")
            onnx_file.checked_dims(t.dims, self.where, f"value of {self._who(node)}")
            if math.prod(t.dims) != 1:
                raise self._invalid(node, f"attribute 'value' holds {math.prod(t.dims)} "
                                          f"elements; expected one")
            try:
                value = numpy_helper.to_array(t).reshape(-1)
            except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
                raise self._invalid(node, f"its value is corrupt ({_short(exc, 200)})") from None
            if value.dtype.kind not in "biuf" or value.size != 1:
                raise self._invalid(node, f"attribute 'value' is a {value.dtype} tensor of "
                                          f"{value.size} elements; expected one number")
        else:
            value = np.zeros(1, np.float32)
        self._charge(math.prod(shape) * value.dtype.itemsize, what)
        # one value at every index: materialised only where a layer takes it whole
        return np.broadcast_to(value.reshape(()), shape)

    def _fold_shape(self, node, op, a, ins):
        """(shape, dtype, extra) of ``op``'s result on the constants ``ins``, ``extra`` being
        what ``_fold`` needs besides (a Slice's index, a Transpose's perm, an axis);
        InvalidModelFileError where the inputs or the attributes are inconsistent."""
        def arg(i, what):
            if i >= len(ins) or ins[i] is None:
                raise self._invalid(node, f"missing input {what}")
            return ins[i]

        def numeric(x, what):
            if x.dtype.kind not in "biufc":
                raise self._invalid(node, f"{what} is a {x.dtype} tensor; expected numbers")
            return x

        x = np.asarray(arg(0, "0"))
        if op in ("Add", "Sub", "Mul", "Div"):
            y = np.asarray(arg(1, "1"))
            for v in (x, y):
                numeric(v, "an input")
                if v.dtype.kind == "b":
                    raise self._invalid(node, f"{op} of booleans")
            try:
                shape = np.broadcast_shapes(x.shape, y.shape)
            except ValueError:
                raise self._invalid(node, f"inputs of shapes {x.shape} and {y.shape} do not "
                                          f"broadcast") from None
            return shape, np.result_type(x, y), None
        if op in ("Equal", "Less", "Greater", "Where"):
            ys = [np.asarray(arg(i, str(i))) for i in range(1, 3 if op == "Where" else 2)]
            try:
                shape = np.broadcast_shapes(x.shape, *(y.shape for y in ys))
            except ValueError:
                raise self._invalid(node, f"inputs of shapes {[x.shape] + [y.shape for y in ys]} "
                                          f"do not broadcast") from None
            if op == "Where":
                return shape, np.result_type(*ys), None
            return shape, np.dtype(bool), None
        if op in ("Not", "Neg", "Identity"):
            if op == "Not" and x.dtype.kind != "b":
                raise self._invalid(node, f"Not of a {x.dtype} tensor")
            return x.shape, x.dtype, None
        if op == "Range":
            start, limit, delta = (self._scalar(node, arg(i, w), w)
                                   for i, w in enumerate(("start", "limit", "delta")))
            if delta == 0:
                raise self._invalid(node, "delta is 0")
            n = max(int(math.ceil((limit - start) / delta)), 0)
            if n > onnx_file.MAX_ELEMENTS:
                raise self._invalid(node, f"a range of {n} elements")
            return (n,), np.result_type(np.asarray(start), np.asarray(limit),
                                        np.asarray(delta)), None
        if op == "Cast":
            from onnx import TensorProto, helper

            to = self._int(node, a, "to")
            if to is None:
                raise self._invalid(node, "missing attribute 'to'")
            try:
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(to))
            except (KeyError, TypeError, ValueError):
                raise self._invalid(node, f"attribute 'to' is {to}, not an ONNX element "
                                          f"type") from None
            if to == TensorProto.STRING or dtype.kind not in "biufc":
                raise self._fail(node, f"a cast to {TensorProto.DataType.Name(to)}")
            numeric(x, "the input")
            return x.shape, dtype, None
        if op == "Shape":
            start = self._int(node, a, "start", 0)
            end = self._int(node, a, "end", None)
            return (len(x.shape[start:end]),), np.dtype(np.int64), (start, end)
        if op == "Unsqueeze":
            axes = self._axes(node, a, ins)
            if axes is None:
                raise self._invalid(node, "missing axes")
            rank = x.ndim + len(axes)
            axes = [self._axis(node, v, rank, "axis") for v in axes]
            if len(set(axes)) != len(axes):
                raise self._invalid(node, f"repeated axes {axes}")
            shape = list(x.shape)
            for ax in sorted(axes):
                shape.insert(ax, 1)
            return tuple(shape), x.dtype, None
        if op == "Squeeze":
            axes = self._axes(node, a, ins)
            if axes is None:
                return tuple(d for d in x.shape if d != 1), x.dtype, None
            axes = {self._axis(node, v, x.ndim, "axis") for v in axes}
            if any(x.shape[ax] != 1 for ax in axes):
                raise self._invalid(node, f"squeezing axes {sorted(axes)} of shape {x.shape}: "
                                          f"not all of them have length 1")
            return tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype, None
        if op == "Gather":
            idx = np.asarray(arg(1, "indices"))
            if x.ndim < 1 or idx.dtype.kind not in "iu":
                raise self._invalid(node, f"gathering {idx.dtype} indices from a tensor of "
                                          f"shape {x.shape}")
            axis = self._axis(node, self._int(node, a, "axis", 0), x.ndim)
            n = x.shape[axis]
            if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
                raise self._invalid(node, f"indices {idx.min()}..{idx.max()} out of range for "
                                          f"axis {axis} of length {n}")
            return x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype, axis
        if op == "Reshape":
            target = self._int_list(node, arg(1, "shape"), "the shape")
            allowzero = bool(self._int(node, a, "allowzero", 0, lo=0, hi=1))
            return self._reshaped(node, x.shape, target, allowzero), x.dtype, None
        if op == "Flatten":
            axis = self._axis(node, self._int(node, a, "axis", 1), x.ndim, inclusive=True)
            return (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])), x.dtype, None
        if op == "Transpose":
            perm = self._ints(node, a, "perm", list(range(x.ndim - 1, -1, -1)))
            if sorted(perm) != list(range(x.ndim)):
                raise self._invalid(node, f"perm {_short(perm, 60)} is not a permutation of "
                                          f"the {x.ndim} axes")
            return tuple(x.shape[p] for p in perm), x.dtype, perm
        if op == "Slice":
            index = self._slices(node, a, ins, x)
            shape = tuple(len(range(*s.indices(d))) for s, d in zip(index, x.shape))
            return shape, x.dtype, tuple(index)
        if op == "Concat":
            xs = [np.asarray(arg(i, str(i))) for i in range(len(ins))]
            axis = self._axis(node, self._int(node, a, "axis"), x.ndim)
            rest = [s.shape[:axis] + s.shape[axis + 1:] for s in xs]
            if any(s.ndim != x.ndim for s in xs) or len(set(rest)) > 1:
                raise self._invalid(node, f"concatenating shapes {[s.shape for s in xs][:8]} "
                                          f"along axis {axis}")
            shape = list(x.shape)
            shape[axis] = sum(s.shape[axis] for s in xs)
            return tuple(shape), np.result_type(*xs), axis
        raise self._fail(node, "cannot be evaluated on constants")

    def _axes(self, node, a, ins):
        if "axes" in a:
            return self._ints(node, a, "axes")
        if len(ins) > 1 and ins[1] is not None:
            return self._int_list(node, ins[1], "axes")
        return None

    def _slices(self, node, a, ins, x):
        if len(ins) == 1:  # opset < 10: attributes
            starts = self._ints(node, a, "starts")
            ends = self._ints(node, a, "ends")
            if starts is None or ends is None:
                raise self._invalid(node, "missing attribute 'starts' or 'ends'")
            axes = self._ints(node, a, "axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            def given(i, what):
                return None if len(ins) <= i or ins[i] is None else self._int_list(
                    node, ins[i], what)

            starts, ends = given(1, "starts"), given(2, "ends")
            if starts is None or ends is None:
                raise self._invalid(node, "missing input starts or ends")
            axes = given(3, "axes")
            axes = list(range(len(starts))) if axes is None else axes
            steps = given(4, "steps")
            steps = [1] * len(starts) if steps is None else steps
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise self._invalid(node, f"starts, ends, axes and steps of lengths {len(starts)}, "
                                      f"{len(ends)}, {len(axes)} and {len(steps)}")
        axes = [self._axis(node, ax, x.ndim) for ax in axes]
        if len(set(axes)) != len(axes) or 0 in steps:
            raise self._invalid(node, f"repeated axes {axes} or a zero step {steps}")
        index = [slice(None)] * x.ndim
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            index[ax] = slice(st, en, sp)
        return index

    def _reshaped(self, node, src, target, allowzero):
        """The shape ``src`` takes under ONNX's Reshape to ``target``."""
        if any(d < -1 for d in target) or target.count(-1) > 1 or (
                allowzero and -1 in target and 0 in target):
            raise self._invalid(node, f"reshape target {_short(target, 80)}: entries must be "
                                      f">= -1, with at most one -1 (and no 0 beside it where "
                                      f"allowzero=1)")
        out = []
        for i, d in enumerate(target):
            if d == 0 and not allowzero:
                if i >= len(src):
                    raise self._invalid(node, f"reshape target {_short(target, 80)} copies "
                                              f"axis {i} of a rank-{len(src)} tensor")
                d = src[i]
            out.append(d)
        total = math.prod(src)
        known = math.prod(d for d in out if d != -1)
        if -1 in out:
            if known == 0 or total % known:
                raise self._invalid(node, f"cannot reshape {tuple(src)} to {_short(target, 80)}")
            out[out.index(-1)] = total // known
        elif known != total:
            raise self._invalid(node, f"cannot reshape {tuple(src)} to {_short(target, 80)}")
        return tuple(out)

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
        return self._elementwise(node, L.LeakyReLU(self._float(node, a, "alpha", 0.01),
                                                   name=self.layer_name(node)))

    def op_Clip(self, node, a):  # noqa: N802
        if self.opset < 11:
            low, high = self._float(node, a, "min"), self._float(node, a, "max")
        else:
            lo = self.const(node, 1, "min", optional=True)
            hi = self.const(node, 2, "max", optional=True)
            low = None if lo is None else float(self._scalar(node, lo, "min"))
            high = None if hi is None else float(self._scalar(node, hi, "max"))
        if low is not None and high is not None and low > high:
            # ONNX: every value becomes max (numpy.clip's rule)
            low = high
        return self._elementwise(node, L.Clip(low, high, name=self.layer_name(node)))

    def op_Dropout(self, node, a):  # noqa: N802
        if self._int(node, a, "is_test", 1, lo=0, hi=1) == 0 and self.opset < 7:
            raise self._fail(node, "training-mode dropout")
        if len(node.input) > 2 and node.input[2]:
            mode = self.const(node, 2, "training_mode")
            if bool(self._scalar(node, mode, "training_mode")):
                raise self._fail(node, "training_mode=True (dropout at inference)")
        x = self.sym(node, 0)
        return Sym(x.t, x.layout, x.flat_chw)

    def op_Identity(self, node, a):  # noqa: N802
        return self.sym(node, 0)

    def op_Softmax(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        rank = len(x.t.shape)
        default = -1 if self.opset >= 13 else 1
        axis = self._axis(node, self._int(node, a, "axis", default), rank)
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
        t = self.call(node, L.Permute(tuple(order), name=self.layer_name(node, "_last")), x.t)
        t = self.call(node, L.Activation("softmax", name=self.layer_name(node)), t)
        return Sym(self.call(node, L.Permute(tuple(back), name=self.layer_name(node, "_back")),
                             t))

    def _spatial(self, node, a, x: Sym, kernel):
        """(strides, dilations, (top, bottom, left, right)) of a Conv or a pooling."""
        if len(kernel) != 2:
            raise self._fail(node, f"only 2D windows are supported (kernel_shape "
                                   f"{_short(list(kernel), 60)})")
        strides = tuple(self._ints(node, a, "strides", [1, 1], n=2, lo=1, hi=MAX_WINDOW))
        dil = tuple(self._ints(node, a, "dilations", [1, 1], n=2, lo=1, hi=MAX_WINDOW))
        auto = self._str(node, a, "auto_pad", "NOTSET")
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
            p = self._ints(node, a, "pads", [0, 0, 0, 0], n=4)
            pads = (p[0], p[2], p[1], p[3])
        else:
            raise self._invalid(node, f"auto_pad {_short(auto, 40)!r}; expected NOTSET, VALID, "
                                      f"SAME_UPPER or SAME_LOWER")
        if min(pads) < 0:
            raise self._fail(node, f"negative pads {pads}")
        extents = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
        self._check_pads(node, pads, (h, w), extents, x.t.shape[-1])
        return strides, dil, pads

    def _check_pads(self, node, pads, sizes, windows=(1, 1), channels=None):
        """Refuse padding (top, bottom, left, right) beyond ``MAX_PAD_FACTOR`` times the larger
        of its axis's length and the window's extent."""
        for axis, (size, window, before, after) in enumerate(
                zip(sizes, windows, pads[0::2], pads[1::2])):
            limit = MAX_PAD_FACTOR * max(size or 0, window, 1)
            if max(before, after) > limit:
                h, w = ((s or 1) + b + e for s, b, e in zip(sizes, pads[0::2], pads[1::2]))
                nbytes = h * w * (channels or 1) * 4
                raise self._invalid(
                    node, f"pads {tuple(pads)}: padding of {max(before, after)} on the "
                          f"{'HW'[axis]} axis of length {size} (window {window}) is more than "
                          f"{MAX_PAD_FACTOR}x the axis or the window ({limit}); the padded "
                          f"image would be {h} x {w} x {channels}, {nbytes} bytes of float32 "
                          f"per sample")

    def _as_2d(self, node, x: Sym, a: dict) -> tuple[Sym, dict]:
        """A (N, C, L) tensor as a (N, C, 1, L) image, and a 1D window's attributes as 2D."""
        _, steps, c = x.t.shape
        t = self.call(node, L.Reshape((1, steps, c), name=self.layer_name(node, "_2d")), x.t)
        a = dict(a)
        for key in ("kernel_shape", "strides", "dilations"):
            if key in a:
                a[key] = [1, *self._ints(node, a, key, n=1)]
        if "pads" in a:
            pads = self._ints(node, a, "pads", n=2)
            a["pads"] = [0, pads[0], 0, pads[1]]
        return Sym(t, "nchw"), a

    def _as_1d(self, node, y: Sym) -> Sym:
        _, one, steps, c = y.t.shape
        t = self.call(node, L.Reshape((steps, c), name=self.layer_name(node, "_1d")), y.t)
        return Sym(t, "nchw")

    def op_Conv(self, node, a):  # noqa: N802
        x = self.as_nchw(node, self.sym(node, 0), ranks=(3, 4))
        w = np.asarray(self.const(node, 1, "W (the kernel)"), dtype=np.float32)
        relu = self._relu_after(node)
        activation = "relu" if relu is not None else "linear"
        if len(x.t.shape) == 3:
            if w.ndim != 3:
                raise self._fail(node, f"a {w.ndim}D kernel for a 1D input")
            x2, a2 = self._as_2d(node, x, a)
            out = self._as_1d(node, self._conv2d(node, a2, x2, w[:, :, None, :], activation))
        else:
            out = self._conv2d(node, a, x, w, activation)
        if relu is not None:
            self.absorbed[relu.output[0]] = out
        return out

    def _sole_reader(self, node, op_type: str):
        """The node of type ``op_type`` that is the only reader of ``node``'s output, its own
        output named (so that the layer made for ``node`` may compute it too), or None."""
        out = node.output[0] if node.output else ""
        reader = self.first_reader.get(out) if out else None
        if (reader is None or reader.op_type != op_type or self.readers.get(out, 0) != 1
                or not reader.output or not reader.output[0]
                or reader.domain not in ("", "ai.onnx")):
            return None
        return reader

    def _relu_after(self, node):
        """The Relu that only ``node``'s output feeds (the layer made for ``node`` then applies
        it in its epilogue), or None."""
        return self._sole_reader(node, "Relu")

    def _conv2d(self, node, a, x: Sym, w, activation: str = "linear"):
        b = self.const(node, 2, "B (the bias)", optional=True)
        group = self._int(node, a, "group", 1, lo=1)
        if w.ndim != 4:
            raise self._fail(node, f"only 2D convolutions are supported (kernel shape "
                                   f"{w.shape})")
        channels = x.t.shape[-1]
        o, ig = w.shape[:2]
        if w.size == 0:
            raise self._invalid(node, f"an empty kernel of shape {w.shape}")
        if o % group or (channels is not None and ig * group != channels):
            raise self._invalid(node, f"a kernel of shape {w.shape} (O, I/group, kH, kW) with "
                                      f"group={group} does not fit an input of {channels} "
                                      f"channels")
        if b is not None and np.size(b) != o:
            raise self._invalid(node, f"a bias of {np.size(b)} values for {o} output channels")
        kernel = tuple(self._ints(node, a, "kernel_shape", list(w.shape[2:]), n=2))
        if kernel != w.shape[2:]:
            raise self._invalid(node, f"kernel_shape {list(kernel)} disagrees with the kernel's "
                                      f"shape {w.shape}")
        if group != 1 and self.expand_groups:
            self._charge(w.size * group * 4, f"{self._out(node)} (the kernel, expanded)")
            full = np.zeros((o, ig * group, *w.shape[2:]), np.float32)
            og = o // group
            for g in range(group):
                full[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = w[g * og:(g + 1) * og]
            w = full
            group = 1
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
                         groups=group, activation=activation, use_bias=b is not None,
                         kernel_initializer="zeros", name=self.layer_name(node))
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
        if "kernel_shape" not in a:
            raise self._invalid(node, "missing attribute 'kernel_shape'")
        kernel = tuple(self._ints(node, a, "kernel_shape", lo=1, hi=MAX_WINDOW))
        strides, dil, pads = self._spatial(node, a, x, kernel)
        if dil != (1, 1):
            raise self._fail(node, f"dilations {list(dil)}: dilated pooling is not supported")
        if self._int(node, a, "storage_order", 0, lo=0, hi=1):
            raise self._fail(node, "storage_order=1")
        ceil = bool(self._int(node, a, "ceil_mode", 0, lo=0, hi=1))
        kwargs = {}
        if cls is L.AveragePooling2D and self._int(node, a, "count_include_pad", 0, lo=0, hi=1):
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
        axes = self._ints(node, a, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self._int_list(node, self.const(node, 1, "axes"), "axes")
        rank = len(x.t.shape)
        if not axes:
            if self._int(node, a, "noop_with_empty_axes", 0, lo=0, hi=1):
                return Sym(x.t, x.layout, x.flat_chw)
            raise self._fail(node, "a mean over every axis (the batch too)")
        axes = sorted({self._axis(node, v, rank) for v in axes})
        keep = bool(self._int(node, a, "keepdims", 1, lo=0, hi=1))
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
            t = self.call(node, L.Permute(tuple(axes + kept),
                                          name=self.layer_name(node, "_order")), t)
        t = self.call(node, L.Reshape((reduced, rest, 1), name=self.layer_name(node, "_3d")), t)
        t = self.call(node, L.AveragePooling2D((reduced, 1), name=self.layer_name(node)), t)
        out = [1 if d in axes else shape[d] for d in range(1, rank)] if keep else [
            shape[d] for d in kept]
        return Sym(self.call(node, L.Reshape(tuple(out), name=self.layer_name(node, "_out")), t))

    def _dense(self, node, x: Sym, w: np.ndarray, b):
        """A Dense layer with kernel ``w`` (in, out) in ONNX's feature order."""
        if x.flat_chw is not None:
            c, h, wd = x.flat_chw
            if w.shape[0] != c * h * wd:
                raise self._invalid(node, f"the kernel has {w.shape[0]} rows but the input has "
                                          f"{c * h * wd} features")
            w = w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(c * h * wd, -1)
            x = Sym(x.t)
        elif x.layout == "nchw":
            x = self.as_plain(node, x)
        if x.t.shape[-1] != w.shape[0]:
            raise self._invalid(node, f"the kernel has {w.shape[0]} rows but the input has "
                                      f"{x.t.shape[-1]} features")
        if w.shape[1] == 0:
            raise self._invalid(node, f"a kernel of shape {w.shape} has no output")
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
        if self._int(node, a, "transA", 0, lo=0, hi=1):
            raise self._fail(node, "transA=1 (the batch must stay the first axis of A)")
        w = np.asarray(self.const(node, 1, "B (the weights)"), np.float32)
        if w.ndim != 2:
            raise self._invalid(node, f"B must be a 2D constant, got shape {w.shape}")
        if self._int(node, a, "transB", 0, lo=0, hi=1):
            w = w.T  # a view: _dense makes the one contiguous copy
        alpha = self._float(node, a, "alpha", 1.0)
        if alpha != 1.0:
            w = w * np.float32(alpha)
        c = self.const(node, 2, "C (the bias)", optional=True)
        b = None
        if c is not None:
            c = np.asarray(c, np.float64) * self._float(node, a, "beta", 1.0)
            if c.size == 1:
                b = np.full(w.shape[1], c.reshape(-1)[0])
            elif c.ndim == 1 or (c.ndim == 2 and c.shape[0] == 1):
                b = c.reshape(-1)
            else:
                raise self._fail(node, f"C of shape {c.shape}: only a bias per output feature "
                                       f"(shape (N,), (1, N) or a scalar) is supported")
            if b.shape[0] != w.shape[1]:
                raise self._invalid(node, f"C of shape {c.shape} does not fit {w.shape[1]} "
                                          f"outputs")
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
        bias, add = self._bias_after(node, w.shape[1])
        out = self._dense(node, x, w, bias)
        if add is not None:
            self.absorbed[add.output[0]] = out
        return out

    def _bias_after(self, node, units: int):
        """``(bias, Add node)`` where the only reader of ``node``'s output is an Add of a
        constant of ``units`` values (PyTorch's Linear on more than two axes exports as MatMul
        then Add); ``(None, None)`` otherwise."""
        add = self._sole_reader(node, "Add")
        if add is None or len(add.input) != 2:
            return None, None
        out = node.output[0]
        other = add.input[1] if add.input[0] == out else add.input[0]
        v = self.values.get(other)
        if v is None or isinstance(v, (Sym, BatchValue)):
            return None, None
        v = np.asarray(v)
        if v.dtype.kind != "f" or v.size != units or v.ndim > 1 and v.shape[-1] != units:
            return None, None
        return np.asarray(v, np.float32).reshape(-1), add

    def op_Flatten(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        rank = len(x.t.shape)
        axis = self._axis(node, self._int(node, a, "axis", 1), rank, inclusive=True)
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
        allowzero = bool(self._int(node, a, "allowzero", 0, lo=0, hi=1))
        given = self.values.get(node.input[1]) if node.input[1] else None
        batch_symbol = isinstance(given, BatchValue)
        if batch_symbol:
            shape = batch_axis_target(given)
            if shape is None:
                raise self._fail(node, "a target shape computed from the batch size other than "
                                       "as its first entry; fastconv keeps the batch axis")
        else:
            shape = self._int_list(node, self.const(node, 1, "shape"), "the shape")
        if any(d < -1 for d in shape) or shape.count(-1) > 1:
            raise self._invalid(node, f"reshape target {_short(shape, 80)}: entries must be "
                                      f">= -1, with at most one -1")
        src = x.onnx_shape
        if x.flat_chw is not None:
            src = (src[0], math.prod(x.flat_chw))
        rest = math.prod(src[1:]) if None not in src[1:] else None
        target = [src[i] if (d == 0 and not allowzero and i < len(src)) else d
                  for i, d in enumerate(shape)][1:]
        first = shape[0] if shape else None
        kept = batch_symbol or (
            (first == 0 and not allowzero) or (first is not None and first > 0
                                               and first == self.declared_batch)
            or (first == -1 and rest is not None and all(d > 0 for d in target)
                and math.prod(target) == rest))
        if not kept:
            raise self._fail(node, f"reshaping {src} to {_short(shape, 80)} changes the batch "
                                   f"axis; fastconv keeps the batch axis")
        if any(d == 0 for d in target):
            raise self._fail(node, f"zero-sized target shape {_short(shape, 80)}")
        if len(target) == 1 and target[0] in (-1, rest):
            return self._flatten(node, x)
        if -1 in target and rest is not None:
            known = math.prod(d for d in target if d != -1)
            if known and rest % known == 0:
                target[target.index(-1)] = rest // known
        channels = self._channel_reshape(node, x, target)
        if channels is not None:
            return channels
        x = self.as_plain(node, x)
        return self.apply(L.Reshape(tuple(target), name=self.layer_name(node)), x)

    def _channel_reshape(self, node, x: Sym, target):
        """A reshape that only splits the channels of a channels-last image into two axes
        (``(N, C, H, W) -> (N, G, C / G, H, W)``, a channel shuffle's first step) or merges
        them back: a free reshape of the held tensor, which stays channels-last. None for any
        other reshape."""
        if x.layout != "nchw" or x.flat_chw is not None:
            return None
        src = x.onnx_shape
        if len(src) == 4 and len(target) == 4 and tuple(target[2:]) == tuple(src[2:]) and (
                target[0] * target[1] == src[1]):
            held = (src[2], src[3], target[0], target[1])
        elif len(src) == 5 and len(target) == 3 and tuple(target[1:]) == tuple(src[3:]) and (
                src[1] * src[2] == target[0]):
            held = (src[3], src[4], target[0])
        else:
            return None
        return self.apply(L.Reshape(held, name=self.layer_name(node)), x, "nchw")

    def op_Transpose(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        rank = len(x.t.shape)
        perm = self._ints(node, a, "perm", list(range(rank - 1, -1, -1)))
        if sorted(perm) != list(range(rank)):
            raise self._invalid(node, f"perm {_short(perm, 60)} is not a permutation of the "
                                      f"{rank} axes")
        if rank in (3, 4) and x.flat_chw is None:
            # fastconv holds images channels-last: these transposes only relabel the layout
            if x.layout == "plain" and perm == list(_TO_ONNX[rank]):
                return Sym(x.t, "nchw")
            if x.layout == "nchw" and perm == list(np.argsort(_TO_ONNX[rank])):
                return Sym(x.t, "plain")
        if rank == 5 and x.layout == "nchw" and perm[0] == 0 and perm[3:] == [3, 4]:
            # (N, A, B, H, W) held as (N, H, W, A, B): swapping A and B stays channels-last
            if perm[1:3] == [1, 2]:
                return x
            return self.apply(L.Permute((1, 2, 4, 3), name=self.layer_name(node)), x, "nchw")
        x = self.as_plain(node, x)
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
        if not names:
            raise self._invalid(node, "no inputs")
        vals = [self.values.get(n) if n else None for n in names]
        if any(v is None for v in vals):
            raise self._invalid(node, "an input is missing or never produced")
        if any(isinstance(v, BatchValue) for v in vals):
            raise self._fail(node, "a sum with a value that depends on the batch size")
        syms = [v for v in vals if isinstance(v, Sym)]
        consts = [v for v in vals if not isinstance(v, Sym)]
        if len(syms) == 1 and not consts:
            return syms[0]
        if syms and consts:
            if len(syms) > 1:
                raise self._fail(node, "a sum of several tensors and constants")
            shapes = [np.shape(c) for c in consts]
            try:
                shape = np.broadcast_shapes(*shapes)
            except ValueError:
                raise self._invalid(node, f"constants of shapes {_short(shapes, 100)} do not "
                                          f"broadcast") from None
            self._charge(8 * math.prod(shape) * len(consts), f"{self._out(node)} (the sum)")
            offset = sum(self._numbers(node, c) for c in consts)
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

    def _numbers(self, node, v):
        """A constant operand as float64 (a broadcast constant stays one value)."""
        v = np.asarray(v)
        if v.dtype.kind not in "biuf":
            raise self._invalid(node, f"a {v.dtype} constant where numbers are expected")
        if _lazy(v):
            return np.broadcast_to(v.reshape(-1)[0].astype(np.float64), v.shape)
        return v.astype(np.float64)

    def _scale(self, node, x: Sym, scale, offset):
        """``x * scale + offset`` with constants broadcast in ONNX's axes."""
        shape = x.onnx_shape

        def held(v):
            v = np.asarray(v, np.float64)
            if v.ndim == 0 or v.size == 1:
                return float(v.reshape(-1)[0])
            if v.ndim > len(shape):
                raise self._fail(node, f"a constant of shape {v.shape} broadcasts over the batch")
            v = v.reshape((1,) * (len(shape) - v.ndim) + v.shape)
            if v.shape[0] != 1:
                raise self._fail(node, f"a constant of shape {v.shape} varies along the batch")
            if any(c != 1 and d is not None and c != d for c, d in zip(v.shape[1:], shape[1:])):
                raise self._invalid(node, f"a constant of shape {v.shape} does not broadcast "
                                          f"to the input's shape {shape}")
            if x.layout == "nchw":
                v = v.transpose(np.argsort(_TO_ONNX[v.ndim]))
            return np.ascontiguousarray(v[0])

        if x.flat_chw is not None:
            x = self.as_plain(node, x)
        layer = L.Rescaling(held(scale), held(offset), name=self.layer_name(node))
        return self.apply(layer, x, x.layout)

    def _binary_const(self, node, kind):
        if len(node.input) < 2:
            raise self._invalid(node, f"{kind} takes two inputs, got {len(node.input)}")
        v0, v1 = (self.values.get(n) if n else None for n in node.input[:2])
        if v0 is None or v1 is None:
            raise self._invalid(node, "an input is missing or never produced")
        if isinstance(v0, BatchValue) or isinstance(v1, BatchValue):
            raise self._fail(node, f"{kind} of a value that depends on the batch size")
        if isinstance(v0, Sym) and isinstance(v1, Sym):
            return self._tensor_product(node, kind)
        if kind == "Mul":
            gelu = self._gelu_or_none(node)
            if gelu is not None:
                return gelu
        with np.errstate(all="ignore"):
            if isinstance(v0, Sym) and not isinstance(v1, Sym):
                c = self._numbers(node, v1)
                if kind == "Mul":
                    return self._scale(node, v0, c, 0.0)
                if kind == "Sub":
                    return self._scale(node, v0, 1.0, -c)
                return self._scale(node, v0, 1.0 / c, 0.0)
            if isinstance(v1, Sym) and not isinstance(v0, Sym):
                c = self._numbers(node, v0)
                if kind == "Mul":
                    return self._scale(node, v1, c, 0.0)
                if kind == "Sub":
                    return self._scale(node, v1, -1.0, c)
        raise self._invalid(node, f"{kind} of two constants left unfolded")

    def op_Mul(self, node, a):  # noqa: N802
        return self._binary_const(node, "Mul")

    def op_Sub(self, node, a):  # noqa: N802
        return self._binary_const(node, "Sub")

    def op_Div(self, node, a):  # noqa: N802
        return self._binary_const(node, "Div")

    def op_Concat(self, node, a):  # noqa: N802
        xs = [self.values.get(n) if n else None for n in node.input]
        if not xs or any(x is None for x in xs):
            raise self._invalid(node, "an input is missing or never produced")
        if not all(isinstance(x, Sym) for x in xs):
            raise self._fail(node, "concatenating constants with tensors")
        xs = [self.as_plain(node, x) if x.flat_chw is not None else x for x in xs]
        xs = self._harmonise(node, xs)
        rank = len(xs[0].t.shape)
        if "axis" not in a:
            raise self._invalid(node, "missing attribute 'axis'")
        axis = self._axis(node, self._int(node, a, "axis"), rank)
        if axis == 0:
            raise self._fail(node, "concatenation along the batch axis")
        if len(xs) == 1:
            return xs[0]
        if xs[0].layout == "nchw":
            axis = {4: {1: 3, 2: 1, 3: 2}, 3: {1: 2, 2: 1}}[rank][axis]
        layer = L.Concatenate(axis=axis, name=self.layer_name(node))
        return self.apply(layer, xs, xs[0].layout)

    def op_BatchNormalization(self, node, a):  # noqa: N802
        if self._int(node, a, "training_mode", 0, lo=0, hi=1):
            raise self._fail(node, "training_mode=1 (batch statistics at inference)")
        x = self.sym(node, 0)
        if x.flat_chw is not None:
            x = self.as_plain(node, x)
        params = [np.asarray(self.const(node, i, what), np.float32).reshape(-1)
                  for i, what in enumerate(("scale", "B", "mean", "var"), start=1)]
        rank = len(x.t.shape)
        if rank < 2:
            raise self._invalid(node, f"an input of shape {x.onnx_shape} has no channel axis")
        axis = -1 if x.layout == "nchw" or rank == 2 else 1
        channels = x.t.shape[axis]
        if any(p.size != channels for p in params):
            raise self._invalid(node, f"scale, B, mean and var of sizes "
                                      f"{[p.size for p in params]} for {channels} channels")
        layer = L.BatchNormalization(axis=axis, epsilon=self._float(node, a, "epsilon", 1e-5),
                                     momentum=self._float(node, a, "momentum", 0.9),
                                     name=self.layer_name(node))
        out = self.apply(layer, x, x.layout)
        self.pending_weights.append((layer, params))
        return out

    def op_LRN(self, node, a):  # noqa: N802
        if "size" not in a:
            raise self._invalid(node, "missing attribute 'size'")
        size = self._int(node, a, "size", lo=1)
        if size % 2 == 0:
            raise self._fail(node, f"size={size}: an even window is asymmetric; fastconv's LRN "
                                   f"takes odd sizes")
        x = self.as_nchw(node, self.sym(node, 0))
        channels = x.t.shape[-1]
        radius = (size - 1) // 2
        if channels is not None:
            # a window reaching past every channel sums them all: the same as one that just
            # reaches them (alpha is divided by the ONNX size either way)
            radius = min(radius, channels - 1)
        layer = L.LocalResponseNormalization(
            radius, self._float(node, a, "bias", 1.0), self._float(node, a, "alpha", 1e-4) / size,
            self._float(node, a, "beta", 0.75), name=self.layer_name(node))
        return self.apply(layer, x, "nchw")

    def op_Pad(self, node, a):  # noqa: N802
        mode = self._str(node, a, "mode", "constant")
        if mode != "constant":
            raise self._fail(node, f"mode={_short(mode, 40)!r}: only constant (zero) padding is "
                                   f"supported")
        x = self.sym(node, 0)
        rank = len(x.onnx_shape)
        if self.opset < 11:
            if "pads" not in a:
                raise self._invalid(node, "missing attribute 'pads'")
            pads = self._ints(node, a, "pads")
            value = self._float(node, a, "value", 0.0)
            axes = list(range(rank))
        else:
            pads = self._int_list(node, self.const(node, 1, "pads"), "pads")
            cv = self.const(node, 2, "constant_value", optional=True)
            value = 0.0 if cv is None or np.asarray(cv).size == 0 else float(
                self._scalar(node, cv, "constant_value"))
            ax = self.const(node, 3, "axes", optional=True)
            axes = (list(range(rank)) if ax is None
                    else [self._axis(node, v, rank) for v in self._int_list(node, ax, "axes")])
        k = len(axes)
        if len(pads) != 2 * k or len(set(axes)) != k:
            raise self._invalid(node, f"pads {_short(pads, 80)} for axes {_short(axes, 40)}: "
                                      f"expected two pads (begin, end) for each of distinct axes")
        before = dict(zip(axes, pads[:k]))
        after = dict(zip(axes, pads[k:]))
        if rank not in (3, 4) or any(before.get(i, 0) or after.get(i, 0) for i in (0, 1)):
            raise self._fail(node, f"pads {_short(pads, 80)}: only padding of H and W (axes 2, "
                                   f"3 of NCHW) or of L (axis 2 of NCL) is supported")
        if min(pads) < 0:
            raise self._fail(node, f"negative pads {_short(pads, 80)} (cropping)")
        x = self.as_nchw(node, x, ranks=(3,))
        if rank == 3:
            if value != 0.0:
                raise self._fail(node, f"constant_value={value}: 1D padding takes zeros only")
            self._check_pads(node, (0, 0, before.get(2, 0), after.get(2, 0)),
                             (1, x.onnx_shape[2]), channels=x.t.shape[-1])
            x2, _ = self._as_2d(node, x, {})
            layer = L.ZeroPadding2D(((0, 0), (before.get(2, 0), after.get(2, 0))),
                                    name=self.layer_name(node))
            return self._as_1d(node, self.apply(layer, x2, "nchw"))
        padding = ((before.get(2, 0), after.get(2, 0)), (before.get(3, 0), after.get(3, 0)))
        self._check_pads(node, (*padding[0], *padding[1]), x.onnx_shape[2:],
                         channels=x.t.shape[-1])
        y = self.apply(L.ZeroPadding2D(padding, name=self.layer_name(node)), x, "nchw")
        if value == 0.0:
            return y
        # another value: added where the zeros are (x * 1 + 0 inside, exactly x)
        _, h, w, _ = y.t.shape
        if h is None or w is None:
            raise self._fail(node, f"constant_value={value} on an image of unknown size")
        self._charge(h * w * 8, f"{self._out(node)} (the padding value)")
        (t, b), (left, r) = padding
        border = np.full((h, w, 1), value)
        border[t:h - b, left:w - r] = 0.0
        layer = L.Rescaling(1.0, border, name=self.layer_name(node, "_value"))
        return self.apply(layer, y, "nchw")


#: ONNX element types of a model's inputs and outputs that fastconv takes: float32, float64 and
#: undeclared (0)
_FLOAT_ELEMENTS = (0, 1, 11)


def _element_name(kind: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(kind) if kind in TensorProto.DataType.values() else str(kind)


class _FakeNode:
    def __init__(self, name):
        self.output = [name]
        self.name = name
        self.op_type = "output"


_FOLDABLE = ("Add", "Sub", "Mul", "Div", "Reshape", "Flatten", "Transpose", "Identity", "Concat",
             "Cast", "Unsqueeze", "Squeeze", "Shape", "Slice", "Neg")

_MANY = 1 << 31
#: (fewest, most) inputs of each operator read (trailing optional inputs may be "").
_ARITY = {
    "Conv": (2, 3), "Relu": (1, 1), "LeakyRelu": (1, 1), "Sigmoid": (1, 1), "Tanh": (1, 1),
    "Clip": (1, 3), "MaxPool": (1, 1), "AveragePool": (1, 1), "GlobalAveragePool": (1, 1),
    "GlobalMaxPool": (1, 1), "ReduceMean": (1, 2), "Gemm": (2, 3), "MatMul": (2, 2),
    "Flatten": (1, 1), "Reshape": (2, 2), "Add": (2, 2), "Sum": (1, _MANY), "Mul": (2, 2),
    "Sub": (2, 2), "Div": (2, 2), "Concat": (1, _MANY), "BatchNormalization": (5, 5),
    "LRN": (1, 1), "Softmax": (1, 1), "Dropout": (1, 3), "Identity": (1, 1),
    "Constant": (0, 0), "ConstantOfShape": (1, 1), "Pad": (1, 4), "Transpose": (1, 1),
    "Unsqueeze": (1, 2), "Squeeze": (1, 2), "Shape": (1, 1), "Cast": (1, 1), "Gather": (2, 2),
    "Slice": (1, 5), "Split": (1, 2), "If": (1, 1), "HardSigmoid": (1, 1), "HardSwish": (1, 1),
    "Gelu": (1, 1), "Erf": (1, 1), "Pow": (2, 2), "Sqrt": (1, 1), "Exp": (1, 1), "Log": (1, 1),
    "Abs": (1, 1), "Neg": (1, 1), "Reciprocal": (1, 1), "LayerNormalization": (2, 3),
    "Equal": (2, 2), "Less": (2, 2), "Greater": (2, 2), "Not": (1, 1), "Where": (3, 3),
    "Range": (3, 3), "Elu": (1, 1), "Selu": (1, 1), "Softplus": (1, 1), "Max": (1, _MANY),
    "Min": (1, _MANY),
}


def _uniform(v) -> bool:
    """A broadcast constant or a single value: computed once, then broadcast."""
    return v.size == 1 or _lazy(v)


def _fold(op, ins, shape, dtype, extra):
    """``op`` on constant NumPy inputs, giving ``shape`` and ``dtype`` (``_fold_shape``'s
    sizing, already charged; ``extra`` from it too). Broadcast constants stay broadcast
    through element-wise ops."""
    x = np.asarray(ins[0])
    if op in ("Add", "Sub", "Mul", "Div"):
        y = np.asarray(ins[1])
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        if math.prod(shape) > 1 and _uniform(x) and _uniform(y):
            one = np.asarray(f(x.reshape(-1)[0], y.reshape(-1)[0])).astype(dtype)
            return np.broadcast_to(one, shape)
        return np.asarray(f(x, y)).astype(dtype, copy=False)
    if op == "Identity":
        return x
    if op in ("Equal", "Less", "Greater"):
        f = {"Equal": np.equal, "Less": np.less, "Greater": np.greater}[op]
        return np.asarray(f(x, np.asarray(ins[1])))
    if op == "Where":
        return np.asarray(np.where(x.astype(bool), ins[1], ins[2])).astype(dtype, copy=False)
    if op == "Not":
        return np.logical_not(x)
    if op == "Neg":
        return np.negative(x)
    if op == "Range":
        start, _, delta = (np.asarray(v).reshape(-1)[0] for v in ins)
        return (start + delta * np.arange(shape[0])).astype(dtype)
    if op == "Cast":
        if _lazy(x):
            return np.broadcast_to(x.reshape(-1)[:1].astype(dtype).reshape(()), shape)
        return x.astype(dtype)
    if op == "Shape":
        start, end = extra
        return np.asarray(x.shape[start:end], dtype=np.int64)
    if op in ("Unsqueeze", "Squeeze", "Reshape", "Flatten"):
        return np.reshape(x, shape)
    if op == "Gather":
        if _lazy(x):
            return np.broadcast_to(x.reshape(-1)[0], shape)
        return np.take(x, np.asarray(ins[1]), axis=extra)
    if op == "Transpose":
        return np.transpose(x, extra)
    if op == "Slice":
        return x[extra]
    if op == "Concat":
        return np.concatenate([np.asarray(v) for v in ins], axis=extra)
    raise AssertionError(op)


def require_onnx():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError("fastconv.onnx needs the onnx package: pip install "
                          "'fastconv[onnx]' (or pip install onnx)") from None
    return onnx


def read_model(path):
    """``(ModelProto, size)`` of the ONNX file ``path`` (external data not read yet: see
    ``fastconv.io.onnx_file``); InvalidModelFileError naming the file otherwise."""
    require_onnx()
    path = os.fspath(path)
    try:
        model, size = onnx_file.read_onnx(path)
    except FileNotFoundError:
        raise InvalidModelFileError(f"{path}: cannot read the ONNX file: no such "
                                    f"file") from None
    except InvalidModelFileError as exc:
        text = str(exc)
        raise InvalidModelFileError(text if path in text else f"{path}: {text}") from None
    if not model.graph.node or not model.graph.output:
        raise InvalidModelFileError(f"{path}: not an ONNX model file (no graph)")
    return model, size


def _import(model, where: str, size: int, model_path, constants, expand_groups):
    importer = None
    try:
        external = onnx_file.ExternalData(model, model_path, where)
        budget = max(MIN_CONSTANT_BUDGET, 16 * (size + external.file_bytes))
        importer = _Importer(model, where, budget, constants, expand_groups)
        importer.check_operators()
        external.read(lambda nbytes, desc: importer._charge(nbytes, desc, described=True))
        importer.load_initializers()
        with np.errstate(all="ignore"):
            return importer.run()
    except (InvalidModelFileError, UnsupportedOnnxError):
        raise
    except _LayerArgumentError as exc:  # an input's or an output's layer
        raise InvalidModelFileError(f"{where}: {_short(exc, 300)}") from None
    except _DAMAGE as exc:
        node = importer.current if importer is not None else None
        at = f"{_Importer._who(node)}: " if node is not None else ""
        raise InvalidModelFileError(f"{where}: {at}the file is damaged or inconsistent "
                                    f"({type(exc).__name__}: {_short(exc, 300)})") from exc


def import_model(model, where: str = "ONNX model", size: int | None = None,
                 constants: dict | None = None, expand_groups: bool = False):
    """``(fastconv model, input layouts, output layouts)`` from a ModelProto; a layout is
    ``"nchw"`` where fastconv holds the tensor as NHWC. ``constants`` binds graph inputs to
    values (weights given as inputs). A grouped Conv becomes ``Conv2D(groups=group)`` (grouped and
    depthwise kernels of its own); ``expand_groups`` runs it instead as one convolution
    with a block-diagonal kernel (``group`` times the work, exact; fine-tuning may then fill the
    zero blocks). A ModelProto has no folder: a tensor keeping its data
    in an external file is refused (``load`` reads it from the model file's folder)."""
    if size is None:
        size = model.ByteSize()
    return _import(model, where, size, None, constants, expand_groups)


def load(path, expand_groups: bool = False):
    """A trainable fastconv functional model from the ONNX file ``path``.

    ONNX's NCHW images become fastconv's NHWC (a 4D input ``(N, C, H, W)`` becomes
    ``Input((H, W, C))``, a 4D output comes out NHWC); kernels are converted to HWIO.
    Tensors kept in external data files (``model.onnx.data``, as PyTorch writes them) are read
    from the model file's folder only. Raises UnsupportedOnnxError listing every unsupported
    operator of the file, and fastconv.saving.InvalidModelFileError naming the file when it is
    not a readable ONNX model, or is damaged or inconsistent. ``expand_groups``: see
    ``import_model``.
    """
    model, size = read_model(path)
    path = os.fspath(path)
    out, _, _ = _import(model, path, size, path, None, expand_groups)
    return out
