"""The GPU run in stages that fit a GPU slot: ``bash bench/gpu_run.sh`` (see ``README.md``,
"The GPU run").

A GPU is lent for 15 minutes in all, machine start-up included, and one command may run 10. The
run is therefore a list of stages, each at most :data:`MAX_STAGE_S` long and run under its own
``timeout`` (coreutils; SIGTERM at the budget, SIGKILL :data:`KILL_AFTER_S` later), in priority
order: a 30-second preflight, then the figures (most wanted first), the GPU tests, the
sanitizers. The first command's budgets, kill grace included, add up to at most
:data:`FIRST_COMMAND_S`; the ``more`` plan holds what a second command can add.

Figures are written as they are measured: one JSON line per row, appended and flushed to disk
(``os.write`` + ``fsync``) before the next row starts, so a stage killed by its timeout keeps
every row it finished, and names the row it was killed in when SIGTERM reaches Python in time.

Subcommands (``python -m bench.gpu_stages ...``, from the repository root):

* ``run [--plan first|more] [--only a,b] [--out DIR] [--dry-run]``: the stages; ``--dry-run``
  lists them with their budgets, commands and the total, and runs nothing;
* ``preflight --out DIR``: ``nvidia-smi``, each GPU backend imported and a device seen, one tiny
  kernel each against NumPy, PyTorch's CUDA and cuDNN, ``compute-sanitizer`` (reported, never a
  failure). Exit 0 when all passed, 1 when a GPU backend failed, 2 when no GPU is usable;
* ``figures GROUP --out DIR [--budget S]``: the rows of ``vgg``, ``lesson``, ``resnet`` or
  ``pool`` appended to ``DIR/rows.jsonl``;
* ``summary DIR``: the rows as a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: when this process started its work (a figures stage's budget counts from its start)
_STARTED = time.monotonic()
#: the longest a stage may be given
MAX_STAGE_S = 300
#: SIGKILL this long after a stage's SIGTERM (counted in the totals)
KILL_AFTER_S = 2
#: the first command's stages, kill grace included, fit in this (a command may run 600 s, and the
#: machine's start and the copies back take the rest of a 15-minute slot)
FIRST_COMMAND_S = 540
#: files under the output folder
ROWS, STAGES, PREFLIGHT = "rows.jsonl", "stages.jsonl", "preflight.json"
#: variables that would make the GPU backends run on the CPU: never in a GPU run
EMULATION_VARIABLES = ("NUMBA_ENABLE_CUDASIM", "FASTCONV_CUPY_EMULATE", "FASTCONV_CUPY_SANITIZE")
GPU_BACKENDS = ("numba-cuda", "cupy")
#: pytest options of every pytest stage: a warning from the CUDA stack (numba-cuda, CuPy, cuda
#: bindings, PyTorch), which the CPU runs never see, is shown, not turned into a failure by the
#: project's ``filterwarnings = error``; the command-line filter comes after the ini's, so it wins
PYTEST_GPU_OPTIONS = ("-p", "no:cacheprovider", "-W", "default")
FIGURE_GROUPS = ("vgg", "lesson", "resnet", "pool")


# -- the plan ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: ``argv`` (``{out}`` and ``{budget}`` filled in at run time) under
    ``timeout budget_s``, its output appended to ``log`` in the output folder."""

    name: str
    budget_s: int
    what: str
    argv: tuple[str, ...]
    log: str
    #: a program the stage needs; missing, the stage is recorded as skipped
    needs: str | None = None

    def command(self, out: Path, budget: int | None = None) -> list[str]:
        budget = self.budget_s if budget is None else budget
        return [a.replace("{out}", str(out)).replace("{budget}", str(budget))
                for a in self.argv]


def _python() -> str:
    return sys.executable or "python3"


def _module(*args: str, warnings_shown: bool = False) -> tuple[str, ...]:
    py = (_python(), "-W", "default") if warnings_shown else (_python(),)
    return (*py, "-m", "bench.gpu_stages", *args)


def _figures(group: str, budget: int, what: str) -> Stage:
    return Stage(f"figures-{group}", budget, what,
                 _module("figures", group, "--out", "{out}", "--budget", "{budget}",
                         warnings_shown=True), "figures.log")


def _sanitizer(tool: str, backend: str, budget: int) -> Stage:
    return Stage(f"{tool}-{backend}", budget,
                 f"compute-sanitizer {tool} on every {backend} kernel once, odd shapes",
                 ("compute-sanitizer", "--tool", tool, "--error-exitcode", "9", _python(),
                  "-m", "tests.kernel_smoke", backend), "sanitizer.txt",
                 needs="compute-sanitizer")


