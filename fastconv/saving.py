"""Model and weight files: one ZIP archive, never pickle.

Layout of the archive:

* ``fastconv.json``: ``{"format": "fastconv-model" | "fastconv-weights", "format_version": 1,
  "model": {"class_name", "config"}, "compile": {...} | null, "weights": [{"name", "shape",
  "dtype", "file"}], "optimizer": {"iterations", "arrays": [...]}}``
* ``arrays/<i>.npy``: each array in NumPy's ``.npy`` format, read back with
  ``allow_pickle=False``.

Files are read as hostile by ``fastconv.io.archive`` (every declared size checked against the
file's own size before anything is read or allocated; every failure an
``InvalidModelFileError`` naming the file and the problem); this module builds models from them.

Writes are atomic: the archive goes to a temporary file in the same folder (locked while it is
written), is flushed to disk, then renamed over the target, so a crash mid-save leaves any
earlier file intact; the next save of the same file removes the temporaries that killed saves
left. Saved files get the mode that the umask gives new files.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__
from .io.archive import FORMAT_VERSION, MANIFEST, Archive, is_int
from .io.atomic import atomic_write
from .io.errors import InvalidModelFileError  # noqa: F401 - its documented import path
from .io.files import check_regular


def _array_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _write_archive(path, manifest: dict, arrays: list[np.ndarray]) -> None:
    def write(fh):
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
            for i, a in enumerate(arrays):
                zf.writestr(f"arrays/{i}.npy", _array_bytes(a))

    atomic_write(Path(os.fspath(path)), write)


def _weight_entries(variables, offset: int = 0) -> tuple[list[dict], list[np.ndarray]]:
    entries, arrays = [], []
    for i, var in enumerate(variables):
        host = var.numpy()
        entries.append({"name": var.name, "shape": list(host.shape), "dtype": host.dtype.name,
                        "file": f"arrays/{offset + i}.npy"})
        arrays.append(host)
    return entries, arrays


def _keras_target(filepath, where: str) -> bool:
    """True when ``filepath`` names a Keras file: ``.keras`` for models, ``.h5`` for weights."""
    name = os.fspath(filepath).lower()
    if where == "save" and name.endswith((".h5", ".hdf5")):
        raise ValueError(f"save: fastconv does not write legacy HDF5 model files "
                         f"({os.fspath(filepath)!r}); save to a .keras file (Keras 3) or a .fcm "
                         f"file (fastconv's own format)")
    return name.endswith(".keras") if where == "save" else name.endswith((".h5", ".hdf5"))


def model_description(model) -> dict:
    """A model's architecture as a model file keeps it: its class name and configuration."""
    return {"class_name": type(model).__name__, "config": model.get_config()}


def model_class(description):
    """The model class a description (``model_description``) names, or None when it is not
    one that model files hold."""
    from .models.functional import Functional
    from .models.sequential import Sequential

    name = description.get("class_name") if isinstance(description, dict) else None
    return {"Sequential": Sequential, "Functional": Functional}.get(name) \
        if isinstance(name, str) else None


def save_model(model, filepath) -> None:
    from .losses import serialize as serialize_loss
    from .optimizers import serialize as serialize_optimizer

    if _keras_target(filepath, "save"):  # a Keras 3 archive (fastconv.keras_io)
        from . import keras_io

        return keras_io.save_model(model, filepath)

    if not model.built:
        raise ValueError(f"save: model '{model.name}' is not built yet (its input shape is "
                         f"unknown); build it, or train it, before saving")
    entries, arrays = _weight_entries(model.weights)
    manifest = {"format": "fastconv-model", "format_version": FORMAT_VERSION,
                "fastconv_version": __version__,
                "model": model_description(model),
                "compile": None, "weights": entries, "optimizer": None}
    if model.compiled:
        manifest["compile"] = model.compile_config(serialize_optimizer, serialize_loss)
        paths = model.weight_paths()
        state = model.optimizer.get_state(paths)
        opt_entries = []
        for key, value in state["arrays"].items():
            host = paths[key.rpartition("/")[0]]._backend.to_host(value)
            opt_entries.append({"name": key, "shape": list(host.shape),
                                "dtype": host.dtype.name, "file": f"arrays/{len(arrays)}.npy"})
            arrays.append(host)
        manifest["optimizer"] = {"iterations": state["iterations"], "arrays": opt_entries}
    _write_archive(filepath, manifest, arrays)


