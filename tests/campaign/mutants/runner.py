"""Running mutants: one copy of the tree, one mutant at a time, its mapped tests in a child.

The tree (without ``.git``, ``.venv`` and caches) is copied once per campaign into
``<workdir>/tree``, at the same place every time, so that kernel caches keyed by source paths
and times stay valid from one run to the next. For each mutant the file is rewritten, pytest
runs the mutant's selection with the copy as the working folder and first on PYTHONPATH (after
``boot/``, whose ``sitecustomize`` points the editable install's finder at the copy, so that
``fastconv.kernels`` is the copy's too), and the file is put back with its original time.

Caches: the numba-cpu kernel cache is keyed by the backend's sources, so a mutant of a kernel
file gets a cold ``FASTCONV_CACHE_DIR`` of its own (removed afterwards); a mutant of the
backend's host code (``HOST_ONLY_FILES``) keeps the pristine kernels (``NUMBA_CACHE_DIR``);
every other mutant shares ``<workdir>/cache``, warm after the first run.

Outcomes: ``killed`` (a selected test failed, or the mutant broke the collection),
``survived`` (every selected test passed), ``timeout``, ``error`` (the search string not found
exactly once, no test selected or every one skipped, pytest's own errors).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .catalogue import FAMILIES, MUTANTS

ROOT = Path(__file__).resolve().parents[3]
BOOT = Path(__file__).resolve().parent / "boot"
#: folders and files left out of the copy
IGNORED = (".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
           "*.egg-info", "build", "dist", "*.nbi", "*.nbc")
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / f"fastconv-mutants-{os.getuid()}"
DEFAULT_TIMEOUT = 900.0
#: the pytest options of every run: stop at the first failure, fixed order, no cache files
PYTEST_OPTIONS = ("-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider", "-W",
                  "ignore::pytest.PytestUnknownMarkWarning")


@dataclass
class Result:
    id: str
    family: str
    status: str
    seconds: float
    rc: int | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def count_occurrences(mutant, root: Path = ROOT) -> int:
    """How many times the mutant's search string occurs in its file under ``root``."""
    path = root / mutant.file
    if not path.is_file():
        return 0
    return path.read_text(encoding="utf-8").count(mutant.search)


