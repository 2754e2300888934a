"""Functional models: a graph of layer calls from ``Input`` tensors to output tensors.

``x = Input((32, 32, 3)); y = Dense(10)(Flatten()(x)); model = Model(x, y)``: each layer call on
a symbolic tensor recorded a ``Node`` (``fastconv.layers.base``); ``Model(inputs, outputs)``
walks those nodes back from the outputs, as Keras's ``map_graph`` does, to find the layers, their
order (by depth, then by first visit) and the order to run the nodes in. The graph must be
closed: every output must be computable from the given inputs, and every input must be used.

Config (Keras 3's layout): ``{"name", "trainable", "layers": [{"class_name", "config", "name",
"inbound_nodes"}], "input_layers": [[name, node, tensor], ...], "output_layers": [...]}``, where
an inbound node is ``{"args": [tensor or list of tensors], "kwargs": {}}`` and a tensor is
``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history"}}``. Node
indices count only the nodes inside this model, so a layer shared with another model saves
cleanly. Nested models are layers of class ``Functional`` or ``Sequential``.
"""

from __future__ import annotations

from collections import defaultdict

from ..inference import graph_shapes
from ..layers.base import InputLayer, KerasTensor, Layer, layer_class, register, unique_name
from .model import Model


def _tensor_list(value, what: str, where: str) -> tuple[list[KerasTensor], bool]:
    """The tensors of ``inputs`` / ``outputs`` as a list, and whether it was one tensor."""
    if isinstance(value, dict):
        value = list(value.values())
    single = not isinstance(value, (list, tuple))
    tensors = [value] if single else list(value)
    if not tensors:
        raise ValueError(f"{where}: {what} is empty")
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise TypeError(
                f"{where}: {what} must be symbolic tensors (from Input(...) or from layers "
                f"called on them), got {type(t).__name__}"
                + (f" of shape {t.shape}" if hasattr(t, "shape") else ""))
    return tensors, single


