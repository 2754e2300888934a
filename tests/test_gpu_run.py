"""The GPU run's structure (``bench/gpu_run.sh``, ``bench/gpu_stages.py``), checked on the CPU.

The run must fit a GPU slot: stages of at most five minutes, each under its own ``timeout``, the
first command's budgets within nine minutes, the preflight first, the figures in priority order,
the sanitizers after them. Rows are written as they are measured, so a stage killed by its
timeout (SIGTERM) or killed outright (SIGKILL) keeps what it wrote. Without a GPU the preflight
says so and fails without a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import gpu_stages

ROOT = Path(__file__).resolve().parents[1]
FIRST = ["preflight", "figures-vgg", "figures-lesson", "figures-resnet", "figures-pool",
         "tests-gpu", "memcheck-numba-cuda", "memcheck-cupy"]
_STAGE_LINE = re.compile(r"^\s*\d+\. (\S+)\s+budget\s+(\d+) s")
_TOTAL_LINE = re.compile(r"^total: (\d+) s of budgets \+ (\d+) x (\d+) s kill grace = (\d+) s")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in gpu_stages.EMULATION_VARIABLES}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def _dry_run(tmp_path, *args) -> tuple[list[tuple[str, int]], tuple[int, ...], str]:
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_run.sh"), "--dry-run", "--out",
                           str(out), *args], capture_output=True, text=True, timeout=60,
                          env=_env(PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stderr
    assert not out.exists(), "the dry run wrote something"
    lines = proc.stdout.splitlines()
    stages = [(m.group(1), int(m.group(2))) for m in map(_STAGE_LINE.match, lines) if m]
    totals = [tuple(map(int, m.groups())) for m in map(_TOTAL_LINE.match, lines) if m]
    assert len(totals) == 1, proc.stdout
    return stages, totals[0], proc.stdout


def test_the_dry_run_lists_the_first_command_in_priority_order(tmp_path):
    stages, (budgets, count, grace, total), text = _dry_run(tmp_path)
    assert [name for name, _ in stages] == FIRST
    assert all(0 < budget <= 300 for _, budget in stages)
    assert dict(stages)["preflight"] <= 30
    assert budgets == sum(b for _, b in stages) and count == len(stages)
    assert total == budgets + count * grace <= 540
    assert "fits" in text.splitlines()[-1]
    # every stage shows its command under its own timeout; the pytest stages keep warnings
    # from the CUDA stack from failing them (a command-line -W comes after the ini's 'error')
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("$ ")]
    assert len(commands) == len(stages)
    assert all(c.startswith(f"$ timeout -k {grace} ") for c in commands)
    pytest_commands = [c for c in commands if " -m pytest " in c]
    assert pytest_commands and all(" -W default" in c for c in pytest_commands)


def test_figures_come_first_and_sanitizers_after_them():
    names = [s.name for s in gpu_stages.plans()["first"]]
    figures = [i for i, n in enumerate(names) if n.startswith("figures-")]
    sanitizers = [i for i, n in enumerate(names) if n.startswith(("memcheck", "racecheck"))]
    assert names[0] == "preflight"
    assert [names[i] for i in figures] == [f"figures-{g}" for g in gpu_stages.FIGURE_GROUPS]
    assert sanitizers and min(sanitizers) > max(figures)


@pytest.mark.parametrize("plan", sorted(gpu_stages.plans()))
def test_every_plan_fits_a_command(plan):
    stages = gpu_stages.plans()[plan]
    assert all(s.budget_s <= gpu_stages.MAX_STAGE_S for s in stages)
    assert sum(gpu_stages.stage_cost(s) for s in stages) <= gpu_stages.FIRST_COMMAND_S
    assert len({s.name for s in stages}) == len(stages)


def test_the_row_writer_appends_whole_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    first = gpu_stages.RowWriter(path, stage="a")
    first.write({"row": 1})
    first.write({"row": 2})
    first.close()
    second = gpu_stages.RowWriter(path, stage="b")
    second.write({"row": 3})
    second.close()
    with open(path, "a") as f:
        f.write('{"row": 4, "cut sh')  # a write cut short by a kill
    rows = gpu_stages.read_rows(path)
    assert [(r["stage"], r["row"]) for r in rows] == [("a", 1), ("a", 2), ("b", 3)]
    assert all("time" in r for r in rows)


def test_a_row_written_before_a_sigkill_survives(tmp_path):
    path = tmp_path / "rows.jsonl"
    code = textwrap.dedent("""
        import sys, time
        from bench.gpu_stages import RowWriter
        writer = RowWriter(sys.argv[1], stage="killed")
        writer.write({"workload": "measured", "median_s": 0.001})
        print("written", flush=True)
        time.sleep(60)
        writer.write({"workload": "never"})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    rows = gpu_stages.read_rows(path)
    assert [r["workload"] for r in rows] == ["measured"]
    assert rows[0]["stage"] == "killed"


