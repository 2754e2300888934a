"""The ``fastconv`` command: info, predict, convert, summary, train-mnist, autotune, bench.

Errors print one line to stderr (``fastconv: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

from .io.atomic import atomic_write
from .io.files import check_outputs, open_regular, read_npy_header

SIMD_FLAGS = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
              "avx512vnni", "avx512bf16", "avx512fp16", "amx-tile", "neon", "sve")


def cpu_description() -> tuple[str, str, list[str]]:
    """(model name, LLVM CPU name, SIMD features present)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    llvm_name, features = "?", []
    try:
        import llvmlite.binding as llvm

        llvm_name = llvm.get_host_cpu_name()
        flags = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",")
                 if f.startswith("+")}
        aliases = {"sse4.2": "sse4.2", "avx512vnni": "avx512vnni", "amx-tile": "amx-tile"}
        features = [f for f in SIMD_FLAGS if aliases.get(f, f) in flags]
    except (ImportError, RuntimeError, AttributeError):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                text = fh.read().replace("_", ".")
            present = set(text.split())
            features = [f for f in SIMD_FLAGS if f in present or f.replace(".", "_") in present]
        except OSError:
            pass
    return model, llvm_name, features


def describe_device(backend) -> str:
    """A GPU backend's device in one line: name, compute capability, memory."""
    d = backend.describe_device()
    parts = [str(d["name"])]
    if d.get("compute_capability"):
        major, minor = d["compute_capability"]
        parts.append(f"compute capability {major}.{minor}")
    if d.get("memory_bytes"):
        parts.append(f"{d['memory_bytes'] / 2**30:.1f} GiB")
    return ", ".join(parts)


def _bfloat16_support() -> str:
    import fastconv

    if fastconv.available_backends()["numba-cpu"] is not None:
        return "no (numba-cpu unavailable)"
    from .backends.numba_cpu import bfloat16

    return "yes (AVX512-BF16)" if bfloat16.supported() else "no (no AVX512-BF16)"


def cmd_info(args) -> int:
    import numpy as np

    import fastconv
    from fastconv import config
    from fastconv.backends import DEVICE_BACKENDS, algorithms

    print(f"fastconv {fastconv.__version__} (Python {platform.python_version()}, NumPy "
          f"{np.__version__}", end="")
    try:
        import numba

        print(f", Numba {numba.__version__})")
    except ImportError:
        print(", Numba not installed)")
    print(f"current backend: {fastconv.current_backend_name()} (FASTCONV_BACKEND="
          f"{os.environ.get('FASTCONV_BACKEND', '') or 'unset'})")
    print("backends:")
    for name, reason in fastconv.available_backends().items():
        print(f"  {name:11s} {'available' if reason is None else 'unavailable: ' + reason}")
        if reason is None and name in DEVICE_BACKENDS:
            print(f"  {'':11s} device: {describe_device(fastconv.get_backend(name))}")
    print(f"convolution algorithm: {fastconv.current_conv_algo()} (choices: "
          f"{', '.join(algorithms.CHOICES)})")
    how = ("heuristic, then measured on a shape's third use" if config.env_autotune()
           else "heuristic")
    print(f"auto: {how} (FASTCONV_AUTOTUNE), cache {config.cache_dir() / 'autotune.json'}")
    for name, spec in algorithms.ALGORITHMS.items():
        print(f"  {name:10s} {spec.scope}")
    print(f"inference precision: {fastconv.current_inference_precision()} "
          f"(FASTCONV_INFERENCE_PRECISION; bfloat16 on this CPU: {_bfloat16_support()})")
    backend = fastconv.get_backend()
    print(f"threads: {backend.num_threads()}")
    gemm = backend.gemm_description()
    if gemm:
        print(f"GEMM: {gemm}")
    model, llvm_name, features = cpu_description()
    print(f"CPU: {model} ({os.cpu_count()} logical cores, LLVM target {llvm_name})")
    print(f"SIMD: {' '.join(features) if features else 'unknown'}")
    if args.explain:
        return explain(args.explain, args.batch_size)
    return 0


