"""pytest glue of the benchmark suite: options, parametrisation, shared fixtures, the report.

Options (``pytest bench/ --help`` lists them under "fastconv benchmark suite"):

* ``--quick`` / ``--smoke``: the quick (a few minutes) or smoke (tiny shapes, CI) workloads;
* ``--fc-backend NAME`` and ``--fc-algo NAME`` (repeatable): fastconv backends and convolution
  algorithms to measure (default: every registered backend, every algorithm; model benchmarks use
  ``auto`` unless algorithms are named);
* ``--report-dir DIR``: where the report goes (default ``bench/out``);
* ``--results-md PATH``: also write the report as PATH, its plots in ``<PATH's folder>/results``;
* ``--results-dir DIR``: keep the results per CPU type (``--results-dir bench`` regenerates the
  committed results of this machine's CPU): ``DIR/RESULTS-<cpu>.md`` with its plots in
  ``DIR/results/<cpu>/``, the run's headline ratios in ``DIR/results/<cpu>.json``, and the index
  ``DIR/RESULTS.md`` with ``DIR/results/cpu_ratios.png`` regenerated from every CPU's JSON.

Reference rows (PyTorch, onnxruntime) are measured in the same run; a missing library, backend or
device skips its rows with the reason, and the report lists those reasons.

Unless ``FASTCONV_CACHE_DIR`` is set, the run uses a fresh temporary cache folder, so ``auto``
autotunes every shape in this run (during warm-up, never in a timed region) instead of reusing
choices made on another day.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from pathlib import Path

import pytest

import fastconv
from fastconv.backends import algorithms

from . import measure as measure_mod
from . import report as report_mod
from .references import TORCH_DEVICES
from .workloads import settings_for

BENCH_DIR = Path(__file__).resolve().parent

_SETTINGS = pytest.StashKey()
_STATE = pytest.StashKey()
_FAILED = pytest.StashKey()  # on a test item whose call failed
_current: dict = {}  # the session's _State, for hooks that receive no config


class _State:
    """What the session collects for the report."""

    def __init__(self, backends, conv_algos, model_algos):
        self.backends = backends
        self.conv_algos = conv_algos
        self.model_algos = model_algos
        self.fixtures = []  # pytest-benchmark fixtures, in run order
        self.skipped = []  # (test id, reason)
        self.environment: dict = {"threads": {}}
        self.report_path: Path | None = None
        self.results_paths: list[Path] = []
        self.report_error: str | None = None
        self.cache_dir: str | None = None
        self.saved_env: dict[str, str | None] = {}


def pytest_addoption(parser):
    group = parser.getgroup("fastconv-bench", "fastconv benchmark suite")
    group.addoption("--quick", action="store_true",
                    help="fewer and smaller workloads: a few minutes on two cores")
    group.addoption("--smoke", action="store_true",
                    help="tiny shapes that only check the suite runs (CI, with "
                         "--benchmark-disable)")
    group.addoption("--fc-backend", action="append", metavar="NAME", default=None,
                    help="fastconv backend to measure (repeatable; default: every backend)")
    group.addoption("--fc-algo", action="append", metavar="NAME", default=None,
                    help="convolution algorithm to measure (repeatable; default: every "
                         "algorithm for layers, 'auto' for models)")
    group.addoption("--report-dir", metavar="DIR", default=None,
                    help="folder for report.md and the PNG plots (default: bench/out)")
    group.addoption("--results-md", metavar="PATH", default=None,
                    help="also write the report to PATH, plots in <PATH's folder>/results "
                         "(e.g. bench/RESULTS-gpu.md)")
    group.addoption("--results-dir", metavar="DIR", default=None,
                    help="keep the results per CPU type: DIR/RESULTS-<cpu>.md, plots in "
                         "DIR/results/<cpu>/, DIR/results/<cpu>.json, and regenerate the index "
                         "DIR/RESULTS.md (e.g. bench)")


def _selection(config):
    backends = config.getoption("fc_backend") or list(fastconv.backend_names())
    for name in backends:
        if name not in fastconv.backend_names():
            raise pytest.UsageError(f"--fc-backend {name!r}: unknown backend; valid backends: "
                                    f"{', '.join(fastconv.backend_names())}")
    algos = config.getoption("fc_algo")
    for name in algos or ():
        if name not in algorithms.CHOICES:
            raise pytest.UsageError(f"--fc-algo {name!r}: unknown algorithm; valid algorithms: "
                                    f"{', '.join(algorithms.CHOICES)}")
    conv_algos = list(dict.fromkeys(algos or algorithms.ALGORITHMS))
    model_algos = list(dict.fromkeys(algos or ["auto"]))
    return list(dict.fromkeys(backends)), conv_algos, model_algos


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError("the benchmark suite needs pytest-benchmark: "
                                "pip install 'fastconv[bench]'")
    quick, smoke = config.getoption("quick"), config.getoption("smoke")
    if quick and smoke:
        raise pytest.UsageError("--quick and --smoke exclude each other")
    config.stash[_SETTINGS] = settings_for("smoke" if smoke else "quick" if quick else "full")
    state = config.stash[_STATE] = _State(*_selection(config))
    _current["state"] = state
    state.environment["load at start"] = report_mod.load_average()
    state.environment["cpu busy at start"] = report_mod.cpu_busy()
    if not os.environ.get("FASTCONV_CACHE_DIR", "").strip():
        state.cache_dir = tempfile.mkdtemp(prefix="fastconv-bench-cache-")
        state.saved_env["FASTCONV_CACHE_DIR"] = os.environ.get("FASTCONV_CACHE_DIR")
        os.environ["FASTCONV_CACHE_DIR"] = state.cache_dir
    # every timing runs the kernels it names: no prediction on the compile fallback while a
    # background process compiles (the start-up benchmark sets it per round, for its processes)
    state.saved_env["FASTCONV_BACKGROUND_COMPILE"] = os.environ.get("FASTCONV_BACKGROUND_COMPILE")
    os.environ["FASTCONV_BACKGROUND_COMPILE"] = "0"
    # benchmarks time the tuned steady state: every shape is tuned on its third use (in a
    # warm-up), whatever compiling the candidates costs, never later inside a timed region
    state.saved_env["FASTCONV_TUNE_COMPILE"] = os.environ.get("FASTCONV_TUNE_COMPILE")
    os.environ["FASTCONV_TUNE_COMPILE"] = "0"
    algorithms.clear_memory()


def pytest_unconfigure(config):
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    for name, value in state.saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if state.cache_dir:
        shutil.rmtree(state.cache_dir, ignore_errors=True)
    _current.clear()


# -- parametrisation ----------------------------------------------------------------------------

def _supports(algo: str, geom) -> bool:
    return algo == "auto" or algorithms.ALGORITHMS[algo].supports(geom)


def pytest_generate_tests(metafunc):
    """Parametrise by fixture name: ``layer`` (with ``backend_name`` and ``algo``: only the
    algorithms that can compute the layer), ``pool_case``, ``backend_name``, ``model_algo``,
    ``thread_algo``, ``torch_device``, ``train_batch``, ``infer_batch``, ``scaling_batch``,
    ``threads``."""
    settings = metafunc.config.stash[_SETTINGS]
    state = metafunc.config.stash[_STATE]
    names = set(metafunc.fixturenames)
    if {"layer", "backend_name", "algo"} <= names:
        combos = [(layer, backend, algo) for layer in settings.conv_layers
                  for backend in state.backends for algo in state.conv_algos
                  if _supports(algo, layer.geometry)]
        metafunc.parametrize(("layer", "backend_name", "algo"), combos,
                             ids=[f"{la.name}-{b}-{a}" for la, b, a in combos])
        names -= {"layer", "backend_name", "algo"}
    if "layer" in names:
        metafunc.parametrize("layer", settings.conv_layers, ids=lambda la: la.name)
    if "pool_case" in names:
        metafunc.parametrize("pool_case", settings.pool_cases, ids=lambda c: c.name)
    if "backend_name" in names:
        metafunc.parametrize("backend_name", state.backends)
    if "model_algo" in names:
        metafunc.parametrize("model_algo", state.model_algos)
    if "thread_algo" in names:
        algos = [a for a in state.conv_algos if _supports(a, settings.thread_layer.geometry)]
        metafunc.parametrize("thread_algo", algos)
    if "torch_device" in names:
        metafunc.parametrize("torch_device", TORCH_DEVICES)
    for name, values in (("train_batch", settings.train_batches),
                         ("infer_batch", settings.infer_batches),
                         ("scaling_batch", settings.scaling_batches),
                         ("threads", settings.thread_counts)):
        if name in names:
            metafunc.parametrize(name, values, ids=lambda v, n=name: f"{n.split('_')[0]}{v}")


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def settings(request):
    """The mode's workloads and timing (``bench.workloads.Settings``)."""
    return request.config.stash[_SETTINGS]