def plans() -> dict[str, list[Stage]]:
    """The stages of each command, in the order they run (priority order)."""
    tests = ("-k", "numba-cuda or cupy or device")
    first = [
        Stage("preflight", 30, "nvidia-smi; numba-cuda, CuPy, PyTorch see the GPU; a tiny "
              "kernel each against NumPy; compute-sanitizer present",
              _module("preflight", "--out", "{out}", "--budget", "{budget}"), "env.txt"),
        _figures("vgg", 110, "VGG-16 3x3, N=32, 56x56x256->256: every algorithm of both "
                 "backends, forward and forward+backward, PyTorch cuDNN TF32 and FP32"),
        _figures("lesson", 60, "lesson training step, batch 32: both backends, PyTorch TF32 and "
                 "FP32"),
        _figures("resnet", 70, "ResNet 3x3 (16x28x28x128) and 1x1 (8x56x56x256->64), as VGG"),
        _figures("pool", 40, "max and average pooling, forward and backward, PyTorch"),
        Stage("tests-gpu", 110, "the test suite's GPU tests, simulator and emulation off",
              (_python(), "-m", "pytest", "tests", *PYTEST_GPU_OPTIONS, "-v", "--tb=short",
               "-rfE", "--maxfail=5", "--timeout=60", *tests), "tests.txt"),
        _sanitizer("memcheck", "numba-cuda", 45),
        _sanitizer("memcheck", "cupy", 45),
    ]
    more = [
        _sanitizer("racecheck", "numba-cuda", 60),
        _sanitizer("racecheck", "cupy", 60),
        Stage("bench-quick", 290, "the benchmark suite's quick GPU rows (pytest-benchmark JSON "
              "and report, for bench/RESULTS-gpu.md)",
              (_python(), "-m", "pytest", "bench", *PYTEST_GPU_OPTIONS, "-q", "--quick",
               "--fc-backend", "numba-cuda", "--fc-backend", "cupy", "-k", "cuda or cupy",
               "--benchmark-json={out}/benchmark.json", "--report-dir", "{out}"), "bench.txt"),
    ]
    return {"first": first, "more": more}


def stage_cost(stage: Stage) -> int:
    """The longest a stage can hold the machine: its budget plus the kill grace."""
    return stage.budget_s + KILL_AFTER_S


def select(plan: str, only: str | None) -> list[Stage]:
    stages = plans()[plan]
    if not only:
        return stages
    every = {s.name: s for p in plans().values() for s in p}
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in every]
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(every)}")
    return [every[n] for n in names]


def describe(stages: list[Stage], out: Path, limit: int) -> str:
    """The dry run's listing: stages, budgets, commands, the total."""
    lines = [f"GPU run: {len(stages)} stages, each under 'timeout -k {KILL_AFTER_S} <budget>', "
             f"results in {out}"]
    for i, s in enumerate(stages, 1):
        lines.append(f"{i:2d}. {s.name:<22} budget {s.budget_s:3d} s  {s.what}")
        timeout = ["timeout", "-k", str(KILL_AFTER_S), str(s.budget_s)]
        lines.append(f"      $ {shlex.join(timeout + s.command(out))} >> {out / s.log} 2>&1")
    budgets = sum(s.budget_s for s in stages)
    total = sum(stage_cost(s) for s in stages)
    lines.append(f"total: {budgets} s of budgets + {len(stages)} x {KILL_AFTER_S} s kill grace "
                 f"= {total} s ({total / 60:.1f} min); limit {limit} s: "
                 f"{'fits' if total <= limit else 'DOES NOT FIT'}")
    return "\n".join(lines)


