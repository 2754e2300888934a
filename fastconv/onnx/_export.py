"""fastconv -> ONNX.

Layout: the exported graph takes and returns fastconv's NHWC (channels-last) tensors, and runs
NCHW inside: one Transpose after each image input, one before each image output and before a
Flatten/Reshape/Dense/Permute that reads the channels-last order. Why: onnxruntime's CPU kernels
for Conv, MaxPool/AveragePool, BatchNormalization and LRN are NCHW kernels (its layout
transformer turns them into blocked NCHWc, never NHWC). The alternative, NHWC between layers
with Transposes around every Conv/Pool, measured (bench/onnx_layout.py, batch 4, one thread;
median ms NCHW-inside vs NHWC-between): with onnxruntime's default optimisations ResNet50
64x64 59.0 vs 59.9, VGG16 204.8 vs 203.2, InceptionV3 75x75 33.3 vs 34.0 (its transpose
optimiser cancels the pairs); with optimisations off 92.7 vs 102.7, 170.2 vs 170.4, 59.0 vs
71.3. So NCHW inside is as fast or faster and does not depend on the runtime's optimiser; the
graph is an ordinary NCHW model for other tools. Each tensor remembers its layout (``"cf"``
channels first, ``"cl"`` channels last) and is converted only where a node needs the other
one, once.

Weights: HWIO kernels become OIHW, Dense kernels (in, out) stay as Gemm's B (transB=0).
Every layer of fastconv maps; ``export`` checks the result with ``onnx.checker`` (full check).
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from ..geometry import resolve_padding, same_padding
from ..io.atomic import atomic_write_bytes

_TO_CF = {3: (0, 2, 1), 4: (0, 3, 1, 2)}
#: activations that are one ONNX operator: (operator, attributes)
_UNARY_ACTIVATIONS = {
    "hard_sigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    "hard_swish": ("HardSwish", {}),
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {}),
    "softplus": ("Softplus", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}),
}
#: Elementwise layer functions -> ONNX operators ("square" and "pow" are written apart)
_ELEMENTWISE_OPS = {"sqrt": "Sqrt", "exp": "Exp", "log": "Log", "abs": "Abs", "neg": "Neg",
                    "reciprocal": "Reciprocal", "erf": "Erf"}
_TO_CL = {3: (0, 2, 1), 4: (0, 2, 3, 1)}


class _Val:
    """An ONNX tensor: its name in each layout made so far, and fastconv's (NHWC) shape."""

    def __init__(self, name: str, layout: str, shape: tuple):
        self.names = {layout: name}
        self.shape = tuple(shape)

    @property
    def rank(self) -> int:
        return len(self.shape)


class _Named:
    """A stand-in for a layer where only a node name is needed."""

    def __init__(self, name: str):
        self.name = name


