"""Start-up: a fresh Python process imports the library, loads the saved lesson model and
predicts one image; the whole process is timed from outside.

* fastconv, *warm*: the Numba cache as this machine has it and an autotuning cache
  (``FASTCONV_CACHE_DIR``) filled by one untimed identical run before;
* fastconv, *empty JIT cache*: every round gets a fresh, empty ``NUMBA_CACHE_DIR`` and
  ``FASTCONV_CACHE_DIR``, so its kernels were never compiled: the first prediction runs on the
  compile fallback while a background process compiles (fastconv.warmup); the round ends when
  the predicting process exits, and the next round (or benchmark) starts once the compiling
  process is done;
* fastconv, *empty JIT cache, foreground compile*: the same with
  ``FASTCONV_BACKGROUND_COMPILE=0``: the first prediction waits for every kernel it uses;
* onnxruntime: import, ``InferenceSession`` on the exported model, first run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fastconv
from fastconv.backends import background

from . import lesson, subjects

FASTCONV_SCRIPT = """\
import sys
import numpy as np
from fastconv.models import load_model
model = load_model(sys.argv[1], compile=False)
model.predict_on_batch(np.zeros((1, 28, 28, 1), dtype=np.float32))
"""

ORT_SCRIPT = """\
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = int(sys.argv[2])
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
session.run(None, {"input": np.zeros((1, 1, 28, 28), dtype=np.float32)})
"""

VARIANTS = ("warm", "empty JIT cache", "empty JIT cache, foreground compile")


@pytest.fixture(scope="session")
def lesson_fcm(lesson_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "lesson.fcm"
    with fastconv.use_backend("numpy"):
        lesson.fastconv_model(lesson_weights).save(path)
    return path


def child_env(**overrides) -> dict:
    """This environment, with the fastconv this process runs first on the path."""
    env = dict(os.environ)
    root = str(Path(fastconv.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update(overrides)
    return env


def run_script(script: str, *args, env: dict) -> None:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the start-up script exited with {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")


def startup_info(variant: str) -> dict:
    return {"section": "startup", "workload": "lesson-startup", "variant": variant, "batch": 1,
            "images": 1}


@pytest.mark.parametrize("variant", VARIANTS)
def test_startup_fastconv(measure, settings, lesson_fcm, fc_backend, variant, tmp_path):
    info = {**startup_info(variant), **subjects.backend_info(fc_backend)}
    backend = {"FASTCONV_BACKEND": fc_backend.name}
    folders = []
    if variant == "warm":  # the default settings, caches filled by the untimed first round
        cache = str(tmp_path / "fastconv-cache")
        folders.append(tmp_path)
        env = child_env(FASTCONV_CACHE_DIR=cache, FASTCONV_BACKGROUND_COMPILE="1", **backend)
        def compiled():  # the untimed first round's compiling process is done
            compiled_ended(folders)
            return (), {}

        try:
            measure(lambda: run_script(FASTCONV_SCRIPT, lesson_fcm, env=env), info, warmup=1,
                    rounds=settings.startup_rounds, setup=compiled)
        finally:
            compiled_ended(folders)
        return
    if settings.cold_startup_rounds == 0:
        pytest.skip(f"the {settings.mode} run leaves out the empty-JIT-cache start-up (it "
                    f"compiles every kernel: tens of seconds)")
    if not fc_backend.autotune and "numba" not in type(fc_backend).__module__:
        pytest.skip(f"backend {fc_backend.name} compiles nothing and does not autotune: its "
                    f"start-up has no cache to empty")
    background_compile = "0" if variant.endswith("foreground compile") else "1"

    def fresh_caches():
        compiled_ended(folders)
        folder = tempfile.mkdtemp(prefix="cold-", dir=tmp_path)
        folders.append(folder)
        env = child_env(NUMBA_CACHE_DIR=os.path.join(folder, "numba"),
                        FASTCONV_CACHE_DIR=os.path.join(folder, "fastconv-cache"),
                        FASTCONV_BACKGROUND_COMPILE=background_compile, **backend)
        return (env,), {}

    try:
        measure(lambda env: run_script(FASTCONV_SCRIPT, lesson_fcm, env=env), info, warmup=0,
                rounds=settings.cold_startup_rounds, setup=fresh_caches)
    finally:
        compiled_ended(folders)


def compiled_ended(folders) -> None:
    """Wait for the background compilation a cold round started (nothing else may run beside
    a timing)."""
    for folder in folders:
        if not background.wait(Path(folder) / "fastconv-cache" / background.FOLDER, timeout=900):
            raise RuntimeError(f"the background compilation in {folder} ran over 900 s")


def test_startup_onnxruntime(measure, settings, lesson_onnx):
    threads = os.cpu_count() or 1
    env = child_env()
    measure(lambda: run_script(ORT_SCRIPT, lesson_onnx, threads, env=env),
            {**startup_info("-"), "library": "onnxruntime", "impl": "onnxruntime",
             "device": "cpu", "threads": threads}, warmup=1, rounds=settings.startup_rounds)
