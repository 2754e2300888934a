"""Interrupt campaign: Ctrl-C (SIGINT) and SIGKILL sent at a random moment to a process that
trains with a ModelCheckpoint, or that saves a model over and over. The last saved file always
loads; Ctrl-C leaves no temporary; SIGKILL leaves at most the one temporary of the save it cut,
which the next save of that file removes.

``FASTCONV_CAMPAIGN_ROUNDS`` sets the interrupts per scenario (CI: the default sample).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import fastconv
from fastconv.layers import Dense
from fastconv.models import Sequential

ROUNDS = int(os.environ.get("FASTCONV_CAMPAIGN_ROUNDS", "1"))

_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from fastconv.callbacks import ModelCheckpoint
    from fastconv.layers import Conv2D, Dense, Flatten
    from fastconv.models import Sequential

    mode, path = sys.argv[1], sys.argv[2]
    model = Sequential([Conv2D(32, 3, input_shape=(16, 16, 3), activation="relu"), Flatten(),
                        Dense(512, activation="relu"), Dense(10)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16, 16, 3)).astype("float32")
    y = rng.standard_normal((256, 10)).astype("float32")
    model.save(path)
    print("ready", flush=True)
    if mode == "fit":
        model.fit(x, y, batch_size=32, epochs=10**6, verbose=0,
                  callbacks=[ModelCheckpoint(path)])
    else:
        while True:
            model.save(path)
""")


def _temporaries(path):
    return [p.name for p in path.parent.iterdir()
            if p.name.startswith(f".{path.name}.") and p.name.endswith(".tmp")]


@pytest.mark.parametrize("during", ["fit", "save"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupts_leave_a_loadable_file(tmp_path, during, sig):
    rng = random.Random(f"{during}-{sig}")
    path = tmp_path / "model.fcm"
    for _ in range(ROUNDS):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, during, str(path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 1.5))
            child.send_signal(getattr(signal, sig))
            _, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        if sig == "SIGINT":
            assert child.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
            assert _temporaries(path) == []
        else:
            assert child.returncode == -signal.SIGKILL
            assert len(_temporaries(path)) <= 1
        model = fastconv.models.load_model(path)  # the last saved file loads
        assert model.count_params() > 0
    Sequential([Dense(2, input_shape=(3,))]).save(path)  # the next save cleans up
    assert _temporaries(path) == []
