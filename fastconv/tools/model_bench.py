"""``fastconv bench MODEL``: the user's own model, timed against the engines they know.

For an ``.onnx``, ``.keras``, ``.h5`` or ``.fcm`` file and a batch size, in one process:

* fastconv's ``predict`` path (the model's inference plan on the current backend, with the
  user's default settings), the median of ``repeat`` runs after a warm-up;
* onnxruntime on the same model (the file itself for ``.onnx``; fastconv's ONNX export of the
  model otherwise), with the same number of threads, where onnxruntime is installed;
* Keras on ``.keras`` and ``.h5`` files, where Keras is installed (it loads the file itself);
* a per-step breakdown of fastconv's plan: the layers each step computes (a convolution with
  the normalisation folded into it, or the pooling computed inside it), the convolution
  algorithm, the time and its share of the whole.

References that cannot run are listed with the reason, never silently left out. The results
print as tables and can be written as JSON (``--json``) and a bar chart (``--plot``).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
import warnings

import numpy as np

from ..io.atomic import atomic_write_bytes

#: Runs before timing: the first compiles kernels and makes the plan.
WARMUP_RUNS = 2


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _input_for(model, batch: int, rng) -> np.ndarray:
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError("fastconv bench MODEL takes single-input models")
    return rng.standard_normal((batch, *shape[1:])).astype(model.dtype)


def _algorithm(layer, input_shape, backend) -> str:
    """The forward algorithm ``auto`` picks for a convolution layer, '' for other layers."""
    geometry = getattr(layer, "_geometry", None)
    if geometry is None or getattr(layer, "groups", 1) != 1:
        return "grouped" if geometry is not None else ""
    from ..backends import algorithms

    try:
        with algorithms.only_looking():
            return algorithms.resolve(backend, geometry(input_shape), layer.dtype, "forward")
    except Exception:  # noqa: BLE001 - a layer whose geometry the plan computes otherwise
        return ""


def profile_plan(model, x: np.ndarray, backend, repeat: int) -> list[dict]:
    """Median seconds of each step of ``model``'s inference plan on ``x``."""
    from ..inference import InferencePlan
    from ..tensor import no_grad

    plan = InferencePlan(model, x.shape, backend)
    data = backend.asarray(x)
    chain = plan.run == plan.__call__
    timings = [[] for _ in plan.steps]
    for _ in range(WARMUP_RUNS + repeat):
        values = [None] * getattr(plan, "n_slots", 0)
        if not chain:
            values[0] = data
        a = data
        with no_grad():
            for k, step in enumerate(plan.steps):
                start = time.perf_counter()
                if chain:
                    a = step(a)
                    backend.synchronize()
                else:
                    fn, ins, multi, outs, release = step
                    y = fn([values[i] for i in ins] if multi else values[ins])
                    backend.synchronize()
                    if len(outs) == 1:
                        values[outs[0]] = y
                    else:
                        for o, v in zip(outs, y):
                            values[o] = v
                    for i in release:
                        values[i] = None
                timings[k].append(time.perf_counter() - start)
    rows = []
    for layers, shape, times in zip(plan.step_layers, plan.step_input_shapes, timings):
        if not layers:
            continue  # computed by the step before it
        first = layers[0]
        rows.append({"layers": [la.name for la in layers],
                     "types": [type(la).__name__ for la in layers],
                     "fused": len(layers) > 1,
                     "algorithm": _algorithm(first, shape, backend),
                     "seconds": statistics.median(times[WARMUP_RUNS:])})
    total = sum(r["seconds"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["seconds"] / total
    return rows


def _onnxruntime_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _onnx_input(session, x: np.ndarray, from_file: bool) -> np.ndarray:
    """fastconv's NHWC input as the ONNX graph takes it (NCHW for files from PyTorch; fastconv's
    own exports take NHWC)."""
    expected = session.get_inputs()[0].shape
    if x.ndim == 4 and from_file and len(expected) == 4 and expected[1] == x.shape[3] \
            and expected[3] != x.shape[3]:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _reference_onnxruntime(path: str, model, x: np.ndarray, threads: int, repeat: int):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    with contextlib.ExitStack() as stack:
        onnx_path, from_file = path, path.lower().endswith(".onnx")
        if not from_file:
            try:
                from .. import onnx as fc_onnx
            except ImportError:
                return None, "exporting the model to ONNX needs the onnx package"
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            onnx_path = os.path.join(folder, "model.onnx")
            try:
                fc_onnx.export(model, onnx_path)
            except Exception as exc:  # noqa: BLE001 - a model fastconv cannot export
                return None, f"fastconv cannot export this model to ONNX ({exc})"
        session = _onnxruntime_session(onnx_path, threads)
        name = session.get_inputs()[0].name
        feed = {name: _onnx_input(session, x, from_file)}
        for _ in range(WARMUP_RUNS):
            out = session.run(None, feed)[0]
        seconds = _median_seconds(lambda: session.run(None, feed), repeat)
        return {"name": "onnxruntime", "seconds": seconds, "output": out}, None


def _reference_keras(path: str, x: np.ndarray, repeat: int):
    if not path.lower().endswith((".keras", ".h5", ".hdf5")):
        return None, "Keras reads only .keras and .h5 files"
    try:
        import keras
    except ImportError:
        return None, "Keras is not installed"
    except Exception as exc:  # noqa: BLE001 - e.g. KERAS_BACKEND names a missing framework
        return None, f"Keras cannot be imported ({type(exc).__name__}: {exc})"
    with warnings.catch_warnings():  # the reference's own deprecation notices, not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        model = keras.saving.load_model(path, compile=False)
        for _ in range(WARMUP_RUNS):
            out = np.asarray(model.predict_on_batch(x))
        seconds = _median_seconds(lambda: model.predict_on_batch(x), repeat)
    return {"name": f"keras ({keras.backend.backend()})", "seconds": seconds, "output": out}, None


def _relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float | None:
    if ours.size != theirs.size:
        return None
    if ours.shape != theirs.shape and ours.ndim == 4:  # NHWC against NCHW
        ours = ours.transpose(0, 3, 1, 2)
    ours, theirs = ours.reshape(-1).astype(np.float64), theirs.reshape(-1).astype(np.float64)
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-30)
    return float(np.abs(ours - theirs).max(initial=0.0)) / scale


def bench_model(path: str, batch_size: int = 1, repeat: int = 7, backend_name=None,
                references=("onnxruntime", "keras")) -> dict:
    """Time the model file ``path`` at ``batch_size`` (see the module docstring)."""
    from ..backends import get_backend
    from ..predictor import load_model_file

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be an int >= 1, got {batch_size!r}")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"--repeat must be an int >= 1, got {repeat!r}")
    path = os.fspath(path)
    model = load_model_file(path)
    backend = get_backend(backend_name) if backend_name else get_backend()
    rng = np.random.default_rng(0)
    x = _input_for(model, batch_size, rng)
    predict = backend.name == model.backend.name and backend_name is None
    if predict:
        model.predict(x, batch_size=batch_size, verbose=0)
        from ..backends import background

        background.wait()  # a first prediction may compile in the background: time the result
        for _ in range(WARMUP_RUNS):
            ours = model.predict(x, batch_size=batch_size, verbose=0)
        seconds = _median_seconds(lambda: model.predict(x, batch_size=batch_size, verbose=0),
                                  repeat)
    else:
        from ..predictor import Predictor

        predictor = Predictor(model, backend=backend.name, batch_size=batch_size)
        for _ in range(WARMUP_RUNS):
            ours = predictor.predict(x)
        seconds = _median_seconds(lambda: predictor.predict(x), repeat)
    threads = backend.num_threads()
    result = {"model": path, "batch_size": batch_size, "repeat": repeat,
              "backend": backend.name, "threads": threads,
              "fastconv": {"seconds": seconds},
              "references": [], "missing": [],
              "steps": profile_plan(model, x, backend, repeat)}
    for name in references:
        if name == "onnxruntime":
            ref, why = _reference_onnxruntime(path, model, x, threads, repeat)
        elif name == "keras":
            ref, why = _reference_keras(path, x, repeat)
        else:
            raise ValueError(f"unknown reference {name!r}")
        if ref is None:
            result["missing"].append({"name": name, "why": why})
            continue
        out = ref.pop("output")
        ref["ratio"] = ref["seconds"] / seconds  # > 1: fastconv is faster
        ref["max_relative_difference"] = _relative_difference(np.asarray(ours), out)
        result["references"].append(ref)
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def format_report(result: dict) -> str:
    lines = [f"{result['model']}: batch {result['batch_size']}, {result['backend']} with "
             f"{result['threads']} threads, median of {result['repeat']} runs",
             "",
             f"  fastconv     {_ms(result['fastconv']['seconds'])}"]
    for ref in result["references"]:
        diff = ref["max_relative_difference"]
        agree = "" if diff is None else f", outputs differ by {diff:.1e} of their magnitude"
        lines.append(f"  {ref['name']:12s} {_ms(ref['seconds'])}  (fastconv: "
                     f"{ref['ratio']:.2f}x its speed{agree})")
    for miss in result["missing"]:
        lines.append(f"  {miss['name']:12s} not run: {miss['why']}")
    lines += ["", "  step  time        share  algorithm  layers (fused)"]
    for i, row in enumerate(result["steps"]):
        layers = " + ".join(f"{n} ({t})" for n, t in zip(row["layers"], row["types"]))
        lines.append(f"  {i:4d}  {_ms(row['seconds']):>10s}  {row['share'] * 100:4.1f}%  "
                     f"{row['algorithm'] or '-':9s}  {layers}")
    return "\n".join(lines)


def write_json(result: dict, path) -> None:
    atomic_write_bytes(path, (json.dumps(result, indent=1) + "\n").encode("utf-8"))


def write_plot(result: dict, path) -> None:
    """A horizontal bar chart of the steps' times (needs matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from None
    import io

    steps = result["steps"]
    labels = ["+".join(r["layers"]) for r in steps]
    times = [r["seconds"] * 1e3 for r in steps]
    fig = Figure(figsize=(8, max(2.0, 0.28 * len(steps) + 1.2)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(range(len(steps)), times, color=["#d95f02" if r["fused"] else "#1b9e77"
                                             for r in steps])
    ax.set_yticks(range(len(steps)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per batch (fused steps in orange)")
    refs = ", ".join(f"{r['name']} {_ms(r['seconds'])}" for r in result["references"])
    ax.set_title(f"{os.path.basename(result['model'])}, batch {result['batch_size']}: "
                 f"fastconv {_ms(result['fastconv']['seconds'])}" + (f"; {refs}" if refs else ""),
                 fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