# -- environment ---------------------------------------------------------------------------------
def gpu_env(**extra: str) -> dict[str, str]:
    """The stages' environment: emulation off, the checkout importable, fastconv's cache
    outside the output folder (whose files are copied back), no background compiling."""
    env = {k: v for k, v in os.environ.items() if k not in EMULATION_VARIABLES}
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env.setdefault("FASTCONV_CACHE_DIR", str(Path(tempfile.gettempdir()) / "fastconv-gpu-cache"))
    env["FASTCONV_BACKGROUND_COMPILE"] = "0"
    env.update(extra)
    return env


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# -- rows ----------------------------------------------------------------------------------------
class RowWriter:
    """Appends one JSON object per line to ``path``, each written with one ``os.write`` on an
    ``O_APPEND`` descriptor and ``fsync``\\ ed before :meth:`write` returns: a process killed
    at any moment leaves every row it wrote, whole."""

    def __init__(self, path, **common):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.common = common
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, row: dict) -> dict:
        row = _plain({**self.common, **row, "time": _now()})
        data = (json.dumps(row, allow_nan=False) + "\n").encode()
        os.write(self._fd, data)
        os.fsync(self._fd)
        return row

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _plain(value):
    """``value`` as strict JSON data: NumPy scalars as Python numbers, a non-finite float as
    its name (``"nan"``, ``"inf"``), tuples as lists, anything else unknown as its ``str``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def read_rows(path) -> list[dict]:
    """The rows of a JSON-lines file; a torn last line (a write cut short) is left out."""
    rows = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# -- running the stages --------------------------------------------------------------------------
def run_stages(stages: list[Stage], out: Path, limit: int = FIRST_COMMAND_S,
               env: dict | None = None, echo=print) -> int:
    """Run ``stages`` in order, each under ``timeout``; record each in ``stages.jsonl``. A
    preflight that finds no usable GPU backend ends the run. Exit status: 0 when every stage
    ran and exited 0, else 1."""
    out.mkdir(parents=True, exist_ok=True)
    env = gpu_env() if env is None else env
    record = RowWriter(out / STAGES)
    timeout_bin = shutil.which("timeout")
    if timeout_bin is None:
        echo("coreutils 'timeout' is not on the PATH: a stage could outlive its budget")
        return 2
    start = time.monotonic()
    status = 0
    stop_reason = None
    for stage in stages:
        elapsed = time.monotonic() - start
        left = int(limit - elapsed) - KILL_AFTER_S
        budget = min(stage.budget_s, left)
        entry = {"stage": stage.name, "budget_s": stage.budget_s, "started_at_s": round(elapsed)}
        if stop_reason is not None or budget < min(5, stage.budget_s):
            why = stop_reason or f"the run's {limit} s are used up"
            record.write({**entry, "status": "not run", "reason": why})
            echo(f"[{elapsed:5.0f} s] {stage.name}: not run ({why})")
            status = 1
            continue
        if stage.needs and shutil.which(stage.needs) is None:
            why = f"{stage.needs} is not on the PATH"
            record.write({**entry, "status": "skipped", "reason": why})
            with open(out / stage.log, "a") as log:
                log.write(f"== {stage.name}: skipped, {why}\n")
            echo(f"[{elapsed:5.0f} s] {stage.name}: skipped ({why})")
            continue
        argv = [timeout_bin, "-k", str(KILL_AFTER_S), str(budget), *stage.command(out, budget)]
        if stage.name == "preflight":
            (out / PREFLIGHT).unlink(missing_ok=True)  # never an earlier run's verdict
        with open(out / stage.log, "ab") as log:
            log.write(f"== {stage.name} ({_now()}, budget {budget} s): "
                      f"{shlex.join(argv)}\n".encode())
            log.flush()
            t0 = time.monotonic()
            rc = subprocess.run(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
            seconds = time.monotonic() - t0
        timed_out = rc in (124, 137, -9)
        state = "timed out" if timed_out else ("ok" if rc == 0 else "failed")
        record.write({**entry, "budget_used_s": budget, "status": state, "exit": rc,
                      "seconds": round(seconds, 1)})
        echo(f"[{elapsed:5.0f} s] {stage.name}: {state} (exit {rc}) in {seconds:.0f} s of "
             f"{budget} s")
        if rc != 0:
            status = 1
        if stage.name == "preflight" and rc != 0:
            usable = _preflight_backends(out)
            for line in _preflight_failures(out):
                echo(f"           {line}")
            if not usable:
                stop_reason = "the preflight found no usable GPU backend"
            else:
                echo(f"           preflight: continuing with {', '.join(usable)}")
    record.close()
    return status


def _preflight_failures(out: Path) -> list[str]:
    try:
        checks = json.loads((out / PREFLIGHT).read_text()).get("checks", {})
    except (OSError, ValueError):
        return [f"preflight: no {PREFLIGHT} was written (see {out / 'env.txt'})"]
    return [f"preflight: {name}: {c.get('reason')}" for name, c in checks.items()
            if not c.get("ok")]


def _preflight_backends(out: Path) -> list[str]:
    try:
        result = json.loads((out / PREFLIGHT).read_text())
    except (OSError, ValueError):
        return []
    return [b for b in GPU_BACKENDS if result.get("checks", {}).get(b, {}).get("ok")]


# -- preflight -----------------------------------------------------------------------------------
def _tiny_conv_case():
    """A 1x6x5x2 input, 3x3x2x3 kernel, valid padding, and its NumPy result (float64)."""
    import numpy as np

    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 6, 5, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    oh, ow = x.shape[1] - 2, x.shape[2] - 2
    want = np.zeros((1, oh, ow, 3))
    for i in range(3):
        for j in range(3):
            want += np.einsum("nhwc,co->nhwo", x[:, i:i + oh, j:j + ow, :].astype(np.float64),
                              w[i, j].astype(np.float64))
    return x, w, b, want + b


def check_backend(name: str) -> dict:
    """Whether fastconv's GPU backend ``name`` runs here on a real GPU: one tiny convolution
    (its direct kernel) against NumPy."""
    import numpy as np

    import fastconv
    from fastconv.geometry import conv_geometry

    reason = fastconv.available_backends().get(name)
    if reason is not None:
        return {"ok": False, "reason": reason}
    backend = fastconv.get_backend(name)
    if getattr(backend, "emulated", False):
        return {"ok": False, "reason": "its kernels are emulated on the CPU here"}
    info = {"device": backend.describe_device()}
    if name == "numba-cuda":
        import numba

        from fastconv.backends.numba_cuda import launch

        info["versions"] = {"numba": numba.__version__,
                            "numba-cuda": _version("numba-cuda")}
        info["cuda_array_interface_sync"] = launch.array_interface_sync()
    import cupy

    info.setdefault("versions", {})["cupy"] = cupy.__version__
    x, w, b, want = _tiny_conv_case()
    g = conv_geometry(x.shape, w.shape, 1, "valid")
    y = backend.conv2d_forward(backend.asarray(x), backend.asarray(w), backend.asarray(b), g,
                               "direct", "linear")
    got = backend.to_host(backend.synchronize(y)).astype(np.float64)
    err = float(np.abs(got - want).max())
    ok = got.shape == want.shape and err <= 1e-4 * max(1.0, float(np.abs(want).max()))
    info.update(ok=ok, kernel="conv direct forward 1x6x5x2 * 3x3x2x3", max_abs_err=err)
    if not ok:
        info["reason"] = f"the tiny convolution differs from NumPy's by {err:.3g}"
    return info


def check_torch() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"ok": False, "reason": f"PyTorch is not installed ({exc})"}
    info = {"versions": {"torch": torch.__version__, "cuda": torch.version.cuda}}
    if not torch.cuda.is_available():
        return {**info, "ok": False,
                "reason": f"torch.cuda.is_available() is False (CUDA build: "
                          f"{torch.version.cuda or 'none, a CPU-only build'})"}
    import numpy as np

    info["versions"]["cudnn"] = torch.backends.cudnn.version()
    info["device"] = torch.cuda.get_device_name()
    info["default_math"] = torch_math_flags(torch)
    x, w, b, want = _tiny_conv_case()
    set_torch_math(torch, "fp32")
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).cuda()
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).cuda()
    y = torch.nn.functional.conv2d(xt, wt, torch.from_numpy(b).cuda())
    got = y.cpu().numpy().transpose(0, 2, 3, 1).astype(np.float64)
    err = float(np.abs(got - want).max())
    info.update(ok=err <= 1e-4 * max(1.0, float(np.abs(want).max())), max_abs_err=err,
                kernel="cuDNN conv, FP32")
    return info


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _check_main(what: str) -> int:
    """``_check NAME``: one JSON line on stdout, whatever happens (no traceback)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = check_torch() if what == "torch" else check_backend(what)
        if caught:
            result["warnings"] = _warning_texts(caught)
    except BaseException as exc:  # a driver or import failure is a result here
        result = {"ok": False, "reason": _one_line(exc)}
    print(json.dumps(result, default=str), flush=True)
    return 0 if result.get("ok") else 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