@pytest.fixture
def measure(benchmark, request, settings):
    """``measure(fn, info, warmup=1, rounds=None, setup=None)``: time ``fn`` (see
    ``bench.measure.run``) and keep the result for the report."""
    state = request.config.stash[_STATE]

    def run(fn, info, **kwargs):
        state.fixtures.append(benchmark)
        info = {"mode": settings.mode, **info}
        return measure_mod.run(benchmark, fn, info, settings.timing, **kwargs)

    yield run
    if request.node.stash.get(_FAILED, False):
        # The test failed before timing anything: say so once, not a second time as
        # pytest-benchmark's "fixture was not used" warning (an error under -W error).
        benchmark.has_error = True
        benchmark.skipped = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def fc_backend(backend_name):
    """The fastconv backend ``backend_name``, or a skip saying why it cannot run here."""
    reason = fastconv.available_backends().get(backend_name)
    if reason is not None:
        pytest.skip(f"backend {backend_name} is unavailable: {reason}")
    backend = fastconv.get_backend(backend_name)
    if getattr(backend, "emulated", False):
        pytest.skip(f"backend {backend_name} runs its GPU kernels emulated on the CPU here: "
                    f"timings would measure the emulation")
    return backend


def reference_threads() -> int:
    """Threads for the CPU references: as many as fastconv's multi-threaded backends use
    (``NUMBA_NUM_THREADS``, all cores by default), else every core this process may use."""
    counts = [fastconv.get_backend(name).num_threads()
              for name, reason in fastconv.available_backends().items() if reason is None]
    if max(counts, default=1) > 1:
        return max(counts)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


