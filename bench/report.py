"""The benchmark report: a markdown file with tables and PNG plots, from benchmark records.

``write_report`` is called at the end of every benchmark session (``bench/conftest.py``); the same
report can be rebuilt later from pytest-benchmark's JSON::

    python -m fastconv.bench.report bench-report/benchmark.json --out DIR [--results-md PATH]

Records are entries of pytest-benchmark's ``benchmarks`` list (see ``bench/measure.py``); what
each benchmark measured is in its ``extra_info``:

``section``   ``conv``, ``pool``, ``train``, ``infer``, ``startup``, ``autotune``, ``batch`` or
              ``threads``
``workload``  the case's name (``lesson-conv1-b32``, ``lesson-infer-b1000`` ...)
``impl``      ``<backend>/<algorithm>`` for fastconv, ``torch-cpu``, ``torch-cuda``, ``onnxruntime``
``library``   ``fastconv``, ``torch`` or ``onnxruntime``; ``device``: ``cpu`` or ``cuda``
``pass``      ``forward``, ``forward+backward`` or ``backward`` (layers and pooling)
``flops``     direct-convolution FLOPs per call (so Winograd shows effective GFLOP/s)
``images``    images per call (img/s); ``bytes``: bytes read and written per call (pooling)
``threads``   threads the implementation ran with; ``batch``, ``tags``, ``shape`` ...

Ratios are speed-ups: the reference's median time divided by fastconv's, for the same workload,
pass and thread count, measured in the same run (so > 1 means fastconv is faster). Matplotlib is
imported only to draw (the Agg canvas, no pyplot state); without it the report has tables only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .workloads import EPOCH_IMAGES, MAXPOOL_TARGET, VGG_TARGET

REPORT_NAME = "report.md"
PLOTS = {
    "layers": "layers_gflops.png",
    "batch": "batch_scaling.png",
    "threads": "threads_scaling.png",
}
#: Reference libraries each section is compared with, first one = the main ratio.
REFERENCES = {
    "conv": ("torch",), "pool": ("torch",), "train": ("torch",), "infer": ("onnxruntime", "torch"),
    "startup": ("onnxruntime",), "batch": ("torch",), "threads": ("torch",), "autotune": (),
    "apps": ("onnxruntime", "torch"),
}
LIBRARY_NAMES = {"torch": "PyTorch", "onnxruntime": "onnxruntime"}
ALGO_ORDER = ("direct", "im2col", "winograd", "winograd4", "auto")
VERSIONED = ("fastconv", "numpy", "numba", "torch", "onnxruntime", "onnx", "pytest",
             "pytest-benchmark", "matplotlib")


# -- rows ---------------------------------------------------------------------------------------

@dataclass
class Row:
    """One measured benchmark."""

    name: str
    info: dict
    stats: dict

    def __getattr__(self, key):  # extra_info fields as attributes (None when absent)
        if key.startswith("__"):
            raise AttributeError(key)
        return self.__dict__["info"].get(key)

    @property
    def median(self) -> float:
        return float(self.stats["median"])

    @property
    def iqr(self) -> float:
        return float(self.stats.get("iqr") or 0.0)

    @property
    def is_reference(self) -> bool:
        return self.info.get("library") != "fastconv"

    @property
    def pass_(self) -> str | None:
        return self.info.get("pass")

    @property
    def key(self) -> tuple:
        """What a reference must match: the same work (and thread count, in thread scaling)."""
        threads = self.threads if self.section == "threads" else None
        return (self.section, self.workload, self.pass_, self.op, threads)

    @property
    def gflops(self) -> float | None:
        return self.flops / self.median / 1e9 if self.flops and self.median > 0 else None

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.median if self.images and self.median > 0 else None

    @property
    def gbytes_per_s(self) -> float | None:
        return self.bytes / self.median / 1e9 if self.bytes and self.median > 0 else None

    def order(self) -> tuple:
        algo = self.algo or ""
        return (self.is_reference, self.backend or "", ALGO_ORDER.index(algo)
                if algo in ALGO_ORDER else len(ALGO_ORDER), self.impl or "")


def reference_impl(library: str, device: str | None) -> str | None:
    if library == "torch":
        return f"torch-{device or 'cpu'}"
    if library == "onnxruntime" and (device or "cpu") == "cpu":
        return "onnxruntime"
    return None


class Results:
    """The rows of one run, indexed for reference look-ups."""

    def __init__(self, records):
        self.rows = [Row(r.get("name", "?"), dict(r.get("extra_info") or {}), dict(r["stats"]))
                     for r in records if r.get("stats") and (r.get("extra_info") or {}).get(
                         "section")]
        self._index = {(row.key, row.impl): row for row in self.rows}

    def section(self, name: str, **match) -> list[Row]:
        return [r for r in self.rows if r.section == name
                and all(r.info.get(k) == v for k, v in match.items())]

    def reference(self, row: Row, library: str) -> Row | None:
        impl = reference_impl(library, row.device)
        if impl is None:
            return None
        if row.section == "startup":  # one reference start-up for every fastconv variant
            found = [r for r in self.section("startup") if r.impl == impl]
            return found[0] if found else None
        return self._index.get((row.key, impl))

    def ratio(self, row: Row, library: str) -> float | None:
        """Speed-up of ``row`` over the reference (reference time / fastconv time)."""
        ref = self.reference(row, library)
        if ref is None or row.median <= 0:
            return None
        return ref.median / row.median


def ordered(values):
    return list(dict.fromkeys(values))


def best(rows: list[Row]) -> Row | None:
    rows = [r for r in rows if not r.is_reference]
    return min(rows, key=lambda r: r.median) if rows else None


# -- formatting ---------------------------------------------------------------------------------

def num(value: float | None) -> str:
    """A number with about three significant digits, '-' when missing."""
    if value is None:
        return "-"
    v = abs(value)
    if v >= 1000:
        return f"{value:,.0f}"
    if v >= 100:
        return f"{value:.0f}"
    if v >= 10:
        return f"{value:.1f}"
    if v >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the summary --------------------------------------------------------------------------------

@dataclass
class Target:
    label: str
    unit: str
    row: Row | None
    reference: Row | None
    ratio: float | None
    target: float
    higher_is_better: bool = True  # of the value shown (img/s, GFLOP/s) rather than time


def _value(row: Row | None, unit: str) -> str:
    if row is None:
        return "not measured"
    if unit == "img/s":
        return f"{num(row.images_per_s)} img/s"
    if unit == "GFLOP/s":
        return f"{num(row.gflops)} GFLOP/s"
    if unit == "ms":
        return f"{num(row.median * 1e3)} ms"
    return f"{num(row.median * 1e6)} us"


def summary_targets(results: Results) -> list[Target]:
    """The performance targets, as same-run ratios, per device."""
    devices = ordered(r.device for r in results.rows if not r.is_reference) or ["cpu"]
    return [t for device in devices for t in _device_targets(results, device)]


def _device_targets(results: Results, device: str) -> list[Target]:
    targets = []
    where = "" if device == "cpu" else f" ({device})"

    def add(label, unit, rows, library, target):
        row = best([r for r in rows if r.device == device])
        ref = results.reference(row, library) if row is not None else None
        ratio = results.ratio(row, library) if row is not None else None
        targets.append(Target(label + where, unit, row, ref, ratio, target))

    train = results.section("train")
    batches = ordered(r.batch for r in train)
    if batches:
        b = 32 if 32 in batches else min(batches)
        add(f"Lesson net training step, batch {b} (vs PyTorch)", "img/s",
            [r for r in train if r.batch == b], "torch", 1.5)
    infer = results.section("infer")
    batches = ordered(r.batch for r in infer)
    if batches:
        big, small = max(batches), min(batches)
        add(f"Lesson net inference, batch {big} (vs onnxruntime)", "img/s",
            [r for r in infer if r.batch == big], "onnxruntime", 1.0)
        add(f"Lesson net inference latency, batch {small} (vs onnxruntime)", "ms",
            [r for r in infer if r.batch == small], "onnxruntime", 1.0)
    conv = results.section("conv", **{"pass": "forward"})
    for workload in ordered(r.workload for r in conv):
        add(f"Conv forward {workload}, best algorithm (vs PyTorch)", "GFLOP/s",
            [r for r in conv if r.workload == workload], "torch", 1.0)
    vgg = [r for r in conv if VGG_TARGET in (r.tags or ()) and r.algo == "winograd4"]
    if vgg:
        add(f"3x3 conv {vgg[0].workload}, Winograd F(4x4,3x3) (vs PyTorch)", "GFLOP/s", vgg,
            "torch", 1.5)
    pool = [r for r in results.section("pool", op="max", **{"pass": "forward"})
            if MAXPOOL_TARGET in (r.tags or ())]
    if pool:
        add(f"Max pool 2x2 forward on {pool[0].shape.split(' ')[0]} (vs PyTorch)", "us",
            pool, "torch", 5.0)
    return targets


def summary_markdown(results: Results) -> str:
    targets = summary_targets(results)
    if not targets:
        return "No benchmark of the summary ran."
    rows = []
    for t in targets:
        met = "n/a" if t.ratio is None else ("yes" if t.ratio >= t.target else "**no**")
        rows.append([t.label, t.row.impl if t.row else "-", _value(t.row, t.unit),
                     t.reference.impl if t.reference else "-",
                     _value(t.reference, t.unit) if t.row else "-", ratio_text(t.ratio),
                     f">= {t.target:g}x", met])
    conv = [t for t in targets if t.label.startswith("Conv forward")]
    measured = [t for t in conv if t.ratio is not None]
    note = ""
    if measured:
        note = (f"\n\nConvolution layers where fastconv's best algorithm reaches PyTorch: "
                f"{sum(t.ratio >= t.target for t in measured)} of {len(measured)}.")
    return table(["Benchmark", "fastconv (best)", "fastconv", "Reference", "Reference value",
                  "Speed-up", "Target", "Met"], rows) + note + (
        "\n\nSpeed-up = reference time / fastconv time for the same work in this run (latency "
        "and pooling: times; others: the throughput shown). \"fastconv (best)\" is the fastest "
        "backend/algorithm measured for that row.")


# -- section tables -----------------------------------------------------------------------------

def _ref_columns(results: Results, row: Row, section: str) -> list[str]:
    if row.is_reference:
        return ["" for _ in REFERENCES[section]]
    return [ratio_text(results.ratio(row, lib)) for lib in REFERENCES[section]]


def _ref_headers(section: str) -> list[str]:
    return [f"vs {LIBRARY_NAMES[lib]}" for lib in REFERENCES[section]]


def _grouped(rows: list[Row], group_key) -> list[tuple[object, list[Row]]]:
    groups: dict = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    return [(k, sorted(v, key=Row.order)) for k, v in groups.items()]


def conv_markdown(results: Results) -> str:
    parts = []
    for conv_pass in ("forward", "forward+backward"):
        rows = results.section("conv", **{"pass": conv_pass})
        if not rows:
            continue
        out = []
        for workload, group in _grouped(rows, lambda r: r.workload):
            fastest = best(group)
            for i, r in enumerate(group):
                impl = f"**{r.impl}**" if r is fastest else r.impl
                first = i == 0
                out.append([workload if first else "", r.shape if first else "",
                            num(r.flops / 1e9) if first and r.flops else "", impl,
                            num(r.median * 1e3), num(r.iqr * 1e3), num(r.gflops),
                            *_ref_columns(results, r, "conv")])
        parts.append(f"### {conv_pass.capitalize()}\n\n" + table(
            ["Layer", "Shape (N x H x W x C -> out, kernel)", "GFLOP", "Implementation",
             "Median ms", "IQR ms", "GFLOP/s", *_ref_headers("conv")], out))
    return "\n\n".join(parts)


def pool_markdown(results: Results) -> str:
    rows = results.section("pool")
    out = []
    for (workload, op, pool_pass), group in _grouped(rows, lambda r: (r.workload, r.op, r.pass_)):
        fastest = best(group)
        for i, r in enumerate(group):
            first = i == 0
            out.append([workload if first else "", r.shape if first else "",
                        op if first else "", pool_pass if first else "",
                        f"**{r.impl}**" if r is fastest else r.impl, num(r.median * 1e6),
                        num(r.iqr * 1e6), num(r.gbytes_per_s), *_ref_columns(results, r, "pool")])
    return table(["Case", "Shape", "Op", "Pass", "Implementation", "Median us", "IQR us", "GB/s",
                  *_ref_headers("pool")], out)


def train_markdown(results: Results) -> str:
    out = []
    for batch, group in _grouped(results.section("train"), lambda r: r.batch):
        for i, r in enumerate(group):
            ips = r.images_per_s
            out.append([str(batch) if i == 0 else "", r.impl, num(r.median * 1e3),
                        num(r.iqr * 1e3), num(ips), num(EPOCH_IMAGES / ips) if ips else "-",
                        *_ref_columns(results, r, "train")])
    return table(["Batch", "Implementation", "Median ms/step", "IQR ms", "img/s",
                  f"s/epoch ({EPOCH_IMAGES:,} img)", *_ref_headers("train")], out)


def infer_markdown(results: Results) -> str:
    out = []
    for batch, group in _grouped(results.section("infer"), lambda r: r.batch):
        for i, r in enumerate(group):
            out.append([str(batch) if i == 0 else "", r.impl, num(r.median * 1e3),
                        num(r.iqr * 1e3), num(r.images_per_s),
                        *_ref_columns(results, r, "infer")])
    return table(["Batch", "Implementation", "Median ms", "IQR ms", "img/s",
                  *_ref_headers("infer")], out)


def apps_markdown(results: Results) -> str:
    out = []
    for workload, group in _grouped(results.section("apps"), lambda r: r.workload):
        for i, r in enumerate(group):
            out.append([workload if i == 0 else "", r.impl, num(r.median * 1e3),
                        num(r.iqr * 1e3), num(r.images_per_s),
                        *_ref_columns(results, r, "apps")])
    return table(["Network", "Implementation", "Median ms", "IQR ms", "img/s",
                  *_ref_headers("apps")], out)


def startup_markdown(results: Results) -> str:
    rows = sorted(results.section("startup"), key=Row.order)
    out = [[r.impl, r.variant or "-", num(r.median), num(r.iqr),
            *_ref_columns(results, r, "startup")] for r in rows]
    return table(["Implementation", "Caches", "Median s", "IQR s", *_ref_headers("startup")], out)


def autotune_markdown(results: Results) -> str:
    rows = results.section("autotune")
    out = []
    for (impl, batch), group in _grouped(rows, lambda r: (r.impl, r.batch)):
        quiet = next((r for r in group if r.variant == "tuned quiet"), None)
        for r in group:
            same = "-" if quiet is None else "yes" if r.choices == quiet.choices else "no"
            out.append([impl, str(batch), r.variant or "-", str(r.entries_kept), same,
                        num(r.median * 1e3), num(r.iqr * 1e3),
                        ratio_text(r.median / quiet.median if quiet else None)])
    return table(["Implementation", "Batch", "Choices", "Entries kept",
                  "Same choices as tuned quiet", "Median ms/step", "IQR ms",
                  "Step time / tuned quiet"], out)


def batch_markdown(results: Results) -> str:
    rows = results.section("batch")
    batches = sorted(ordered(r.batch for r in rows))
    out = []
    for impl, group in _grouped(rows, lambda r: r.impl):
        by_batch = {r.batch: r for r in group}
        cells = [num(by_batch[b].median / b * 1e3) if b in by_batch else "-" for b in batches]
        lo, hi = by_batch.get(batches[0]), by_batch.get(batches[-1])
        linear = (hi.median / batches[-1]) / (lo.median / batches[0]) if lo and hi else None
        out.append([impl, *cells, num(hi.images_per_s) if hi else "-", ratio_text(linear)])
    return table(["Implementation", *[f"b{b} ms/img" for b in batches],
                  f"img/s at b{batches[-1]}" if batches else "img/s",
                  "per-image time, largest / smallest batch"], out)


def threads_markdown(results: Results) -> str:
    rows = results.section("threads")
    out = []
    for impl, group in _grouped(rows, lambda r: r.impl):
        group = sorted(group, key=lambda r: r.threads)
        one = next((r for r in group if r.threads == 1), None)
        for r in group:
            speedup = one.median / r.median if one is not None else None
            out.append([impl, str(r.threads), num(r.median * 1e3), num(r.iqr * 1e3),
                        num(r.gflops), ratio_text(speedup), *_ref_columns(results, r, "threads")])
    return table(["Implementation", "Threads", "Median ms", "IQR ms", "GFLOP/s",
                  "Speed-up vs 1 thread", *_ref_headers("threads")], out)


def skipped_markdown(skipped) -> str:
    reasons: dict[str, list[str]] = {}
    for test_id, reason in skipped:
        reasons.setdefault(reason, []).append(test_id)
    out = []
    for reason, ids in reasons.items():
        shown = ", ".join(f"`{i}`" for i in ids[:3]) + (" ..." if len(ids) > 3 else "")
        out.append([reason.replace("|", "/"), str(len(ids)), shown])
    return table(["Reason", "Rows", "For example"], out)


# -- environment --------------------------------------------------------------------------------

def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _physical_cores() -> int | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    cores, phys = set(), None
    for line in text.splitlines():
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            cores.add((phys, line.split(":", 1)[1].strip()))
    return len(cores) or None


def _git(folder: Path) -> str:
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
        return commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip()
                                         else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def busy_warning(env: dict) -> str | None:
    """A warning when other processes kept the CPUs busy as the run started or ended (more than
    a quarter of the CPU time, sampled while this process was idle): multi-threaded timings are
    then unreliable."""
    samples = [v for v in (env.get("cpu busy at start"), env.get("cpu busy at end"))
               if isinstance(v, (int, float))]
    if not samples or max(samples) <= 0.25:
        return None
    return (f"**Warning: other processes were using {max(samples):.0%} of the CPU time around "
            f"this run.** Another process competing for the cores makes every parallel region "
            f"wait for a scheduler time slice (several ms); multi-threaded timings and the ratios "
            f"built on them are unreliable. Run on a quiet machine.")


def cpu_busy(seconds: float = 0.5) -> float | None:
    """Fraction of all CPUs' time spent busy during ``seconds`` (Linux ``/proc/stat``), sampled
    while this process sleeps, so it measures everything else running; None elsewhere."""
    import time

    def totals():
        with open("/proc/stat", encoding="utf-8") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    try:
        total0, idle0 = totals()
        time.sleep(seconds)
        total1, idle1 = totals()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return None if elapsed <= 0 else max(0.0, 1.0 - (idle1 - idle0) / elapsed)


def load_average() -> str | None:
    """The 1, 5 and 15 minute load averages (how busy the machine was), or None."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return None