_SLOW_STAGE = textwrap.dedent("""
    import sys, time
    from bench.gpu_stages import Figures, RowWriter
    figures = Figures.__new__(Figures)
    figures.writer = RowWriter(sys.argv[1], stage="slow")
    figures.deadline = time.monotonic() + 100
    figures.echo = print

    def hang():
        time.sleep(60)

    rows = [({"workload": "quick"}, lambda: {"median_s": 0.002}),
            ({"workload": "hung"}, hang),
            ({"workload": "never reached"}, lambda: {"median_s": 0.001})]
    sys.exit(figures.run(iter(rows)))
""")


@pytest.mark.skipif(shutil.which("timeout") is None, reason="coreutils timeout is missing")
def test_a_stage_over_its_budget_is_stopped_and_keeps_its_rows(tmp_path):
    out = tmp_path / "out"
    rows = out / gpu_stages.ROWS
    slow = gpu_stages.Stage("slow", 2, "a stage that hangs in its second row",
                            (sys.executable, "-c", _SLOW_STAGE, str(rows)), "slow.log")
    after = gpu_stages.Stage("after", 10, "the next stage still runs",
                             (sys.executable, "-c", "print('after')"), "after.log")
    lines = []
    start = time.monotonic()
    status = gpu_stages.run_stages([slow, after], out, limit=60, env=_env(),
                                   echo=lines.append)
    assert time.monotonic() - start < 30
    assert status == 1
    stages = gpu_stages.read_rows(out / gpu_stages.STAGES)
    assert [(s["stage"], s["status"], s["exit"]) for s in stages] == [
        ("slow", "timed out", 124), ("after", "ok", 0)]
    written = gpu_stages.read_rows(rows)
    assert [(r["workload"], r["status"]) for r in written] == [("quick", "ok"), ("hung", "killed")]
    assert (out / "slow.log").read_text().startswith("== slow")


def test_a_failed_preflight_without_a_gpu_backend_ends_the_run(tmp_path):
    out = tmp_path / "out"
    fake = ("import json, sys; open(sys.argv[1], 'w').write(json.dumps({'checks': {"
            "'numba-cuda': {'ok': False, 'reason': 'no GPU'}, 'cupy': {'ok': False, "
            "'reason': 'no GPU'}}})); sys.exit(2)")
    preflight = gpu_stages.Stage("preflight", 10, "a preflight that finds nothing",
                                 (sys.executable, "-c", fake, str(out / gpu_stages.PREFLIGHT)),
                                 "env.txt")
    figures = gpu_stages.Stage("figures-vgg", 10, "never run",
                               (sys.executable, "-c", "raise SystemExit(3)"), "figures.log")
    lines = []
    assert gpu_stages.run_stages([preflight, figures], out, limit=60, env=_env(),
                                 echo=lines.append) == 1
    stages = gpu_stages.read_rows(out / gpu_stages.STAGES)
    assert [(s["stage"], s["status"]) for s in stages] == [("preflight", "failed"),
                                                           ("figures-vgg", "not run")]
    assert "no usable GPU backend" in stages[1]["reason"]
    assert any("numba-cuda: no GPU" in line for line in lines)


