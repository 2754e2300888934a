"""Background compilation (fastconv.warmup): a plan whose kernels were never compiled here
predicts on the compile fallback while a separate process compiles, then hands over.

These tests start real compiling processes (a few seconds each: the kernels of the small model
below are usually in Numba's cache already, so the process mostly imports and runs). Each test
gets its own fastconv cache folder, so the markers of one never make another's plan warm.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import fastconv
from fastconv import warmup
from fastconv.backends import background as bg
from fastconv.inference import InferencePlan
from fastconv.layers import (
    Activation,
    AveragePooling1D,
    AveragePooling2D,
    BatchNormalization,
    Concatenate,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Input,
    Layer,
    MaxPooling2D,
    Rescaling,
    ZeroPadding2D,
)
from fastconv.models import Model, Sequential


@pytest.fixture
def background_on(tmp_path, monkeypatch):
    """Background compilation on (the suite turns it off), its markers in a fresh folder."""
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "1")
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache" / bg.FOLDER
    assert bg.wait(timeout=300), "a compiling process outlived its test"


@pytest.fixture
def background(background_on, monkeypatch):
    """As ``background_on``, with plans seeing nothing compiled (this process compiled the
    kernels long ago): as on a fresh install."""
    monkeypatch.setattr(warmup, "_from_cache", lambda model, batch_shape, backend: None)
    return background_on


def small_model(filters: int = 4) -> Sequential:
    with fastconv.use_backend("numba-cpu"):
        model = Sequential([Input((9, 9, 2)), Conv2D(filters, 3, activation="relu"),
                            MaxPooling2D(2), Flatten(), Dense(3, activation="softmax")])
    rng = np.random.default_rng(7)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def expected(model, x) -> np.ndarray:
    """The same model on the numpy backend, compiled nothing."""
    with fastconv.use_backend("numpy"):
        clone = Sequential.from_config(model.get_config())
        clone.build()
        clone.set_weights(model.get_weights())
        return clone.predict_on_batch(x)


def the_plan(model):
    """The plan made last (making a model anywhere gives every model new plans)."""
    return list(model._plans.values())[-1]


def test_a_new_plan_predicts_on_the_fallback_then_hands_over(background):
    model = small_model()
    x = np.random.default_rng(1).random((5, 9, 9, 2), dtype=np.float32)
    first = model.predict_on_batch(x)
    plan = the_plan(model)
    assert isinstance(plan, warmup.WarmingPlan)
    assert plan.interim.backend.name == "numpy" and plan.job.proc is not None
    np.testing.assert_allclose(first, expected(model, x), rtol=1e-5, atol=1e-6)

    assert bg.wait(timeout=300)
    assert plan.job.succeeded(), (background / f"{plan.job.key}.log").read_text()
    second = model.predict_on_batch(x)
    real = the_plan(model)
    assert isinstance(real, InferencePlan) and real.backend.name == "numba-cpu"
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-6)
    assert not list(background.glob("*.json")) and not list(background.glob("*.log"))

    # the machine knows this plan now: a new model of the same architecture predicts at once
    # with the compiled kernels, and starts no process
    again = small_model()
    np.testing.assert_allclose(again.predict_on_batch(x), first, rtol=1e-5, atol=1e-6)
    assert isinstance(the_plan(again), InferencePlan)
    assert bg._lock_holder(background) is None and not list(background.glob("*.json"))


def test_weights_set_while_compiling_are_used_before_and_after(background):
    model = small_model()
    x = np.random.default_rng(2).random((2, 9, 9, 2), dtype=np.float32)
    model.predict_on_batch(x)
    assert isinstance(the_plan(model), warmup.WarmingPlan)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    np.testing.assert_allclose(model.predict_on_batch(x), expected(model, x), rtol=1e-5,
                               atol=1e-6)
    assert bg.wait(timeout=300)
    np.testing.assert_allclose(model.predict_on_batch(x), expected(model, x), rtol=1e-5,
                               atol=1e-6)


def test_a_plan_made_while_another_compiles_joins_it(background):
    model = small_model()
    x = np.zeros((1, 9, 9, 2), dtype=np.float32)
    model.predict_on_batch(x)
    other = small_model(filters=5)  # another architecture, made while the first compiles
    y = np.random.default_rng(3).random((3, 9, 9, 2), dtype=np.float32)
    out = other.predict_on_batch(y)
    plan = the_plan(other)
    if isinstance(plan, warmup.WarmingPlan):  # unless the first was already done
        assert plan.job.proc is None and "already running" in plan.job.describe()
    assert bg.wait(timeout=300)
    np.testing.assert_allclose(other.predict_on_batch(y), out, rtol=1e-5, atol=1e-6)
    assert isinstance(the_plan(other), InferencePlan)


def test_a_failed_compilation_leaves_its_log_and_compiles_in_the_foreground(
        background, monkeypatch):
    real_spec = warmup.plan_spec

    def broken_spec(*args):
        spec = real_spec(*args)
        spec["model"]["config"]["layers"][1]["config"]["kernel_size"] = "not a size"
        return spec

    monkeypatch.setattr(warmup, "plan_spec", broken_spec)
    model = small_model()
    x = np.random.default_rng(4).random((2, 9, 9, 2), dtype=np.float32)
    first = model.predict_on_batch(x)
    plan = the_plan(model)
    assert isinstance(plan, warmup.WarmingPlan)
    plan.job.proc.wait(timeout=300)
    assert not plan.job.succeeded()
    assert "kernel_size" in (background / f"{plan.job.key}.log").read_text()
    np.testing.assert_allclose(model.predict_on_batch(x), first, rtol=1e-5, atol=1e-6)
    assert isinstance(the_plan(model), InferencePlan)
    assert not (background / f"{plan.job.key}.done").exists()


@pytest.mark.parametrize("named", ["dead", "live"])
def test_a_lock_no_process_holds_is_taken_over(background, named):
    """The lock file names a pid, but no process holds its flock: a killed compile (the kernel
    released its lock), even when its pid was reused by a live, unrelated process."""
    background.mkdir(parents=True)
    pid = _dead_pid() if named == "dead" else os.getpid()
    (background / "compiling.lock").write_text(str(pid))
    model = small_model()
    model.predict_on_batch(np.zeros((1, 9, 9, 2), dtype=np.float32))
    plan = the_plan(model)
    assert isinstance(plan, warmup.WarmingPlan) and plan.job.proc is not None
    assert (background / "compiling.lock").read_text() == str(plan.job.pid)
    assert bg._lock_holder(background) == plan.job.pid


def test_a_killed_compiling_process_releases_its_lock_at_once(background):
    import signal

    model = small_model()
    model.predict_on_batch(np.zeros((1, 9, 9, 2), dtype=np.float32))
    job = the_plan(model).job
    assert bg._lock_holder(background) == job.pid
    os.kill(job.pid, signal.SIGKILL)
    job.proc.wait(timeout=60)
    assert bg._lock_holder(background) is None and job.finished()
    # the next model starts a fresh compile instead of joining a dead one
    again = small_model()
    again.predict_on_batch(np.zeros((1, 9, 9, 2), dtype=np.float32))
    fresh = the_plan(again)
    if isinstance(fresh, warmup.WarmingPlan):
        assert fresh.job.proc is not None and fresh.job.pid != job.pid
    assert bg.wait(timeout=300)


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_plans_compile_in_the_foreground_when_asked_or_when_a_model_cannot_be_described(
        background, monkeypatch):
    x = np.zeros((1, 9, 9, 2), dtype=np.float32)
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "0")
    model = small_model()
    model.predict_on_batch(x)
    assert isinstance(the_plan(model), InferencePlan)
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "1")

    class Doubled(Layer):  # a class of the user's: the compiling process could not rebuild it
        def call(self, inputs, training=False):
            return inputs * 2.0

    with fastconv.use_backend("numba-cpu"):
        custom = Sequential([Input((9, 9, 2)), Doubled(), Conv2D(2, 3)])
    custom.predict_on_batch(x)
    assert isinstance(the_plan(custom), InferencePlan)
    with fastconv.use_backend("numpy"):  # a backend that compiles nothing
        plain = Sequential([Input((9, 9, 2)), Conv2D(2, 3)])
        plain.predict_on_batch(x)
    assert isinstance(the_plan(plain), InferencePlan)
    assert not background.exists()


def test_the_setting_is_checked(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="FASTCONV_BACKGROUND_COMPILE must be 0 or 1"):
        small_model().predict_on_batch(np.zeros((1, 9, 9, 2), dtype=np.float32))


def test_wait_gives_up_after_its_timeout(tmp_path):
    import fcntl

    with open(tmp_path / "compiling.lock", "w") as held:  # held by a live process
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        start = time.monotonic()
        assert bg.wait(tmp_path, timeout=0.2) is False
        assert time.monotonic() - start < 5
    assert bg.wait(tmp_path, timeout=0.2) is True


# -- training: the compiling process takes the kernels from the end of the step ----------------

def _fit_twin(x, y, background_compile, monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", background_compile)
    model = small_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return model, history


def test_fit_compiles_its_training_step_last_first_in_a_compiling_process(
        background, monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.random((10, 9, 9, 2), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    model, history = _fit_twin(x, y, "1", monkeypatch)
    spec = warmup.training_spec(model, [x], [y], 4, model.backend)
    assert spec["kind"] == "train" and spec["x"] == [[[4, 9, 9, 2], "float32"]]
    key = warmup.spec_key(spec)
    assert bg.wait(timeout=300)
    assert (background / f"{key}.done").exists(), (background / f"{key}.log").read_text()
    # training itself never waited for it nor changed: the same as without a compiling process
    twin, twin_history = _fit_twin(x, y, "0", monkeypatch)
    assert history.history == twin_history.history
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    # compiled here now: the next fit starts no process
    monkeypatch.setenv("FASTCONV_BACKGROUND_COMPILE", "1")
    assert warmup.start_training_compile(model, [x], [y], 4) is None


def test_a_failed_training_compile_is_not_retried_at_every_fit(background, monkeypatch):
    real_spec = warmup.training_spec

    def broken_spec(*args):
        spec = real_spec(*args)
        spec["compile"]["loss"] = "no such loss"
        return spec

    monkeypatch.setattr(warmup, "training_spec", broken_spec)
    model = small_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 9, 9, 2), np.float32), np.zeros((4, 3), np.float32)
    job = warmup.start_training_compile(model, [x], [y], 4)
    assert job is not None and job.proc is not None
    job.proc.wait(timeout=300)
    assert not job.succeeded() and "no such loss" in job.log_path.read_text()
    assert bg.failed(job.key)
    assert warmup.start_training_compile(model, [x], [y], 4) is None
    model.fit(x, y, verbose=0)  # trains, compiling in the foreground
    assert not list(background.glob("*.json"))


def test_training_a_model_with_a_layer_of_the_users_compiles_in_the_foreground(background):
    class Doubled(Layer):  # the compiling process could not rebuild it
        def call(self, inputs, training=False):
            return inputs * 2.0

    with fastconv.use_backend("numba-cpu"):
        model = Sequential([Input((9, 9, 2)), Doubled(), Conv2D(2, 3), Flatten(), Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((2, 9, 9, 2), np.float32), np.zeros((2, 3), np.float32)
    assert warmup.training_spec(model, [x], [y], 2, model.backend) is None
    model.fit(x, y, verbose=0)
    assert not background.exists()


def test_recorded_kernel_calls_are_listed_not_run_then_compiled_last_first():
    from fastconv.backends.numba_cpu import pool
    from fastconv.backends.numba_cpu.jit import recorded
    from fastconv.geometry import pool_geometry

    backend = fastconv.get_backend("numba-cpu")
    g = pool_geometry((2, 6, 6, 3), 2, 2, "valid")
    x = np.ones(g.x_shape, np.float32)
    y = np.full(g.y_shape, 7.0, np.float32)
    argmax = np.zeros(g.y_shape, np.int32)

    def step():
        pool.max_forward(1, x, g.astuple(), True, y, argmax)  # serial
        pool.max_forward(1 << 20, x, g.astuple(), True, y, argmax)  # parallel
        pool.max_forward(1, x, g.astuple(), True, y, argmax)  # listed once

    calls = recorded(step)
    assert [d for d, _ in calls] == [pool.max_forward.serial, pool.max_forward.parallel]
    assert (y == 7.0).all()  # nothing ran
    backend.compile_last_first(step)
    for dispatcher, types in calls:
        assert types in dispatcher.overloads
    assert (y == 7.0).all()


def _two_input_model():
    a, b = Input((8, 8, 3)), Input((5,))
    h = Activation("relu")(BatchNormalization()(Conv2D(4, 3, padding="same")(a)))
    h = GlobalAveragePooling2D()(Dropout(0.5)(MaxPooling2D(2)(h)))
    h = Concatenate()([h, Dense(4)(b)])
    model = Model([a, b], [Dense(3, activation="softmax", name="cls")(h), Dense(1, name="reg")(h)])
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], []])
    return model, [np.zeros((4, 8, 8, 3), np.float32), np.zeros((4, 5), np.float32)], \
        [np.zeros(4, np.int64), np.zeros((4, 1), np.float32)]


def _conv1d_model():
    model = Sequential([Input((20, 2)), Conv1D(4, 3), AveragePooling1D(2), Flatten(), Dense(2)])
    model.compile("rmsprop", "mse")
    return model, [np.zeros((4, 20, 2), np.float32)], [np.zeros((4, 2), np.float32)]


def _uint8_images_model():
    model = Sequential([Input((12, 12, 1)), Rescaling(1 / 255), ZeroPadding2D(1),
                        Conv2D(3, 5, strides=2, activation="relu"),
                        AveragePooling2D(2, padding="same"), GlobalMaxPooling2D(),
                        Dense(4, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    return model, [np.zeros((4, 12, 12, 1), np.uint8)], [np.zeros((4, 4), np.float32)]


@pytest.mark.parametrize("make", [_two_input_model, _conv1d_model, _uint8_images_model])
def test_the_dry_run_lists_a_training_steps_kernels_for_many_models(make):
    """What the compiling process does with a training spec, short of compiling: the step runs
    on kernels that compute nothing, and lists the forward and backward kernels it uses."""
    from fastconv.backends.numba_cpu.jit import recorded

    with fastconv.use_backend("numba-cpu"):
        model, xs, ys = make()
    spec = warmup.training_spec(model, xs, ys, 4, model.backend)
    assert spec is not None and json.loads(json.dumps(spec)) == spec
    with np.errstate(all="ignore"):
        calls = recorded(lambda: model._train_step(xs, ys, update_when_not_finite=True))
    names = [dispatcher.py_func.__name__ for dispatcher, _ in calls]
    assert names[0].startswith("forward")  # the first convolution comes first
    assert any(n.startswith("backward_weight") for n in names), names


# -- kernels already compiled: no compiling process, no fallback --------------------------------

def test_a_plan_whose_kernels_are_compiled_runs_them_from_its_first_call(background_on):
    """Kernels compile per argument type, not per shape: another model, another batch size,
    same kernels. The first prediction runs the real plan; no process starts."""
    small_model().predict_on_batch(np.zeros((2, 9, 9, 2), dtype=np.float32))  # compiles here
    bg.wait(timeout=300)
    other = small_model(filters=6)
    x = np.random.default_rng(4).random((3, 9, 9, 2), dtype=np.float32)
    got = other.predict_on_batch(x)
    assert isinstance(the_plan(other), InferencePlan)
    assert bg._lock_holder(background_on) is None and not list(background_on.glob("*.json"))
    np.testing.assert_allclose(got, expected(other, x), rtol=1e-5, atol=1e-6)


_FRESH_PROCESS = """
import sys, numpy as np, fastconv
from fastconv import warmup
from fastconv.backends import background
from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Sequential
with fastconv.use_backend("numba-cpu"):
    m = Sequential([Input((11, 10, 3)), Conv2D(int(sys.argv[1]), 3, activation="relu"),
                    MaxPooling2D(2), Flatten(), Dense(4, activation="softmax")])