def _warning_texts(caught) -> list[str]:
    texts = []
    for w in caught:
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())[:200]}"
        if text not in texts:
            texts.append(text)
    return texts[:5]


def preflight(out: Path, budget: float = 30.0, echo=print) -> int:
    """The preflight: every check at once, in its own process with its own time limit."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(5.0, budget - 4.0)
    env = gpu_env()
    procs = {}
    smi = shutil.which("nvidia-smi")
    if smi:
        procs["nvidia-smi"] = subprocess.Popen(
            [smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
             "--format=csv,noheader"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env)
    for what in (*GPU_BACKENDS, "torch"):
        procs[what] = subprocess.Popen(_module("_check", what), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    checks: dict[str, dict] = {}
    if smi is None:
        checks["nvidia-smi"] = {"ok": False, "reason": "nvidia-smi is not on the PATH (no NVIDIA "
                                                       "driver on this machine)"}
    for what, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            checks[what] = {"ok": False, "reason": f"no answer within the preflight's "
                                                   f"{budget:.0f} s"}
            continue
        if what == "nvidia-smi":
            text = stdout.strip()
            checks[what] = ({"ok": True, "gpus": text.splitlines()} if proc.returncode == 0
                            and text else {"ok": False, "reason": f"nvidia-smi failed (exit "
                                           f"{proc.returncode}): {' '.join(text.split())[:300]}"})
            continue
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        try:
            checks[what] = json.loads(lines[-1])
        except (IndexError, ValueError):
            last = [line for line in (stderr or "").splitlines() if line.strip()]
            checks[what] = {"ok": False, "reason": f"the check died (exit {proc.returncode}): "
                                                   f"{last[-1][:300] if last else 'no output'}"}
    checks["compute-sanitizer"] = _sanitizer_check()
    usable = [b for b in GPU_BACKENDS if checks[b].get("ok")]
    gpu = checks["nvidia-smi"]["ok"] or bool(usable)
    code = 0 if gpu and len(usable) == len(GPU_BACKENDS) else (1 if gpu else 2)
    result = {"time": _now(), "exit": code, "usable_backends": usable, "checks": checks}
    (out / PREFLIGHT).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if smi and checks["nvidia-smi"]["ok"]:
        try:
            full = subprocess.run([smi], capture_output=True, text=True, timeout=5)
            echo(full.stdout.rstrip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            echo(f"nvidia-smi: {_one_line(exc)}")
    for what, check in checks.items():
        mark = "ok  " if check.get("ok") else ("note" if what == "compute-sanitizer" else "FAIL")
        detail = check.get("reason") or _check_detail(what, check)
        echo(f"preflight {mark} {what}: {detail}")
    verdict = {0: "every check passed",
               1: f"a GPU is here but only {', '.join(usable) or 'no backend'} of "
                  f"{', '.join(GPU_BACKENDS)} works",
               2: "no GPU here: nvidia-smi and both GPU backends failed; nothing to measure"}
    echo(f"preflight: {verdict[code]} (exit {code}; details in {out / PREFLIGHT})")
    return code


def _check_detail(what: str, check: dict) -> str:
    if what == "nvidia-smi":
        return "; ".join(check.get("gpus", []))
    if what == "compute-sanitizer":
        return check.get("version", "")
    keys = ("device", "versions", "max_abs_err", "cuda_array_interface_sync", "default_math",
            "warnings")
    return ", ".join(f"{k} {check[k]}" for k in keys if k in check)


def _sanitizer_check() -> dict:
    path = shutil.which("compute-sanitizer")
    if path is None:
        return {"ok": False, "reason": "compute-sanitizer is not on the PATH: the sanitizer "
                                       "stages will be skipped (not a failure)"}
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        return {"ok": proc.returncode == 0, "path": path,
                "version": lines[-1] if lines else "", "exit": proc.returncode}
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "reason": f"compute-sanitizer --version failed: {_one_line(exc)}"}


# -- figures -------------------------------------------------------------------------------------
#: timing of every row: back-to-back calls (each ends with a device synchronisation, as in the
#: benchmark suite) in rounds of at least MIN_ROUND_S, enough rounds for TARGET_S
TARGET_S, MIN_ROUNDS, MAX_ROUNDS, MIN_ROUND_S = 0.3, 3, 30, 0.005
#: a call slower than this is timed once
SLOW_CALL_S = 2.0
#: warm-up before timing: at least this many calls and seconds
WARMUP_CALLS, WARMUP_S = 2, 0.2
#: rows are not started with less than this left of the stage's budget
MIN_ROW_S = 3.0
#: the order algorithms are measured in (the fastest candidates first)
ALGO_ORDER = ("winograd4", "im2col", "winograd", "direct")
#: PyTorch's math modes: TF32 allowed for cuDNN convolutions and cuBLAS matmuls, or plain FP32
TORCH_MATH = ("tf32", "fp32")
FASTCONV_MATH = "fp32"
FASTCONV_MATH_NOTE = "fastconv's kernels: FP32 on CUDA cores (no TF32, no tensor cores)"


class Skip(Exception):
    """A row that cannot run here, with the reason."""


class StageTimeout(BaseException):
    """SIGTERM from the stage's ``timeout``."""


