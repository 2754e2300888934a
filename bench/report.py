"""The benchmark report: a markdown file with tables and PNG plots, from benchmark records.

``write_report`` is called at the end of every benchmark session (``bench/conftest.py``); the same
report can be rebuilt later from pytest-benchmark's JSON::

    python -m fastconv.bench.report bench-report/benchmark.json --out DIR [--results-md PATH]
                                   [--results-dir DIR]

``--results-dir DIR`` keeps one results file per CPU type (``cpu_slug``): ``DIR/RESULTS-<slug>.md``
with its plots in ``DIR/results/<slug>/``, a summary of the run's headline ratios in
``DIR/results/<slug>.json``, and the index ``DIR/RESULTS.md`` comparing every CPU found there,
with the grouped bar plot ``DIR/results/cpu_ratios.png`` (``write_index``).

Records are entries of pytest-benchmark's ``benchmarks`` list (see ``bench/measure.py``); what
each benchmark measured is in its ``extra_info``:

``section``   ``conv``, ``pool``, ``train``, ``infer``, ``startup``, ``autotune``, ``batch``,
              ``threads``, ``apps`` or ``fit`` (``model.fit`` epochs against a PyTorch loop)
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
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from fastconv.io.atomic import atomic_write_bytes

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
    "apps": ("onnxruntime", "torch"), "fit": ("torch",),
}
LIBRARY_NAMES = {"torch": "PyTorch", "onnxruntime": "onnxruntime"}
ALGO_ORDER = ("direct", "im2col", "winograd", "winograd4", "auto")
#: Summary targets of the lesson network (same-run speed-ups), also drawn in the per-CPU plot.
TRAIN_TARGET, INFER_TARGET, LATENCY_TARGET = 1.5, 1.0, 1.0
#: Lesson training through ``model.fit`` (batch 32, accuracy metric on) vs a PyTorch eager loop.
FIT_TARGET = 1.5
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


def target_text(value: float | None) -> str:
    return "-" if value is None else f">= {value:g}x"


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
    target: float | None  # None: compared, with no target set
    higher_is_better: bool = True  # of the value shown (img/s, GFLOP/s) rather than time
    kind: str = ""  # train, infer, latency, fit, conv, winograd or pool
    device: str = "cpu"


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

    def add(kind, label, unit, rows, library, target):
        row = best([r for r in rows if r.device == device])
        ref = results.reference(row, library) if row is not None else None
        ratio = results.ratio(row, library) if row is not None else None
        targets.append(Target(label + where, unit, row, ref, ratio, target, kind=kind,
                              device=device))

    train = results.section("train")
    batches = ordered(r.batch for r in train)
    if batches:
        b = 32 if 32 in batches else min(batches)
        add("train", f"Lesson net training step, batch {b} (vs PyTorch)", "img/s",
            [r for r in train if r.batch == b], "torch", TRAIN_TARGET)
    fit = [r for r in results.section("fit") if r.batch is not None]
    batches = ordered(r.batch for r in fit)
    if batches:
        b = 32 if 32 in batches else min(batches)
        add("fit", f"Lesson net model.fit, batch {b} (vs PyTorch)", "img/s",
            [r for r in fit if r.batch == b], "torch", FIT_TARGET)
    infer = results.section("infer")
    batches = ordered(r.batch for r in infer)
    if batches:
        # The large batch is the largest one onnxruntime ran (other benchmarks, the Dask one,
        # add fastconv-only inference rows at larger batches).
        compared = [r.batch for r in infer if r.library == "onnxruntime"]
        big, small = max(compared or batches), min(batches)
        add("infer", f"Lesson net inference, batch {big} (vs onnxruntime)", "img/s",
            [r for r in infer if r.batch == big], "onnxruntime", INFER_TARGET)
        add("latency", f"Lesson net inference latency, batch {small} (vs onnxruntime)", "ms",
            [r for r in infer if r.batch == small], "onnxruntime", LATENCY_TARGET)
    conv = results.section("conv", **{"pass": "forward"})
    for workload in ordered(r.workload for r in conv):
        add("conv", f"Conv forward {workload}, best algorithm (vs PyTorch)", "GFLOP/s",
            [r for r in conv if r.workload == workload], "torch", 1.0)
    vgg = [r for r in conv if VGG_TARGET in (r.tags or ()) and r.algo == "winograd4"]
    if vgg:
        add("winograd", f"3x3 conv {vgg[0].workload}, Winograd F(4x4,3x3) (vs PyTorch)",
            "GFLOP/s", vgg, "torch", 1.5)
    pool = [r for r in results.section("pool", op="max", **{"pass": "forward"})
            if MAXPOOL_TARGET in (r.tags or ())]
    if pool:
        add("pool", f"Max pool 2x2 forward on {pool[0].shape.split(' ')[0]} (vs PyTorch)", "us",
            pool, "torch", 5.0)
    return targets


def summary_markdown(results: Results) -> str:
    targets = summary_targets(results)
    if not targets:
        return "No benchmark of the summary ran."
    rows = []
    for t in targets:
        met = ("n/a" if t.ratio is None or t.target is None
               else "yes" if t.ratio >= t.target else "**no**")
        rows.append([t.label, t.row.impl if t.row else "-", _value(t.row, t.unit),
                     t.reference.impl if t.reference else "-",
                     _value(t.reference, t.unit) if t.row else "-", ratio_text(t.ratio),
                     target_text(t.target), met])
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


def fit_markdown(results: Results) -> str:
    out = []
    for (batch, images), group in _grouped(results.section("fit"),
                                           lambda r: (r.batch, r.images)):
        for i, r in enumerate(group):
            ips = r.images_per_s
            first = i == 0
            out.append([str(batch) if first else "", num(images) if first else "", r.impl,
                        num(r.median), num(r.iqr), num(ips),
                        num(EPOCH_IMAGES / ips) if ips else "-",
                        *_ref_columns(results, r, "fit")])
    return table(["Batch", "Images per epoch", "Implementation", "Median s/epoch", "IQR s",
                  "img/s", f"s/epoch ({EPOCH_IMAGES:,} img)", *_ref_headers("fit")], out)


def fit_intro(results: Results) -> str:
    data = ordered(r.data for r in results.section("fit") if r.data) or ["random images"]
    return ("One epoch of `model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=True)` "
            "compiled as the lesson does (Adam, categorical cross-entropy, the accuracy metric) "
            "against a PyTorch eager loop doing the same work (same weights, Adam with Keras's "
            "defaults, cross-entropy on the logits, the accuracy counted per batch, "
            f"`loss.item()` every step, reshuffled each epoch), on {' / '.join(data)}; times "
            "are whole epochs after one untimed warm-up epoch.")


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


#: CPU families whose results are kept under one name whatever the exact model (the project's
#: machines): (words that must all appear in the lower-case model name, slug).
CPU_FAMILIES = ((("amd", "epyc"), "amd-epyc"), (("intel", "xeon"), "intel-xeon"))
_CPU_NOISE = re.compile(r"\((?:r|tm|c)\)|\b(?:cpu|processor|\d+-core)\b|@.*$")


def cpu_slug(model: str | None) -> str:
    """A file-name-safe name for a CPU type, from its model name (``/proc/cpuinfo``'s "model
    name", as ``environment()["cpu"]["model"]`` records it): ``amd-epyc`` for any AMD EPYC,
    ``intel-xeon`` for any Intel Xeon; otherwise the model name in lower case without trademark
    marks, "CPU", "Processor", core counts or the clock ("Intel(R) Core(TM) i7-8700K CPU @
    3.70GHz" -> ``intel-core-i7-8700k``), runs of other characters turned into one ``-``, at
    most 48 characters; ``unknown-cpu`` when nothing is left."""
    text = (model or "").lower()
    words = set(re.findall(r"[a-z0-9]+", text))
    for needed, slug in CPU_FAMILIES:
        if all(w in words for w in needed):
            return slug
    text = _CPU_NOISE.sub(" ", text)
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48].strip("-")
    return slug or "unknown-cpu"


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
    lesson_parts = []
    if results.section("train"):
        lesson_parts.append("### Training step (forward, loss, backward, Adam)\n\n"
                            + train_markdown(results))
    if results.section("fit"):
        lesson_parts.append("### Training through model.fit\n\n" + fit_intro(results)
                            + "\n\n" + fit_markdown(results))
    if results.section("infer"):
        lesson_parts.append("### Inference\n\n" + infer_markdown(results))
    if lesson_parts:
        sections.append("## Lesson network\n\n" + "\n\n".join(lesson_parts))
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
                 results_md: Path | None = None,
                 results_dir: Path | None = None) -> tuple[Path, list[Path]]:
    """Write ``out_dir/report.md`` and its PNGs; with ``results_md`` also that file, its plots
    in ``<its folder>/results/``; with ``results_dir`` the results of this CPU type there
    (``write_cpu_results``: ``RESULTS-<slug>.md``, ``results/<slug>/``, ``results/<slug>.json``)
    and the regenerated index ``RESULTS.md``. Returns (report path, results files written)."""
    if (results_md is not None and results_dir is not None
            and Path(results_md).resolve() == (Path(results_dir) / INDEX_NAME).resolve()):
        raise ValueError(f"--results-md {results_md}: that is the index --results-dir "
                         f"{results_dir} regenerates; give one of the two")
    results = Results(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, note = write_plots(results, out_dir)
    report = out_dir / REPORT_NAME
    atomic_write_bytes(report, markdown(results, env, skipped, plots, note).encode("utf-8"))
    written = []
    if results_md is not None:
        results_md = Path(results_md)
        publish(results, env, skipped, plots, note, results_md, "results/")
        written.append(results_md)
    if results_dir is not None:
        written += write_cpu_results(results, env, Path(results_dir), skipped=skipped,
                                     plots=plots, plot_note=note)
    return report, written


# -- results per CPU type -----------------------------------------------------------------------

INDEX_NAME = "RESULTS.md"
CPU_PLOT = "cpu_ratios.png"
#: The summary rows a CPU's summary keeps (see ``_device_targets`` for the kinds).
HEADLINE_KINDS = ("train", "fit", "infer", "latency", "conv")
#: The groups of the per-CPU plot: kind -> (axis label, dashed target line or None).
PLOT_GROUPS = {
    "train": ("lesson training step\nvs PyTorch", TRAIN_TARGET),
    "fit": ("lesson model.fit\nvs PyTorch loop", FIT_TARGET),
    "infer": ("inference, large batch\nvs onnxruntime", INFER_TARGET),
    "latency": ("latency, batch 1\nvs onnxruntime", LATENCY_TARGET),
}


def cpu_results_name(slug: str) -> str:
    return f"RESULTS-{slug}.md"


def _measured(row: Row | None, unit: str) -> dict | None:
    if row is None:
        return None
    value = {"img/s": row.images_per_s, "GFLOP/s": row.gflops, "ms": row.median * 1e3,
             "us": row.median * 1e6}[unit]
    return {"impl": row.impl, "median_s": row.median, "value": value}


def cpu_summary(results: Results, env: dict) -> dict:
    """The run in a few numbers, for the index: CPU model and slug, date, fastconv commit,
    mode, and the headline same-run ratios (lesson training step, inference at the large batch,
    batch-1 latency, ``model.fit`` when measured, every conv layer's best forward), each with
    both raw values (fastconv's and the reference's implementation, median seconds and the
    value in ``unit``)."""
    model = (env.get("cpu") or {}).get("model") or "unknown"
    slug = cpu_slug(model)
    return {
        "cpu": model, "slug": slug, "date": env.get("date", "?"),
        "commit": env.get("git", "?"), "mode": env.get("mode", "?"),
        "results": cpu_results_name(slug),
        "ratios": [{"kind": t.kind, "label": t.label, "device": t.device, "unit": t.unit,
                    "target": t.target, "ratio": t.ratio,
                    "fastconv": _measured(t.row, t.unit),
                    "reference": _measured(t.reference, t.unit)}
                   for t in summary_targets(results) if t.kind in HEADLINE_KINDS],
    }


def publish(results: Results, env: dict, skipped, plots: dict[str, Path],
            plot_note: str | None, md: Path, link: str, prune: bool = False) -> None:
    """Write the report as ``md`` with its plots copied to ``md``'s folder / ``link``, the
    folder its image links name; ``prune``: plots this run did not draw are removed there."""
    images = md.parent / link
    images.mkdir(parents=True, exist_ok=True)
    if prune:
        drawn = {path.name for path in plots.values()}
        for name in PLOTS.values():
            if name not in drawn:
                (images / name).unlink(missing_ok=True)
    for path in plots.values():
        shutil.copyfile(path, images / path.name)
    atomic_write_bytes(md, markdown(results, env, skipped, plots, plot_note, link).encode("utf-8"))


def write_cpu_results(results: Results, env: dict, folder: Path, *, skipped=(),
                      plots: dict[str, Path], plot_note: str | None) -> list[Path]:
    """``folder/RESULTS-<slug>.md`` (the report, its plots copied to ``folder/results/<slug>/``,
    where plots this run did not draw are removed), ``folder/results/<slug>.json``
    (``cpu_summary``), then the index (``write_index``). Returns the two markdown files."""
    summary = cpu_summary(results, env)
    slug = summary["slug"]
    folder = Path(folder)
    md = folder / cpu_results_name(slug)
    publish(results, env, skipped, plots, plot_note, md, f"results/{slug}/", prune=True)
    atomic_write_bytes(folder / "results" / f"{slug}.json",
                       (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return [md, write_index(folder)]


def load_summaries(folder: Path) -> list[dict]:
    """Every CPU summary in ``folder/results/*.json`` (by slug); other JSON files are ignored,
    an unreadable one is an error naming it."""
    summaries = []
    for path in sorted((Path(folder) / "results").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable CPU summary ({exc})") from exc
        if isinstance(data, dict) and isinstance(data.get("slug"), str) and isinstance(
                data.get("ratios"), list):
            summaries.append(data)
    return summaries


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if entry.get("fastconv") is None:
        return "not measured"
    fc, ref = entry["fastconv"], entry.get("reference")
    if ref is None or entry.get("ratio") is None:
        return f"- ({num(fc['value'])} {entry['unit']}, no reference)"
    return f"{ratio_text(entry['ratio'])} ({num(fc['value'])} vs {num(ref['value'])} " \
           f"{entry['unit']})"


def index_markdown(summaries: list[dict], plot: bool, plot_note: str | None = None) -> str:
    """The index: one line per CPU, the headline ratios with one column per CPU, the plot."""
    lines = ["# fastconv benchmark results per CPU", "",
             "One results file per CPU type the benchmark suite ran on (`fastconv bench "
             "--results-dir bench`, see `bench/README.md`); this index is regenerated from "
             "`results/*.json` each time. A ratio is a speed-up measured within one run on "
             "that CPU: the reference's median time / fastconv's (> 1: fastconv is faster); "
             "in brackets fastconv's value against the reference's. Ratios of different CPUs "
             "come from different runs, possibly of different commits.", ""]
    if not summaries:
        return "\n".join(lines + ["No CPU summary found in `results/`.", ""])
    lines += ["## CPUs", ""]
    for s in summaries:
        lines.append(f"- **{s.get('cpu', '?')}** (`{s['slug']}`): {s.get('mode', '?')} run of "
                     f"{s.get('date', '?')}, fastconv commit {s.get('commit', '?')}: "
                     f"[{s.get('results') or cpu_results_name(s['slug'])}]"
                     f"({s.get('results') or cpu_results_name(s['slug'])})")
    order = {kind: i for i, kind in enumerate(HEADLINE_KINDS)}
    labels: dict[str, tuple] = {}
    for s in summaries:
        for entry in s["ratios"]:
            labels.setdefault(entry["label"], (order.get(entry.get("kind"), len(order)),
                                               len(labels), entry.get("target")))
    by_cpu = [{entry["label"]: entry for entry in s["ratios"]} for s in summaries]
    rows = [[label, target_text(target), *[_cell(found.get(label)) for found in by_cpu]]
            for label, (_, _, target) in sorted(labels.items(), key=lambda kv: kv[1][:2])]
    lines += ["", "## Headline ratios", "",
              table(["Benchmark", "Target", *[f"{s.get('cpu', '?')}" for s in summaries]], rows)]
    if plot:
        training = "training step and model.fit" if "fit" in plotted_kinds(summaries) \
            else "training step"
        lines += ["", f"![Training and inference ratios per CPU](results/{CPU_PLOT})", "",
                  f"Dashed lines: the targets ({training} {TRAIN_TARGET:.1f}x, inference and "
                  f"latency {INFER_TARGET:.1f}x)."]
    elif plot_note:
        lines += ["", f"*{plot_note}*"]
    return "\n".join(lines) + "\n"


def _plot_ratio(summary: dict, kind: str) -> float | None:
    return next((e["ratio"] for e in summary["ratios"] if e.get("kind") == kind
                 and e.get("device", "cpu") == "cpu" and e.get("ratio") is not None), None)


def plotted_kinds(summaries: list[dict]) -> list[str]:
    """The groups of ``PLOT_GROUPS`` that at least one CPU has a ratio for."""
    return [k for k in PLOT_GROUPS if any(_plot_ratio(s, k) is not None for s in summaries)]


def plot_cpu_ratios(summaries: list[dict], path: Path) -> bool:
    """Grouped bars: one group per lesson-network metric (``PLOT_GROUPS``), one bar per CPU,
    the target of each group as a dashed line. False (nothing drawn) without any such ratio."""
    ratio = _plot_ratio
    kinds = plotted_kinds(summaries)
    if not kinds:
        return False
    n = len(summaries)
    fig, (ax,) = _figure(max(8.0, 0.6 * n * len(kinds) + 5), 4.5)
    width = 0.8 / max(n, 2)
    for i, (summary, color) in enumerate(zip(summaries, _colors(n))):
        xs, ys = [], []
        for j, kind in enumerate(kinds):
            value = ratio(summary, kind)
            if value is not None:
                xs.append(j + (i - (n - 1) / 2) * width)
                ys.append(value)
        bars = ax.bar(xs, ys, width, label=summary.get("cpu", summary["slug"]), color=color)
        ax.bar_label(bars, fmt="%.2fx", fontsize=8)
    first = True
    for j, kind in enumerate(kinds):
        target = PLOT_GROUPS[kind][1]
        if target is not None:
            ax.hlines(target, j - 0.45, j + 0.45, colors="black", linestyles="dashed",
                      label="target" if first else None, zorder=3)
            first = False
    ax.set_xticks(range(len(kinds)), [PLOT_GROUPS[k][0] for k in kinds])
    ax.set_ylabel("speed-up (reference time / fastconv time)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # room for the bar labels
    ax.set_title("Lesson network, fastconv against the references, per CPU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return True


def write_index(folder: Path) -> Path:
    """Regenerate ``folder/RESULTS.md`` and ``folder/results/cpu_ratios.png`` from the CPU
    summaries in ``folder/results/*.json``; the same summaries give the same files."""
    folder = Path(folder)
    summaries = load_summaries(folder)
    plot_path = folder / "results" / CPU_PLOT
    drawn, note = False, None
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        note = f"plot not drawn: matplotlib is not installed ({exc})"
    else:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        drawn = plot_cpu_ratios(summaries, plot_path)
    if not drawn and note is None:
        plot_path.unlink(missing_ok=True)
    index = folder / INDEX_NAME
    atomic_write_bytes(index, index_markdown(summaries, drawn, note).encode("utf-8"))
    return index


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
    parser.add_argument("--results-dir", default=None,
                        help="also write DIR/RESULTS-<cpu>.md, DIR/results/<cpu>/ and "
                             "DIR/results/<cpu>.json, and regenerate the index DIR/RESULTS.md")
    args = parser.parse_args(argv)
    records, env, skipped = load_json(Path(args.json))
    out = Path(args.out) if args.out else Path(args.json).parent
    report, results = write_report(
        records, env, out, skipped=skipped,
        results_md=Path(args.results_md) if args.results_md else None,
        results_dir=Path(args.results_dir) if args.results_dir else None)
    print(f"report: {report}")
    for path in results:
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
