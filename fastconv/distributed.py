"""Batch inference on a Dask cluster: ``predict(model_path, x, client=None, batch_size=None)``.

Every task carries the model's *path*, never its weights: each worker process loads the model
once, from that path, into a cache keyed by the path, the file's modification time and its size
(a file replaced under the same name is loaded again), and predicts its blocks of ``x`` with it.
The workers must therefore read the file at the same path (a shared filesystem, or the same file
copied to every machine) and run the same fastconv version as the client.

Needs the optional extra ``fastconv[distributed]`` (dask[array] and distributed).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import uuid

import numpy as np

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()
#: Models a worker keeps (the most recently loaded ones).
CACHE_SIZE = 4
#: Batches per block when ``x`` is a NumPy array chunked for the caller.
DEFAULT_BATCH_SIZE = 32


class ModelUnavailableError(OSError):
    """A worker cannot read the model file it was given."""


def _dask():
    try:
        import dask.array as da
    except ImportError:
        raise RuntimeError("fastconv.distributed needs Dask: pip install "
                           "'fastconv[distributed]' (dask[array] and distributed)") from None
    return da


def _worker_name() -> str:
    try:
        from distributed import get_worker

        worker = get_worker()
        name = worker.name
        label = worker.address
        return label if name is None or str(name) == label else f"{name} ({label})"
    except (ImportError, ValueError):
        return f"{socket.gethostname()} (process {os.getpid()}, not a Dask worker)"


def worker_predictor(path: str, backend: str | None = None):
    """This process's Predictor for ``path`` (loaded once per path, mtime and size)."""
    from .predictor import Predictor

    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size, backend)
    except OSError as exc:
        raise ModelUnavailableError(f"worker {_worker_name()} cannot read the model file "
                                    f"{path!r}: {exc.strerror or exc}") from None
    predictor = _cache.get(key)
    if predictor is not None:
        return predictor
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is None:
            try:
                predictor = Predictor.load(path, backend=backend)
            except OSError as exc:
                raise ModelUnavailableError(f"worker {_worker_name()} cannot read the model "
                                            f"file {path!r}: {exc}") from None
            while len(_cache) >= CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[key] = predictor
    return predictor


def _predict_block(block: np.ndarray, path: str, batch_size: int, backend: str | None,
                   file_signature: tuple):
    """One block's predictions (``file_signature``, the client's view of the file, only makes
    the task keys change when the file does)."""
    return worker_predictor(path, backend).predict(block, batch_size=batch_size)


def _default_client():
    """The current ``distributed.Client``, or None."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _workers(client) -> int:
    if client is None:
        return os.cpu_count() or 1
    return max(1, len(client.scheduler_info().get("workers", {})))


def _blocks(da, x: np.ndarray, rows: int):
    """``x`` as a dask array of ``rows``-sample blocks, each block a value of the task graph:
    the scheduler keeps it, so that a block whose worker dies is sent again to another worker
    and only that worker's blocks are computed again. (Data scattered to a worker instead lives
    on that worker alone: losing the worker would lose the whole job.) Each call's blocks get
    fresh keys, so a later call never reuses an earlier call's results."""
    parts = [x[i:i + rows] for i in range(0, len(x), rows)] or [x]
    token = uuid.uuid4().hex
    return da.concatenate([da.from_array(p, chunks=p.shape, name=f"fastconv-input-{token}-{i}")
                           for i, p in enumerate(parts)])


def predict(model_path, x, client=None, batch_size: int | None = None,
            backend: str | None = None):
    """Predictions for ``x`` as a dask array, block by block on the cluster.

    ``x`` is a dask array (chunked along the batch axis only; other axes are merged) or a NumPy
    array, chunked here into blocks of whole batches, about two per worker. ``batch_size`` is
    the number of samples each worker computes at a time (default 32), so the result equals
    ``load_model(model_path).predict(x, batch_size=batch_size)``. With ``client`` the result is
    persisted on that client's cluster (the computation starts at once); without it, the array
    computes on Dask's default scheduler (the current ``Client``, if there is one).

    The model is read here once, to check ``x`` against its input shape and to learn its
    output shape, and by each worker once from the same path."""
    from .predictor import Predictor, load_model_file

    da = _dask()
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"distributed.predict: batch_size must be an int >= 1, got "
                         f"{batch_size!r}")
    path = os.path.abspath(os.fspath(model_path))
    model = load_model_file(path)
    if model.multi_input or isinstance(model.output_shape, list):
        raise ValueError(f"distributed.predict: {path!r} has several inputs or outputs; "
                         f"only single-input, single-output models are supported")
    local = Predictor(model, backend=backend)
    if isinstance(x, da.Array):
        if x.ndim > 1 and any(len(c) > 1 for c in x.chunks[1:]):
            x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    else:
        x = local.check_input(x)
        active = client if client is not None else _default_client()
        per_block = math.ceil(len(x) / (2 * _workers(active)) / batch_size) * batch_size
        x = _blocks(da, x, max(per_block, batch_size))
    if x.dtype.kind not in "biuf":
        raise TypeError(f"distributed.predict: expected an array of numbers, found dtype "
                        f"{x.dtype}")
    local.check_input(np.empty((0, *x.shape[1:]), dtype=x.dtype))  # shape errors here
    out_shape = tuple(model.output_shape)
    dtype = np.dtype(model.dtype)
    st = os.stat(path)
    result = x.map_blocks(
        _predict_block, path, batch_size, backend, (st.st_mtime_ns, st.st_size),
        dtype=dtype,
        chunks=(x.chunks[0], *((d,) for d in out_shape[1:])),
        drop_axis=list(range(1, x.ndim)) if x.ndim > 1 else None,
        new_axis=list(range(1, len(out_shape))) if len(out_shape) > 1 else None,
        meta=np.empty((0,) * len(out_shape), dtype=dtype),
        token="fastconv-predict")
    if client is not None:
        result = client.persist(result)
    return result