def collect_environment() -> dict:
    """Date, CPU, cores, library versions, backends and threads of this machine."""
    import fastconv
    from fastconv.cli import cpu_description

    model, llvm_name, features = cpu_description()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": {"model": model, "llvm target": llvm_name, "simd": features,
                "logical cores": os.cpu_count(), "usable cores": usable,
                "physical cores": _physical_cores()},
        "platform": platform.platform(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "versions": {p: _version(p) for p in VERSIONED},
        "backends": {}, "threads": {}, "blas": {},
        "git": _git(Path(__file__).resolve().parent),
        "load at end": load_average(),
        "cpu busy at end": cpu_busy(),
    }
    for name, reason in fastconv.available_backends().items():
        env["backends"][name] = "available" if reason is None else f"unavailable: {reason}"
        if reason is None:
            backend = fastconv.get_backend(name)
            env["threads"][f"fastconv {name}"] = backend.num_threads()
            gemm = backend.gemm_description()
            if gemm:
                env["blas"][name] = gemm
    env["threads"]["onnxruntime intra-op"] = os.cpu_count()
    if "numba" in sys.modules:
        try:
            env["numba threading layer"] = sys.modules["numba"].threading_layer()
        except ValueError:  # no parallel kernel ran
            env["numba threading layer"] = "not started"
    return env


