"""Inference plans: a model's forward pass for one input shape, decided once.

``predict`` runs the same layers as training, but a plan does the per-call work of the graph
path only once per input shape: argument checks, output shapes, convolution geometries and
algorithm choices. A plan also merges steps: a convolution absorbs the batch normalisation
after it (``Layer.absorbs_norm``) and, where its backend has such a pass, the pooling after that
(``Layer.pooled_inference_step``). What remains per call is one backend primitive per step on
raw arrays (no Tensors, no graph), reading each layer's current weights, so training between
two predictions needs no new plan. Layers without a specialised step run their ordinary
``call`` on Tensors.

A Sequential model's plan is a chain: each step takes the previous step's array. A functional
model's plan is a graph: each step reads its input slots (one array, or a list for merge layers)
and writes its output slots, and a slot is released after its last reader, so memory stays that
of the live activations. A nested model runs as one step with its own plan.

On backends that set ``inference_chunk_bytes`` (the CPU ones), a large batch goes through the
network a chunk of images at a time, the chunk sized so that its largest activation stays in
cache: the images are independent, and memory traffic, not arithmetic, bounds the early layers
of a CNN at large batch sizes.
"""

from __future__ import annotations

from .backends import algorithms as algos
from .backends import get_backend
from .backends.device import DeviceBackend, translate_device_error
from .backends.precision import current_inference_precision
from .tensor import Tensor, no_grad


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) and all(isinstance(s, (tuple, list)) for s in shape)


def _with_batch(shape, batch):
    return (batch, *tuple(shape)[1:])


def graph_shapes(model, input_shapes: list) -> dict:
    """Shape of every tensor of a functional model's graph (keyed by id) for these input
    shapes (batch axis included)."""
    shapes = {id(t): tuple(s) for t, s in zip(model.inputs, input_shapes)}
    batch = input_shapes[0][0] if input_shapes else None
    for node in model.graph_nodes:
        ins = [shapes[id(t)] for t in node.input_tensors]
        out = node.layer.compute_output_shape(ins if node.multi else ins[0])
        outs = out if _is_shape_list(out) else [out]
        for t, s in zip(node.outputs, outs):
            shapes[id(t)] = _with_batch(s, batch)
    return shapes