@pytest.fixture(scope="session")
def torch_cpu(request):
    """PyTorch with ``reference_threads()`` intra-op threads (restored at the end of the
    session); skips where PyTorch is not installed."""
    from .references import torch_or_skip

    torch = torch_or_skip("cpu")
    previous = torch.get_num_threads()
    threads = reference_threads()
    torch.set_num_threads(threads)
    request.config.stash[_STATE].environment["threads"]["PyTorch intra-op"] = threads
    yield torch
    torch.set_num_threads(previous)


@pytest.fixture
def torch_dev(torch_cpu, torch_device):
    """(torch, device) for ``torch_device``; skips where the device is missing."""
    from .references import torch_or_skip

    return torch_or_skip(torch_device), torch_device


@pytest.fixture(scope="session")
def lesson_weights():
    from . import lesson

    return lesson.reference_weights()


@pytest.fixture(scope="session")
def torch_lesson(torch_cpu, lesson_weights):
    """The PyTorch copy of the lesson network (softmax output, CPU, eval mode), checked once
    against fastconv's numpy backend."""
    from . import lesson

    model = lesson.torch_model(torch_cpu, lesson_weights).eval()
    x = lesson.images(8, seed=7)
    with fastconv.use_backend("numpy"):
        expected = lesson.fastconv_model(lesson_weights, compile=False).predict_on_batch(x)
    with torch_cpu.no_grad():
        actual = model(torch_cpu.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    lesson.check_same_outputs(expected, actual, "the PyTorch copy")
    return model


@pytest.fixture(scope="session")
def lesson_onnx(torch_cpu, torch_lesson, tmp_path_factory):
    """Path of the PyTorch copy exported to ONNX, checked once under onnxruntime."""
    from . import lesson
    from .references import ort_session

    path = tmp_path_factory.mktemp("onnx") / "lesson.onnx"
    lesson.export_onnx(torch_cpu, torch_lesson, path)
    session = ort_session(path)
    x = lesson.images(8, seed=7)
    actual = session.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0]
    with torch_cpu.no_grad():
        expected = torch_lesson(torch_cpu.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    lesson.check_same_outputs(expected, actual, "the ONNX export")
    return path


# -- the report ---------------------------------------------------------------------------------

def pytest_runtest_logreport(report):
    """Collect skip reasons: the report lists every skipped row with its reason."""
    state = _current.get("state")
    if state is not None and report.skipped and report.when in ("setup", "call"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        state.skipped.append((report.nodeid.split("::")[-1], reason.removeprefix("Skipped: ")))


def _report_dir(config) -> Path:
    option = config.getoption("report_dir")
    return Path(option) if option else BENCH_DIR / "out"


def _environment(config) -> dict:
    state = config.stash[_STATE]
    env = report_mod.collect_environment()
    env["mode"] = config.stash[_SETTINGS].mode
    env["command"] = " ".join(["pytest", *config.invocation_params.args])
    env["threads"].update(state.environment["threads"])
    for key in ("load at start", "cpu busy at start"):
        env[key] = state.environment.get(key)
    env["backends selected"] = state.backends
    env["algorithms selected"] = {"layers": state.conv_algos, "models": state.model_algos}
    return env


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None or getattr(config, "workerinput", None) is not None:
        return
    if not state.fixtures and not state.skipped:
        return  # nothing ran (collection only, or every test deselected)
    try:
        records = [r for r in map(measure_mod.record, state.fixtures) if r is not None]
        state.environment = _environment(config)
        results_md, results_dir = config.getoption("results_md"), config.getoption("results_dir")
        state.report_path, state.results_paths = report_mod.write_report(
            records, state.environment, _report_dir(config), skipped=state.skipped,
            results_md=Path(results_md) if results_md else None,
            results_dir=Path(results_dir) if results_dir else None)
    except Exception:  # the report failing must fail the run, with the traceback shown
        state.report_error = traceback.format_exc()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark: no error where it is missing
def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Keep the environment and the skipped rows in benchmark.json, so that ``python -m
    fastconv.bench.report benchmark.json`` rebuilds the whole report."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if not state.environment.get("date"):
        state.environment = _environment(config)
    output_json["fastconv"] = {"environment": state.environment, "skipped": state.skipped}


def pytest_terminal_summary(terminalreporter, config):
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if state.report_error:
        terminalreporter.section("fastconv benchmark report", red=True)
        terminalreporter.write_line("writing the report failed:")
        terminalreporter.write_line(state.report_error)
    elif state.report_path is not None:
        terminalreporter.section("fastconv benchmark report")
        terminalreporter.write_line(f"report: {state.report_path}")
        for path in state.results_paths:
            terminalreporter.write_line(f"results: {path}")



def pytest_collection_modifyitems(session, config, items):
    """Reference libraries first. Numba's OpenMP workers, once started, slow PyTorch's own
    OpenMP pool down for the rest of the process (measured: the lesson training step ran at a
    quarter of its speed after fastconv's numba-cpu benchmarks, and at full speed before them);
    PyTorch's pool leaves fastconv's speed unchanged. Running the references first keeps every
    reference row at its best."""
    def is_reference(item) -> bool:
        name = getattr(item, "originalname", item.name)
        return not name.endswith("_fastconv")

    items.sort(key=lambda item: 0 if is_reference(item) else 1)