def _percent(env: dict, when: str) -> str:
    value = env.get(f"cpu busy at {when}")
    return f"{value:.0%}" if isinstance(value, (int, float)) else "?"


def environment_markdown(env: dict) -> str:
    cpu = env.get("cpu", {})
    versions = env.get("versions", {})
    lines = [
        f"- **Date**: {env.get('date', '?')}",
        f"- **CPU**: {cpu.get('model', '?')} (LLVM target {cpu.get('llvm target', '?')}); "
        f"{cpu.get('logical cores', '?')} logical cores, {cpu.get('physical cores') or '?'} "
        f"physical, {cpu.get('usable cores', '?')} usable by this process",
        f"- **SIMD**: {' '.join(cpu.get('simd') or []) or 'unknown'}",
        f"- **Platform**: {env.get('platform', '?')}; Python {env.get('python', '?')}",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "- **Threads**: " + ", ".join(f"{k} {v}" for k, v in env.get("threads", {}).items())
        + (f"; Numba threading layer {env['numba threading layer']}"
           if "numba threading layer" in env else ""),
        "- **GEMM**: " + (", ".join(f"{k}: {v}" for k, v in env.get("blas", {}).items()) or "-"),
        "- **Backends**: " + ", ".join(f"{k} ({v})" for k, v in env.get("backends", {}).items()),
        f"- **Selected**: backends {', '.join(env.get('backends selected', [])) or '-'}; "
        "algorithms " + ("; ".join(f"{k}: {', '.join(v)}" for k, v in
                                   (env.get("algorithms selected") or {}).items()) or "-"),
        f"- **Machine load**: CPU time used by other processes {_percent(env, 'start')} just "
        f"before the run, {_percent(env, 'end')} just after; load average (1 / 5 / 15 min) "
        f"{env.get('load at start') or '?'} at the start, {env.get('load at end') or '?'} at "
        f"the end",
        f"- **Mode**: {env.get('mode', '?')}; command `{env.get('command', '?')}`",
        f"- **fastconv commit**: {env.get('git', '?')}",
    ]
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------------------