class InferencePlan:
    """Runs ``model``'s layers on backend arrays of shape ``batch_shape`` (a list of shapes for
    a model with several inputs)."""

    def __init__(self, model, batch_shape, backend=None):
        self.backend = backend if backend is not None else get_backend()
        self.steps = []
        #: per step, the layers it computes: the layer, then any it absorbed (a folded
        #: normalisation, a pooling computed inside a convolution)
        self.step_layers: list[tuple] = []
        #: per step, the input shape its first layer sees
        self.step_input_shapes: list = []
        nodes = getattr(model, "graph_nodes", None)
        self.folded = 0  # normalisations folded into the convolution before them
        self.pooled = 0  # poolings computed inside the convolution before them
        self.largest_item = 1  # elements per sample of the largest array a step makes
        if nodes is None:  # a chain (Sequential): each step feeds the next
            self.batch_shape = shape = tuple(batch_shape)
            layers = list(model.layers)
            i = 0
            while i < len(layers):
                layer = layers[i]
                after = layers[i + 1] if i + 1 < len(layers) else None
                self.step_input_shapes.append(shape)
                norm = after if after is not None and layer.absorbs_norm(after, shape) else None
                if norm is not None:
                    self.folded += 1
                    i += 1  # the normalisation keeps the shape and has no step of its own
                pool = layers[i + 1] if i + 1 < len(layers) else None
                step = None if pool is None else layer.pooled_inference_step(
                    shape, self.backend, pool, norm=norm)
                self.steps.append(step if step is not None else self._step(layer, shape, norm))
                self.step_layers.append(tuple(la for la in (layer, norm, pool if step is not None
                                                            else None) if la is not None))
                shape = (shape[0], *layer.compute_output_shape(shape)[1:])
                if step is not None:
                    self.pooled += 1
                    shape = (shape[0], *pool.compute_output_shape(shape)[1:])
                    i += 1
                self.largest_item = max(self.largest_item, _size(shape))
                i += 1
            self.output_shape = shape
            self.run = self.__call__
            return
        self._graph_plan(model, nodes, batch_shape)
        if self._is_chain():  # a functional chain runs as fast as a Sequential one
            self.steps = [fn for fn, *_ in self.steps]
            self.run = self.__call__
        else:
            self.run = self._run_graph

    def _step(self, layer, shape, norm=None):
        """``layer``'s inference step; on a device backend, its raw device errors (out of
        memory, CUDA errors) name the layer and the batch."""
        fn = (layer.inference_step(shape, self.backend) if norm is None else
              layer.inference_step(shape, self.backend, norm=norm))
        if not isinstance(self.backend, DeviceBackend):
            return fn
        backend, where = self.backend, layer._where()
        batch = shape[0][0] if _is_shape_list(shape) else shape[0]

        def guarded(a):
            try:
                return fn(a)
            except Exception as exc:
                err = translate_device_error(exc, backend, where, batch)
                if err is None:
                    raise
                raise err from exc

        return guarded

    def _is_chain(self) -> bool:
        """One input, one output, each step reading only the previous step's single output."""
        previous = 0
        for _, ins, multi, outs, _ in self.steps:
            if multi or ins != previous or len(outs) != 1:
                return False
            previous = outs[0]
        return self.n_inputs == 1 and self.output_slots == [previous]

    def _graph_plan(self, model, nodes, batch_shape) -> None:
        several = _is_shape_list(batch_shape)
        shapes_in = [tuple(s) for s in batch_shape] if several else [tuple(batch_shape)]
        self.batch_shape = shapes_in if several else shapes_in[0]
        shapes = graph_shapes(model, shapes_in)
        slot = {id(t): i for i, t in enumerate(model.inputs)}
        self.n_inputs = len(slot)
        readers: dict[int, int] = {}  # slot -> index of the last step that reads it
        consumers = _consumers(nodes)
        folds = self._norms_to_fold(model, nodes, shapes, consumers)
        absorbed = {id(norm) for norm in folds.values()}
        graph = []
        for node in nodes:
            ins = [slot[id(t)] for t in node.input_tensors]
            in_shapes = [shapes[id(t)] for t in node.input_tensors]
            self.step_input_shapes.append(in_shapes if node.multi else in_shapes[0])
            if id(node) in absorbed:  # computed by the convolution step before it
                fn = _identity
                self.step_layers.append(())
            else:
                norm = folds.get(id(node))
                fn = pooled = None
                pool = _sole_consumer(norm if norm is not None else node, consumers, model)
                if pool is not None:
                    fn = node.layer.pooled_inference_step(
                        in_shapes[0], self.backend, pool.layer,
                        norm=None if norm is None else norm.layer)
                    if fn is not None:
                        absorbed.add(id(pool))
                        pooled = pool
                        self.pooled += 1
                        self.largest_item = max(self.largest_item,
                                                _size(shapes[id(pool.outputs[0])]))
                if fn is None:
                    fn = self._step(node.layer, in_shapes if node.multi else in_shapes[0],
                                    None if norm is None else norm.layer)
                    for t in node.outputs:
                        self.largest_item = max(self.largest_item, _size(shapes[id(t)]))
                if norm is not None:
                    self.folded += 1
                self.step_layers.append(tuple(n.layer for n in (node, norm, pooled)
                                              if n is not None))
            outs = []
            for t in node.outputs:
                slot[id(t)] = len(slot)
                outs.append(slot[id(t)])
            for i in ins:
                readers[i] = len(graph)
            graph.append((fn, ins, node.multi, outs))
        self.output_slots = [slot[id(t)] for t in model.outputs]
        kept = set(self.output_slots)
        releases = [[] for _ in graph]
        for i, last in readers.items():
            if i not in kept:
                releases[last].append(i)
        self.steps = [(fn, ins if multi else ins[0], multi, outs,
                       tuple(releases[k])) for k, (fn, ins, multi, outs) in enumerate(graph)]
        self.n_slots = len(slot)
        out_shapes = [shapes[id(t)] for t in model.outputs]
        self.single_output = len(out_shapes) == 1
        self.output_shape = out_shapes[0] if self.single_output else out_shapes

    @staticmethod
    def _norms_to_fold(model, nodes, shapes, consumers) -> dict:
        """The normalisation nodes that the convolution node before them absorbs: {id(conv
        node): norm node}, where the convolution's one output feeds only that normalisation
        and is not an output of the model."""
        folds = {}
        for node in nodes:
            after = _sole_consumer(node, consumers, model)
            if after is not None and node.layer.absorbs_norm(
                    after.layer, shapes[id(node.input_tensors[0])]):
                folds[id(node)] = after
        return folds

    def __call__(self, x):
        with no_grad():
            for step in self.steps:
                x = step(x)
        return x

    def _run_graph(self, x):
        """``x``: one array, or a list with one array per input; returns one array, or a list
        with one per output."""
        values = [None] * self.n_slots
        if self.n_inputs == 1:
            values[0] = x
        else:
            values[:self.n_inputs] = x
        with no_grad():
            for fn, ins, multi, outs, release in self.steps:
                y = fn([values[i] for i in ins] if multi else values[ins])
                if len(outs) == 1:
                    values[outs[0]] = y
                else:
                    for o, v in zip(outs, y):
                        values[o] = v
                for i in release:
                    values[i] = None
        if self.single_output:
            return values[self.output_slots[0]]
        return [values[i] for i in self.output_slots]


