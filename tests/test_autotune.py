"""Autotuning that cannot be fooled: noise, load, stale or foreign cache entries, concurrent
writers, failed writes; and the ``fastconv autotune`` command.

Most tests run the real choice logic (``algorithms.resolve`` -> ``autotune.choose``) on a fake
backend with an injected clock, CPU-time probe and kernel runner, so each scenario is exact. One
test tunes a real backend while busy loops occupy every CPU and checks that nothing measured then
is kept (the speed of choices tuned under load is a benchmark row, bench/test_autotune.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fastconv
from fastconv.backends import algorithms, autotune
from fastconv.backends.base import Backend
from fastconv.cli import main
from fastconv.geometry import conv_geometry

CALLS = autotune.TUNE_AFTER_CALLS
GEOM = conv_geometry((8, 12, 12, 16), (3, 3, 16, 32), 1, "valid")  # all four algorithms
GEOM5 = conv_geometry((8, 12, 12, 16), (5, 5, 16, 32), 1, "valid")  # no Winograd
GEOM1 = conv_geometry((8, 12, 12, 16), (1, 1, 16, 32), 1, "valid")  # direct timed on numba-cpu


class FakeBackend(Backend):
    """Names four algorithms; the fake runner below stands in for their kernels."""

    name = "fake-cpu"
    conv_algorithm_classes = dict.fromkeys(("direct", "im2col", "winograd", "winograd4"))

    def num_threads(self):
        return 2


class World:
    """A fake clock, CPU-time probe and kernel runner. ``cost[algo]`` is one run's time;
    ``jitter`` cycles multiplicative noise over successive runs; ``others`` is the share of the
    CPUs other programs use; ``broken`` algorithms raise when run."""

    def __init__(self, cost, jitter=(1.0,), others=0.0, own=1.0, broken=()):
        self.now = 0.0
        self.cost, self.jitter, self.others, self.own = dict(cost), jitter, others, own
        self.broken = set(broken)
        self.runs: list[str] = []

    def clock(self):
        return self.now

    # probe
    def cpus(self):
        return 2

    def sample(self):
        own = self.now * self.own
        return autotune.CpuSample(self.now, own, own + self.others * 2 * self.now)

    def run_factory(self, backend, geom, dtype, conv_pass):
        def run(algo):
            if algo in self.broken:
                raise ValueError(f"{algo} cannot run this")
            self.now += self.cost[algo] * self.jitter[len(self.runs) % len(self.jitter)]
            self.runs.append(algo)
        return run

    def tuner(self):
        return autotune.Tuner(clock=self.clock, probe=self, run_factory=self.run_factory)


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    """Autotuning on, an empty cache in tmp_path, fresh memory; yields install(world)."""
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setenv("FASTCONV_TUNE_COMPILE", "0")  # compiling free: tune on the third use
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    algorithms.clear_memory()

    def install(world: World) -> World:
        monkeypatch.setattr(autotune, "TUNER", world.tuner())
        return world

    yield install
    algorithms.clear_memory()


def use(backend, geom=GEOM, conv_pass="forward", times=CALLS) -> str:
    for _ in range(times):
        chosen = algorithms.resolve(backend, geom, "float32", conv_pass, "auto")
    return chosen


def stored(geom=GEOM, conv_pass="forward", backend=None) -> dict | None:
    key = autotune.cache_key(backend or FakeBackend(), geom, "float32", conv_pass)
    return autotune.read_entries().get(key)


def choice_info(conv_pass="forward", geom=GEOM) -> dict:
    (row,) = [r for r in algorithms.choices() if r["pass"] == conv_pass and r["geometry"] == geom]
    return row


# -- lazy tuning -----------------------------------------------------------------------------------

def test_first_uses_run_the_heuristic_and_the_third_tunes(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    be = FakeBackend()
    assert use(be, times=CALLS - 1) == "im2col"  # the base heuristic, nothing timed
    assert world.runs == [] and stored() is None
    assert use(be, times=1) == "direct"
    assert set(world.runs) == {"direct", "im2col", "winograd", "winograd4"}
    entry = stored()
    assert entry["choice"] == "direct" and entry["how"] == "measured"
    assert entry["seconds"] == pytest.approx(1e-3)
    assert entry["rounds"] >= autotune.MIN_ROUNDS
    runs = len(world.runs)
    assert use(be, times=10) == "direct" and len(world.runs) == runs  # decided: no more timing


def test_tuning_waits_until_the_uses_could_pay_for_its_compiles(tuning, monkeypatch):
    # three candidates never ran here: 3 x 10 ms of compiling against im2col's 4 ms per use,
    # so tuning waits for the eighth use (8 x 4 ms >= 30 ms)
    monkeypatch.setenv("FASTCONV_TUNE_COMPILE", "0.01")
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    be = FakeBackend()
    assert use(be, times=CALLS) == "im2col"
    assert set(world.runs) == {"im2col"} and len(world.runs) == autotune.MIN_ROUNDS  # priced
    assert "when it can pay" in choice_info()["how"] and "on use 8" in choice_info()["how"]
    assert use(be, times=7 - CALLS) == "im2col" and set(world.runs) == {"im2col"}
    assert stored() is None
    assert use(be, times=1) == "direct"  # the eighth use tunes
    assert stored()["choice"] == "direct"


def test_tuning_does_not_wait_for_candidates_that_already_ran(tuning, monkeypatch):
    monkeypatch.setenv("FASTCONV_TUNE_COMPILE", "0.01")
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    be = FakeBackend()
    use(be, times=8)  # tuned: every candidate of this pass ran in this process
    assert stored()["choice"] == "direct"
    other = conv_geometry((4, 12, 12, 16), (3, 3, 16, 32), 1, "valid")
    runs = len(world.runs)
    assert use(be, other) == "direct"  # tuned on its third use: nothing left to compile
    assert stored(other)["choice"] == "direct" and len(world.runs) > runs


def test_a_shape_too_cheap_to_pay_for_its_compiles_keeps_the_heuristic(tuning, monkeypatch):
    # with the default 3 s per compile, a 4 ms shape would need thousands of uses
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    monkeypatch.delenv("FASTCONV_TUNE_COMPILE")
    be = FakeBackend()
    assert use(be, times=100) == "im2col"
    assert set(world.runs) == {"im2col"} and stored() is None


def test_rounds_are_interleaved(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 1e-3}))
    be = FakeBackend()
    use(be, GEOM5)
    timed = world.runs[2:]  # after one warm-up run each
    assert len(timed) >= 2 * autotune.MIN_ROUNDS
    # every round runs each candidate once, alternating which goes first
    rounds = [timed[i:i + 2] for i in range(0, len(timed), 2)]
    assert all(sorted(r) == ["direct", "im2col"] for r in rounds)
    assert rounds[0] != rounds[1]


def test_a_one_off_shape_is_never_tuned(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    use(FakeBackend(), times=1)
    assert world.runs == [] and not autotune.cache_file().exists()
    assert choice_info()["how"].startswith("heuristic")


def test_autotune_off_uses_the_heuristic(tuning, monkeypatch):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "0")
    assert use(FakeBackend(), times=CALLS + 5) == "im2col"
    assert world.runs == []


# -- noise -----------------------------------------------------------------------------------------

def test_within_noise_the_heuristic_wins(tuning):
    # direct is 3% faster than the heuristic's im2col: less than MIN_GAIN
    world = tuning(World({"direct": 0.97e-3, "im2col": 1e-3}))
    assert use(FakeBackend(), GEOM5) == "im2col"
    entry = stored(GEOM5)
    assert entry["choice"] == "im2col" and entry["how"] == "heuristic within noise"
    assert entry["timings"]["direct"] < entry["timings"]["im2col"]
    assert world.runs


def test_noisy_timings_widen_the_margin(tuning):
    # direct is 15% faster, but successive runs vary by 40%: not a clear win
    tuning(World({"direct": 0.85e-3, "im2col": 1e-3}, jitter=(1.0, 1.4, 1.2, 1.4, 1.3)))
    assert use(FakeBackend(), GEOM5) == "im2col"
    assert stored(GEOM5)["noise"] > 0.15
    # the same gap without noise is a win
    algorithms.clear_memory()
    autotune.update_entries(clear=True)
    tuning(World({"direct": 0.85e-3, "im2col": 1e-3}))
    assert use(FakeBackend(), GEOM5) == "direct"


def test_decide_picks_a_clear_winner_and_keeps_the_heuristic_on_ties():
    quiet = autotune.Load(0.0, 1.0, 2)
    samples = {"direct": [1.0, 1.01, 1.02], "im2col": [2.0, 2.0, 2.1]}
    assert autotune.decide(samples, "im2col", quiet, 3).choice == "direct"
    samples = {"direct": [1.0, 1.01, 1.02], "im2col": [1.03, 1.03, 1.04]}
    m = autotune.decide(samples, "im2col", quiet, 3)
    assert (m.choice, m.how) == ("im2col", "heuristic within noise")


# -- load ------------------------------------------------------------------------------------------

def test_load_from_cpu_samples():
    a = autotune.CpuSample(wall=10.0, process=5.0, busy=100.0)
    b = autotune.CpuSample(wall=11.0, process=6.0, busy=102.6)  # others: 1.6 s of 2 CPU-s
    load = autotune.load_between(a, b, cpus=2)
    assert load.others == pytest.approx(0.8) and load.own == pytest.approx(1.0) and load.busy
    b = autotune.CpuSample(wall=11.0, process=6.0, busy=101.1)
    assert not autotune.load_between(a, b, cpus=2).busy
    starved = autotune.CpuSample(wall=11.0, process=5.2, busy=100.2)  # 0.2 CPU for us, no others
    assert autotune.load_between(a, starved, cpus=2).busy
    unknown = autotune.load_between(autotune.CpuSample(10.0, 5.0, None),
                                    autotune.CpuSample(11.0, 6.0, None), 2)
    assert unknown.others is None and not unknown.busy
    device = autotune.load_between(a, starved, cpus=2, host_kernels=False)  # a GPU backend waits
    assert device.own is None and not device.busy


def test_the_system_probe_reads_this_machine():
    probe = autotune.SystemProbe()
    a = probe.sample()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    b = probe.sample()
    assert probe.cpus() >= 1
    assert b.process - a.process >= 0.05 and b.wall > a.wall
    if a.busy is not None:  # Linux
        assert b.busy >= a.busy


def test_measured_under_load_is_not_kept_and_retried_later(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3},
                         others=0.9))
    be = FakeBackend()
    assert use(be) == "im2col"  # measured, thrown away: the heuristic's choice stays
    assert world.runs and stored() is None
    info = choice_info()
    assert "under load" in info["how"] and info["algorithm"] == "im2col"
    runs = len(world.runs)
    assert use(be, times=autotune.RETRY_AFTER_CALLS - 1) == "im2col"
    assert len(world.runs) == runs  # no new try before RETRY_AFTER_CALLS more uses
    world.others = 0.0  # the machine is quiet again
    assert use(be, times=1) == "direct"
    assert stored()["choice"] == "direct"


def test_a_starved_process_counts_as_busy(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3}, own=0.3))
    assert use(FakeBackend(), GEOM5) == "im2col"
    assert world.runs and not autotune.cache_file().exists()


def test_tuning_gives_up_after_max_tries_under_constant_load(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3}, others=0.9))
    be = FakeBackend()
    total = CALLS + sum(autotune.RETRY_AFTER_CALLS * t for t in range(1, autotune.MAX_TRIES))
    assert use(be, GEOM5, times=total) == "im2col"
    tries = world.runs.count("im2col")
    assert use(be, GEOM5, times=500) == "im2col" and world.runs.count("im2col") == tries
    assert not autotune.cache_file().exists()


# -- cached entries --------------------------------------------------------------------------------

def quiet_tuned(tuning, cost, geom=GEOM5):
    world = tuning(World(cost))
    chosen = use(FakeBackend(), geom)
    algorithms.clear_memory()  # a new process: the file stays
    return chosen, world


def test_a_cached_choice_runs_from_the_first_use_and_is_checked_once(tuning):
    chosen, _ = quiet_tuned(tuning, {"direct": 1e-3, "im2col": 4e-3})
    assert chosen == "direct"
    world = tuning(World({"direct": 1.1e-3, "im2col": 4e-3}))  # close to the recorded time
    be = FakeBackend()
    assert use(be, GEOM5, times=1) == "direct" and world.runs == []
    assert use(be, GEOM5, times=CALLS) == "direct"
    assert set(world.runs) == {"direct"}  # only the cached choice was timed
    assert choice_info(geom=GEOM5)["how"] == "cached, checked"


def test_a_stale_entry_is_tuned_again(tuning):
    quiet_tuned(tuning, {"direct": 1e-3, "im2col": 4e-3})
    # direct now takes 5x its recorded time (another BLAS, a changed kernel): tune again
    world = tuning(World({"direct": 5e-3, "im2col": 4e-3}))
    assert use(FakeBackend(), GEOM5) == "im2col"
    assert {"direct", "im2col"} <= set(world.runs)
    entry = stored(GEOM5)
    assert entry["choice"] == "im2col" and entry["seconds"] == pytest.approx(4e-3)


def test_a_check_under_load_keeps_the_entry(tuning):
    quiet_tuned(tuning, {"direct": 1e-3, "im2col": 4e-3})
    before = stored(GEOM5)
    tuning(World({"direct": 5e-3, "im2col": 4e-3}, others=0.9))
    assert use(FakeBackend(), GEOM5) == "direct"
    assert stored(GEOM5) == before


def test_an_entry_that_cannot_run_the_shape_is_repaired(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3}))
    be = FakeBackend()
    key = autotune.cache_key(be, GEOM5, "float32", "forward")
    entry = {"choice": "winograd", "seconds": 1e-4, "timings": {"winograd": 1e-4},
             "how": "measured", "pass": "forward", "dtype": "float32"}
    autotune.update_entries({key: entry})  # Winograd cannot do 5x5 kernels
    assert use(be, GEOM5, times=1) == "im2col"  # the heuristic, until it is tuned
    assert "cannot run this shape" in choice_info(geom=GEOM5)["how"]
    assert use(be, GEOM5, times=CALLS - 1) == "direct"
    assert world.runs and stored(GEOM5)["choice"] == "direct"


def test_an_entry_whose_choice_is_not_its_fastest_is_repaired(tuning):
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3}))
    be = FakeBackend()
    key = autotune.cache_key(be, GEOM5, "float32", "forward")
    # a valid but slow choice, as an edited or corrupted file would hold
    entry = {"choice": "im2col", "seconds": 4e-3, "timings": {"direct": 1e-3, "im2col": 4e-3},
             "how": "measured", "pass": "forward", "dtype": "float32"}
    autotune.update_entries({key: entry})
    assert use(be, GEOM5) == "direct"
    assert world.runs and stored(GEOM5)["choice"] == "direct"


def test_a_choice_that_fails_when_run_is_repaired(tuning):
    quiet_tuned(tuning, {"direct": 1e-3, "im2col": 4e-3})
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3}, broken={"direct"}))
    assert use(FakeBackend(), GEOM5) == "im2col"
    assert stored(GEOM5)["choice"] == "im2col" and "direct" not in stored(GEOM5)["timings"]
    assert world.runs


@pytest.mark.parametrize("other", ["cpu", "version", "threads", "device"])
def test_entries_of_another_machine_or_version_are_ignored(tuning, monkeypatch, other):
    be = FakeBackend()
    quiet_tuned(tuning, {"direct": 1e-3, "im2col": 4e-3})
    theirs = stored(GEOM5)
    assert theirs["choice"] == "direct"
    if other == "cpu":
        monkeypatch.setitem(autotune._machine, "sig", "Other CPU [avx2] fastconv 0.1.0")
    elif other == "version":
        monkeypatch.setattr(autotune, "__version__", "0.0.2")
        monkeypatch.delitem(autotune._machine, "sig", raising=False)
    elif other == "threads":
        monkeypatch.setattr(FakeBackend, "num_threads", lambda self: 1)
    else:
        monkeypatch.setattr(FakeBackend, "device_string", lambda self: "GPU sm_90", raising=False)
    world = tuning(World({"direct": 4e-3, "im2col": 1e-3}))
    assert use(be, GEOM5, times=1) == "im2col"  # not the other machine's 'direct'
    assert use(be, GEOM5, times=CALLS) == "im2col" and world.runs
    assert len(autotune.read_entries()) == 2  # the other machine's entry is kept, unused
    assert theirs in autotune.read_entries().values()


def test_a_file_of_another_schema_is_ignored(tuning):
    autotune.cache_file().write_text(json.dumps({"numba-cpu|forward|float32": "direct"}))
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3}))
    assert autotune.read_entries() == {}
    assert use(FakeBackend(), GEOM5) == "direct" and world.runs
    data = json.loads(autotune.cache_file().read_text())
    assert data["schema"] == autotune.SCHEMA and len(data["entries"]) == 1


def test_the_key_names_cpu_isa_threads_version_and_device():
    be = FakeBackend()
    key = autotune.cache_key(be, GEOM, "float32", "backward_weight")
    model, isa = autotune.cpu_identity()
    assert model in key and fastconv.__version__ in key and "threads=2" in key
    assert all(flag in key for flag in isa)
    assert "backward_weight" in key and "float32" in key and "c=16" in key


# -- the file --------------------------------------------------------------------------------------

def _writer(folder: str, tag: str, count: int) -> None:
    path = Path(folder) / autotune.FILE_NAME
    for i in range(count):
        autotune.update_entries({f"{tag}-{i}": {"choice": "im2col", "writer": tag}}, path=path)


def test_two_processes_merge_their_entries(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    count = 25
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, count)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = autotune.read_entries(tmp_path / autotune.FILE_NAME)
    assert set(entries) == {f"{t}-{i}" for t in "ab" for i in range(count)}
    assert not list(tmp_path.glob(".autotune-*"))


def test_a_failed_write_leaves_no_temporary_file(tuning, monkeypatch):
    tuning(World({"direct": 1e-3, "im2col": 4e-3}))
    folder = autotune.cache_file().parent

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(autotune.os, "replace", fail)
    assert use(FakeBackend(), GEOM5) == "direct"  # training goes on
    assert autotune.update_entries({"k": {"choice": "direct"}}) is False
    assert not list(folder.glob(".autotune-*")) and not autotune.cache_file().exists()
    monkeypatch.undo()
    with pytest.raises(TypeError):  # not JSON: the error propagates, the temporary file goes
        autotune.update_entries({"k": {"choice": object()}})
    assert not list(folder.glob(".autotune-*"))


# -- under real load -------------------------------------------------------------------------------

BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def _autotuned_backends() -> list[str]:
    """The available backends that time their candidates (the numpy reference never does)."""
    available = fastconv.available_backends()
    return [name for name in fastconv.backend_names()
            if available[name] is None and fastconv.get_backend(name).autotune]


@pytest.fixture(params=_autotuned_backends())
def autotuned_backend(request):
    with fastconv.use_backend(request.param) as be:
        yield be


def test_tuning_under_real_load_keeps_nothing_measured_then(autotuned_backend, monkeypatch,
                                                            tmp_path):
    """Busy loops on every CPU while a lesson convolution is tuned: the tuning sees the load, and
    what it measured is not kept (a benchmark row shows the speed of such choices)."""
    backend = autotuned_backend
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setenv("FASTCONV_TUNE_COMPILE", "0")  # compiling free: tune on the third use
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    algorithms.clear_memory()
    geom = conv_geometry((32, 13, 13, 32), (3, 3, 32, 64), 1, "valid")  # lesson conv 2
    passes = ("forward", "backward_data", "backward_weight")
    for conv_pass in passes:  # compile every candidate before the load starts
        run = autotune.run_once_factory(backend, geom, "float32", conv_pass)
        for algo in algorithms.tuning_candidates(backend, geom, conv_pass):
            run(algo)
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=30)])
             for _ in range(max(2, os.cpu_count() or 1))]
    try:
        time.sleep(0.5)
        for conv_pass in passes:
            use(backend, geom, conv_pass)
    finally:
        for p in loops:
            p.kill()
        for p in loops:
            p.wait()
        algorithms.clear_memory()
    for conv_pass in passes:
        entry = stored(geom, conv_pass, backend)
        heuristic = algorithms.heuristic(backend, geom, conv_pass)
        assert entry is None or entry["choice"] == heuristic, (conv_pass, entry)
    assert not autotune.cache_file().exists()  # the load was seen every time


# -- fastconv autotune -----------------------------------------------------------------------------

def test_cli_show_clear_and_retune(tuning, monkeypatch, capsys):
    be = fastconv.get_backend()
    world = tuning(World({"direct": 1e-3, "im2col": 4e-3, "winograd": 2e-3, "winograd4": 3e-3}))
    assert main(["autotune"]) == 0
    assert "0 entries" in capsys.readouterr().out
    if not be.autotune:
        monkeypatch.setattr(type(be), "autotune", True)
    use(be, GEOM1)
    other = dict(stored(GEOM1, backend=be), choice="im2col")
    autotune.update_entries({"Other CPU [avx2] fastconv 0.0.1|" + be.name + "|x": other})
    assert main(["autotune", "--show"]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and autotune.machine_signature() in out
    assert "n8 12x12x16 k1x1->32" in out and "forward" in out and "float32" in out
    lines = [line for line in out.splitlines() if line.startswith(("this ", "other "))]
    assert len(lines) == 2
    assert any(line.startswith("this") and "direct" in line and "1.000 ms" in line
               for line in lines)
    assert any(line.startswith("other") and "im2col" in line for line in lines)
    # --retune measures this machine's entries again (the other machine's stay as they are)
    world.cost["direct"] = 8e-3
    runs = len(world.runs)
    assert main(["autotune", "--retune"]) == 0
    out = capsys.readouterr().out
    assert "forward n8 12x12x16 k1x1->32" in out and "im2col (measured)" in out
    assert len(world.runs) > runs and stored(GEOM1, backend=be)["choice"] == "im2col"
    assert len(autotune.read_entries()) == 2
    world.others = 0.9  # under load: reported, nothing changes
    world.cost["direct"] = 1e-3
    assert main(["autotune", "--retune"]) == 0
    assert "not kept: measured under load" in capsys.readouterr().out
    assert stored(GEOM1, backend=be)["choice"] == "im2col"
    assert main(["autotune", "--clear"]) == 0
    assert "cleared" in capsys.readouterr().out
    assert autotune.read_entries() == {}
    assert main(["autotune", "--clear"]) == 0
    assert "nothing to clear" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["autotune", "--show", "--clear"])


def test_candidates_are_the_plausible_algorithms_and_the_heuristic():
    be = FakeBackend()
    assert algorithms.tuning_candidates(be, GEOM, "forward") == (
        "direct", "im2col", "winograd", "winograd4")
    assert algorithms.tuning_candidates(be, GEOM, "backward_weight") == ("direct", "im2col")
    assert algorithms.tuning_candidates(be, GEOM5, "forward") == ("direct", "im2col")
    one_channel = conv_geometry((8, 12, 12, 1), (3, 3, 1, 32), 1, "valid")
    assert algorithms.tuning_candidates(be, one_channel, "forward") == ("direct", "im2col")
    two_out = conv_geometry((8, 12, 12, 16), (3, 3, 16, 2), 1, "valid")
    assert algorithms.tuning_candidates(be, two_out, "backward_data") == ("direct", "im2col")


def test_numba_cpu_times_direct_only_where_it_can_win():
    be = fastconv.get_backend("numba-cpu")
    assert "direct" not in algorithms.tuning_candidates(be, GEOM, "forward")  # 144 products
    assert "direct" not in algorithms.tuning_candidates(be, GEOM, "backward_data")
    assert "direct" in algorithms.tuning_candidates(be, GEOM1, "forward")  # 16 products
    rgb = conv_geometry((8, 12, 12, 3), (3, 3, 3, 32), 1, "valid")  # 27 products
    assert "direct" in algorithms.tuning_candidates(be, rgb, "backward_weight")


def test_numba_cpu_heuristic_uses_the_single_channel_kernel_for_backward_weight():
    be = fastconv.get_backend("numba-cpu")
    gray = conv_geometry((8, 12, 12, 1), (3, 3, 1, 32), 1, "valid")
    assert algorithms.heuristic(be, gray, "backward_weight") == "im2col"
    strided = conv_geometry((8, 12, 12, 1), (3, 3, 1, 32), 2, "valid")
    assert algorithms.heuristic(be, strided, "backward_weight") == "direct"
    rgb = conv_geometry((8, 12, 12, 3), (3, 3, 3, 32), 1, "valid")
    assert algorithms.heuristic(be, rgb, "backward_weight") == "direct"


def test_the_heuristic_is_timed_even_when_implausible(monkeypatch):
    be = FakeBackend()
    one_channel = conv_geometry((8, 12, 12, 1), (3, 3, 1, 32), 1, "valid")
    monkeypatch.setattr(FakeBackend, "heuristic_conv_algorithm",
                        lambda self, geom, conv_pass, candidates: "winograd")
    assert algorithms.tuning_candidates(be, one_channel, "forward") == (
        "winograd", "direct", "im2col")
