"""numba-cpu's parallel kernels give way to serial ones while other programs keep the cores
busy (fastconv.backends.numba_cpu.contention)."""

from __future__ import annotations

import numba
import pytest

from fastconv.backends.autotune import CpuSample
from fastconv.backends.numba_cpu import contention
from fastconv.backends.numba_cpu.jit import SizedKernel


class FakeProbe:
    """A machine of ``cpus`` cores where other programs use ``others`` cores' worth and this
    process ``own``, per second of a clock the test advances."""

    def __init__(self, cpus=2, others=0.0, own=1.0):
        self.n, self.others, self.own = cpus, others, own
        self.t = self.process = self.busy = 0.0

    def cpus(self):
        return self.n

    def advance(self, seconds):
        self.t += seconds
        self.process += self.own * seconds
        self.busy += (self.own + self.others) * seconds

    def sample(self):
        return CpuSample(self.t, self.process, self.busy)


def budget_on(probe):
    return contention.ThreadBudget(probe, clock=lambda: probe.t)


@pytest.mark.parametrize("others, expected", [(0.0, 2), (0.1, 2), (0.5, 1), (1.0, 1),
                                              (2.0, 1)])
def test_threads_count_the_cores_other_programs_leave(others, expected):
    probe = FakeProbe(cpus=2, others=others)
    budget = budget_on(probe)
    assert budget.threads(2) == 2  # nothing measured yet: as configured
    probe.advance(contention.INTERVAL)
    assert budget.threads(2) == expected


def test_more_cores_and_the_configured_bound():
    probe = FakeProbe(cpus=8, others=3.0, own=4.0)
    budget = budget_on(probe)
    probe.advance(1.0)
    assert budget.threads(8) == 5
    assert budget.threads(4) == 4
    probe.others = 7.9
    probe.advance(1.0)
    assert budget.threads(8) == 1


def test_it_measures_once_per_interval_and_follows_the_load():
    probe = FakeProbe(cpus=2, others=2.0)
    budget = budget_on(probe)
    probe.advance(contention.INTERVAL)
    assert budget.threads(2) == 1
    probe.others = 0.0
    probe.advance(contention.INTERVAL / 10)
    assert budget.threads(2) == 1  # not measured again yet
    probe.advance(contention.INTERVAL)
    assert budget.threads(2) == 2


class Recorder:
    def __init__(self):
        self.ran = []

    def variant(self, name):
        def run(*args):
            self.ran.append((name, numba.get_num_threads()))

        return run


def sized(recorder, threshold=0):
    kernel = SizedKernel.__new__(SizedKernel)
    kernel.parallel, kernel.serial = recorder.variant("parallel"), recorder.variant("serial")
    kernel.threshold = threshold
    return kernel


class FixedBudget:
    def __init__(self, n):
        self.n = n

    def threads(self, configured):
        return min(self.n, configured)


def test_a_large_kernel_runs_serially_when_one_core_is_left(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(contention, "budget", lambda: FixedBudget(1))
    sized(rec)(10)
    assert rec.ran == [("serial", numba.get_num_threads())]


def test_forced_modes_are_obeyed(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(contention, "budget", lambda: FixedBudget(1))
    monkeypatch.setattr(SizedKernel, "mode", "parallel")  # tests force a variant
    sized(rec)(10)
    assert rec.ran[-1][0] == "parallel"


def test_the_switch_turns_it_off(monkeypatch):
    rec = Recorder()
    monkeypatch.setenv("FASTCONV_ADAPTIVE_THREADS", "0")
    assert contention.budget() is None
    sized(rec)(10)
    assert rec.ran[-1][0] == "parallel"
