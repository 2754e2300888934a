"""A small ``onnx.backend.base.Backend`` over fastconv, so that ONNX's own backend tests (the node
tests of ``onnx.backend.test``) run against the importer.

``prepare`` keeps the model; ``run`` imports it with the given inputs that are read as weights
(any input a layer needs as a constant: a Conv's W, a Gemm's B, a Reshape's shape ...) bound as
constants, transposes the image inputs to NHWC, predicts with fastconv and transposes the image
outputs back to NCHW.
"""

from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from ._import import import_model

#: channels-first (ONNX) -> channels-last (fastconv) axes, and back, by rank
_IN = {3: (0, 2, 1), 4: (0, 2, 3, 1)}
_OUT = {3: (0, 2, 1), 4: (0, 3, 1, 2)}

#: Inputs read as data by each operator (indices); every other input is a weight.
_DATA_SLOTS = {"Add": None, "Sum": None, "Concat": None, "Mul": None, "Sub": None, "Div": None,
               "Max": None, "Min": None}


def _weight_inputs(model) -> set:
    """Graph inputs that some node reads in a weight slot (not as data)."""
    graph_inputs = {i.name for i in model.graph.input}
    weights = set()
    for node in model.graph.node:
        slots = _DATA_SLOTS.get(node.op_type, (0,))
        for k, name in enumerate(node.input):
            if name in graph_inputs and slots is not None and k not in slots:
                weights.add(name)
    return weights


#: Operators that act value by value: a graph of these alone may run on batchless inputs.
_ELEMENTWISE = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Dropout", "Identity", "Add",
                "Sum", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Sqrt", "Pow", "Erf",
                "HardSigmoid", "HardSwish", "Gelu", "Elu", "Selu", "Softplus", "Max", "Min",
                "Mul", "Sub", "Div"}


def _with_batch_axis(model):
    """A copy of ``model`` whose inputs and outputs have a leading axis of 1."""
    from onnx import ModelProto

    out = ModelProto()
    out.CopyFrom(model)
    for vi in list(out.graph.input) + list(out.graph.output):
        dims = vi.type.tensor_type.shape.dim
        old = [d.dim_value for d in dims]
        del dims[:]
        for v in [1, *old]:
            dims.add().dim_value = v
    return out


class FastconvRep(BackendRep):
    def __init__(self, model):
        self.model = model

    def run(self, inputs, **kwargs):
        """fastconv models take batches: a batchless graph of value-by-value operators runs on
        a batch of one (the same values); any other graph runs as it is."""
        arrays = [np.asarray(a) for a in (inputs if isinstance(inputs, (list, tuple))
                                          else [inputs])]
        weights = _weight_inputs(self.model)
        names = [i.name for i in self.model.graph.input
                 if i.name not in {t.name for t in self.model.graph.initializer}]
        data = [a for n, a in zip(names, arrays) if n not in weights]
        if (data and all(a.ndim == 1 for a in data)
                and all(n.op_type in _ELEMENTWISE for n in self.model.graph.node)
                and len({a.shape for a in data}) == 1):
            rep = FastconvRep(_with_batch_axis(self.model))
            batched = [a[None] if n not in weights else a for n, a in zip(names, arrays)]
            return tuple(o[0] for o in rep._run(batched))
        return self._run(arrays)

    def _run(self, inputs):
        names = [i.name for i in self.model.graph.input
                 if i.name not in {t.name for t in self.model.graph.initializer}]
        if isinstance(inputs, dict):
            inputs = [inputs[n] for n in names]
        inputs = [np.asarray(a) for a in (inputs if isinstance(inputs, (list, tuple))
                                           else [inputs])]
        weights = _weight_inputs(self.model)
        constants = {n: a for n, a in zip(names, inputs) if n in weights}
        data = [a for n, a in zip(names, inputs) if n not in weights]
        net, in_layouts, out_layouts = import_model(self.model, constants=constants)
        feed = [np.ascontiguousarray(a.transpose(_IN[a.ndim]) if lay == "nchw" else a,
                                     dtype=np.float32)
                for a, lay in zip(data, in_layouts)]
        out = net.predict(feed if len(feed) > 1 else feed[0], verbose=0,
                          batch_size=max(len(feed[0]), 1))
        outs = out if isinstance(out, list) else [out]
        return tuple(np.ascontiguousarray(o.transpose(_OUT[o.ndim])) if lay == "nchw" else o
                     for o, lay in zip(outs, out_layouts))


class FastconvBackend(Backend):
    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return FastconvRep(model)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


prepare = FastconvBackend.prepare
run_model = FastconvBackend.run_model
supports_device = FastconvBackend.supports_device