def explain(path: str, batch_size: int) -> int:
    """Run a saved model (forward and backward, as many times as autotuning waits for) and show
    every algorithm choice."""
    import logging

    import numpy as np

    from fastconv.backends import algorithms
    from fastconv.predictor import load_model_file
    from fastconv.tensor import Tensor, enable_grad

    logging.getLogger("fastconv.algorithms").setLevel(logging.WARNING)
    model = load_model_file(path)
    shape = (batch_size, *model.input_shape[1:])
    x = Tensor(np.random.default_rng(0).random(shape, dtype=np.float32))
    from fastconv import functional as F
    from fastconv.backends.autotune import TUNE_AFTER_CALLS

    for _ in range(TUNE_AFTER_CALLS):  # as often as training takes to tune a shape
        with enable_grad():
            y = model(x, training=True)
            F.sum(y).backward()
    print(f"\nconvolution algorithms for {path} at batch {batch_size}:")
    for row in algorithms.choices():
        g = row["geometry"]
        timing = ""
        if row["seconds"]:
            listed = ", ".join(f"{a} {t * 1e3:.3f} ms" for a, t in row["seconds"].items())
            timing = f"  [{listed}]"
        print(f"  {row['pass']:15s} {g.h}x{g.w}x{g.c} -> {g.oh}x{g.ow}x{g.o} k{g.kh}x{g.kw} "
              f"s{g.sh} {row['dtype']}: {row['algorithm']} ({row['how']}){timing}")
    return 0


def lesson_model():
    """The lesson's network (../shared/lesson/lesson_keras.py), from fastconv.applications."""
    from fastconv.applications import lesson_model as build

    return build()


def cmd_train_mnist(args) -> int:
    import fastconv
    from fastconv.datasets import mnist
    from fastconv.utils import set_random_seed, to_categorical

    if args.backend:
        fastconv.set_backend(args.backend)
    if args.algo:
        fastconv.set_conv_algo(args.algo)
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data!r}: no such folder (it should hold the four "
                                f"MNIST *-ubyte.gz files)")
    if args.save:
        _check_output_path(args.save, "--save")
    if args.seed is not None:
        set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(args.data)
    if args.train_samples:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    if args.test_samples:
        x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)
    print(f"backend {fastconv.current_backend_name()}, convolution algorithm "
          f"{fastconv.current_conv_algo()}, {fastconv.get_num_threads()} threads; "
          f"{len(x_train)} training images, {len(x_test)} test images, batch {args.batch_size}, "
          f"{args.epochs} epochs")
    model = lesson_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_data=(x_test, y_test), verbose=args.verbose)
    elapsed = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    print(f"training took {elapsed:.1f} s ({elapsed / max(args.epochs, 1):.1f} s per epoch, "
          f"including validation)")
    if args.save:
        model.save(args.save)
        print(f"saved the model to {args.save}")
    return 0


def cmd_bench_model(args) -> int:
    """Time the model file MODEL against onnxruntime (and Keras), with a per-step breakdown."""
    from .tools import model_bench

    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            _check_output_path(path, option, {"MODEL": args.model})
    result = model_bench.bench_model(args.model, batch_size=args.batch_size,
                                     repeat=args.repeat, backend_name=args.model_backend)
    print(model_bench.format_report(result))
    if args.json is not None:
        model_bench.write_json(result, args.json)
        print(f"results: {args.json}")
    if args.plot is not None:
        model_bench.write_plot(result, args.plot)
        print(f"plot: {args.plot}")
    return 0


