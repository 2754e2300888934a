"""Autotuning under load: the lesson training step with algorithm choices tuned on a quiet
machine, tuned while busy loops occupy every CPU, and tuned under the same load with the busy
check switched off (what an unprotected tuner keeps). Each variant tunes into its own empty
cache, then a "later run" (fresh in-memory state, the machine quiet again) trains with what that
cache holds; the report gives each variant's step time relative to the quiet one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import fastconv
from fastconv.backends import algorithms, autotune

from . import lesson, subjects
from .test_models import model_info

VARIANTS = ("tuned quiet", "tuned under load", "tuned under load, unprotected")
BUSY_LOOP = "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass\n"


def busy_loops():
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
            for _ in range(max(2, os.cpu_count() or 1))]


@pytest.mark.parametrize("variant", VARIANTS)
def test_tuned_under_load_fastconv(measure, lesson_weights, fc_backend, train_batch, variant,
                                   monkeypatch, tmp_path):
    if not fc_backend.autotune:
        pytest.skip(f"backend {fc_backend.name} never autotunes")
    x = lesson.images(train_batch)
    y = lesson.one_hot(lesson.labels(train_batch))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "0")  # the tuner itself is measured
    with fastconv.use_backend(fc_backend.name), fastconv.use_conv_algo("auto"):
        model = lesson.fastconv_model(lesson_weights)
        model.train_on_batch(x, y)  # compiles the heuristic's kernels before any load
        algorithms.clear_memory()
        loops = []
        try:
            if variant != "tuned quiet":
                if variant.endswith("unprotected"):
                    monkeypatch.setattr(autotune, "BUSY_SHARE", float("inf"))
                    monkeypatch.setattr(autotune, "STARVED_SHARE", 0.0)
                loops = busy_loops()
                time.sleep(0.5)
            for _ in range(autotune.TUNE_AFTER_CALLS):  # every shape is tuned on its third use
                model.train_on_batch(x, y)
        finally:
            for p in loops:
                p.kill()
            for p in loops:
                p.wait()
            monkeypatch.undo()  # the limits again; the cache folder too: set it back below
        monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
        monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "0")
        kept = len(autotune.read_entries())
        # a later run on the quiet machine: the cache as tuned above, then its own lazy tuning
        algorithms.clear_memory()
        for _ in range(autotune.TUNE_AFTER_CALLS + 1):
            model.train_on_batch(x, y)
        autotune.settle()
        info = {**model_info("autotune", train_batch), **subjects.backend_info(fc_backend, "auto"),
                "variant": variant, "entries_kept": kept,
                "choices": sorted(f"{r['pass']} c{r['geometry'].c}: {r['algorithm']}"
                                  for r in algorithms.choices())}
        try:
            measure(lambda: model.train_on_batch(x, y), info)
        finally:
            algorithms.clear_memory()