class _Exporter:
    def __init__(self, opset: int):
        self.opset = opset
        self.nodes = []
        self.inits = []
        self.used = set()

    def fresh(self, base: str) -> str:
        base = base.replace("/", "_") or "t"
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def const(self, base: str, array) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs, base: str, **attrs) -> str:
        from onnx import helper

        out = self.fresh(base)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def get(self, v: _Val, layout: str) -> str:
        """``v``'s name in ``layout`` (a Transpose made once when needed)."""
        if v.rank not in (3, 4):
            return next(iter(v.names.values()))
        if layout not in v.names:
            src = next(iter(v.names.values()))
            perm = _TO_CF[v.rank] if layout == "cf" else _TO_CL[v.rank]
            v.names[layout] = self.node("Transpose", [src], f"{src}_{layout}", perm=list(perm))
        return v.names[layout]

    def any_layout(self, v: _Val) -> tuple[str, str]:
        layout = "cf" if "cf" in v.names else next(iter(v.names))
        return v.names[layout], layout

    # -- models ------------------------------------------------------------------------------
    def model(self, model, vals: list) -> list:
        from ..models import Functional, Sequential

        if isinstance(model, Sequential):
            x = vals[0]
            for layer in model.layers:
                x = self.layer(layer, [x], None)[0]
            return [x]
        if isinstance(model, Functional):
            values = {id(t): v for t, v in zip(model.inputs, vals)}
            for node in model.graph_nodes:
                args = [values[id(t)] for t in node.input_tensors]
                outs = self.layer(node.layer, args, None, multi=node.multi)
                for t, v in zip(node.outputs, outs):
                    values[id(t)] = v
            return [values[id(t)] for t in model.outputs]
        raise TypeError(f"export: cannot export model of type {type(model).__name__}")

    def layer(self, layer, xs: list, _shape, multi: bool = False) -> list:
        from ..models import Model

        if isinstance(layer, Model):
            return self.model(layer, xs)
        if isinstance(layer, L.InputLayer):
            return xs
        handler = getattr(self, f"l_{type(layer).__name__}", None)
        if handler is None:
            raise NotImplementedError(f"export: layer '{layer.name}' of type "
                                      f"{type(layer).__name__} has no ONNX form")
        in_shape = [x.shape for x in xs] if multi else xs[0].shape
        out_shape = tuple(layer.compute_output_shape(in_shape))
        name, layout = handler(layer, xs if multi else xs[0], out_shape)
        return [_Val(name, layout, out_shape)]

    # -- activations ---------------------------------------------------------------------------
    def activation(self, act: str, name: str, layout: str, rank: int, base: str) -> str:
        if act == "linear":
            return name
        if act == "relu":
            return self.node("Relu", [name], base)
        if act == "sigmoid":
            return self.node("Sigmoid", [name], base)
        if act == "tanh":
            return self.node("Tanh", [name], base)
        if act == "softmax":
            axis = 1 if layout == "cf" and rank in (3, 4) else -1
            return self.node("Softmax", [name], base, axis=axis)
        if act in _UNARY_ACTIVATIONS:
            op, attrs = _UNARY_ACTIVATIONS[act]
            return self.node(op, [name], base, **attrs)
        if act == "relu6":
            return self.node("Clip", [name, self.const(f"{base}_min", np.float32(0)),
                                      self.const(f"{base}_max", np.float32(6))], base)
        if act == "swish":
            gate = self.node("Sigmoid", [name], f"{base}_sigmoid")
            return self.node("Mul", [name, gate], base)
        if act == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)), as PyTorch writes it
            t = self.node("Div", [name, self.const(f"{base}_sqrt2", np.float32(np.sqrt(2)))],
                          f"{base}_div")
            t = self.node("Erf", [t], f"{base}_erf")
            t = self.node("Add", [t, self.const(f"{base}_one", np.float32(1))], f"{base}_add")
            t = self.node("Mul", [name, t], f"{base}_mul")
            return self.node("Mul", [t, self.const(f"{base}_half", np.float32(0.5))], base)
        raise NotImplementedError(f"export: activation {act!r}")

    def l_Activation(self, layer, x, out_shape):  # noqa: N802
        name, layout = self.any_layout(x)
        return self.activation(layer.activation, name, layout, x.rank, layer.name), layout

    def l_LeakyReLU(self, layer, x, out_shape):  # noqa: N802
        name, layout = self.any_layout(x)
        return self.node("LeakyRelu", [name], layer.name, alpha=layer.negative_slope), layout

    def l_Clip(self, layer, x, out_shape):  # noqa: N802
        name, layout = self.any_layout(x)
        low = "" if layer.min_value is None else self.const(f"{layer.name}_min", np.float32(
            layer.min_value))
        high = "" if layer.max_value is None else self.const(f"{layer.name}_max", np.float32(
            layer.max_value))
        return self.node("Clip", [name, low, high], layer.name), layout

    def l_Dropout(self, layer, x, out_shape):  # noqa: N802
        name, layout = self.any_layout(x)
        return name, layout

    # -- convolution and dense -------------------------------------------------------------------
    def _conv(self, layer, x, kernel, pads, strides, dilations, rank, w=None, bias=None,
              groups=1, activation=None, name=None):
        """A Conv node (``group`` = ``groups``) on ``x`` (channels first) with the HWIO kernel
        ``w`` (default: the layer's) turned into ONNX's OIHW by ``kernel``; the layer's bias
        and activation unless given."""
        w = layer.kernel.numpy().astype(np.float32) if w is None else w
        bias = layer.bias if bias is None else bias
        activation = layer.activation if activation is None else activation
        name = layer.name if name is None else name
        inputs = [self.get(x, "cf"), self.const(f"{name}_W", kernel(w))]
        if bias is not False and bias is not None:
            inputs.append(self.const(f"{name}_B", bias.numpy().astype(np.float32)))
        y = self.node("Conv", inputs, f"{name}_conv" if activation != "linear" else name,
                      pads=list(pads), strides=list(strides), dilations=list(dilations),
                      kernel_shape=list(w.shape[:rank]), group=int(groups))
        return self.activation(activation, y, "cf", x.rank, name), "cf"

    def _pads_2d(self, layer, x):
        _, h, w, _ = x.shape
        t, b, left, r = resolve_padding(layer.padding, layer.kernel_size, layer.strides,
                                        layer.dilation_rate, (h, w))
        return (t, left, b, r)

    def l_Conv2D(self, layer, x, out_shape):  # noqa: N802
        return self._conv(layer, x, lambda k: k.transpose(3, 2, 0, 1), self._pads_2d(layer, x),
                          layer.strides, layer.dilation_rate, 2, groups=layer.groups)

    def _depthwise(self, layer, x, bias, activation, name):
        """The depthwise part of DepthwiseConv2D / SeparableConv2D: a Conv with group = C on
        the kernel seen as (kh, kw, 1, C * depth_multiplier)."""
        channels = x.shape[-1]
        w = layer.depthwise_kernel.numpy().astype(np.float32).reshape(
            *layer.kernel_size, 1, channels * layer.depth_multiplier)
        return self._conv(layer, x, lambda k: k.transpose(3, 2, 0, 1), self._pads_2d(layer, x),
                          layer.strides, layer.dilation_rate, 2, w=w, bias=bias,
                          groups=channels, activation=activation, name=name)

    def l_DepthwiseConv2D(self, layer, x, out_shape):  # noqa: N802
        return self._depthwise(layer, x, layer.bias if layer.bias is not None else False,
                               layer.activation, layer.name)

    def l_SeparableConv2D(self, layer, x, out_shape):  # noqa: N802
        name, _ = self._depthwise(layer, x, False, "linear", f"{layer.name}_depthwise")
        mid = _Val(name, "cf", (*out_shape[:3], x.shape[-1] * layer.depth_multiplier))
        w = layer.pointwise_kernel.numpy().astype(np.float32)
        return self._conv(layer, mid, lambda k: k.transpose(3, 2, 0, 1), (0, 0, 0, 0), (1, 1),
                          (1, 1), 2, w=w, bias=layer.bias if layer.bias is not None else False)

    def l_Conv1D(self, layer, x, out_shape):  # noqa: N802
        steps = x.shape[1]
        k, d, s = layer.kernel_size[0], layer.dilation_rate[0], layer.strides[0]
        keff = (k - 1) * d + 1
        if layer.padding == "same":
            pads = same_padding(steps, keff, s)
        elif layer.padding == "causal":
            pads = (keff - 1, 0)
        else:
            pads = (0, 0)
        return self._conv(layer, x, lambda w: w.transpose(2, 1, 0), (pads[0], pads[1]), (s,),
                          (d,), 1, groups=layer.groups)

    def l_Dense(self, layer, x, out_shape):  # noqa: N802
        name = self.get(x, "cl")
        w = self.const(f"{layer.name}_W", layer.kernel.numpy().astype(np.float32))
        base = f"{layer.name}_dense" if layer.activation != "linear" else layer.name
        if x.rank == 2:
            inputs = [name, w]
            if layer.bias is not None:
                inputs.append(self.const(f"{layer.name}_B",
                                         layer.bias.numpy().astype(np.float32)))
            y = self.node("Gemm", inputs, base)
        else:
            y = self.node("MatMul", [name, w], base if layer.bias is None else f"{base}_mm")
            if layer.bias is not None:
                y = self.node("Add", [y, self.const(f"{layer.name}_B", layer.bias.numpy().astype(
                    np.float32))], base)
        return self.activation(layer.activation, y, "cl", x.rank, layer.name), "cl"

    # -- pooling ---------------------------------------------------------------------------------
    def _pool2d(self, layer, x, out_shape):
        pre, g = layer._plan((1, *x.shape[1:]))
        name = self.get(x, "cf")
        if pre is not None:
            t, b, left, r = pre
            pads = self.const(f"{layer.name}_pads", np.array([0, 0, t, left, 0, 0, b, r],
                                                             np.int64))
            name = self.node("Pad", [name, pads], f"{layer.name}_pad")
        op = "MaxPool" if isinstance(layer, L.MaxPooling2D) else "AveragePool"
        attrs = {}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0
        y = self.node(op, [name], layer.name, kernel_shape=[g.ph, g.pw], strides=[g.sh, g.sw],
                      pads=[g.pt, g.pl, g.pb, g.pr], **attrs)
        return y, "cf"

    l_MaxPooling2D = _pool2d
    l_AveragePooling2D = _pool2d

    def _pool1d(self, layer, x, out_shape):
        steps = x.shape[1]
        p, s = layer.pool_size[0], layer.strides[0]
        pads = same_padding(steps, p, s) if layer.padding == "same" else (0, 0)
        op = "MaxPool" if isinstance(layer, L.MaxPooling1D) else "AveragePool"
        attrs = {"count_include_pad": 0} if op == "AveragePool" else {}
        return self.node(op, [self.get(x, "cf")], layer.name, kernel_shape=[p], strides=[s],
                         pads=list(pads), **attrs), "cf"

    l_MaxPooling1D = _pool1d
    l_AveragePooling1D = _pool1d

    def _global(self, layer, x, out_shape):
        op = ("GlobalMaxPool" if isinstance(layer, L.GlobalMaxPooling2D)
              else "GlobalAveragePool")
        y = self.node(op, [self.get(x, "cf")], f"{layer.name}_pool" if not layer.keepdims
                      else layer.name)
        if layer.keepdims:
            return y, "cf"
        return self.node("Flatten", [y], layer.name, axis=1), "cl"

    l_GlobalAveragePooling2D = _global
    l_GlobalMaxPooling2D = _global

    # -- shapes ----------------------------------------------------------------------------------
    def l_Flatten(self, layer, x, out_shape):  # noqa: N802
        return self.node("Flatten", [self.get(x, "cl")], layer.name, axis=1), "cl"

    def l_Reshape(self, layer, x, out_shape):  # noqa: N802
        shape = self.const(f"{layer.name}_shape", np.array([0, *layer.target_shape], np.int64))
        return self.node("Reshape", [self.get(x, "cl"), shape], layer.name), "cl"

    def l_Permute(self, layer, x, out_shape):  # noqa: N802
        return self.node("Transpose", [self.get(x, "cl")], layer.name,
                         perm=[0, *layer.dims]), "cl"

    def l_ZeroPadding2D(self, layer, x, out_shape):  # noqa: N802
        (t, b), (left, r) = layer.padding
        pads = self.const(f"{layer.name}_pads", np.array([0, 0, t, left, 0, 0, b, r], np.int64))
        return self.node("Pad", [self.get(x, "cf"), pads], layer.name), "cf"

    def l_Rescaling(self, layer, x, out_shape):  # noqa: N802
        name, layout = self.any_layout(x)

        def operand(v, what):
            a = np.asarray(v, np.float32)
            if a.ndim and layout == "cf" and x.rank in (3, 4):
                a = a.reshape((1,) * (x.rank - a.ndim) + a.shape).transpose(_TO_CF[x.rank])
            return self.const(f"{layer.name}_{what}", a)

        y = self.node("Mul", [name, operand(layer.scale, "scale")], f"{layer.name}_scale")
        return self.node("Add", [y, operand(layer.offset, "offset")], layer.name), layout

    # -- normalisation ---------------------------------------------------------------------------
    def l_BatchNormalization(self, layer, x, out_shape):  # noqa: N802
        c = layer.moving_mean.shape[0]
        gamma = np.ones(c) if layer.gamma is None else layer.gamma.numpy().astype(np.float64)
        beta = np.zeros(c) if layer.beta is None else layer.beta.numpy().astype(np.float64)
        mean = layer.moving_mean.numpy().astype(np.float64)
        var = layer.moving_variance.numpy().astype(np.float64)
        axis = layer.axis % x.rank
        if axis == x.rank - 1:
            layout = "cf" if x.rank in (3, 4) else "cl"
            inputs = [self.get(x, layout)] + [
                self.const(f"{layer.name}_{k}", v.astype(np.float32))
                for k, v in (("scale", gamma), ("B", beta), ("mean", mean), ("var", var))]
            return self.node("BatchNormalization", inputs, layer.name,
                             epsilon=layer.epsilon), layout
        # another axis: the inference formula as one scale and one shift along it
        scale = gamma / np.sqrt(var + layer.epsilon)
        shift = beta - mean * scale
        shape = [1] * x.rank
        shape[axis] = c
        name = self.get(x, "cl")
        y = self.node("Mul", [name, self.const(f"{layer.name}_scale", scale.reshape(shape)[0]
                                               .astype(np.float32))], f"{layer.name}_scale")
        return self.node("Add", [y, self.const(f"{layer.name}_shift", shift.reshape(shape)[0]
                                               .astype(np.float32))], layer.name), "cl"

    def l_LocalResponseNormalization(self, layer, x, out_shape):  # noqa: N802
        size = 2 * layer.depth_radius + 1
        return self.node("LRN", [self.get(x, "cf")], layer.name, size=size,
                         alpha=layer.alpha * size, beta=layer.beta, bias=layer.bias), "cf"

    # -- merging ---------------------------------------------------------------------------------
    def l_Add(self, layer, xs, out_shape):  # noqa: N802
        layout = "cf" if all("cf" in x.names for x in xs) or (
            "cf" in xs[0].names and all(x.rank == xs[0].rank for x in xs)) else "cl"
        names = [self.get(x, layout) for x in xs]
        if len(names) == 1:
            return self.node("Identity", names, layer.name), layout
        if len(names) == 2:
            return self.node("Add", names, layer.name), layout
        return self.node("Sum", names, layer.name), layout

    def _binary(self, layer, xs, op):
        """``op`` folded over the inputs, in one layout (ONNX broadcasts as NumPy does)."""
        layout = "cf" if all("cf" in x.names for x in xs) or (
            "cf" in xs[0].names and all(x.rank == xs[0].rank for x in xs)) else "cl"
        names = [self.get(x, layout) for x in xs]
        y = names[0]
        for i, other in enumerate(names[1:], start=1):
            y = self.node(op, [y, other], layer.name if i == len(names) - 1 else
                          f"{layer.name}_{i}")
        return y, layout

    def l_Multiply(self, layer, xs, out_shape):  # noqa: N802
        return self._binary(layer, xs, "Mul")

    def l_Subtract(self, layer, xs, out_shape):  # noqa: N802
        return self._binary(layer, xs, "Sub")

    def l_Divide(self, layer, xs, out_shape):  # noqa: N802
        return self._binary(layer, xs, "Div")

    def l_Maximum(self, layer, xs, out_shape):  # noqa: N802
        return self._binary(layer, xs, "Max")

    def l_Minimum(self, layer, xs, out_shape):  # noqa: N802
        return self._binary(layer, xs, "Min")

    def l_Average(self, layer, xs, out_shape):  # noqa: N802
        total, layout = self._binary(_Named(f"{layer.name}_sum"), xs, "Add")
        scale = self.const(f"{layer.name}_n", np.float32(1 / len(xs)))
        return self.node("Mul", [total, scale], layer.name), layout

    def l_Elementwise(self, layer, x, out_shape):  # noqa: N802
        name, layout = self.any_layout(x)
        if layer.function == "square":
            return self.node("Mul", [name, name], layer.name), layout
        if layer.function == "pow":
            exponent = self.const(f"{layer.name}_exponent", np.float32(layer.exponent))
            return self.node("Pow", [name, exponent], layer.name), layout
        return self.node(_ELEMENTWISE_OPS[layer.function], [name], layer.name), layout

    def l_Slice(self, layer, x, out_shape):  # noqa: N802
        axis = layer.axis % x.rank
        stop = (1 << 62) if layer.stop is None else layer.stop
        if layer.step < 0 and layer.stop is None:
            stop = -(1 << 62)
        inputs = [self.const(f"{layer.name}_{k}", np.array([v], np.int64))
                  for k, v in (("starts", layer.start), ("ends", stop))]
        if x.rank in (3, 4) and "cf" in x.names:
            cf_axis = {4: {3: 1, 1: 2, 2: 3}, 3: {2: 1, 1: 2}}[x.rank][axis]
            axes = self.const(f"{layer.name}_axes", np.array([cf_axis], np.int64))
            steps = self.const(f"{layer.name}_steps", np.array([layer.step], np.int64))
            return self.node("Slice", [x.names["cf"], *inputs, axes, steps], layer.name), "cf"
        axes = self.const(f"{layer.name}_axes", np.array([axis], np.int64))
        steps = self.const(f"{layer.name}_steps", np.array([layer.step], np.int64))
        return self.node("Slice", [self.get(x, "cl"), *inputs, axes, steps], layer.name), "cl"

    def l_LayerNormalization(self, layer, x, out_shape):  # noqa: N802
        axes = sorted(a % x.rank for a in ((layer.axis,) if isinstance(layer.axis, int)
                                           else layer.axis))
        if layer.rms_scaling:
            raise NotImplementedError(f"export: LayerNormalization layer '{layer.name}' with "
                                      f"rms_scaling has no ONNX form in opset {self.opset}")
        if axes != list(range(axes[0], x.rank)):
            raise NotImplementedError(f"export: LayerNormalization layer '{layer.name}' over "
                                      f"axes {axes}: ONNX normalizes a trailing run of axes")
        shape = tuple(x.shape[a] for a in axes)
        gamma = (np.ones(shape, np.float32) if layer.gamma is None
                 else layer.gamma.numpy().astype(np.float32))
        beta = (np.zeros(shape, np.float32) if layer.beta is None
                else layer.beta.numpy().astype(np.float32))
        inputs = [self.get(x, "cl"), self.const(f"{layer.name}_scale", gamma),
                  self.const(f"{layer.name}_B", beta)]
        return self.node("LayerNormalization", inputs, layer.name, axis=axes[0],
                         epsilon=layer.epsilon), "cl"

    def l_Concatenate(self, layer, xs, out_shape):  # noqa: N802
        rank = xs[0].rank
        axis = layer.axis % rank
        if rank in (3, 4) and all("cf" in x.names for x in xs):
            cf_axis = {4: {3: 1, 1: 2, 2: 3}, 3: {2: 1, 1: 2}}[rank][axis]
            return self.node("Concat", [x.names["cf"] for x in xs], layer.name,
                             axis=cf_axis), "cf"
        return self.node("Concat", [self.get(x, "cl") for x in xs], layer.name, axis=axis), "cl"


