"""Batch inference on Dask: the lesson network over the same images, predicted in this process
(``Predictor.predict``, the numba-cpu backend on every core) and on a ``distributed.LocalCluster``
of 2 worker processes with one thread each (``fastconv.distributed.predict``, each worker's
Numba kernels on 1 thread), throughput in img/s.

The cluster row includes what a user pays per call: the images are scattered to the workers in
blocks, the graph is built and run, and the predictions come back; the model itself was loaded
by each worker in the warm-up call and stays in its cache. Rows go to the report's inference
table under their own batch (the image count), ``dask-2x1/<backend>`` beside ``<backend>/auto``.
"""

from __future__ import annotations

import pytest

import fastconv

from . import lesson, subjects

#: images per call, by mode
IMAGES = {"full": 8192, "quick": 2048, "smoke": 64}
BATCH = 256
WORKERS = 2


def _images(settings) -> int:
    return IMAGES[settings.mode]


def info(n: int) -> dict:
    return {"section": "infer", "workload": f"lesson-dask-{n}", "batch": n, "images": n,
            "shape": f"{n}x28x28x1"}


@pytest.fixture(scope="module")
def lesson_file(lesson_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "lesson.fcm"
    with fastconv.use_backend("numpy"):
        lesson.fastconv_model(lesson_weights, compile=False).save(path)
    return path


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="pip install 'fastconv[distributed]'")
    cluster = distributed.LocalCluster(n_workers=WORKERS, processes=True, threads_per_worker=1,
                                       dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client
    cluster.close()


def _check(settings, backend) -> str:
    if settings.mode != "smoke" and backend.name != "numba-cpu":
        pytest.skip("the Dask rows measure the numba-cpu backend only")
    return backend.name


def test_dask_predict_plain(measure, settings, lesson_file, fc_backend):
    from fastconv.inference import load

    backend_name = _check(settings, fc_backend)
    predictor = load(lesson_file, backend=backend_name, batch_size=BATCH)
    x = lesson.images(_images(settings))
    measure(lambda: predictor.predict(x),
            {**info(len(x)), **subjects.backend_info(fc_backend, "auto")})


def test_dask_predict_cluster(measure, settings, lesson_file, dask_client, fc_backend):
    import numpy as np

    from fastconv import distributed as fcd
    from fastconv.inference import load

    backend_name = _check(settings, fc_backend)
    x = lesson.images(_images(settings))

    def run():
        result = fcd.predict(lesson_file, x, client=dask_client, batch_size=BATCH,
                             backend=backend_name)
        return dask_client.compute(result, sync=True)

    expected = load(lesson_file, backend=backend_name).predict(x, batch_size=BATCH)
    np.testing.assert_allclose(run(), expected, rtol=1e-5, atol=1e-6)  # also the warm-up
    measure(run, {**info(len(x)), "library": "fastconv", "backend": backend_name,
                  "device": "cpu", "impl": f"dask-{WORKERS}x1/{backend_name}",
                  "threads": WORKERS})
