"""The ONNX importer's element-wise operators and normalizations of modern classification
networks: HardSigmoid, HardSwish, Gelu and Erf, Pow, Sqrt and the other unary functions,
binary Mul/Sub/Div between two computed tensors (broadcasting), LayerNormalization, and the
patterns that become one activation: ``x * Sigmoid(x)`` (SiLU, swish) and PyTorch's exact
GELU, ``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)``.

A pattern is recognised at its last node: the layers its inner nodes made stay out of the
model (a functional model keeps only the layers its outputs reach), unless another node reads
an inner value, in which case the pattern is left as it is.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import _TO_ONNX, L, Sym, _short
from .symbolic import BatchValue

#: ONNX unary operators -> fastconv's Elementwise function
_UNARY = {"Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Abs": "abs", "Neg": "neg",
          "Reciprocal": "reciprocal", "Erf": "erf"}

#: Merge layer of each binary operator between two computed tensors
_MERGE = {"Mul": "Multiply", "Sub": "Subtract", "Div": "Divide"}


#: SELU's constants (ONNX's defaults, Keras's and PyTorch's values)
_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


def _close(value, want: float) -> bool:
    return abs(float(value) - want) <= 1e-6 * max(1.0, abs(want))


class MathOps:
    """Mixed into the importer (``_import._Importer``): its helpers make the layers."""

    def _unary(self, node, function: str, **kwargs):
        layer = L.Elementwise(function, name=self.layer_name(node), **kwargs)
        return self._elementwise(node, layer)

    def op_Sqrt(self, node, a):  # noqa: N802
        return self._unary(node, "sqrt")

    def op_Exp(self, node, a):  # noqa: N802
        return self._unary(node, "exp")

    def op_Log(self, node, a):  # noqa: N802
        return self._unary(node, "log")

    def op_Abs(self, node, a):  # noqa: N802
        return self._unary(node, "abs")

    def op_Neg(self, node, a):  # noqa: N802
        return self._unary(node, "neg")

    def op_Reciprocal(self, node, a):  # noqa: N802
        return self._unary(node, "reciprocal")

    def op_Erf(self, node, a):  # noqa: N802
        return self._unary(node, "erf")

    def op_Pow(self, node, a):  # noqa: N802
        given = self.const(node, 1, "the exponent (Y)")
        exponent = float(self._scalar(node, given, "the exponent (Y)"))
        if np.asarray(given).size != 1:
            raise self._fail(node, "an exponent per element; fastconv takes one exponent")
        if exponent == 1.0:
            return self.sym(node, 0)
        if exponent == 2.0:
            return self._unary(node, "square")
        if exponent == 0.5:
            return self._unary(node, "sqrt")
        return self._unary(node, "pow", exponent=exponent)

    def op_HardSigmoid(self, node, a):  # noqa: N802
        alpha = self._float(node, a, "alpha", 0.2)
        beta = self._float(node, a, "beta", 0.5)
        if _close(alpha, 1 / 6) and _close(beta, 0.5):  # PyTorch's Hardsigmoid, Keras's
            return self._elementwise(node, L.Activation("hard_sigmoid",
                                                        name=self.layer_name(node)))
        x = self.sym(node, 0)
        t = self.call(node, L.Rescaling(alpha, beta, name=self.layer_name(node, "_affine")),
                      x.t)
        t = self.call(node, L.Clip(0.0, 1.0, name=self.layer_name(node)), t)
        return Sym(t, x.layout, x.flat_chw)

    def op_HardSwish(self, node, a):  # noqa: N802
        return self._elementwise(node, L.Activation("hard_swish", name=self.layer_name(node)))

    def op_Gelu(self, node, a):  # noqa: N802
        approximate = self._str(node, a, "approximate", "none")
        if approximate != "none":
            raise self._fail(node, f"approximate={_short(approximate, 20)!r}: fastconv's GELU "
                                   f"is the exact one (approximate='none')")
        return self._elementwise(node, L.Activation("gelu", name=self.layer_name(node)))

    def op_Elu(self, node, a):  # noqa: N802
        alpha = self._float(node, a, "alpha", 1.0)
        if not _close(alpha, 1.0):
            raise self._fail(node, f"alpha={alpha}: fastconv's elu has alpha 1")
        return self._elementwise(node, L.Activation("elu", name=self.layer_name(node)))

    def op_Selu(self, node, a):  # noqa: N802
        alpha = self._float(node, a, "alpha", _SELU_ALPHA)
        gamma = self._float(node, a, "gamma", _SELU_GAMMA)
        if not (_close(alpha, _SELU_ALPHA) and _close(gamma, _SELU_GAMMA)):
            raise self._fail(node, f"alpha={alpha}, gamma={gamma}: fastconv's selu has the "
                                   f"standard constants")
        return self._elementwise(node, L.Activation("selu", name=self.layer_name(node)))

    def op_Softplus(self, node, a):  # noqa: N802
        return self._elementwise(node, L.Activation("softplus", name=self.layer_name(node)))

    def _extremum(self, node, merge: str, bound: str):
        """Max/Min of tensors (Maximum/Minimum, broadcasting) and at most one constant
        number (a Clip bound)."""
        values = [self.values.get(n) if n else None for n in node.input]
        if not values or any(v is None for v in values):
            raise self._invalid(node, "an input is missing or never produced")
        syms = [v for v in values if isinstance(v, Sym)]
        consts = [v for v in values if not isinstance(v, Sym)]
        if any(isinstance(v, BatchValue) for v in consts) or len(consts) > 1 or any(
                np.size(v) != 1 for v in consts):
            raise self._fail(node, "a bound that is not one constant number")
        xs = self._harmonise(node, syms)
        if len({len(x.t.shape) for x in xs}) > 1:
            raise self._fail(node, f"tensors of ranks {[len(x.onnx_shape) for x in xs]}")
        t = xs[0].t if len(xs) == 1 else self.call(
            node, getattr(L, merge)(name=self.layer_name(node, "_merge" if consts else "")),
            [x.t for x in xs])
        if consts:
            c = float(np.asarray(consts[0]).reshape(-1)[0])
            t = self.call(node, L.Clip(**{bound: c}, name=self.layer_name(node)), t)
        return Sym(t, xs[0].layout, xs[0].flat_chw)

    def op_Max(self, node, a):  # noqa: N802
        return self._extremum(node, "Maximum", "min_value")

    def op_Min(self, node, a):  # noqa: N802
        return self._extremum(node, "Minimum", "max_value")

    # -- patterns --------------------------------------------------------------------------
    def _made_by(self, name: str, op: str):
        """The node of type ``op`` that makes ``name``, where nothing else reads ``name``."""
        node = self.producers.get(name)
        if node is None or node.op_type != op or self.readers.get(name, 0) != 1:
            return None
        return node

    def _constant_input(self, node, value: float):
        """The index of ``node``'s other input where one of its two inputs is the constant
        ``value``, else None."""
        for i in (0, 1):
            v = self.values.get(node.input[i])
            if v is not None and not isinstance(v, (Sym, BatchValue)) and np.size(v) == 1 and (
                    _close(np.asarray(v).reshape(-1)[0], value)):
                return 1 - i
        return None

    def _swish_input(self, node):
        """``x`` where ``node`` is ``Mul(x, Sigmoid(x))`` (either order)."""
        for i in (0, 1):
            gate = self._made_by(node.input[i], "Sigmoid")
            if gate is not None and gate.input[0] == node.input[1 - i]:
                return node.input[1 - i]
        return None

    def _gelu_input(self, node):
        """``x`` where ``node`` is the last Mul of PyTorch's exact GELU:
        ``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)`` (the inner Mul's operands either
        way round)."""
        other = self._constant_input(node, 0.5)
        inner = self._made_by(node.input[other], "Mul") if other is not None else None
        if inner is None:
            return None
        for i in (0, 1):
            plus = self._made_by(inner.input[i], "Add")
            k = self._constant_input(plus, 1.0) if plus is not None else None
            erf = self._made_by(plus.input[k], "Erf") if k is not None else None
            div = self._made_by(erf.input[0], "Div") if erf is not None else None
            if div is None or div.input[0] != inner.input[1 - i]:
                continue
            scale = self.values.get(div.input[1])
            if scale is not None and not isinstance(scale, (Sym, BatchValue)) and (
                    np.size(scale) == 1 and _close(np.asarray(scale).reshape(-1)[0],
                                                   math.sqrt(2))):
                return div.input[0]
        return None

    def _activation_of(self, node, name: str, activation: str):
        x = self.values.get(name)
        if not isinstance(x, Sym):
            return None
        layer = L.Activation(activation, name=self.layer_name(node))
        return self.apply(layer, x, x.layout, x.flat_chw)

    def _tensor_product(self, node, kind: str):
        """``Mul``/``Sub``/``Div`` of two computed tensors: a pattern's activation, or the
        broadcasting merge layer."""
        if kind == "Mul":
            x = self._swish_input(node)
            if x is not None:
                return self._activation_of(node, x, "swish")
        xs = [self.sym(node, 0), self.sym(node, 1)]
        xs = self._harmonise(node, xs)
        ranks = {len(x.t.shape) for x in xs}
        if len(ranks) > 1:
            raise self._fail(node, f"{kind} between tensors of ranks "
                                   f"{[len(x.onnx_shape) for x in xs]}; fastconv broadcasts "
                                   f"between tensors of one rank")
        layer = getattr(L, _MERGE[kind])(name=self.layer_name(node))
        return self.apply(layer, xs, xs[0].layout, xs[0].flat_chw)

    def _gelu_or_none(self, node):
        x = self._gelu_input(node)
        return None if x is None else self._activation_of(node, x, "gelu")

    # -- normalization -------------------------------------------------------------------
    def op_LayerNormalization(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        if x.flat_chw is not None:
            x = self.as_plain(node, x)
        rank = len(x.t.shape)
        axis = self._axis(node, self._int(node, a, "axis", -1), rank)
        if axis == 0:
            raise self._fail(node, "normalizing over the batch axis")
        epsilon = self._float(node, a, "epsilon", 1e-5)
        onnx_axes = list(range(axis, rank))
        shape = x.onnx_shape
        if any(shape[d] is None for d in onnx_axes):
            raise self._fail(node, f"normalizing axes {onnx_axes} of shape {shape}, not all "
                                   f"known at load time")
        params = tuple(shape[d] for d in onnx_axes)
        scale = np.asarray(self.const(node, 1, "Scale"), np.float32)
        bias = self.const(node, 2, "B", optional=True)
        weights = []
        for what, v in (("Scale", scale), ("B", bias)):
            if v is None:
                continue
            v = np.asarray(v, np.float32)
            try:
                v = np.broadcast_to(v, params)
            except ValueError:
                raise self._invalid(node, f"{what} of shape {v.shape} does not fit the "
                                          f"normalized axes {params}") from None
            weights.append(v)
        if x.layout == "nchw" and axis == 1:
            # every axis but the batch: held (H, W, C) (or (L, C), or (H, W, A, B))
            held = list(range(1, rank))
            # held axis d is ONNX's axis _TO_ONNX[rank].index(d); params start at ONNX axis 1
            order = [list(_TO_ONNX[rank]).index(d) - 1 for d in range(1, rank)]
            weights = [np.ascontiguousarray(w.transpose(order)) for w in weights]
            layer_axes = held
            layout = "nchw"
        else:
            if x.layout == "nchw":
                x = self.as_plain(node, x)
            layer_axes = onnx_axes
            layout = x.layout
        layer = L.LayerNormalization(axis=layer_axes[0] if len(layer_axes) == 1 else layer_axes,
                                     epsilon=epsilon, center=bias is not None,
                                     name=self.layer_name(node))
        out = self.apply(layer, x, layout)
        self.pending_weights.append((layer, [np.ascontiguousarray(w) for w in weights]))
        return out