def test_pytest_stages_show_warnings_from_the_cuda_stack_instead_of_failing(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (tmp_path / "test_warns.py").write_text(
        "import warnings\n\n\ndef test_warns():\n"
        "    warnings.warn('from an untested CUDA stack', DeprecationWarning)\n")
    base = [sys.executable, "-m", "pytest", "-q", "-c", str(tmp_path / "pytest.ini"),
            "--rootdir", str(tmp_path), str(tmp_path / "test_warns.py")]
    strict = subprocess.run([*base, "-p", "no:cacheprovider"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert strict.returncode == 1, strict.stdout
    relaxed = subprocess.run([*base, *gpu_stages.PYTEST_GPU_OPTIONS], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "untested CUDA stack" in relaxed.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_the_preflight_without_a_gpu_says_so_and_fails_cleanly(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_stages", "preflight", "--out",
                           str(out), "--budget", "30"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    assert "preflight FAIL nvidia-smi: nvidia-smi is not on the PATH" in proc.stdout
    assert "no GPU here" in proc.stdout.splitlines()[-1]
    result = json.loads((out / gpu_stages.PREFLIGHT).read_text())
    assert result["exit"] == 2 and result["usable_backends"] == []
    for backend in gpu_stages.GPU_BACKENDS:
        assert not result["checks"][backend]["ok"] and result["checks"][backend]["reason"]
    assert "compute-sanitizer" in result["checks"]  # reported, whatever it found


def test_figures_rows_name_their_math_and_check_against_pytorch_fp32(tmp_path, monkeypatch):
    """The figures code on the CPU: fastconv's numpy backend stands in for a GPU backend and
    PyTorch's CPU for CUDA, on a tiny layer and a tiny pooling case."""
    import torch

    import fastconv
    from bench import workloads

    monkeypatch.setattr(gpu_stages, "_torch_cuda", lambda: (torch, None))
    monkeypatch.setattr(gpu_stages, "TARGET_S", 0.001)
    monkeypatch.setattr(gpu_stages, "WARMUP_S", 0.0)
    monkeypatch.setattr(gpu_stages, "ALGO_ORDER", ("im2col",))
    monkeypatch.setattr(gpu_stages.Figures, "_backends", lambda self: {
        "numba-cuda": fastconv.get_backend("numpy"),
        "cupy": gpu_stages.Skip("backend cupy is unavailable: a stand-in")})
    figures = gpu_stages.Figures("vgg", tmp_path, budget=300, echo=lambda line: None)
    figures.torch_device = "cpu"
    layer, case = workloads.SMOKE_CONV[1], workloads.SMOKE_POOL[0]

    def rows():
        yield from figures.conv_rows(layer)
        yield from figures.pool_rows(case)

    assert figures.run(rows()) == 0
    written = gpu_stages.read_rows(tmp_path / gpu_stages.ROWS)
    measured = [r for r in written if r["status"] == "ok"]
    assert {r["status"] for r in written} == {"ok", "skipped"}
    for r in measured:
        assert r["median_s"] > 0 and r["rounds"] >= 1 and r["math"] in ("fp32", "tf32")
    torch_rows = [r for r in measured if r["library"] == "torch" and r["section"] == "conv"]
    assert sorted(r["math"] for r in torch_rows) == ["fp32", "fp32", "tf32", "tf32"]
    for r in torch_rows:
        allowed = r["math"] == "tf32"
        assert r["torch_flags"]["cudnn.allow_tf32"] is allowed
        assert r["torch_flags"]["cuda.matmul.allow_tf32"] is allowed
    forward = [r for r in measured if r["library"] == "fastconv" and r["pass"] == "forward"]
    assert forward and all(r["check"]["ok"] and r["check"]["against"] == "PyTorch FP32"
                           for r in forward if r["section"] == "conv")
    assert all(r["math"] == "fp32" and "no TF32" in r["math_note"]
               for r in measured if r["library"] == "fastconv")
    table = gpu_stages.summarize(written)
    assert "| numba-cuda/im2col | fp32 |" in table and "Rows not measured" in table