def cmd_bench(args) -> int:
    """Run the benchmark suite (the ``fastconv.bench`` package) under pytest-benchmark, or,
    given MODEL, time that model (``cmd_bench_model``)."""
    if args.model is not None:
        suite_only = [name for name, given in (("--quick", args.quick), ("--algo", args.algo),
                                               ("--results-md", args.results_md),
                                               ("--results-dir", args.results_dir),
                                               ("-k", args.keyword), ("--backend", args.backend))
                      if given]
        if suite_only:
            raise ValueError(f"{', '.join(suite_only)} belong to the benchmark suite; with "
                             f"MODEL, use --batch-size, --repeat, --json, --plot and "
                             f"--model-backend")
        return cmd_bench_model(args)
    import importlib.util
    import subprocess
    from pathlib import Path

    spec = importlib.util.find_spec("fastconv.bench")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the benchmark suite (fastconv.bench) is not installed")
    for module, extra in (("pytest_benchmark", "pytest-benchmark"), ("matplotlib", "matplotlib")):
        if importlib.util.find_spec(module) is None:
            raise RuntimeError(f"fastconv bench needs {extra}: pip install 'fastconv[bench]'")
    suite = Path(list(spec.submodule_search_locations)[0])
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider",
               f"--benchmark-json={out / 'benchmark.json'}", "--report-dir", str(out)]
    if args.quick:
        command.append("--quick")
    for name in args.backend or ():
        command += ["--fc-backend", name]
    for name in args.algo or ():
        command += ["--fc-algo", name]
    if args.results_md:
        command += ["--results-md", str(Path(args.results_md).resolve())]
    if args.results_dir:
        command += ["--results-dir", str(Path(args.results_dir).resolve())]
    if args.keyword:
        command += ["-k", args.keyword]
    print("running:", " ".join(command), flush=True)
    start = time.time()
    code = subprocess.run(command).returncode
    report = out / "report.md"
    if report.exists() and report.stat().st_mtime >= start:
        print(f"report: {report} (plots and benchmark.json in {out})")
        if args.results_md:
            print(f"results: {args.results_md}")
        if args.results_dir:
            print(f"results: {args.results_dir} (RESULTS-<cpu>.md, index RESULTS.md)")
    else:
        print(f"no report was written (pytest exited with {code})", file=sys.stderr)
    return code


def _shape_text(g) -> str:
    try:
        return (f"n{g['n']} {g['h']}x{g['w']}x{g['c']} k{g['kh']}x{g['kw']}->{g['o']} "
                f"s{g['sh']}x{g['sw']} d{g['dh']}x{g['dw']} "
                f"p{g['pt']},{g['pb']},{g['pl']},{g['pr']}")
    except (KeyError, TypeError):
        return "?"