def set_torch_math(torch, mode: str) -> dict:
    """Allow TF32 (``tf32``) or not (``fp32``) in cuDNN and cuBLAS, cuDNN's autotuner on; the
    flags as they read back afterwards."""
    allow = mode == "tf32"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.benchmark = True
    return torch_math_flags(torch)


def torch_math_flags(torch) -> dict:
    """``torch.backends.cudnn.allow_tf32``, ``torch.backends.cuda.matmul.allow_tf32``,
    ``cudnn.benchmark`` and, where this PyTorch has them, the ``fp32_precision`` settings."""
    flags = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, get in (
                ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
                ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                ("cudnn.benchmark", lambda: torch.backends.cudnn.benchmark),
                ("cudnn.conv.fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision),
                ("cuda.matmul.fp32_precision",
                 lambda: torch.backends.cuda.matmul.fp32_precision)):
            try:
                value = get()
            except Exception:
                continue
            flags[label] = value if isinstance(value, bool) else str(value)
    return flags


def time_calls(fn) -> dict:
    """Median seconds per call of ``fn``, with the spread. Warm-up first: at least
    :data:`WARMUP_CALLS` calls and :data:`WARMUP_S` seconds (cuDNN's autotuner, lazy loading of
    CUDA modules, allocator growth), at most 10 calls; the last one sizes the rounds."""
    until = time.perf_counter() + WARMUP_S
    for i in range(10):
        start = time.perf_counter()
        fn()
        estimate = max(time.perf_counter() - start, 1e-7)
        if estimate >= SLOW_CALL_S or (i + 1 >= WARMUP_CALLS and time.perf_counter() >= until):
            break
    if estimate >= SLOW_CALL_S:
        samples, iterations = [estimate], 1
    else:
        iterations = max(1, math.ceil(MIN_ROUND_S / estimate))
        rounds = min(max(math.ceil(TARGET_S / (estimate * iterations)), MIN_ROUNDS), MAX_ROUNDS)
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(iterations):
                fn()
            samples.append((time.perf_counter() - start) / iterations)
    samples.sort()
    q = _quantiles(samples)
    return {"median_s": q[1], "q1_s": q[0], "q3_s": q[2], "min_s": samples[0],
            "rounds": len(samples), "calls_per_round": iterations}


def _quantiles(s: list[float]) -> tuple[float, float, float]:
    def at(p):
        k = (len(s) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return at(0.25), at(0.5), at(0.75)


def _rel_err(got, want) -> float:
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))


def _check(err: float, against: str, tolerance: float = 5e-3) -> dict:
    finite = math.isfinite(err)
    return {"against": against, "max_rel_err": err if finite else None,
            "ok": finite and err <= tolerance}


