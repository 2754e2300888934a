"""An embeddable predictor: load a model file once, then predict from any thread.

``fastconv.inference.load(path)`` returns a :class:`Predictor` for a fastconv ``.fcm`` file, a
Keras ``.keras`` archive or ``.h5`` file (``fastconv.keras_io``; h5py for ``.h5``) or an ONNX
file (``fastconv.onnx.load``, imported only when an ``.onnx`` file is loaded). The model runs on
fastconv's own backends (numpy and numba), never on the library that wrote the file.

A Predictor is safe to share between threads: each call runs the model's inference plan on its
own arrays, and the packed-weight caches under the plans are keyed by the weights' identity and
version, so that a call made after ``set_weights`` sees the new weights. Predictors (and models)
pickle, with ``pickle`` and with ``cloudpickle``: a pickle holds the architecture and the weights,
never the inference plans, which are made again on the first call after unpickling.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .io.files import check_regular

#: File name extensions :func:`load_model_file` reads, and the reader of each.
SUFFIXES = {".fcm": "fastconv", ".keras": "keras", ".h5": "keras", ".hdf5": "keras",
            ".onnx": "onnx"}


def _file_label(path) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"a model path must be a str or os.PathLike, got "
                        f"{type(path).__name__}") from None
    check_regular(text, "model file")
    return text


def load_model_file(path):
    """The fastconv model in ``path`` (uncompiled), whichever format wrote it.

    ``.onnx`` files go to ``fastconv.onnx.load``; every other file to
    ``fastconv.models.load_model``, which recognises fastconv and Keras files by their content.
    A file that is none of these, or is corrupted, raises ``InvalidModelFileError`` (a
    ``ValueError``) naming the file."""
    from .saving import InvalidModelFileError

    text = _file_label(path)
    if os.path.splitext(text)[1].lower() == ".onnx":
        try:
            from . import onnx as fc_onnx
        except ImportError as exc:
            raise RuntimeError(f"cannot load {text!r}: ONNX import needs the onnx package "
                               f"(pip install onnx): {exc}") from None
        try:
            return fc_onnx.load(text)
        except (InvalidModelFileError, FileNotFoundError, NotImplementedError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a foreign or corrupt file raises
            if text in str(exc):
                raise
            raise InvalidModelFileError(f"cannot load {text!r} as an ONNX model "
                                        f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    from .saving import load_model

    return load_model(text, compile=False)


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (
        ",)" if len(shape) == 1 else ")")


class Predictor:
    """Predictions of one model: ``Predictor(model)`` or ``fastconv.inference.load(path)``.

    ``backend`` names the backend every call runs on (default: the current backend at call
    time); ``batch_size`` is the number of samples computed at a time."""

    def __init__(self, model, *, backend: str | None = None, batch_size: int = 32,
                 path: str | None = None):
        from .backends import get_backend
        from .models.model import Model

        if not isinstance(model, Model):
            raise TypeError(f"Predictor: model must be a fastconv Model, got "
                            f"{type(model).__name__}")
        if backend is not None:
            get_backend(backend)  # an unknown or unavailable backend fails here, not later
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Predictor: batch_size must be an int >= 1, got {batch_size!r}")
        self.model = model
        self.backend = backend
        self.batch_size = batch_size
        self.path = path

    @classmethod
    def load(cls, path, *, backend: str | None = None, batch_size: int = 32) -> Predictor:
        """A Predictor for the model file ``path`` (see :func:`load_model_file`)."""
        return cls(load_model_file(path), backend=backend, batch_size=batch_size,
                   path=os.fspath(path))

    # -- what the model takes and gives ------------------------------------------------------
    @property
    def input_shape(self):
        return self.model.input_shape

    @property
    def output_shape(self):
        return self.model.output_shape

    def __repr__(self) -> str:
        where = f" from {self.path!r}" if self.path else ""
        return (f"Predictor(model '{self.model.name}'{where}, input {self.input_shape}, "
                f"output {self.output_shape})")

    # -- checks ------------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray | list:
        """``x`` as host arrays, or an error naming the expected and the found shape/dtype."""
        if self.model.multi_input:
            return x  # the model checks each input by name
        if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            x = x[0]
        a = np.asarray(x) if not hasattr(x, "numpy") else np.asarray(x.numpy())
        if a.dtype.kind not in "biuf":
            raise TypeError(f"predict: expected an array of numbers (float32 for this model), "
                            f"found dtype {a.dtype}")
        expected = self.model.input_shape
        if expected is None:
            return a
        expected = tuple(expected)
        if a.ndim != len(expected) or any(e is not None and e != s
                                          for e, s in zip(expected[1:], a.shape[1:])):
            hint = ""
            if a.ndim == len(expected) - 1 and all(
                    e is None or e == s for e, s in zip(expected[1:], a.shape)):
                hint = " (one sample: add the batch axis, x[None])"
            raise ValueError(f"predict: the model expects input of shape "
                             f"{_shape_text(expected)} (None: any batch size), found shape "
                             f"{_shape_text(a.shape)}{hint}")
        return a

    # -- predicting --------------------------------------------------------------------------
    def _backend_scope(self):
        if self.backend is None:
            return contextlib.nullcontext()
        from .backends import use_backend

        return use_backend(self.backend)

    def predict(self, x, batch_size: int | None = None):
        """The model's outputs for ``x`` (host NumPy arrays; a list for several outputs)."""
        x = self.check_input(x)
        with self._backend_scope():
            return self.model.predict(x, batch_size=batch_size or self.batch_size, verbose=0)

    __call__ = predict

    def get_weights(self) -> list[np.ndarray]:
        return self.model.get_weights()

    def set_weights(self, weights) -> None:
        """New weights for every later call (calls already running finish on the old ones)."""
        self.model.set_weights(weights)


def load(path, *, backend: str | None = None, batch_size: int = 32) -> Predictor:
    """``Predictor.load(path)``: a fastconv, Keras or ONNX model file, ready to predict."""
    return Predictor.load(path, backend=backend, batch_size=batch_size)