def cmd_autotune(args) -> int:
    """Show, clear or re-measure the autotuning cache (``<cache>/autotune.json``)."""
    import fastconv
    from fastconv.backends import algorithms, autotune

    path = autotune.cache_file()
    if args.clear:
        removed = autotune.clear_file()
        autotune.clear_memory()
        print(f"cleared {path}" if removed else f"nothing to clear: {path} does not exist")
        return 0
    if args.retune:
        names = sorted({e.get("backend") for e in autotune.read_entries().values()
                        if isinstance(e.get("backend"), str)})
        for name in names:
            if name not in fastconv.backend_names() or fastconv.available_backends()[name]:
                print(f"{name}: backend not available here, its entries are kept")
                continue
            backend = fastconv.get_backend(name)
            results = autotune.retune(
                backend, lambda g, p, b=backend: algorithms.tuning_candidates(b, g, p),
                lambda g, p, b=backend: algorithms.heuristic(b, g, p))
            entries = autotune.read_entries()
            for key, m in results:
                verdict = (f"not kept: measured under load ({m.load.describe()})" if m.busy
                           else f"{m.choice} ({m.how})")
                e = entries.get(key, {})
                print(f"{name} {e.get('pass', '?')} {_shape_text(e.get('geometry'))} "
                      f"{e.get('dtype', '?')}: {verdict}")
            if not results:
                print(f"{name}: no entries of this machine, version and thread count")
        if not names:
            print(f"nothing to re-measure: {path} holds no entries")
        return 0
    entries = autotune.read_entries()
    print(f"autotuning cache {path} (schema {autotune.SCHEMA}): {len(entries)} entries")
    print(f"machine here: {autotune.machine_signature()}")
    mine = autotune.machine_signature()
    rows = [("machine", "backend", "threads", "pass", "shape", "dtype", "choice", "time",
             "how measured")]
    for key, e in sorted(entries.items()):
        shape = _shape_text(e.get("geometry"))
        seconds = e.get("seconds")
        load = e.get("others_load")
        how = f"{e.get('how', '?')}, {e.get('rounds', '?')} rounds"
        if isinstance(load, (int, float)):
            how += f", others {load:.0%} CPU"
        rows.append(("this" if key.startswith(mine + "|") else "other",
                     f"{e.get('backend', '?')}{' ' + e['device'] if e.get('device') else ''}",
                     str(e.get("threads", "?")), str(e.get("pass", "?")), shape,
                     str(e.get("dtype", "?")), str(e.get("choice", "?")),
                     f"{seconds * 1e3:.3f} ms" if isinstance(seconds, (int, float)) else "?",
                     how))
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _check_output_path(path: str, option: str, inputs: dict | None = None) -> None:
    """Fail now, not after the work, when ``path`` cannot be written or is one of the command's
    ``inputs`` (option name -> path), which writing would destroy."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{option} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{option} {path!r}: the folder {folder!r} is not writable")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{option} {path!r} is a folder; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{option} {path!r} exists and is not a regular file (a FIFO, socket "
                         f"or device); give a file name")
    check_outputs({option: path}, inputs or {})


#: The first byte of a pickle (protocol 2 and later).
_PICKLE_PROTOCOL_MARK = b"\x80"


def _load_npy(path: str):
    """A numeric array from the .npy file ``path``, its header checked against the file's size
    before anything is allocated; pickles and object arrays are refused, never unpickled."""
    import numpy as np

    fh, size = open_regular(path, "input")
    with fh:
        head = fh.read(8)
        fh.seek(0)
        if head.startswith(b"PK"):
            raise ValueError(f"{path!r} is a ZIP archive (.npz?); fastconv predict reads .npy "
                             f"files: save each array with numpy.save, or give a folder of "
                             f".npy files")
        if not head.startswith(b"\x93NUMPY"):
            what = ("a Python pickle" if head.startswith(_PICKLE_PROTOCOL_MARK)
                    else "empty" if not head else "not an .npy file")
            raise ValueError(f"{path!r} is {what}; fastconv predict reads .npy files "
                             f"(numpy.save) of numbers, and never unpickles input")
        try:
            shape, _, dtype = read_npy_header(fh)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{path!r} is not a readable .npy file ({exc})") from None
        if dtype.hasobject:
            raise ValueError(f"{path!r} holds Python objects (an object array); fastconv "
                             f"predict reads numeric arrays only and never unpickles input")
        if dtype.kind not in "biuf":
            raise TypeError(f"{path!r} holds dtype {dtype}; expected numbers")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > size - fh.tell():
            raise ValueError(f"{path!r} declares an array of shape {shape} ({nbytes} bytes), "
                             f"more than the file's {size} bytes: it is truncated or damaged")
        fh.seek(0)
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{path!r} is not a readable .npy file ({exc})") from None


def read_inputs(path: str, item_ndim: int):
    """Samples from an .npy file or from every .npy file of a folder (in name order), each
    holding one sample or a batch; returns (array, number of files)."""
    import numpy as np

    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(".npy"))
        if not names:
            raise FileNotFoundError(f"{path!r} holds no .npy files")
        files = [os.path.join(path, n) for n in names]
    elif os.path.exists(path):
        files = [path]
    else:
        raise FileNotFoundError(f"no such file or folder: {path!r}")
    arrays = []
    for f in files:
        a = _load_npy(f)
        arrays.append(a[None] if a.ndim == item_ndim else a)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"the .npy files in {path!r} hold samples of different shapes: "
                         f"{sorted(shapes)}")
    return (arrays[0] if len(arrays) == 1 else np.concatenate(arrays)), len(files)


def _top_k(probabilities, k: int):
    """A structured array (N, k) with fields 'index' (int64) and 'probability', best first."""
    import numpy as np

    p = probabilities.reshape(len(probabilities), -1)
    k = min(k, p.shape[1])
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    out = np.empty((len(p), k), dtype=[("index", np.int64), ("probability", p.dtype)])
    out["index"] = order
    out["probability"] = np.take_along_axis(p, order, axis=1)
    return out


def _predict_on_cluster(args, x):
    from . import distributed as fcd

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("--scheduler needs Dask: pip install 'fastconv[distributed]'") from None
    if args.scheduler == "local":
        cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
    else:
        cluster = None
    try:
        with Client(cluster if cluster is not None else args.scheduler) as client:
            return fcd.predict(args.model, x, client=client, batch_size=args.batch_size,
                               backend=args.backend).compute()
    finally:
        if cluster is not None:
            cluster.close()


def cmd_predict(args) -> int:
    """Predict every sample of INPUT and write the outputs (or the top k) to --out."""
    import numpy as np

    from .predictor import Predictor

    _check_output_path(args.out, "--out", {"MODEL": args.model, "INPUT": args.input})
    predictor = Predictor.load(args.model, backend=args.backend)
    if predictor.model.multi_input or isinstance(predictor.output_shape, list):
        raise ValueError(f"{args.model!r} has several inputs or outputs; fastconv predict "
                         f"takes single-input, single-output models")
    expected = predictor.input_shape
    x, n_files = read_inputs(args.input, len(expected) - 1 if expected else 0)
    x = predictor.check_input(x)
    if args.scheduler:
        y = _predict_on_cluster(args, x)
    else:
        y = predictor.predict(x, batch_size=args.batch_size)
    out = _top_k(y, args.top_k) if args.top_k else y
    # exactly this name (np.save would add .npy), written whole or not at all
    atomic_write(args.out, lambda fh: np.save(fh, out, allow_pickle=False))
    what = f"top {out.shape[1]} (index, probability)" if args.top_k else f"outputs {y.shape}"
    print(f"{len(x)} samples from {n_files} file{'s' if n_files != 1 else ''}: {what} "
          f"written to {args.out}")
    return 0


_FORMATS = {".fcm": "fastconv", ".keras": "Keras 3", ".h5": "Keras HDF5", ".hdf5": "Keras HDF5",
            ".onnx": "ONNX"}


def cmd_convert(args) -> int:
    """Read SRC in any format fastconv reads and write it as DST's extension says."""
    from .predictor import load_model_file

    weights_only = args.dst.lower().endswith(".weights.h5")
    suffix = ".weights.h5" if weights_only else os.path.splitext(args.dst)[1].lower()
    if suffix not in _FORMATS and not weights_only:
        raise ValueError(f"{args.dst!r}: unknown format {suffix or '(no extension)'!r}; "
                         f"DST ends with one of {', '.join(_FORMATS)} or .weights.h5")
    if suffix in (".h5", ".hdf5"):
        raise ValueError(f"{args.dst!r}: fastconv reads legacy HDF5 model files but does not "
                         f"write them; write .keras (Keras 3), .fcm, .onnx, or the weights alone "
                         f"as a Keras 3 .weights.h5")
    _check_output_path(args.dst, "DST", {"SRC": args.src})
    model = load_model_file(args.src)
    if weights_only:
        model.save_weights(args.dst)
        print(f"converted {args.src} -> {args.dst} (Keras 3 weights)")
        return 0
    if suffix == ".onnx":
        try:
            from . import onnx as fc_onnx
        except ImportError as exc:
            raise RuntimeError(f"writing ONNX needs the onnx package (pip install onnx): "
                               f"{exc}") from None
        fc_onnx.export(model, args.dst)
    else:
        model.save(args.dst)
    print(f"converted {args.src} -> {args.dst} ({_FORMATS[suffix]})")
    return 0