class Figures:
    """The rows of one figures stage, measured in priority order and written one by one."""

    def __init__(self, group: str, out: Path, budget: float, echo=print,
                 started: float | None = None):
        """``budget`` seconds counted from ``started`` (a ``time.monotonic()`` value; by
        default now): the stage's command passes its process's start."""
        self.group = group
        self.writer = RowWriter(out / ROWS, stage=f"figures-{group}", group=group)
        started = time.monotonic() if started is None else started
        self.deadline = started + budget - KILL_AFTER_S - 1.0
        self.echo = echo
        self.torch, self.torch_reason = _torch_cuda()
        #: where PyTorch runs (``cuda``; tests run the rows' code on the CPU)
        self.torch_device = "cuda"
        self.backends = self._backends()
        self.device = None

    def _backends(self) -> dict:
        import fastconv

        found = {}
        for name in GPU_BACKENDS:
            reason = fastconv.available_backends().get(name)
            if reason is None:
                backend = fastconv.get_backend(name)
                if getattr(backend, "emulated", False):
                    reason = "its kernels are emulated on the CPU here"
                else:
                    found[name] = backend
                    continue
            found[name] = Skip(f"backend {name} is unavailable: {reason}")
        return found

    # -- the loop --------------------------------------------------------------------------------
    def run(self, rows) -> int:
        """Measure ``rows`` ((info, thunk) pairs, thunk() -> measured fields) in order."""
        errors = 0
        current = None

        def on_term(signum, frame):
            raise StageTimeout()

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            for info, thunk in rows:
                current = info
                if time.monotonic() + MIN_ROW_S > self.deadline:
                    self.writer.write({**info, "status": "not run",
                                       "reason": "the stage's time budget was used up"})
                    continue
                t0 = time.monotonic()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        fields = thunk()
                        row = {**info, "status": "ok", **fields}
                    except Skip as exc:
                        row = {**info, "status": "skipped", "reason": str(exc)}
                    except Exception as exc:
                        errors += 1
                        row = {**info, "status": "error", "reason": _one_line(exc)}
                        traceback.print_exc(file=sys.stderr)
                if caught:
                    row["warnings"] = _warning_texts(caught)
                row["row_seconds"] = round(time.monotonic() - t0, 2)
                row = self.writer.write(row)
                current = None
                self.echo(_row_line(row))
        except StageTimeout:
            if current is not None:
                self.writer.write({**current, "status": "killed",
                                   "reason": "the stage's timeout ended it during this row"})
            self.echo("figures: stopped by the stage's timeout")
            return 124
        except Exception as exc:  # preparing the rows failed (the rows so far are written)
            traceback.print_exc(file=sys.stderr)
            self.echo(f"figures: stopped: {_one_line(exc)}")
            return 1
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.writer.close()
        return 1 if errors else 0

    def _base(self, section: str, workload: str, shape: str) -> dict:
        return {"section": section, "workload": workload, "shape": shape, "device": self.device}

    # -- convolutions ------------------------------------------------------------------------------
    def conv_rows(self, layer):
        """PyTorch TF32 and FP32, then every backend x algorithm, forward first."""
        from bench import subjects

        arrays = subjects.conv_arrays(layer)
        reference = {}
        for conv_pass in subjects.CONV_PASSES:
            flops = layer.flops * (1 if conv_pass == "forward" else 3)
            base = {**self._base("conv", layer.name, layer.shape_text), "pass": conv_pass,
                    "flops": flops, "tags": list(layer.tags)}
            for mode in ("fp32", "tf32"):  # FP32 first: it is every check's reference
                yield ({**base, **_torch_info(mode)},
                       lambda m=mode, p=conv_pass, f=flops: self._torch_conv(
                           layer, p, m, arrays, reference, f))
            for algo in ALGO_ORDER:
                for name in GPU_BACKENDS:
                    yield ({**base, **_fastconv_info(name, algo)},
                           lambda n=name, a=algo, p=conv_pass, f=flops: self._fastconv_conv(
                               layer, n, a, p, arrays, reference, f))

    def _torch_conv(self, layer, conv_pass, mode, arrays, reference, flops) -> dict:
        from bench import references

        torch = self._torch()
        flags = set_torch_math(torch, mode)
        fn = references.conv_fn(torch, layer, conv_pass, self.torch_device, *arrays)
        out = fn()
        fields = {"torch_flags": flags, **time_calls(fn)}
        if conv_pass == "forward":
            y = out.cpu().numpy().transpose(0, 2, 3, 1)
            if mode == "fp32":
                reference["y"] = y
                fields["check"] = {"against": "itself: the FP32 reference", "ok": True}
            elif "y" in reference:
                fields["check"] = _check(_rel_err(y, reference["y"]), "PyTorch FP32", 1e-2)
        return _with_rates(fields, flops=flops)

    def _fastconv_conv(self, layer, name, algo, conv_pass, arrays, reference, flops) -> dict:
        from bench import subjects
        from fastconv.backends import algorithms

        backend = self._backend(name)
        if algo not in backend.conv_algorithms:
            raise Skip(f"backend {name} does not implement {algo}")
        if not algorithms.ALGORITHMS[algo].supports(layer.geometry):
            raise Skip(f"{algo} cannot compute this layer")
        fn, chosen = subjects.conv_fn(backend, layer, algo, conv_pass, arrays)
        out = fn()
        fields = {"algorithms used": chosen, **time_calls(fn)}
        if conv_pass == "forward":
            if "y" in reference:
                fields["check"] = _check(_rel_err(backend.to_host(out), reference["y"]),
                                         "PyTorch FP32")
            else:
                fields["check"] = {"against": None, "ok": None,
                                   "reason": "no reference (PyTorch with CUDA missing)"}
        return _with_rates(fields, flops=flops)

    # -- the lesson training step ------------------------------------------------------------------
    def lesson_rows(self, batch: int = 32):
        from bench import lesson

        weights = lesson.reference_weights()
        x, ids = lesson.images(batch), lesson.labels(batch)
        base = {**self._base("train", f"lesson-train-b{batch}", f"{batch}x28x28x1"),
                "batch": batch, "images": batch}
        reference = {}
        for mode in ("fp32", "tf32"):
            yield ({**base, **_torch_info(mode)},
                   lambda m=mode: self._torch_train(lesson, weights, x, ids, m, reference))
        for name in GPU_BACKENDS:
            yield ({**base, **_fastconv_info(name, "auto")},
                   lambda n=name: self._fastconv_train(lesson, weights, x, ids, n, reference))

    def _torch_train(self, lesson, weights, x, ids, mode, reference) -> dict:
        from bench import references

        torch = self._torch()
        flags = set_torch_math(torch, mode)
        model = lesson.torch_model(torch, weights, softmax=False,
                                   device=self.torch_device).train()
        optimizer = torch.optim.Adam(model.parameters(), **lesson.ADAM)
        loss_fn = torch.nn.CrossEntropyLoss()
        xt = references.nchw(torch, x, self.torch_device)
        yt = torch.from_numpy(ids).to(self.torch_device)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt), yt)
            loss.backward()
            optimizer.step()
            return loss.item()

        first = step()
        fields = {"torch_flags": flags, "first_loss": first}
        if mode == "fp32":
            reference["loss"] = first
        fields.update(time_calls(step))
        return _with_rates(fields, images=len(x))

    def _fastconv_train(self, lesson, weights, x, ids, name, reference) -> dict:
        import numpy as np

        import fastconv
        from fastconv import config

        backend = self._backend(name)
        with fastconv.use_backend(backend.name), fastconv.use_conv_algo("auto"):
            model = lesson.fastconv_model(weights)
            y = lesson.one_hot(ids)
            first = float(np.asarray(model.train_on_batch(x, y)).ravel()[0])
            model.train_on_batch(x, y)  # 'auto' settles by the third call
            fields = {"first_loss": first, "autotune": config.env_autotune(),
                      **time_calls(lambda: model.train_on_batch(x, y))}
        if "loss" in reference:
            err = abs(first - reference["loss"]) / max(abs(reference["loss"]), 1e-30)
            fields["check"] = _check(err, "PyTorch FP32 first-step loss", 1e-3)
        return _with_rates(fields, images=len(x))

    # -- pooling -----------------------------------------------------------------------------------
    def pool_rows(self, case):
        from bench import subjects

        arrays = subjects.pool_arrays(case)
        nbytes = subjects.pool_bytes(case)
        for op, pool_pass in subjects.POOL_CASES:
            base = {**self._base("pool", case.name, case.shape_text), "op": op,
                    "pass": pool_pass, "bytes": nbytes, "tags": list(case.tags)}
            reference = {}
            yield ({**base, **_torch_info("fp32"), "tf32_applies": False},
                   lambda o=op, p=pool_pass, r=reference: self._torch_pool(case, o, p, arrays, r,
                                                                           nbytes))
            for name in GPU_BACKENDS:
                yield ({**base, **_fastconv_info(name, None)},
                       lambda n=name, o=op, p=pool_pass, r=reference: self._fastconv_pool(
                           case, n, o, p, arrays, r, nbytes))

    def _torch_pool(self, case, op, pool_pass, arrays, reference, nbytes) -> dict:
        from bench import references

        torch = self._torch()
        flags = set_torch_math(torch, "fp32")
        fn = references.pool_fn(torch, case, op, pool_pass, self.torch_device, *arrays)
        out = fn()
        fields = {"torch_flags": flags, **time_calls(fn)}
        if pool_pass == "forward":
            reference["y"] = out.cpu().numpy().transpose(0, 2, 3, 1)
        return _with_rates(fields, nbytes=nbytes)

    def _fastconv_pool(self, case, name, op, pool_pass, arrays, reference, nbytes) -> dict:
        from bench import subjects

        backend = self._backend(name)
        fn = subjects.pool_fn(backend, case, op, pool_pass, arrays)
        out = fn()
        fields = time_calls(fn)
        if pool_pass == "forward" and "y" in reference:
            fields["check"] = _check(_rel_err(backend.to_host(out), reference["y"]),
                                     "PyTorch", 1e-6)
        return _with_rates(fields, nbytes=nbytes)

    # -- helpers -----------------------------------------------------------------------------------
    def _torch(self):
        if self.torch is None:
            raise Skip(self.torch_reason)
        return self.torch

    def _backend(self, name: str):
        backend = self.backends[name]
        if isinstance(backend, Skip):
            raise backend
        return backend

    def rows(self):
        from bench import workloads

        self.device = self._device_name()
        if self.group == "vgg":
            yield from self.conv_rows(_vgg_b32())
        elif self.group == "lesson":
            yield from self.lesson_rows(32)
        elif self.group == "resnet":
            full = {layer.name: layer for layer in workloads.FULL_CONV}
            for name in ("resnet-3x3-b16", "resnet-1x1-b8"):
                yield from self.conv_rows(full[name])
        elif self.group == "pool":
            full = {case.name: case for case in workloads.FULL_POOL}
            for name in ("lesson-pool1-b32", "vgg16-pool2-b8"):
                yield from self.pool_rows(full[name])
        else:
            raise SystemExit(f"unknown figures group {self.group!r}; groups: "
                             f"{', '.join(FIGURE_GROUPS)}")

    def _device_name(self) -> str | None:
        for backend in self.backends.values():
            if not isinstance(backend, Skip):
                return str(backend.describe_device().get("name"))
        if self.torch is not None:
            return self.torch.cuda.get_device_name()
        return None


