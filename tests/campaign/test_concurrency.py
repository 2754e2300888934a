"""Concurrency campaign: N threads predicting right after ``set_weights`` and while another
thread trains, N threads each training a model, and two processes sharing one cache folder
(the autotuning cache and model files saved to one path). Nothing stale, nothing lost, no
exceptions.

``FASTCONV_CAMPAIGN_ROUNDS`` sets the rounds of each test (CI: the default sample) and
``FASTCONV_CAMPAIGN_THREADS`` the thread count (default 8; in an emulated device run one round
of 4 threads on small images).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import fastconv
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv.models import Sequential
from fastconv.utils import set_random_seed

from ..devices import EMULATED
from ..threads import run_in_threads

#: An emulated device's kernels are slow (Numba's simulator runs them in Python, one launch at a
#: time): there the default sample is one round of 4 threads, on the same network, small images
ROUNDS = int(os.environ.get("FASTCONV_CAMPAIGN_ROUNDS", "1" if EMULATED else "2"))
THREADS = int(os.environ.get("FASTCONV_CAMPAIGN_THREADS", "4" if EMULATED else "8"))
#: image side, channels, the two convolutions' filters, the hidden units and the samples
SIDE, CHANNELS, FILTERS, UNITS, SAMPLES = ((6, 2, (3, 4), 8, 16) if EMULATED
                                           else (12, 3, (16, 32), 64, 32))


def _cnn(seed=0):
    set_random_seed(seed)
    model = Sequential([Conv2D(FILTERS[0], 3, padding="same", activation="relu",
                               input_shape=(SIDE, SIDE, CHANNELS)),
                        MaxPooling2D(), Conv2D(FILTERS[1], 3, activation="relu"), Flatten(),
                        Dense(UNITS, activation="relu"), Dense(5, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _data(n=SAMPLES, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SIDE, SIDE, CHANNELS)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
    return x, y


def test_threads_predict_right_after_set_weights(backend):
    model, (x, _) = _cnn(), _data()
    rng = np.random.default_rng(2)
    stale = 0
    for _ in range(ROUNDS):
        old = model.get_weights()
        new = [rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in old]
        model.set_weights(new)
        expected = model.predict(x, verbose=0)
        model.set_weights(old)
        model.predict(x, batch_size=16, verbose=0)
        model.set_weights(new)
        got = run_in_threads(THREADS, lambda i: model.predict(x, batch_size=8 * (1 + i % 3),
                                                        verbose=0))
        stale += sum(not np.allclose(g, expected, rtol=1e-5, atol=1e-6) for g in got)
    assert stale == 0, f"{stale} stale predictions in {ROUNDS * THREADS}"


def test_threads_train_their_own_models_as_a_serial_run_does(backend):
    x, y = _data()
    initial = _cnn().get_weights()

    def train(_):
        model = _cnn()
        model.set_weights(initial)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return model.get_weights()

    for _ in range(ROUNDS):
        expected = train(None)
        for got in run_in_threads(min(THREADS, 4), train):
            for a, b in zip(got, expected):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_threads_predict_while_another_thread_trains(backend):
    x, y = _data()
    served, trained = _cnn(3), _cnn(4)
    expected = served.predict(x, verbose=0)

    def work(i):
        if i == 0:
            trained.fit(x, y, batch_size=16, epochs=ROUNDS, verbose=0)
            return None
        return [served.predict(x, verbose=0) for _ in range(ROUNDS)]

    for result in run_in_threads(THREADS, work)[1:]:
        for got in result:
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


_SHARER = textwrap.dedent("""
    import sys
    import numpy as np
    from fastconv.backends import autotune
    from fastconv.layers import Dense
    from fastconv.models import Sequential, load_model

    who, rounds, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    model = Sequential([Dense(64, input_shape=(32,), name=f"d{who}")])
    model.compile(optimizer="sgd", loss="mse")
    for i in range(rounds):
        assert autotune.update_entries({f"{who}-{i}": {"choice": "im2col"}})
        model.save(path)
        loaded = load_model(path)  # whichever process saved last: a whole, valid file
        assert loaded.get_weights()[0].shape == (32, 64)
    print("done", flush=True)
""")


def test_two_processes_share_one_cache_folder(tmp_path):
    """Both write the autotuning cache (a lock and a merge) and save the same model file (a
    locked temporary each) at the same time: every entry is kept, every load sees a whole
    file, and no temporary is left."""
    env = dict(os.environ, FASTCONV_CACHE_DIR=str(tmp_path / "cache"))
    path = tmp_path / "cache" / "shared.fcm"
    path.parent.mkdir()
    rounds = 20 * ROUNDS
    procs = [subprocess.Popen([sys.executable, "-c", _SHARER, who, str(rounds), str(path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and "done" in out, err[-3000:]
    from fastconv.backends import autotune

    entries = autotune.read_entries(tmp_path / "cache" / autotune.FILE_NAME)
    assert {f"{w}-{i}" for w in "ab" for i in range(rounds)} <= set(entries)
    assert fastconv.models.load_model(path).get_weights()[0].shape == (32, 64)
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