def copy_tree(dest: Path, source: Path = ROOT) -> Path:
    """A fresh copy of ``source`` at ``dest`` (file times kept)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    return dest


class Workspace:
    """``<workdir>/tree`` (the copy) and ``<workdir>/cache`` (the shared warm cache)."""

    def __init__(self, workdir: Path | str = DEFAULT_WORKDIR, source: Path = ROOT,
                 nice: int = 10):
        self.workdir = Path(workdir)
        self.tree = self.workdir / "tree"
        self.cache = self.workdir / "cache"
        self.nice = nice
        self.source = source
        self._pristine_numba: str | None = None

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(exist_ok=True)
        copy_tree(self.tree, self.source)
        self.verify()

    def base_env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        for name in ("NUMBA_ENABLE_CUDASIM", "FASTCONV_CUPY_EMULATE", "NUMBA_CACHE_DIR",
                     "FASTCONV_CACHE_DIR", "PYTEST_ADDOPTS"):
            env.pop(name, None)
        env["PYTHONPATH"] = os.pathsep.join([str(self.tree / BOOT.relative_to(ROOT)),
                                             str(self.tree)])
        env["FASTCONV_MUTANT_TREE"] = str(self.tree)
        env["FASTCONV_CACHE_DIR"] = str(self.cache)
        env.update(extra or {})
        return env

    def verify(self) -> None:
        """The child imports the copy's fastconv and CUDA C sources (checked once per
        workspace); remembers the pristine numba-cpu kernel folder."""
        code = ("import fastconv, json\n"
                "from fastconv.backends import jit_cache\n"
                "from fastconv.backends.cupy_backend import loader\n"
                "print(json.dumps([fastconv.__file__, str(loader.kernels_dir()), "
                "str(jit_cache.folder())]))")
        out = subprocess.run([sys.executable, "-c", code], cwd=self.tree, env=self.base_env(),
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"the copy's fastconv does not import:\n{out.stderr[-3000:]}")
        package, kernels, numba_dir = json.loads(out.stdout.strip().splitlines()[-1])
        tree = str(self.tree.resolve())
        for what, path in (("fastconv", package), ("fastconv.kernels", kernels)):
            if not str(Path(path).resolve()).startswith(tree + os.sep):
                raise RuntimeError(f"the child imports {what} from {path}, not from the copy "
                                   f"{tree}")
        self._pristine_numba = numba_dir

    def command(self, mutant) -> list:
        cmd = [sys.executable, "-m", "pytest", *PYTEST_OPTIONS, *mutant.tests]
        if mutant.k:
            cmd += ["-k", mutant.k]
        if self.nice and shutil.which("nice"):
            cmd = ["nice", "-n", str(self.nice), *cmd]
        return cmd

    def run(self, mutant, timeout: float = DEFAULT_TIMEOUT, mutate: bool = True) -> Result:
        """Apply ``mutant`` (unless ``mutate`` is false: the baseline of its selection), run
        its tests, restore the file."""
        start = time.monotonic()
        path = self.tree / mutant.file
        original = path.read_bytes() if path.is_file() else None
        text = original.decode("utf-8") if original is not None else ""
        found = text.count(mutant.search)
        if found != 1:
            return Result(mutant.id, mutant.family, "error", 0.0,
                          detail=f"search string found {found} times in {mutant.file}")
        stat = path.stat()
        cold = None
        extra = dict(mutant.env)
        if mutate and mutant.keys_kernel_cache:
            cold = Path(tempfile.mkdtemp(prefix=f"cache-{mutant.id}-", dir=self.workdir))
            extra["FASTCONV_CACHE_DIR"] = str(cold)
            if not mutant.rebuilds_kernels and self._pristine_numba:
                extra["NUMBA_CACHE_DIR"] = self._pristine_numba
        try:
            if mutate:
                path.write_text(text.replace(mutant.search, mutant.replace), encoding="utf-8")
            rc, output, timed_out = _run(self.command(mutant), self.tree,
                                         self.base_env(extra), timeout)
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            if cold is not None:
                shutil.rmtree(cold, ignore_errors=True)
        return classify(mutant, rc, output, timed_out, time.monotonic() - start)


def _run(cmd, cwd, env, timeout):
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return proc.returncode, output or "", True


_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|error|errors|deselected)")


def classify(mutant, rc, output: str, timed_out: bool, seconds: float) -> Result:
    def result(status, detail=""):
        return Result(mutant.id, mutant.family, status, round(seconds, 1), rc, detail)

    if timed_out:
        return result("timeout", "killed after the time limit")
    counts = {}
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    for n, what in _SUMMARY.findall(tail):
        counts[what] = int(n)
    failed = [line.split(" - ")[0][7:] for line in output.splitlines()
              if line.startswith("FAILED ")]
    if rc == 1:
        return result("killed", failed[0] if failed else tail)
    if rc == 2 and "error" in output.lower() and "collect" in output.lower():
        return result("killed", "the mutant broke the collection: " + tail)
    if rc == 0:
        if counts.get("passed", 0) == 0:
            return result("error", f"no selected test passed or failed ({tail})")
        return result("survived", tail)
    if rc == 5:
        return result("error", "no test selected")
    return result("error", f"pytest exit status {rc}: {output.strip()[-500:]}")


def select(ids=None, families=None, sample: int | None = None, seed: int = 0) -> list:
    """The mutants asked for; ``sample`` takes that many, spread over the families
    (round-robin, a random order within each family, ``seed``)."""
    import random

    chosen = [m for m in MUTANTS if (not ids or m.id in ids)
              and (not families or m.family in families)]
    if ids:
        unknown = set(ids) - {m.id for m in MUTANTS}
        if unknown:
            raise ValueError(f"unknown mutant ids: {', '.join(sorted(unknown))}")
    if sample is None or sample >= len(chosen):
        return chosen
    rng = random.Random(seed)
    pools = {f: [m for m in chosen if m.family == f] for f in FAMILIES}
    for pool in pools.values():
        rng.shuffle(pool)
    out = []
    while len(out) < sample:
        for f in FAMILIES:
            if pools[f] and len(out) < sample:
                out.append(pools[f].pop())
    return out


def summarize(results) -> dict:
    counts = {s: sum(r.status == s for r in results)
              for s in ("killed", "survived", "timeout", "error")}
    scored = counts["killed"] + counts["survived"]
    return {**counts, "total": len(results),
            "kill_rate": counts["killed"] / scored if scored else None,
            "survivors": [r.id for r in results if r.status == "survived"],
            "seconds": round(sum(r.seconds for r in results), 1)}


def campaign(mutants, workspace: Workspace, out: Path | None = None,
             timeout: float = DEFAULT_TIMEOUT, baseline: bool = False, echo=print) -> list:
    """Run each mutant (each selection unmutated, ``baseline``); results appended to ``out``
    as JSON lines as they come."""
    results = []
    for i, mutant in enumerate(mutants, 1):
        r = workspace.run(mutant, timeout, mutate=not baseline)
        results.append(r)
        if echo:
            echo(f"[{i}/{len(mutants)}] {mutant.id:32} {r.status:9} {r.seconds:7.1f}s  "
                 f"{r.detail[:90]}")
        if out is not None:
            record = {**r.as_dict(), "baseline": baseline,
                      "when": datetime.datetime.now().isoformat(timespec="seconds"),
                      "tests": list(mutant.tests), "k": mutant.k, "env": mutant.env}
            with open(out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
    return results