def _vgg_b32():
    from bench.workloads import VGG_TARGET, ConvLayer

    return ConvLayer("vgg16-conv3_2-b32", "VGG-16 block 3", 32, 56, 56, 256, 256, 3, pad=1,
                     tags=(VGG_TARGET,))


def _torch_cuda():
    """(torch, None) where PyTorch sees a CUDA device, else (None, the reason)."""
    try:
        import torch
    except ImportError as exc:
        return None, f"PyTorch is not installed ({exc})"
    if not torch.cuda.is_available():
        return None, (f"no CUDA device for PyTorch (torch {torch.__version__}, CUDA build "
                      f"{torch.version.cuda or 'none'})")
    return torch, None


def _torch_info(mode: str) -> dict:
    return {"library": "torch", "impl": f"torch-cuda cuDNN {mode.upper()}", "math": mode,
            "math_note": ("TF32 allowed: cudnn.allow_tf32 and cuda.matmul.allow_tf32 True"
                          if mode == "tf32" else
                          "TF32 off: cudnn.allow_tf32 and cuda.matmul.allow_tf32 False")}


def _fastconv_info(backend: str, algo: str | None) -> dict:
    impl = f"{backend}/{algo}" if algo else backend
    return {"library": "fastconv", "backend": backend, "algo": algo, "impl": impl,
            "math": FASTCONV_MATH, "math_note": FASTCONV_MATH_NOTE}


def _with_rates(fields: dict, flops: int = 0, nbytes: int = 0, images: int = 0) -> dict:
    median = fields["median_s"]
    if flops:
        fields["gflop_s"] = flops / median / 1e9
    if nbytes:
        fields["gb_s"] = nbytes / median / 1e9
    if images:
        fields["img_s"] = images / median
    return fields