def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for line in axes for ax in line]


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_layers(results: Results, path: Path) -> bool:
    passes = [p for p in ("forward", "forward+backward")
              if results.section("conv", **{"pass": p})]
    if not passes:
        return False
    layers = ordered(r.workload for r in results.section("conv"))
    impls = ordered(r.impl for r in sorted(results.section("conv"), key=Row.order))
    colors = dict(zip(impls, _colors(len(impls))))
    fig, axes = _figure(max(10.0, 0.75 * len(layers) + 4), 4.5 * len(passes), len(passes))
    width = 0.8 / max(len(impls), 1)
    for ax, conv_pass in zip(axes, passes):
        rows = {(r.workload, r.impl): r for r in results.section("conv", **{"pass": conv_pass})}
        for i, impl in enumerate(impls):
            xs, ys = [], []
            for j, layer in enumerate(layers):
                r = rows.get((layer, impl))
                if r is not None and r.gflops:
                    xs.append(j + (i - (len(impls) - 1) / 2) * width)
                    ys.append(r.gflops)
            if xs:
                ax.bar(xs, ys, width, label=impl, color=colors[impl],
                       hatch="//" if impl.startswith(("torch", "onnx")) else None)
        ax.set_yscale("log")
        ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("GFLOP/s (direct-convolution count)")
        ax.set_title(f"Convolution {conv_pass}: effective GFLOP/s per layer")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=min(len(impls), 5))
    fig.savefig(path, dpi=110)
    return True


