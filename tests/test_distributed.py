"""Batch inference on Dask: a real LocalCluster with two worker processes."""

from __future__ import annotations

import os
import shutil

import cloudpickle
import dask.array as da
import distributed
import numpy as np
import pytest

from fastconv import distributed as fcd
from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Model, Sequential, load_model


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def small_model():
    return Sequential([
        Conv2D(4, 3, activation="relu", input_shape=(10, 10, 1)),
        MaxPooling2D(2),
        Flatten(),
        Dense(3, activation="softmax"),
    ])


def images(n, seed=0, shape=(10, 10, 1)):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "small.fcm"
    small_model().save(path)
    return path


def test_numpy_input_equals_local_predict(client, model_file):
    x = images(70)
    result = fcd.predict(model_file, x, client=client, batch_size=8)
    assert isinstance(result, da.Array) and result.shape == (70, 3)
    assert result.numblocks[0] >= 2  # chunked for the two workers
    assert all(c % 8 == 0 for c in result.chunks[0][:-1])  # whole batches per block
    expected = load_model(model_file, compile=False).predict(x, batch_size=8, verbose=0)
    np.testing.assert_array_equal(result.compute(), expected)


def test_dask_input_any_chunking(client, model_file):
    x = images(45, seed=1)
    dx = da.from_array(x, chunks=(16, 5, 10, 1))  # non-batch axes chunked too: merged
    result = fcd.predict(str(model_file), dx, client=client, batch_size=16)
    expected = load_model(model_file, compile=False).predict(x, batch_size=16, verbose=0)
    np.testing.assert_array_equal(result.compute(), expected)
    assert result.chunks[0] == dx.chunks[0]


def test_functional_model_and_default_scheduler(client, tmp_path):
    inp = Input((10, 10, 1))
    out = Dense(2)(Flatten()(Conv2D(3, 3, padding="same")(inp)))
    model = Model(inp, out)
    path = tmp_path / "f.fcm"
    model.save(path)
    x = images(20, seed=2)
    result = fcd.predict(path, x)  # no client: the current Client computes it
    np.testing.assert_array_equal(result.compute(), model.predict(x, verbose=0))


def test_weights_never_travel_with_tasks(client, tmp_path):
    model = Sequential([Flatten(input_shape=(10, 10, 1)), Dense(2000), Dense(3)])
    path = tmp_path / "big.fcm"
    model.save(path)
    weights_bytes = sum(w.nbytes for w in model.get_weights())
    assert weights_bytes > 800_000
    x = da.from_array(images(8, seed=3), chunks=(4, 10, 10, 1))
    result = fcd.predict(path, x, batch_size=4)
    graph_bytes = len(cloudpickle.dumps(dict(result.__dask_graph__())))
    assert graph_bytes < 20_000 < weights_bytes  # the input and the path, not the weights
    np.testing.assert_allclose(result.compute(), model.predict(x.compute(), verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_each_worker_loads_the_model_once(client, model_file):
    x = images(64, seed=4)
    for _ in range(2):
        fcd.predict(model_file, x, client=client, batch_size=4).compute()

    def loaded(path):
        return sum(1 for key in fcd._cache if key[0] == path)

    counts = client.run(loaded, str(model_file))
    assert len(counts) == 2 and all(n == 1 for n in counts.values()), counts


def test_replaced_file_is_loaded_again(client, tmp_path):
    path = tmp_path / "m.fcm"
    first = small_model()
    first.save(path)
    x = images(12, seed=5)
    np.testing.assert_array_equal(fcd.predict(path, x, client=client).compute(),
                                  first.predict(x, verbose=0))
    second = small_model()  # new random weights, same architecture
    second.save(path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    np.testing.assert_array_equal(fcd.predict(path, x, client=client).compute(),
                                  second.predict(x, verbose=0))


def test_worker_that_cannot_read_the_model_names_worker_and_path(client, tmp_path):
    path = tmp_path / "gone.fcm"
    small_model().save(path)
    result = fcd.predict(path, images(6, seed=6), client=None)  # graph made, not run
    shutil.rmtree(tmp_path)
    with pytest.raises(fcd.ModelUnavailableError) as info:
        result.compute()
    message = str(info.value)
    assert str(path) in message
    assert "worker" in message and any(addr in message for addr in client.scheduler_info()[
        "workers"]), message


def test_bad_arguments(client, model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        fcd.predict(tmp_path / "missing.fcm", images(2))
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 10, 10, 1\).*found "
                                         r"shape \(4, 10, 10, 2\)"):
        fcd.predict(model_file, images(4, shape=(10, 10, 2)))
    with pytest.raises(ValueError, match=r"found shape \(0, 9, 10, 1\)"):
        fcd.predict(model_file, da.zeros((4, 9, 10, 1), chunks=2))
    with pytest.raises(ValueError, match="batch_size"):
        fcd.predict(model_file, images(2), batch_size=0)
    with pytest.raises(TypeError, match="found dtype complex64"):
        fcd.predict(model_file, da.zeros((4, 10, 10, 1), dtype=np.complex64, chunks=2))
    with pytest.raises(TypeError, match="found dtype object"):
        fcd.predict(model_file, np.empty((4, 10, 10, 1), dtype=object))


def test_numpy_input_blocks_are_graph_values_with_fresh_keys(client, model_file):
    """Each block is a value of the graph (the scheduler can send it again), under keys of its
    own call: a later call computes again."""
    x = images(500, seed=7)
    result = fcd.predict(model_file, x, batch_size=64)  # the current Client
    expected = load_model(model_file, compile=False).predict(x, batch_size=64, verbose=0)
    np.testing.assert_array_equal(result.compute(), expected)
    again = fcd.predict(model_file, x, batch_size=64)
    assert again.name != result.name
    np.testing.assert_array_equal(again.compute(), expected)


def test_a_dead_worker_costs_only_its_blocks(model_file):
    """A worker killed (SIGKILL) after the predictions were persisted on the cluster: the
    blocks it held are computed again elsewhere from the graph, and the result is complete.
    (Scattered input lived on one worker only: the job failed with FutureCancelledError.)"""
    import signal

    x = images(96, seed=11)
    expected = load_model(model_file, compile=False).predict(x, batch_size=8, verbose=0)
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=":0")
    try:
        with distributed.Client(cluster) as c:
            result = fcd.predict(model_file, x, client=c, batch_size=8)  # persisted
            distributed.wait(result)
            who = c.who_has(result)
            holders = {w for ws in who.values() for w in ws}
            assert len(holders) == 2  # blocks on both workers
            victim = sorted(holders)[0]
            pid = c.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            np.testing.assert_array_equal(result.compute(), expected)
    finally:
        cluster.close()
