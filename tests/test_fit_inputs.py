"""What Keras users pass to ``fit`` and expect to be heard: the legacy batch hooks of a custom
Callback run, a checkpoint that cannot see its monitor says so, and data pipelines that are not
arrays are refused by name instead of being turned into object arrays."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastconv.callbacks as cb
from fastconv.layers import Dense
from fastconv.models import Sequential


def small_model():
    model = Sequential([Dense(3, input_shape=(4,), activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((20, 4), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    return x, y


def test_the_legacy_batch_hooks_of_a_custom_callback_run(data):
    class Counting(cb.Callback):
        def __init__(self):
            super().__init__()
            self.begins, self.ends = [], []

        def on_batch_begin(self, batch, logs=None):
            self.begins.append(batch)

        def on_batch_end(self, batch, logs=None):
            self.ends.append((batch, sorted(logs)))

    counting = Counting()
    small_model().fit(*data, batch_size=8, epochs=2, verbose=0, callbacks=[counting])
    assert counting.begins == [0, 1, 2, 0, 1, 2]  # 3 batches a epoch, as Keras counts them
    assert [b for b, _ in counting.ends] == [0, 1, 2, 0, 1, 2]
    assert all("loss" in keys for _, keys in counting.ends)


def test_a_checkpoint_whose_monitor_is_not_logged_warns_each_epoch(data, tmp_path):
    path = tmp_path / "best.fcm"
    ckpt = cb.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    with pytest.warns(RuntimeWarning, match="'val_loss' available.*loss.*skipping") as seen:
        small_model().fit(*data, epochs=2, verbose=0, callbacks=[ckpt])
    assert len([w for w in seen if "ModelCheckpoint" in str(w.message)]) == 2
    assert not path.exists()


class BatchesLikeAPyDataset:
    """Keras's ``PyDataset`` protocol: a length and batches by index."""

    def __len__(self):
        return 10**9

    def __getitem__(self, i):
        return np.zeros((32, 4), np.float32), np.zeros((32, 3), np.float32)


def _batches():
    while True:
        yield np.zeros((32, 4), np.float32), np.zeros((32, 3), np.float32)


@pytest.mark.parametrize("make, named", [(BatchesLikeAPyDataset, "dataset object"),
                                         (_batches, "generator")])
def test_a_data_pipeline_is_refused_by_name_without_reading_it(make, named):
    tracemalloc.start()
    try:
        with pytest.raises(TypeError, match=f"fit: x is a {named}.*not supported yet"):
            small_model().fit(make(), epochs=1, verbose=0)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20  # nothing was read
    finally:
        tracemalloc.stop()