def _row_line(row: dict) -> str:
    what = " ".join(str(row.get(k)) for k in ("workload", "op", "pass") if row.get(k))
    impl = f"{row.get('impl')} [{row.get('math')}]"
    if row.get("status") != "ok":
        return f"{what:<40} {impl:<34} {row.get('status')}: {row.get('reason')}"
    check = row.get("check") or {}
    mark = {True: "", False: "  CHECK FAILED", None: ""}.get(check.get("ok"), "")
    return f"{what:<40} {impl:<34} {row['median_s'] * 1e3:9.3f} ms{mark}"


def figures(group: str, out: Path, budget: float) -> int:
    """One figures stage. ``auto`` runs the heuristic's choice (``FASTCONV_AUTOTUNE=0`` unless
    set): autotuning compiles every candidate, which a short GPU slot cannot afford."""
    if group not in FIGURE_GROUPS:
        raise SystemExit(f"unknown figures group {group!r}; groups: {', '.join(FIGURE_GROUPS)}")
    os.environ.setdefault("FASTCONV_AUTOTUNE", "0")
    os.environ["FASTCONV_BACKGROUND_COMPILE"] = "0"
    stage = Figures(group, out, budget, started=_STARTED)
    return stage.run(stage.rows())


# -- the summary ---------------------------------------------------------------------------------
def summarize(rows: list[dict]) -> str:
    """The measured rows as a markdown table, each fastconv row against PyTorch TF32 and FP32
    of the same workload and pass."""
    ok = [r for r in rows if r.get("status") == "ok" and "median_s" in r]
    torch = {}
    for r in ok:
        if r.get("library") == "torch":
            torch[(r.get("workload"), r.get("op"), r.get("pass"), r.get("math"))] = r["median_s"]
    device = next((r.get("device") for r in rows if r.get("device")), None)
    lines = [f"GPU figures ({device or 'device unknown'}), median of back-to-back calls, each "
             f"ending with a device synchronisation", "",
             "| workload | pass | implementation | math | median ms | rate | vs torch TF32 | "
             "vs torch FP32 | check |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in ok:
        key = (r.get("workload"), r.get("op"), r.get("pass"))
        rate = (f"{r['gflop_s']:.0f} GFLOP/s" if "gflop_s" in r else
                f"{r['gb_s']:.0f} GB/s" if "gb_s" in r else
                f"{r['img_s']:.0f} img/s" if "img_s" in r else "")
        ratios = []
        for mode in TORCH_MATH:
            ref = torch.get((*key, mode))
            ratios.append(f"{ref / r['median_s']:.2f}x" if ref and r.get("library") != "torch"
                          else "")
        check = r.get("check") or {}
        mark = {True: "ok", False: "FAILED"}.get(check.get("ok"), "")
        if mark and check.get("max_rel_err") is not None:
            mark += f" ({check['max_rel_err']:.1e})"
        what = f"{r.get('op')} {r.get('pass')}" if r.get("op") else r.get("pass", "step")
        lines.append(f"| {r.get('workload')} | {what} | {r.get('impl')} | {r.get('math')} | "
                     f"{r['median_s'] * 1e3:.3f} | {rate} | {ratios[0]} | {ratios[1]} | "
                     f"{mark} |")
    others = [r for r in rows if r.get("status") != "ok"]
    if others:
        lines += ["", "Rows not measured:", ""]
        lines += [f"- {r.get('workload')} {r.get('pass', '')} {r.get('impl')}: "
                  f"{r.get('status')}, {r.get('reason')}" for r in others]
    return "\n".join(lines) + "\n"


# -- command line --------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_stages",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the stages (or list them with --dry-run)")
    run.add_argument("--plan", choices=sorted(plans()), default="first")
    run.add_argument("--only", metavar="STAGE[,STAGE]", help="just these stages, in this order")
    run.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu")
    run.add_argument("--limit", type=int, default=FIRST_COMMAND_S,
                     help="seconds the whole command may take (default %(default)s)")
    run.add_argument("--dry-run", action="store_true",
                     help="list the stages, budgets, commands and total; run nothing")
    pre = sub.add_parser("preflight", help="the preflight checks")
    pre.add_argument("--out", type=Path, required=True)
    pre.add_argument("--budget", type=float, default=30.0)
    fig = sub.add_parser("figures", help="one group of figure rows")
    fig.add_argument("group", choices=FIGURE_GROUPS)
    fig.add_argument("--out", type=Path, required=True)
    fig.add_argument("--budget", type=float, default=float(MAX_STAGE_S))
    summ = sub.add_parser("summary", help="the rows of an output folder as markdown")
    summ.add_argument("out", type=Path)
    check = sub.add_parser("_check")
    check.add_argument("what", choices=(*GPU_BACKENDS, "torch"))
    args = parser.parse_args(argv)

    if args.command == "run":
        stages = select(args.plan, args.only)
        if args.dry_run:
            print(describe(stages, args.out.resolve(), args.limit))
            return 0
        out = args.out.resolve()
        status = run_stages(stages, out, args.limit)
        rows = read_rows(out / ROWS)
        if rows:
            text = summarize(rows)
            (out / "summary.md").write_text(text)
            print(text)
        return status
    if args.command == "preflight":
        return preflight(args.out.resolve(), args.budget)
    if args.command == "figures":
        return figures(args.group, args.out.resolve(), args.budget)
    if args.command == "summary":
        print(summarize(read_rows(args.out / ROWS)), end="")
        return 0
    return _check_main(args.what)


if __name__ == "__main__":
    sys.exit(main())