@register
class Functional(Model):
    """A model from a graph of layer calls; ``Model(inputs=..., outputs=...)`` makes one."""

    _graph_model = True

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True):
        super().__init__(name=name or unique_name("functional"), trainable=trainable)
        where = f"Model '{self.name}'"
        self.inputs, _ = _tensor_list(inputs, "inputs", where)
        self.outputs, _ = _tensor_list(outputs, "outputs", where)
        for t in self.inputs:
            layer = t._keras_history.layer
            if not isinstance(layer, InputLayer):
                raise TypeError(f"{where}: inputs must come from Input(...), but {t!r} is an "
                                f"output of layer '{layer.name}' ({type(layer).__name__})")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"{where}: an input tensor is listed twice")
        self.multi_input = len(self.inputs) > 1
        self._map_graph(where)

    # -- the graph ---------------------------------------------------------------------------
    def _map_graph(self, where: str) -> None:
        """Layers and nodes of the graph, ordered as Keras orders them (by depth from the
        outputs, deepest first, then by first visit)."""
        input_ids = {id(t) for t in self.inputs}
        finished: set[int] = set()
        in_progress: set[int] = set()
        ordered = []  # nodes, inputs first
        first_visit: dict[int, int] = {}

        def visit(root) -> None:
            """Depth-first, inputs before the node that reads them (an explicit stack, so
            that graphs deeper than Python's recursion limit map too)."""
            stack = [(root, False)]
            while stack:
                tensor, done = stack.pop()
                layer, node_index, _ = tensor._keras_history
                node = layer._inbound_nodes[node_index]
                if done:
                    in_progress.discard(id(node))
                    finished.add(id(node))
                    ordered.append(node)
                    continue
                if id(node) in finished:
                    continue
                if node.is_input and id(tensor) not in input_ids:
                    given = ", ".join(f"'{t._keras_history.layer.name}'" for t in self.inputs)
                    raise ValueError(f"{where}: the outputs depend on input '{layer.name}', "
                                     f"which is not among the model's inputs ({given}); "
                                     f"outputs must be computed from the inputs")
                if id(node) in in_progress:
                    raise ValueError(f"{where}: layer '{layer.name}' is part of a cycle")
                first_visit.setdefault(id(layer), len(first_visit))
                in_progress.add(id(node))
                stack.append((tensor, True))
                stack.extend((t, False) for t in reversed(node.input_tensors))

        for t in self.outputs:
            visit(t)

        node_depth: dict[int, int] = {}
        layer_depth: dict[int, int] = {}
        layers_by_id = {}
        for node in reversed(ordered):
            depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
            layer_depth[id(node.layer)] = depth
            layers_by_id[id(node.layer)] = node.layer
            node_depth[id(node)] = depth
            for parent in node.parent_nodes:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
        unused = [t._keras_history.layer.name for t in self.inputs
                  if id(t._keras_history.layer) not in layer_depth]
        if unused:
            raise ValueError(f"{where}: input(s) {unused} are not used to compute any output")

        by_depth = defaultdict(list)
        for key, depth in layer_depth.items():
            by_depth[depth].append(layers_by_id[key])
        self._layers = []
        for depth in sorted(by_depth, reverse=True):
            self._layers.extend(sorted(by_depth[depth], key=lambda la: first_visit[id(la)]))
        names = [la.name for la in self._layers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f'{where}: the name "{name}" is used {names.count(name)} times '
                                 f"in the model; layer names must be unique (pass name=...)")
        order = {id(n): i for i, n in enumerate(ordered)}
        nodes = sorted(ordered, key=lambda n: (-node_depth[id(n)], order[id(n)]))
        self._nodes = nodes  # every node of the graph, input nodes included
        self._node_ids = {id(n) for n in nodes}
        self.graph_nodes = [n for n in nodes if not n.is_input]
        self._nodes_by_depth = defaultdict(list)
        for n in nodes:
            self._nodes_by_depth[node_depth[id(n)]].append(n)

    def _relevant_index(self, layer, node_index: int) -> int:
        """A node's index among the nodes of ``layer`` that belong to this model."""
        own = [i for i, n in enumerate(layer._inbound_nodes) if id(n) in self._node_ids]
        return own.index(node_index)

    # -- Model's contract --------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def dtype(self) -> str:
        return self.inputs[0].dtype

    @property
    def built(self) -> bool:
        return True

    @property
    def input_names(self) -> list[str]:
        return [t._keras_history.layer.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t._keras_history.layer.name for t in self.outputs]

    @property
    def input(self):
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def output(self):
        return self.outputs[0] if len(self.outputs) == 1 else list(self.outputs)

    def _input_shapes(self) -> list:
        return [t.shape for t in self.inputs]

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def build(self, input_shape=None) -> None:
        """Built when made: its layers were built by the calls that described the graph."""
        if input_shape is not None:
            self.check_input_shape(input_shape)

    def compute_output_shape(self, input_shape):
        shapes = list(input_shape) if self.multi_input else [input_shape]
        found = graph_shapes(self, [tuple(s) for s in shapes])
        out = [found[id(t)] for t in self.outputs]
        return out[0] if len(out) == 1 else out

    def call(self, x, training: bool = False):
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"model '{self.name}' takes {len(self.inputs)} inputs, got "
                             f"{len(xs)}")
        values = {id(t): v for t, v in zip(self.inputs, xs)}
        for node in self.graph_nodes:
            args = [values[id(t)] for t in node.input_tensors]
            out = node.layer(args if node.multi else args[0], training=training)
            if isinstance(out, (list, tuple)):
                for t, v in zip(node.outputs, out):
                    values[id(t)] = v
            else:
                values[id(node.outputs[0])] = out
        outs = [values[id(t)] for t in self.outputs]
        return outs[0] if len(outs) == 1 else outs

    # -- config ------------------------------------------------------------------------------
    def _history_entry(self, tensor) -> list:
        layer, node_index, tensor_index = tensor._keras_history
        return [layer.name, self._relevant_index(layer, node_index), tensor_index]

    def get_config(self) -> dict:
        layers = []
        for layer in self._layers:
            inbound = []
            for node in layer._inbound_nodes:
                if id(node) not in self._node_ids or node.is_input:
                    continue
                args = [{"class_name": "__keras_tensor__", "config": {
                    "shape": list(t.shape), "dtype": t.dtype,
                    "keras_history": self._history_entry(t)}} for t in node.input_tensors]
                inbound.append({"args": [args] if node.multi else args, "kwargs": {}})
            layers.append({"class_name": type(layer).__name__, "config": layer.get_config(),
                           "name": layer.name, "inbound_nodes": inbound})
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": [self._history_entry(t) for t in self.inputs],
                "output_layers": [self._history_entry(t) for t in self.outputs]}

    @classmethod
    def from_config(cls, config: dict) -> Functional:
        created: dict[str, Layer] = {}
        outputs_of: dict[tuple[str, int], list] = {}
        made: dict[str, int] = defaultdict(int)  # nodes rebuilt so far, per layer
        pending: list[tuple[Layer, list]] = []
        for entry in config["layers"]:
            layer = layer_class(entry["class_name"]).from_config(entry["config"])
            name = entry.get("name", layer.name)
            created[name] = layer
            if isinstance(layer, InputLayer):
                outputs_of[(name, 0)] = [layer.output]
            pending.append((layer, list(entry.get("inbound_nodes", []))))

        def tensor(ref):
            if isinstance(ref, dict):
                ref = ref.get("config", {}).get("keras_history")
            if not isinstance(ref, (list, tuple)) or len(ref) != 3:
                raise ValueError(f"model config '{config.get('name')}': {ref!r} is not a "
                                 f"tensor reference [layer, node, tensor]")
            name, node_index, tensor_index = ref
            outs = outputs_of.get((name, int(node_index)))
            if outs is not None and not 0 <= int(tensor_index) < len(outs):
                raise ValueError(f"model config '{config.get('name')}': layer '{name}' has no "
                                 f"output {tensor_index}")
            return None if outs is None else outs[int(tensor_index)]

        while any(nodes for _, nodes in pending):
            progress = False
            for layer, nodes in pending:
                while nodes:
                    args = nodes[0]["args"] if isinstance(nodes[0], dict) else nodes[0]
                    arg = args[0] if len(args) == 1 else list(args)
                    refs = arg if isinstance(arg, list) else [arg]
                    tensors = [tensor(r) for r in refs]
                    if any(t is None for t in tensors):
                        break
                    out = layer(tensors if isinstance(arg, list) else tensors[0])
                    outputs_of[(layer.name, made[layer.name])] = (
                        out if isinstance(out, list) else [out])
                    made[layer.name] += 1
                    nodes.pop(0)
                    progress = True
            if not progress:
                stuck = [layer.name for layer, nodes in pending if nodes]
                raise ValueError(f"model config '{config.get('name')}': the inputs of layer(s) "
                                 f"{stuck} are never produced")

        def refs(key):
            value = config[key]
            if value and not isinstance(value[0], (list, tuple)):
                value = [value]
            found = [tensor(r) for r in value]
            if any(t is None for t in found):
                raise ValueError(f"model config '{config.get('name')}': {key} {value} names "
                                 f"tensors that are not in the graph")
            return found

        return cls(refs("input_layers"), refs("output_layers"), name=config.get("name"),
                   trainable=config.get("trainable", True))