m.predict_on_batch(np.ones((int(sys.argv[2]), 11, 10, 3), np.float32))
plan = list(m._plans.values())[-1]
print(type(plan).__name__, background._lock_holder(background.folder()))
"""


def test_a_fresh_process_with_a_warm_cache_starts_no_compiling_process(tmp_path):
    """Two processes on one Numba cache: the second, with another model and batch size, and
    no marker of the first's plan, predicts with the real plan at once."""
    import subprocess
    import sys

    from fastconv.backends import jit_cache

    env = dict(os.environ, NUMBA_CACHE_DIR=str(jit_cache.folder()),
               FASTCONV_BACKGROUND_COMPILE="0", FASTCONV_CACHE_DIR=str(tmp_path / "a"))
    subprocess.run([sys.executable, "-c", _FRESH_PROCESS, "5", "2"], env=env, check=True,
                   capture_output=True, timeout=600)
    env.update(FASTCONV_BACKGROUND_COMPILE="1", FASTCONV_CACHE_DIR=str(tmp_path / "b"))
    out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, "7", "3"], env=env,
                         check=True, capture_output=True, text=True, timeout=600).stdout
    assert out.split() == ["InferencePlan", "None"], out
    assert not list((tmp_path / "b").rglob("*.json"))  # no compiling process was started