def cmd_summary(args) -> int:
    from .predictor import load_model_file

    load_model_file(args.model).summary()
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (checked before any data is loaded)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """No abbreviated options (``--epoch`` is not ``--epochs``); a usage error is one line."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = _Parser(prog="fastconv", description="fastconv, a convolution engine: run, "
                     "convert and inspect models, train the MNIST lesson network, tune and "
                     "benchmark the kernels.")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}",
                        help="show fastconv's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")

    info = sub.add_parser("info", help="version, backends, algorithms, threads and CPU features",
                          description="Show the version, the backends, the convolution "
                          "algorithms, the thread count and the CPU's SIMD features.")
    info.add_argument("--explain", metavar="MODEL",
                      help="run a saved model once and show the convolution algorithm choices")
    info.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                      help="batch for --explain (default 32)")
    info.set_defaults(func=cmd_info)

    predict = sub.add_parser(
        "predict", help="run a model on .npy inputs and write its outputs",
        description="Run MODEL (.fcm, .keras, .h5 or .onnx) on INPUT and write the outputs "
        "(probabilities for a softmax model) to --out as an .npy file. INPUT is an .npy file or "
        "a folder of .npy files, read in name order; each holds one sample or a batch of "
        "samples, numeric (object arrays are refused). With --top-k K, --out holds a "
        "structured array of shape (N, K) with the fields 'index' (class, int64) and "
        "'probability', best first.")
    predict.add_argument("model", metavar="MODEL", help="model file: .fcm, .keras, .h5, .onnx")
    predict.add_argument("input", metavar="INPUT", help=".npy file, or a folder of them")
    predict.add_argument("--out", required=True, metavar="OUT",
                         help="output .npy file (written under exactly this name)")
    predict.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                         help="samples computed at a time (default 32)")
    predict.add_argument("--top-k", type=_positive_int, default=None, metavar="K",
                         help="write the K best classes of each sample: fields 'index' and "
                              "'probability'")
    predict.add_argument("--backend", default=None,
                         help="numba-cpu (default) or numpy; on a cluster, the workers' backend")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                         help="predict on a Dask cluster: a scheduler address "
                              "(tcp://host:8786), or 'local' for a cluster of this machine's "
                              "cores; MODEL's path must be readable by every worker")
    predict.set_defaults(func=cmd_predict)

    convert = sub.add_parser(
        "convert", help="convert a model between .fcm, .keras/.h5 and .onnx",
        description="Read SRC (.fcm, .keras, .h5 or .onnx) and write it to DST in the format "
        "its extension names (.fcm, .keras or .onnx; .weights.h5 writes the weights alone, as "
        "Keras 3 does).")
    convert.add_argument("src", metavar="SRC", help="model file to read")
    convert.add_argument("dst", metavar="DST",
                         help="file to write: .fcm, .keras, .onnx or .weights.h5")
    convert.set_defaults(func=cmd_convert)

    summary = sub.add_parser("summary", help="print a model file's layer table",
                             description="Print the layers, output shapes and parameter counts "
                             "of a model file, as Keras's model.summary() does.")
    summary.add_argument("model", metavar="MODEL", help="model file: .fcm, .keras, .h5, .onnx")
    summary.set_defaults(func=cmd_summary)

    train = sub.add_parser("train-mnist", help="train the lesson's network on MNIST",
                           description="Train the lesson's network on MNIST and report its test "
                           "accuracy.")
    train.add_argument("--epochs", type=_positive_int, default=10, metavar="N",
                       help="passes over the training images (default 10)")
    train.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                       help="images per training step (default 32)")
    train.add_argument("--backend", help="numba-cpu (default), numpy ...")
    train.add_argument("--algo", help="auto (default) or one algorithm (fastconv info lists "
                       "them)")
    train.add_argument("--save", metavar="PATH",
                       help="save the trained model there (its folder must exist)")
    train.add_argument("--data", metavar="DIR",
                       help="folder with the MNIST files, the only place looked in (default: "
                            "$FASTCONV_DATA, then the cache, then a download)")
    train.add_argument("--train-samples", type=_positive_int, default=None, metavar="N",
                       help="train on the first N images only (default: all 60000)")
    train.add_argument("--test-samples", type=_positive_int, default=None, metavar="N",
                       help="validate and test on the first N test images only (default: all "
                            "10000)")
    train.add_argument("--seed", type=int, default=None, metavar="N",
                       help="random seed for weights and shuffling (default: unseeded)")
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                       help="0 silent, 1 progress bar (default), 2 one line per epoch")
    train.set_defaults(func=cmd_train_mnist)

    tune = sub.add_parser("autotune", help="show, clear or re-measure the autotuning cache",
                          description="Show, clear or re-measure the autotuning cache.")
    action = tune.add_mutually_exclusive_group()
    action.add_argument("--show", action="store_true",
                        help="list the cached choices (the default)")
    action.add_argument("--clear", action="store_true", help="delete every cached choice")
    action.add_argument("--retune", action="store_true",
                        help="measure the cached shapes of this machine again")
    tune.set_defaults(func=cmd_autotune)

    bench = sub.add_parser(
        "bench", help="time a model file against onnxruntime, or run the benchmark suite",
        description="With MODEL (.onnx, .keras, .h5 or .fcm): time fastconv's predict on it "
                    "against onnxruntime (and Keras for Keras files) in the same process, with "
                    "a per-step breakdown. Without: run the benchmark suite and write a report.")
    bench.add_argument("model", nargs="?", metavar="MODEL",
                       help="a model file to time (.onnx, .keras, .h5, .fcm)")
    bench.add_argument("--batch-size", type=_positive_int, default=1,
                       help="MODEL: images per prediction (default 1)")
    bench.add_argument("--repeat", type=_positive_int, default=7,
                       help="MODEL: timed runs, the median is reported (default 7)")
    bench.add_argument("--json", metavar="PATH", help="MODEL: also write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="MODEL: also draw the steps' times (PNG)")
    bench.add_argument("--model-backend", metavar="NAME",
                       help="MODEL: the backend to time (default: the current one)")
    bench.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    bench.add_argument("--backend", action="append",
                       help="backend to measure (repeatable; default: every backend)")
    bench.add_argument("--algo", action="append",
                       help="algorithm to measure (repeatable; default: all for layers, auto for "
                            "models)")
    bench.add_argument("--out", default="bench-report",
                       help="output folder: report.md, PNG plots, benchmark.json")
    bench.add_argument("--results-md", metavar="PATH",
                       help="also write the report to PATH, plots in <PATH's folder>/results "
                            "(fastconv bench --results-md bench/RESULTS-gpu.md)")
    bench.add_argument("--results-dir", metavar="DIR",
                       help="keep the results per CPU type: DIR/RESULTS-<cpu>.md, plots in "
                            "DIR/results/<cpu>/, a summary in DIR/results/<cpu>.json, and the "
                            "index DIR/RESULTS.md comparing every CPU there "
                            "(fastconv bench --results-dir bench)")
    bench.add_argument("-k", dest="keyword", metavar="EXPR",
                       help="only the benchmarks matching this pytest -k expression")
    bench.set_defaults(func=cmd_bench)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"fastconv: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
