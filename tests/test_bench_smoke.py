"""The benchmark suite still runs: its smoke mode (tiny shapes, one untimed call per benchmark)
in a subprocess, exactly as CI and users invoke it, must exit 0 and write the report, and with
``--results-dir`` this CPU's results file, its summary and the index.

The suite itself is ``bench/`` (installed as ``fastconv.bench``); this test only keeps it from
rotting. It needs pytest-benchmark (in the ``test`` extra) and uses PyTorch and onnxruntime
where installed (their rows skip otherwise).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest


def bench_dir() -> Path:
    spec = importlib.util.find_spec("fastconv.bench")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("fastconv.bench is not installed: reinstall fastconv (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0])


def test_bench_package_is_the_suite():
    folder = bench_dir()
    for name in ("conftest.py", "workloads.py", "report.py", "test_layers.py", "test_pooling.py",
                 "test_models.py", "test_fit.py", "test_scaling.py", "test_startup.py"):
        assert (folder / name).is_file(), name


def test_bench_smoke(tmp_path):
    import pytest_benchmark  # noqa: F401 - the benchmark suite needs it; the test extra has it

    folder = bench_dir()
    out, results = tmp_path / "report", tmp_path / "results"
    command = [sys.executable, "-m", "pytest", str(folder), "--smoke", "--benchmark-disable",
               "-q", "-p", "no:cacheprovider", "--report-dir", str(out),
               "--results-dir", str(results)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=folder.parent)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{' '.join(command)} exited with {done.returncode}:\n{tail}"
    report = out / "report.md"
    assert report.is_file(), f"no report written:\n{tail}"
    text = report.read_text(encoding="utf-8")
    for heading in ("## Machine and software", "## Summary", "## Convolution layers",
                    "## Pooling", "## Lesson network", "### Training through model.fit",
                    "## Start-up", "## Scaling"):
        assert heading in text, heading
    assert "| Lesson net model.fit, batch 32 (vs PyTorch) |" in text
    from fastconv.bench.report import cpu_slug

    from fastconv.cli import cpu_description

    slug = cpu_slug(cpu_description()[0])
    own = results / f"RESULTS-{slug}.md"
    assert own.is_file(), f"no {own.name} written:\n{tail}"
    assert own.read_text(encoding="utf-8") == re.sub(r"\]\(([\w.]+\.png)\)",
                                                     rf"](results/{slug}/\1)", text)
    assert (results / "results" / f"{slug}.json").is_file()
    assert f"[RESULTS-{slug}.md](RESULTS-{slug}.md)" in (results / "RESULTS.md").read_text(
        encoding="utf-8")
