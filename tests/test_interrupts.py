"""Ctrl-C during ``fit`` stops training even when it lands in a callback that C calls (where
Numba compiles a kernel), which prints "Exception ignored" and drops the KeyboardInterrupt."""

from __future__ import annotations

import ctypes
import signal

import numpy as np
import pytest

from fastconv import interrupts
from fastconv.callbacks import Callback
from fastconv.layers import Dense
from fastconv.models import Sequential

_C_CALLBACK = ctypes.CFUNCTYPE(None)


class _CtrlCInsideACCallback(Callback):
    """At the end of the first batch, SIGINT arrives while C runs a Python callback."""

    def __init__(self):
        super().__init__()
        self.batches = 0
        self._inside = _C_CALLBACK(lambda: signal.raise_signal(signal.SIGINT))

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == 1:
            ctypes.CFUNCTYPE(None, _C_CALLBACK)(lambda f: f())(self._inside)


def _model():
    model = Sequential([Dense(3, input_shape=(4,))])
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_swallowed_ctrl_c_still_stops_fit():
    x, y = np.ones((64, 4), "float32"), np.zeros((64, 3), "float32")
    cb = _CtrlCInsideACCallback()
    with pytest.raises(KeyboardInterrupt):
        _model().fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[cb])
    assert cb.batches == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_handler_is_restored_and_a_program_handler_left_alone():
    x, y = np.ones((16, 4), "float32"), np.zeros((16, 3), "float32")
    _model().fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with interrupts.remembered():
            assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
    interrupts.check()  # nothing pending: no KeyboardInterrupt
