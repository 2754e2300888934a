"""Parallel kernels that hold up on a busy machine.

A parallel region of Numba's thread pool ends at a barrier: when other programs keep a core
busy, the operating system deschedules one of the pool's threads, and every region then waits
for the scheduler to run it again. On two cores with two busy programs beside it, a training
step with two threads ran about ten times slower than with one.

``ThreadBudget`` measures, every ``INTERVAL`` seconds at most, how much CPU the other programs
use (``/proc/stat`` against this process's own CPU time) and answers how many threads a
parallel region can count on: the cores minus what others keep busy, rounded down with a
margin. ``SizedKernel`` (``jit.py``) runs its serial variant when that is one, and otherwise
the parallel one on at most that many threads. The measurement costs one read of
``/proc/stat`` per interval; where it is unavailable (not Linux), the configured threads are
used. ``FASTCONV_ADAPTIVE_THREADS=0`` turns this off.
"""

from __future__ import annotations

import threading
import time

from ... import config
from ..autotune import SystemProbe, load_between

#: Seconds between two measurements of the machine's load.
INTERVAL = 0.25
#: A thread is counted when at least this share of a core is left for it: a thread that
#: gets less than most of a core makes every barrier wait.
CORE_SHARE_NEEDED = 0.75


class ThreadBudget:
    """The threads parallel regions may use now (``threads(configured)``)."""

    def __init__(self, probe=None, clock=time.perf_counter):
        self.probe = probe if probe is not None else SystemProbe()
        self.clock = clock
        self.cpus = self.probe.cpus()
        self._lock = threading.Lock()
        self._last = self.probe.sample()
        self._next = self.clock() + INTERVAL
        self.available: float | None = None  # cores left by other programs, last measured

    def _measure(self) -> None:
        sample = self.probe.sample()
        load = load_between(self._last, sample, self.cpus)
        self._last = sample
        if load.others is not None:
            self.available = self.cpus * (1.0 - load.others)

    def threads(self, configured: int) -> int:
        """At most ``configured``, at least 1: the cores other programs leave free."""
        now = self.clock()
        if now >= self._next and self._lock.acquire(blocking=False):
            try:
                self._next = now + INTERVAL
                self._measure()
            finally:
                self._lock.release()
        if self.available is None:
            return configured
        fit = int(self.available + 1.0 - CORE_SHARE_NEEDED)
        return max(1, min(configured, fit))


_budget: list[ThreadBudget] = []


def budget() -> ThreadBudget | None:
    """The process's ThreadBudget, or None when adaptive threads are off."""
    if not config.env_adaptive_threads():
        return None
    if not _budget:
        _budget.append(ThreadBudget())
    return _budget[0]