def save_weights(model, filepath) -> None:
    if _keras_target(filepath, "save_weights"):  # a Keras 3 .weights.h5 file
        from . import keras_io

        return keras_io.save_weights(model, filepath)
    entries, arrays = _weight_entries(model.weights)
    manifest = {"format": "fastconv-weights", "format_version": FORMAT_VERSION,
                "fastconv_version": __version__, "weights": entries}
    _write_archive(filepath, manifest, arrays)


def _assign_weights(model, pairs, archive: Archive) -> None:
    variables = model.weights
    if len(pairs) != len(variables):
        raise archive.error(f"it holds {len(pairs)} weight arrays but model '{model.name}' has "
                            f"{len(variables)}")
    for var, (entry, value) in zip(variables, pairs):
        if tuple(value.shape) != var.shape:
            raise archive.error(f"weight {entry['name']!r} has shape {tuple(value.shape)} but "
                                f"{var.name!r} in the model has shape {var.shape}")
    for var, (_, value) in zip(variables, pairs):
        var.assign(value)


def load_model(filepath, compile: bool = True):  # noqa: A002 - Keras's argument name
    """Rebuild a model saved with ``model.save``: architecture, weights and, with
    ``compile=True``, optimizer, loss, metrics and optimizer state. Keras files (``.keras``,
    ``.h5``) are read by ``fastconv.keras_io``."""
    from . import keras_io

    check_regular(filepath, "model file")
    if keras_io.is_keras_file(filepath):
        return keras_io.load_model(filepath, compile=compile)
    with Archive(filepath, ("fastconv-model",)) as archive:
        spec = archive.manifest.get("model")
        cls = model_class(spec)
        if cls is None:
            raise archive.error(f"unsupported model description {str(spec)[:80]!r}")
        try:  # the configuration may ask for no more memory than the file's weights hold
            with archive.weight_budget():
                model = cls.from_config(spec["config"])
                model.build()
        except Exception as exc:  # noqa: BLE001 - whatever a hostile config raises
            raise archive.error(f"its architecture cannot be rebuilt "
                                f"({type(exc).__name__}: {str(exc)[:300]})") from None
        _assign_weights(model, archive.weights(), archive)
        settings = archive.manifest.get("compile")
        if compile and settings is not None:
            if not isinstance(settings, dict):
                raise archive.error(f"its compile settings are not a mapping: "
                                    f"{str(settings)[:80]}")
            try:
                model.compile(optimizer=settings["optimizer"], loss=settings["loss"],
                              metrics=settings["metrics"],
                              loss_weights=settings.get("loss_weights"))
            except Exception as exc:  # noqa: BLE001
                raise archive.error(f"its compile settings are invalid "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from None
            opt = archive.manifest.get("optimizer")
            if opt is not None:
                _set_optimizer_state(model, opt, archive)
    return model


def _set_optimizer_state(model, opt, archive: Archive) -> None:
    if not isinstance(opt, dict) or not isinstance(opt.get("arrays", []), list):
        raise archive.error(f"its optimizer state is malformed: {str(opt)[:80]}")
    iterations = opt.get("iterations")
    if not is_int(iterations) or not 0 <= iterations < 2**63:
        raise archive.error(f"its optimizer's iteration count {str(iterations)[:40]!r} is not "
                            f"an integer in [0, 2**63)")
    entries = archive._entries(opt.get("arrays", []), "optimizer arrays")
    arrays = {e["name"]: archive.read_array(e) for e, _ in entries}
    try:
        model.optimizer.set_state({"iterations": iterations, "arrays": arrays},
                                  model.weight_paths())
    except Exception as exc:  # noqa: BLE001
        raise archive.error(f"its optimizer state does not fit "
                            f"({type(exc).__name__}: {str(exc)[:300]})") from None


def load_weights(model, filepath) -> None:
    """Load weights saved by ``save_weights`` (or a full model file) into ``model``; Keras
    weight files (``.weights.h5``, legacy ``.h5``) are read by ``fastconv.keras_io``."""
    from . import keras_io

    check_regular(filepath, "weights file")
    if keras_io.is_keras_file(filepath):
        return keras_io.load_weights(model, filepath)
    with Archive(filepath, ("fastconv-weights", "fastconv-model")) as archive:
        if not model.built:
            raise ValueError(f"load_weights: model '{model.name}' is not built yet; build it "
                             f"(or give its first layer input_shape=...) first")
        _assign_weights(model, archive.weights(), archive)