def plot_batch(results: Results, path: Path) -> bool:
    rows = results.section("batch")
    if not rows:
        return False
    fig, (ax_rate, ax_img) = _figure(11, 4.5, 1, 2)
    groups = _grouped(rows, lambda r: r.impl)
    for (impl, group), color in zip(groups, _colors(len(groups))):
        group = sorted(group, key=lambda r: r.batch)
        batches = [r.batch for r in group]
        style = "--" if group[0].is_reference else "-"
        ax_rate.plot(batches, [r.images_per_s for r in group], style, marker="o", label=impl,
                     color=color)
        ax_img.plot(batches, [r.median / r.batch * 1e3 for r in group], style, marker="o",
                    label=impl, color=color)
    for ax in (ax_rate, ax_img):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.grid(which="both", alpha=0.3)
    ax_rate.set_ylabel("images / s")
    ax_rate.set_title("Lesson network inference throughput")
    ax_img.set_ylabel("ms per image")
    ax_img.set_title("Time per image (flat = linear in batch)")
    ax_rate.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return True


def plot_threads(results: Results, path: Path) -> bool:
    rows = results.section("threads")
    if not rows:
        return False
    groups = _grouped(rows, lambda r: r.impl)
    threads = sorted(ordered(r.threads for r in rows))
    fig, (ax,) = _figure(max(7.0, 1.2 * len(groups) + 3), 4.5)
    width = 0.8 / len(threads)
    for i, (t, color) in enumerate(zip(threads, _colors(len(threads)))):
        xs, ys = [], []
        for j, (_, group) in enumerate(groups):
            r = next((g for g in group if g.threads == t), None)
            if r is not None and r.gflops:
                xs.append(j + (i - (len(threads) - 1) / 2) * width)
                ys.append(r.gflops)
        ax.bar(xs, ys, width, label=f"{t} thread{'s' if t > 1 else ''}", color=color)
    ax.set_xticks(range(len(groups)), [impl for impl, _ in groups], rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylabel("GFLOP/s (direct-convolution count)")
    ax.set_title(f"Thread scaling: {rows[0].workload} forward")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return True


def write_plots(results: Results, folder: Path) -> tuple[dict[str, Path], str | None]:
    """The PNGs that have data, and why none were drawn (matplotlib missing) or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return {}, f"plots not drawn: matplotlib is not installed ({exc})"
    written = {}
    for key, draw in (("layers", plot_layers), ("batch", plot_batch),
                      ("threads", plot_threads)):
        path = folder / PLOTS[key]
        if draw(results, path):
            written[key] = path
    return written, None


# -- the whole report ---------------------------------------------------------------------------

def markdown(results: Results, env: dict, skipped, plots: dict[str, Path],
             plot_note: str | None, image_prefix: str = "") -> str:
    def image(key: str, alt: str) -> str:
        return f"\n\n![{alt}]({image_prefix}{PLOTS[key]})" if key in plots else ""

    sections = [
        "# fastconv benchmark results",
        "Generated by fastconv's benchmark suite (`bench/`, see `bench/README.md`). Every ratio "
        "compares implementations measured in this same run on this machine. Times are medians "
        "over the rounds; IQR is the inter-quartile range of the rounds (the spread).",
        *([w] if (w := busy_warning(env)) else []),
        "## Machine and software\n\n" + environment_markdown(env),
        "## Summary\n\n" + summary_markdown(results),
    ]
    if results.section("conv"):
        sections.append("## Convolution layers\n\nGFLOP/s use the direct-convolution FLOP "
                        "count (2 x multiply-adds) for every algorithm, so Winograd shows "
                        "effective GFLOP/s. Forward includes the bias; forward+backward adds "
                        "the data, weight and bias gradients. The fastest fastconv row of each "
                        "layer is in bold.\n\n" + conv_markdown(results)
                        + image("layers", "GFLOP/s per layer"))
    if results.section("pool"):
        sections.append("## Pooling\n\nGB/s counts the input read and the output written "
                        "(float32).\n\n" + pool_markdown(results))
    if results.section("train") or results.section("infer"):
        sections.append("## Lesson network\n\n### Training step (forward, loss, backward, Adam)"
                        "\n\n" + train_markdown(results) + "\n\n### Inference\n\n"
                        + infer_markdown(results))
    if results.section("apps"):
        sections.append("## Whole networks (inference)\n\nfastconv.applications' VGG16 "
                        "without its top and ResNet50, `predict_on_batch`; PyTorch runs the "
                        "same networks written with torch.nn, onnxruntime their ONNX export."
                        "\n\n" + apps_markdown(results))
    if results.section("startup"):
        sections.append("## Start-up\n\nA fresh process: import, load the saved lesson model, "
                        "predict one image, timed from outside. *warm*: caches filled by an "
                        "identical run before; *empty JIT cache*: fresh `NUMBA_CACHE_DIR` and "
                        "`FASTCONV_CACHE_DIR`, so nothing was compiled before: the prediction "
                        "runs on the compile fallback while a background process compiles "
                        "(`fastconv.warmup`), and the round ends when the predicting process "
                        "exits; *foreground compile*: the same with "
                        "`FASTCONV_BACKGROUND_COMPILE=0`, the prediction waiting for every "
                        "kernel it uses. The target for a fresh install's first prediction is "
                        "under 3 s. onnxruntime: import, InferenceSession, first run.\n\n"
                        + startup_markdown(results))
    if results.section("autotune"):
        sections.append("## Autotuning under load\n\nThe lesson training step with algorithm "
                        "choices tuned on a quiet machine, tuned while busy loops occupy every "
                        "CPU, and tuned under that load with the busy check off; each tunes "
                        "into an empty cache, then a later run on the quiet machine trains with "
                        "what the cache kept. Within 10% of the quiet choices is the goal (a "
                        "ratio of at most 1.10).\n\n" + autotune_markdown(results))
    if results.section("batch") or results.section("threads"):
        part = "## Scaling"
        if results.section("batch"):
            part += ("\n\n### Batch size (lesson network inference)\n\n" + batch_markdown(results)
                     + image("batch", "throughput against batch size"))
        if results.section("threads"):
            part += ("\n\n### Threads\n\n" + threads_markdown(results)
                     + image("threads", "thread scaling"))
        sections.append(part)
    if plot_note:
        sections.append(f"*{plot_note}*")
    if skipped:
        sections.append("## Skipped rows\n\n" + skipped_markdown(skipped))
    return "\n\n".join(sections) + "\n"


def write_report(records, env: dict, out_dir: Path, *, skipped=(),
                 results_md: Path | None = None) -> tuple[Path, Path | None]:
    """Write ``out_dir/report.md`` and its PNGs; with ``results_md`` also that file, its plots
    in ``<its folder>/results/``. Returns (report path, results path or None)."""
    results = Results(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, note = write_plots(results, out_dir)
    report = out_dir / REPORT_NAME
    report.write_text(markdown(results, env, skipped, plots, note), encoding="utf-8")
    if results_md is None:
        return report, None
    results_md = Path(results_md)
    images = results_md.parent / "results"
    images.mkdir(parents=True, exist_ok=True)
    for path in plots.values():
        shutil.copyfile(path, images / path.name)
    results_md.write_text(markdown(results, env, skipped, plots, note, "results/"),
                          encoding="utf-8")
    return report, results_md


def load_json(path: Path) -> tuple[list[dict], dict, list]:
    """(records, environment, skipped) from a ``--benchmark-json`` file of this suite."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    extra = data.get("fastconv") or {}
    env = extra.get("environment") or {"date": data.get("datetime", "?")}
    return data.get("benchmarks", []), env, [tuple(s) for s in extra.get("skipped", [])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconv.bench.report",
                                     description="Rebuild the benchmark report from the JSON.")
    parser.add_argument("json", help="benchmark.json written by the suite")
    parser.add_argument("--out", default=None, help="report folder (default: the JSON's folder)")
    parser.add_argument("--results-md", default=None, help="also write this markdown file")
    args = parser.parse_args(argv)
    records, env, skipped = load_json(Path(args.json))
    out = Path(args.out) if args.out else Path(args.json).parent
    report, results = write_report(records, env, out, skipped=skipped,
                                   results_md=Path(args.results_md) if args.results_md else None)
    print(f"report: {report}")
    if results is not None:
        print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