def _consumers(nodes) -> dict:
    """{id(tensor): the nodes that read it}."""
    consumers: dict[int, list] = {}
    for node in nodes:
        for t in node.input_tensors:
            consumers.setdefault(id(t), []).append(node)
    return consumers


def _sole_consumer(node, consumers, model):
    """The one single-input node that reads ``node``'s output, where ``node`` has one input and
    one output and that output is not one of the model's; else None."""
    if node.multi or len(node.input_tensors) != 1 or len(node.outputs) != 1 or \
            any(node.outputs[0] is t for t in model.outputs):
        return None
    after = consumers.get(id(node.outputs[0]), [])
    return after[0] if len(after) == 1 and not after[0].multi else None


def chunk_size(model, item_shape, backend) -> int:
    """Images per chunk: the largest per-image array that the model's plan makes (a pooled
    convolution's output, not the convolution's) times the chunk fits the budget
    (``item_shape``: one input's shape without the batch axis, or a list of them)."""
    budget = backend.inference_chunk_bytes
    if not budget:
        return 0
    itemsize = 8 if model.dtype == "float64" else 4
    one = [(1, *s) for s in item_shape] if isinstance(item_shape, list) else (1, *item_shape)
    with algos.only_looking():  # steps are made, none is run: no autotuning use counted
        largest = InferencePlan(model, one, backend).largest_item
    return max(1, budget // (largest * itemsize))


def _size(shape) -> int:
    size = 1
    for d in shape[1:]:
        size *= d if d is not None else 1
    return size


def generic_step(layer, backend):
    """A layer's ordinary ``call`` on a Tensor (a list of Tensors for merge layers), for layers
    without a specialised step; on the backend of the layer's weights when it has any (a plan
    on a compile fallback, see fastconv.warmup, still runs such a layer with its weights)."""
    backend = next((w._backend for w in layer.weights), backend)
    if getattr(layer, "multi_input", False):
        def multi_step(arrays):
            return _data(layer.call([Tensor(a, backend=backend) for a in arrays],
                                    training=False))

        return multi_step

    def step(a):
        return layer.call(Tensor(a, backend=backend), training=False).data

    return step


def _identity(a):
    return a


def _data(out):
    return [t.data for t in out] if isinstance(out, (list, tuple)) else out.data


#: Counts changes to any model's layer structure (``Sequential.add`` and ``pop``). Plans are
#: keyed by it, so that a model that nests a changed model makes new plans too.
_structure_epoch = 0


def structure_changed() -> None:
    """Record that some model's layers changed: every model makes new plans."""
    global _structure_epoch
    _structure_epoch += 1


def structure_epoch() -> int:
    return _structure_epoch


def plan_key(model, batch_shape, backend) -> tuple:
    """What a plan depends on besides the weights' values."""
    if type(batch_shape) is list:
        batch_shape = tuple(tuple(s) for s in batch_shape)
    return (tuple(batch_shape), backend.name, algos.current_conv_algo(), backend.num_threads(),
            model.dtype, _structure_epoch, current_inference_precision())


def __getattr__(name):
    """``load`` and ``Predictor`` live in fastconv.predictor (imported lazily: no cycle)."""
    if name in ("load", "Predictor", "load_model_file"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