def export(model, path, opset: int = 17):
    """Write ``model`` (Sequential or functional, nested models included) to ``path`` as ONNX.

    The graph takes and returns NHWC tensors, as fastconv (inputs named after the model's input
    layers, with a symbolic batch axis ``N``). Returns the ModelProto, checked by
    ``onnx.checker.check_model(full_check=True)``.
    """
    from ..models import Functional, Model, Sequential
    from ._import import require_onnx

    onnx = require_onnx()
    from onnx import TensorProto, helper

    if not isinstance(model, Model):
        raise TypeError(f"export: expected a fastconv Model, got {type(model).__name__}")
    if not isinstance(opset, int) or not 13 <= opset <= 22:
        raise ValueError(f"export: opset must be an int from 13 to 22, got {opset!r}")
    if isinstance(model, Sequential):
        if not model.built:
            raise ValueError(f"export: model '{model.name}' is not built; give it an input "
                             f"shape or call it on data first")
        shapes = [tuple(model.input_shape)]
        layer = getattr(model, "_input_layer", None)
        names = [layer.name if layer is not None else "input"]
    elif isinstance(model, Functional):
        shapes = [tuple(t.shape) for t in model.inputs]
        names = model.input_names
    else:
        raise TypeError(f"export: cannot export model of type {type(model).__name__}")
    ex = _Exporter(opset)
    vals, graph_inputs = [], []
    for name, shape in zip(names, shapes):
        if any(d is None for d in shape[1:]):
            raise ValueError(f"export: input '{name}' has an unknown size in {shape}; give the "
                             f"model a fully known input shape")
        onnx_name = ex.fresh(name)
        graph_inputs.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT,
                                                          ["N", *shape[1:]]))
        vals.append(_Val(onnx_name, "cl", (None, *shape[1:])))
    outs = ex.model(model, vals)
    out_names = (model.output_names if isinstance(model, Functional)
                 else [model.layers[-1].name])
    graph_outputs = []
    for v, name in zip(outs, out_names):
        out = ex.fresh(f"{name}_output")
        ex.nodes.append(helper.make_node("Identity", [ex.get(v, "cl")], [out], name=out))
        graph_outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                           ["N", *v.shape[1:]]))
    graph = helper.make_graph(ex.nodes, model.name, graph_inputs, graph_outputs, ex.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastconv")
    helper.set_model_props(proto, {"fastconv.input_layout": "NHWC"})
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(path, proto.SerializeToString())
    return proto
