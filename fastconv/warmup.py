"""Compiling in the background: the first prediction of a fresh install does not wait for Numba.

numba-cpu compiles each kernel on its first use and keeps the machine code in Numba's on-disk
cache. On an empty cache that takes seconds per kernel, so the first ``predict`` of a fresh
install would wait about ten seconds. A backend that compiles its kernels names, as its
``compile_fallback``, a backend on the same host memory that compiles nothing (numba-cpu names
numpy). When a model makes an inference plan that this machine has not compiled before:

1. a separate Python process (fastconv.backends.background) rebuilds
   the model from its configuration, makes the same plan on the compiling backend and runs it
   once on zeros, serial and parallel kernel variants both, which fills Numba's cache; then it
   records the plan as compiled (a marker file in ``fastconv``'s cache folder);
2. meanwhile the model predicts through the fallback backend's plan (same layers, same weights,
   results equal to rounding);
3. once the process is done, the next call makes the real plan, whose kernels now load from the
   cache in milliseconds, and the model uses it from then on.

The compiling runs in its own process rather than a thread: the predicting process keeps its
interpreter to itself, exits whenever it likes without waiting for (or tearing down) a compiler,
and a program that predicts once and exits still leaves a warm cache for its next run. One
compiling process runs at a time per cache folder; plans made while one runs wait for it, then
compile what is still missing in the foreground.

Training gets the same help in another shape. ``fit`` on a model whose training step this
machine has not compiled before starts a compiling process too, but does not wait for it or
train on the fallback: training compiles its kernels in their order of use (forward pass,
backward pass, update), while the compiling process dry-runs the same step to list them
(``Backend.compile_last_first``) and compiles them the last used first. Each finds in Numba's
cache what the other already compiled, so the two CPU cores share the compiling and meet in the
middle.

Nothing of this happens for plans already recorded as compiled, for models whose configuration
cannot be written out (custom layer classes), or with ``FASTCONV_BACKGROUND_COMPILE=0``: those
compile in the foreground, on first use, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging

from .backends import background, get_backend
from .inference import InferencePlan
from .saving import model_class, model_description

log = logging.getLogger(__name__)


def plan_for(model, batch_shape, backend, on_ready=None):
    """The plan for ``model`` at ``batch_shape`` on ``backend``: the real one, or, when its
    kernels were never compiled here, a :class:`WarmingPlan` (see the module docstring).
    ``on_ready(plan)`` is called with the real plan once a WarmingPlan has made it."""
    if not background.enabled(backend):
        return InferencePlan(model, batch_shape, backend)
    fallback = backend.compile_fallback
    spec = plan_spec(model, batch_shape, backend)
    if spec is None:
        return InferencePlan(model, batch_shape, backend)
    key = spec_key(spec)
    if background.done(key):
        return InferencePlan(model, batch_shape, backend)
    plan = _from_cache(model, batch_shape, backend)
    if plan is not None:
        return plan
    job = background.start(key, spec)
    if job is None:
        return InferencePlan(model, batch_shape, backend)
    try:
        interim = InferencePlan(model, batch_shape, get_backend(fallback))
    except Exception:  # noqa: BLE001 - a plan the fallback cannot make: compile here and now
        log.debug("no %s plan for %s: compiling in the foreground", fallback, model.name,
                  exc_info=True)
        return InferencePlan(model, batch_shape, backend)
    log.debug("plan of %s for %s compiles in the background (%s); %s predicts meanwhile",
              model.name, batch_shape, job.describe(), fallback)
    return WarmingPlan(model, batch_shape, backend, interim, job, on_ready)


def _from_cache(model, batch_shape, backend):
    """The real plan when every kernel it runs is compiled already (in this process or in
    Numba's on-disk cache: kernels are compiled per argument type, not per shape, so another
    model or batch size often compiled them all); None when one would compile. Checked by
    running the plan once on zeros with compiling refused."""
    import numpy as np

    try:
        plan = InferencePlan(model, batch_shape, backend)
        shapes = batch_shape if isinstance(batch_shape, list) else [batch_shape]
        inputs = [backend.asarray(np.zeros(s, dtype=model.dtype)) for s in shapes]
        x = inputs if isinstance(batch_shape, list) else inputs[0]
        with np.errstate(all="ignore"):
            return plan if backend.runs_from_cache(lambda: plan.run(x)) else None
    except Exception:  # noqa: BLE001 - whatever fails here fails again, named, in the real run
        log.debug("checking the cache for %s failed", model.name, exc_info=True)
        return None


def plan_spec(model, batch_shape, backend) -> dict | None:
    """What the compiling process needs to make the same plan, and what decides the kernels
    that plan compiles; None when the model cannot be described (custom layer classes)."""
    common = _common_spec(model, backend)
    if common is None:
        return None
    shape = [list(s) for s in batch_shape] if isinstance(batch_shape, list) else list(
        batch_shape)
    return {"kind": "plan", **common, "batch_shape": shape, "dtype": model.dtype}


def _common_spec(model, backend) -> dict | None:
    from .backends import algorithms, precision

    try:
        architecture = model_description(model)
        json.dumps(architecture)
    except Exception:  # noqa: BLE001 - whatever a layer's get_config raises
        return None
    if model_class(architecture) is None or not _built_in(model):
        return None
    return {"model": architecture, "backend": backend.name,
            "conv_algo": algorithms.current_conv_algo(), "threads": backend.num_threads(),
            "precision": precision.current_inference_precision(),
            **background.compiler_identity()}


def start_training_compile(model, xs, ys, batch_size):
    """Before ``fit`` trains ``model`` on batches of ``xs``/``ys``: start a process compiling
    its training step's kernels last used first (see the module docstring), unless they were
    compiled here before; the job, or None. Training does not wait for it."""
    backend = model.backend
    if not background.enabled(backend):
        return None
    spec = training_spec(model, xs, ys, batch_size, backend)
    if spec is None:
        return None
    key = spec_key(spec)
    if background.done(key) or background.failed(key):  # a failure is not retried every fit
        return None
    job = background.start(key, spec)
    if job is not None:
        log.debug("training step of %s compiles last-first in the background (%s)", model.name,
                  job.describe())
    return job


def training_spec(model, xs, ys, batch_size, backend) -> dict | None:
    """What the compiling process needs to dry-run the training step of ``model`` on one batch
    of ``xs``/``ys``; None for models it cannot rebuild or compile settings it cannot write."""
    from .losses import serialize as serialize_loss
    from .optimizers import serialize as serialize_optimizer

    common = _common_spec(model, backend)
    if common is None:
        return None
    try:
        settings = model.compile_config(serialize_optimizer, serialize_loss)
        json.dumps(settings)
    except Exception:  # noqa: BLE001 - custom optimizers, losses or metrics
        return None
    batch = min(batch_size, len(xs[0]))

    def arrays(values):
        return [[[batch, *a.shape[1:]], str(a.dtype)] for a in values]

    return {"kind": "train", **common, "compile": settings, "x": arrays(xs), "y": arrays(ys)}


def _built_in(model) -> bool:
    """Whether every layer (nested models' included) is one of fastconv's own classes, which
    the compiling process can rebuild from the configuration."""
    for layer in model.layers:
        if not type(layer).__module__.startswith("fastconv."):
            return False
        if hasattr(layer, "layers") and not _built_in(layer):
            return False
    return True


def spec_key(spec: dict) -> str:
    """The spec's hash, with every model and layer name replaced by its position: two models
    that differ only in their names (``conv2d`` and ``conv2d_1``) compile the same kernels."""
    names: dict[str, int] = {}

    def collect(value):
        if isinstance(value, dict):
            if isinstance(value.get("name"), str):
                names.setdefault(value["name"], len(names))
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    def canonical(value):
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items()}
        if isinstance(value, list):
            return [canonical(v) for v in value]
        if isinstance(value, str) and value in names:
            return f"#{names[value]}"
        return value

    collect(spec["model"])
    text = json.dumps(canonical(spec), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class WarmingPlan:
    """A plan that predicts with the fallback backend until the compiling process is done, then
    makes the real plan and hands over to it (``on_ready`` lets the model keep it instead)."""

    def __init__(self, model, batch_shape, backend, interim, job, on_ready=None):
        self.model, self.batch_shape, self.backend = model, batch_shape, backend
        self.interim, self.job, self.on_ready = interim, job, on_ready
        self.output_shape = interim.output_shape
        self.real = None

    def run(self, x):
        real = self.real
        if real is None:
            if not self.job.finished():
                return self.interim.run(x)
            real = self.switch()
        return real.run(x)

    __call__ = run

    def switch(self) -> InferencePlan:
        """Make the real plan now (its kernels load from the cache, or compile here when the
        background compilation failed)."""
        if not self.job.succeeded():
            log.debug("background compilation of %s failed (see %s): compiling in the "
                      "foreground", self.model.name, self.job.log_path)
        self.job.wait_exit()
        self.real = InferencePlan(self.model, self.batch_shape, self.backend)
        if self.on_ready is not None:
            self.on_ready(self.real)
        return self.real


def _rebuilt(spec: dict):
    """(backend, model) of a spec, in the compiling process."""
    import fastconv

    fastconv.set_backend(spec["backend"])
    backend = fastconv.get_backend()
    backend.set_num_threads(spec["threads"])
    model = model_class(spec["model"]).from_config(spec["model"]["config"])
    model.build()
    return backend, model


def compile_training(spec: dict) -> None:
    """The compiling process's work for ``fit``: one training step on zeros, dry-run to list
    its kernels, which are compiled the last used first (``compile_last_first``)."""
    import numpy as np

    import fastconv

    backend, model = _rebuilt(spec)
    settings = spec["compile"]
    model.compile(optimizer=settings["optimizer"], loss=settings["loss"],
                  metrics=settings["metrics"], loss_weights=settings.get("loss_weights"))
    xs = [np.zeros(shape, dtype=dtype) for shape, dtype in spec["x"]]
    ys = [np.zeros(shape, dtype=dtype) for shape, dtype in spec["y"]]
    with fastconv.use_conv_algo(spec["conv_algo"]), np.errstate(all="ignore"):
        backend.compile_last_first(
            lambda: model._train_step(xs, ys, update_when_not_finite=True))


def compile_plan(spec: dict) -> None:
    """The compiling process's work: the plan of ``spec`` made and run on zeros, once per
    variant of the backend's kernels (``compile_variants``)."""
    import numpy as np

    import fastconv

    backend, model = _rebuilt(spec)
    shape = spec["batch_shape"]
    several = bool(shape) and isinstance(shape[0], list)
    batch_shape = [tuple(s) for s in shape] if several else tuple(shape)
    with fastconv.use_conv_algo(spec["conv_algo"]), \
            fastconv.use_inference_precision(spec["precision"]):
        plan = InferencePlan(model, batch_shape, backend)
        inputs = [np.zeros(s, dtype=spec["dtype"]) for s in (
            batch_shape if several else [batch_shape])]
        backend.compile_variants(lambda: plan.run(inputs if several else inputs[0]))
