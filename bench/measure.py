"""Timing on top of pytest-benchmark, and the records the report is written from.

Every benchmark goes through :func:`run`:

1. ``warmup`` untimed calls, so that Numba compilation, algorithm autotuning and first-touch
   allocation never land in the timed region;
2. one more untimed call that estimates the duration, from which the rounds (enough to fill the
   mode's ``target_s``) and the calls per round (enough for ``min_round_s``, for very short
   operations) are chosen;
3. ``benchmark.pedantic(fn, rounds, iterations)``: pytest-benchmark's statistics and JSON.

With ``--benchmark-disable`` (the CI smoke run) pytest-benchmark calls ``fn`` once and keeps no
statistics; that one call is timed here, so the report is still written, from one sample.

A record is a dict shaped as an entry of pytest-benchmark's JSON ``benchmarks`` list: ``name``,
``fullname``, ``extra_info`` (what the benchmark measured: see ``bench/README.md``) and
``stats`` (``median``, ``iqr``, ``q1``, ``q3``, ``min``, ``max``, ``mean``, ``stddev``, ``rounds``;
seconds per call), so the report can be rebuilt from ``benchmark.json`` alone.
"""

from __future__ import annotations

import math
import time

from .workloads import Timing

STAT_FIELDS = ("min", "max", "mean", "stddev", "median", "q1", "q3", "iqr", "rounds")


def run(benchmark, fn, info: dict, timing: Timing, *, warmup: int = 1, rounds: int | None = None,
        setup=None):
    """Measure ``fn()`` (or ``fn(*args)`` with ``args`` from ``setup()``, untimed, per round)."""
    benchmark.extra_info.update(info)

    def call():
        if setup is None:
            return fn()
        args, kwargs = setup()
        return fn(*args, **kwargs)

    for _ in range(warmup):
        call()
    if benchmark.disabled:
        seconds = []

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - start)

        benchmark.pedantic(timed, setup=setup, rounds=1, iterations=1)
        benchmark.extra_info["disabled_seconds"] = seconds[-1]
        return
    iterations = 1
    if rounds is None:
        start = time.perf_counter()
        call()
        estimate = max(time.perf_counter() - start, 1e-7)
        if setup is None and estimate < timing.min_round_s:
            iterations = math.ceil(timing.min_round_s / estimate)
        rounds = math.ceil(timing.target_s / (estimate * iterations))
        rounds = min(max(rounds, timing.min_rounds), timing.max_rounds)
    benchmark.extra_info["rounds_planned"] = rounds
    benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=iterations, warmup_rounds=0)


def record(fixture) -> dict | None:
    """The record of a pytest-benchmark fixture after its test, or None (failed, never ran)."""
    if fixture.has_error:
        return None
    info = dict(fixture.extra_info)
    metadata = fixture.stats
    if metadata is not None and metadata.stats:
        stats = {name: getattr(metadata.stats, name) for name in STAT_FIELDS}
        stats["iterations"] = metadata.iterations
    elif "disabled_seconds" in info:
        t = info["disabled_seconds"]
        stats = {name: t for name in STAT_FIELDS}
        stats.update(stddev=0.0, iqr=0.0, rounds=1, iterations=1)
    else:
        return None
    return {"name": fixture.name, "fullname": fixture.fullname, "extra_info": info,
            "stats": stats}
