"""Model: compile / fit / evaluate / predict / save, Keras's contract, on any layer stack.

Subclasses provide ``layers``, ``build(input_shape)``, ``call(x, training)`` and the config.
Host data (NumPy arrays) is validated once, cut into batches on the host and sent to the backend
batch by batch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from .. import random as fc_random
from ..backends import get_backend
from ..callbacks import Callback, History
from ..inference import InferencePlan, chunk_size, plan_key
from ..progbar import Progbar, write_line
from ..tensor import Tensor, enable_grad, no_grad


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite; ``.history`` holds the
    History up to that point."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def _verbose(value, where: str) -> int:
    if value == "auto":
        return 1
    if value not in (0, 1, 2) or isinstance(value, bool):
        raise ValueError(f"{where}: verbose must be 0, 1, 2 or 'auto', got {value!r}")
    return int(value)


def _positive_int(value, name: str, allow_zero: bool = False) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < (
            0 if allow_zero else 1):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def _host_array(a, name: str) -> np.ndarray:
    """A host array of numbers (Tensors and device arrays are copied to the host)."""
    if isinstance(a, Tensor):
        a = a.numpy()
    elif not isinstance(a, np.ndarray) and hasattr(a, "get"):  # a device array (CuPy)
        a = a.get()
    try:
        a = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name} must have a batch axis, got a scalar")
    return a


class Model:
    """Training and inference on top of a layer stack (see Sequential)."""

    def __init__(self, name: str | None = None):
        self.name = name
        self.optimizer = None
        self.loss = None
        self.metrics_names: list[str] = []
        self._metrics: list[metrics_mod.Metric] = []
        self.compiled = False
        self.stop_training = False
        self.history: History | None = None
        self._plans: dict[tuple, InferencePlan] = {}
        self._chunks: dict[tuple, int] = {}  # images per inference chunk, per input shape

    # -- provided by subclasses --------------------------------------------------------------
    @property
    def layers(self) -> list:
        raise NotImplementedError

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        raise NotImplementedError

    def build(self, input_shape=None) -> None:
        raise NotImplementedError

    def __call__(self, x, training: bool = False) -> Tensor:
        return self.call(x, training=training)

    # -- weights -----------------------------------------------------------------------------
    @property
    def weights(self):
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        expected = len(self.weights)
        if len(weights) != expected:
            raise ValueError(f"model '{self.name}' has {expected} weight arrays, got "
                             f"{len(weights)}")
        i = 0
        for layer in self.layers:
            n = len(layer.weights)
            layer.set_weights(weights[i:i + n])
            i += n

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    # -- compile -----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs) -> None:
        """Set the optimizer, loss and metrics (Keras names or objects)."""
        if kwargs:
            raise TypeError(f"compile: unsupported argument(s): {', '.join(sorted(kwargs))}")
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='categorical_crossentropy'")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        metrics = list(metrics or [])
        self._metrics = [metrics_mod.get(m, self.loss) for m in metrics]
        self.metrics_names = ["loss"] + [m.name for m in self._metrics]
        self.compiled = True

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{where}: compile the model first, e.g. "
                               f"model.compile(optimizer='adam', loss='categorical_crossentropy')")

    # -- data --------------------------------------------------------------------------------
    def _check_x(self, x, where: str) -> np.ndarray:
        x = _host_array(x, f"{where}: x")
        expected = self.input_shape
        if not self.built or expected is None or tuple(expected[1:]) != x.shape[1:]:
            self.build((None, *x.shape[1:]))
            expected = self.input_shape
        if len(expected) != x.ndim or any(
                e is not None and e != s for e, s in zip(expected[1:], x.shape[1:])):
            first = self.layers[0].name if self.layers else self.name
            raise ValueError(
                f"{where}: x has shape {x.shape}, but the model's input (layer '{first}') "
                f"expects {expected}")
        return x

    def _check_xy(self, x, y, where: str) -> tuple[np.ndarray, np.ndarray]:
        x = self._check_x(x, where)
        y = _host_array(y, f"{where}: y")
        if len(x) != len(y):
            raise ValueError(f"{where}: x and y hold different numbers of samples: {len(x)} and "
                             f"{len(y)}")
        if len(x) == 0:
            raise ValueError(f"{where}: x and y are empty")
        return x, y

    def _to_backend(self, xb: np.ndarray) -> Tensor:
        backend = get_backend()
        return Tensor(backend.asarray(xb, dtype=self.dtype), backend=backend)

    # -- one step ----------------------------------------------------------------------------
    def _train_step(self, xb, yb) -> tuple[float, np.ndarray]:
        variables = self.trainable_weights
        for v in variables:
            v.grad = None
        with enable_grad():
            y_pred = self.call(self._to_backend(xb), training=True)
            loss = self.loss(yb, y_pred)
        loss_value = loss.item()
        if math.isfinite(loss_value):
            loss.backward()
            with no_grad():
                self.optimizer.apply(variables)
        return loss_value, y_pred

    def _test_step(self, xb, yb) -> tuple[float, Tensor]:
        with no_grad():
            y_pred = self.call(self._to_backend(xb), training=False)
            loss = self.loss(yb, y_pred)
        return loss.item(), y_pred

    def train_on_batch(self, x, y) -> float | list[float]:
        self._require_compiled("train_on_batch")
        x, y = self._check_xy(x, y, "train_on_batch")
        loss, y_pred = self._train_step(x, y)
        return self._batch_result(loss, y, y_pred)

    def test_on_batch(self, x, y) -> float | list[float]:
        self._require_compiled("test_on_batch")
        x, y = self._check_xy(x, y, "test_on_batch")
        loss, y_pred = self._test_step(x, y)
        return self._batch_result(loss, y, y_pred)

    def _batch_result(self, loss, y, y_pred):
        if not self._metrics:
            return loss
        out = [loss]
        host = y_pred.numpy()
        for m in self._metrics:
            m.reset()
            m.update(y, host)
            out.append(m.result())
        return out

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            validation_batch_size=None) -> History:
        """Train for ``epochs`` epochs; returns a History (also kept as ``model.history``)."""
        self._require_compiled("fit")
        verbose = _verbose(verbose, "fit")
        batch_size = _positive_int(batch_size, "fit: batch_size")
        epochs = _positive_int(epochs, "fit: epochs", allow_zero=True)
        initial_epoch = _positive_int(initial_epoch, "fit: initial_epoch", allow_zero=True)
        x, y = self._check_xy(x, y, "fit")
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        if validation_data is not None and validation_split:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        if validation_split:
            cut = int(len(x) * (1 - validation_split))
            if cut == 0 or cut == len(x):
                raise ValueError(f"fit: validation_split={validation_split} leaves no training "
                                 f"or no validation samples out of {len(x)}")
            validation_data = (x[cut:], y[cut:])
            x, y = x[:cut], y[:cut]
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
            validation_data = self._check_xy(*validation_data, "fit: validation_data")
        val_batch = _positive_int(validation_batch_size or batch_size,
                                  "fit: validation_batch_size")

        history = History()
        cbs = [*self._check_callbacks(callbacks), history]
        steps = math.ceil(len(x) / batch_size)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.history = history
        self.stop_training = False
        for cb in cbs:
            cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if verbose:
                write_line(f"Epoch {epoch + 1}/{epochs}")
            logs = self._run_epoch(x, y, batch_size, shuffle, verbose, cbs, epoch, history,
                                   validation_data, val_batch)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history

    @staticmethod
    def _check_callbacks(callbacks) -> list[Callback]:
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be fastconv.callbacks.Callback instances, "
                                f"got {type(cb).__name__}")
        return callbacks

    def _run_epoch(self, x, y, batch_size, shuffle, verbose, cbs, epoch, history,
                   validation_data, val_batch) -> dict:
        n = len(x)
        order = fc_random.host_rng().permutation(n) if shuffle else None
        steps = math.ceil(n / batch_size)
        bar = Progbar(steps, verbose=verbose)
        loss_sum, seen = 0.0, 0
        for m in self._metrics:
            m.reset()
        for step in range(steps):
            for cb in cbs:
                cb.on_train_batch_begin(step)
            idx = (order[step * batch_size:(step + 1) * batch_size] if order is not None
                   else slice(step * batch_size, (step + 1) * batch_size))
            xb, yb = x[idx], y[idx]
            loss, y_pred = self._train_step(xb, yb)
            if not math.isfinite(loss):
                bar.finish(self._epoch_values(loss_sum, seen))
                message = (f"the loss became {loss} at epoch {epoch + 1}, batch {step + 1}: "
                           f"training stopped (try a smaller learning rate, or check the data "
                           f"for NaN or infinite values)")
                raise NonFiniteLossError(message, history)
            loss_sum += loss * len(xb)
            seen += len(xb)
            if self._metrics:
                host_pred = y_pred.numpy()
                for m in self._metrics:
                    m.update(yb, host_pred)
            logs = self._epoch_values(loss_sum, seen)
            for cb in cbs:
                cb.on_train_batch_end(step, logs)
            bar.update(step + 1, logs)
        logs = self._epoch_values(loss_sum, seen)
        if validation_data is not None:
            val = self._evaluate_arrays(*validation_data, val_batch, verbose=0)
            logs.update({f"val_{k}": v for k, v in val.items()})
        bar.finish(logs)
        return logs

    def _epoch_values(self, loss_sum: float, seen: int) -> dict:
        """Keras 3 logs order: metrics and loss, alphabetically."""
        values = {m.name: m.result() for m in self._metrics}
        values["loss"] = loss_sum / max(seen, 1)
        return dict(sorted(values.items()))

    # -- evaluate / predict ------------------------------------------------------------------
    def _evaluate_arrays(self, x, y, batch_size, verbose) -> dict:
        steps = math.ceil(len(x) / batch_size)
        bar = Progbar(steps, verbose=verbose)
        for m in self._metrics:
            m.reset()
        loss_sum = 0.0
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            loss, y_pred = self._test_step(x[sl], y[sl])
            loss_sum += loss * len(x[sl])
            if self._metrics:
                host_pred = y_pred.numpy()
                for m in self._metrics:
                    m.update(y[sl], host_pred)
            bar.update(step + 1, self._epoch_values(loss_sum, (step + 1) * batch_size))
        logs = self._epoch_values(loss_sum, len(x))
        bar.finish(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", return_dict=False):
        """Loss and metrics over (x, y): ``[loss, *metrics]`` (or the loss alone without
        metrics), or a dict with ``return_dict=True``."""
        self._require_compiled("evaluate")
        verbose = _verbose(verbose, "evaluate")
        batch_size = _positive_int(batch_size, "evaluate: batch_size")
        x, y = self._check_xy(x, y, "evaluate")
        logs = self._evaluate_arrays(x, y, batch_size, verbose)
        if return_dict:
            return logs
        ordered = [logs["loss"]] + [logs[m.name] for m in self._metrics]
        return ordered[0] if len(ordered) == 1 else ordered

    def inference_plan(self, batch_shape) -> InferencePlan:
        """The plan ``predict`` runs for inputs of ``batch_shape`` (made once, then reused)."""
        backend = get_backend()
        key = plan_key(self, batch_shape, backend)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = InferencePlan(self, batch_shape, backend)
        return plan

    def _forget_plans(self) -> None:
        self._plans.clear()
        self._chunks.clear()

    def _predict_batch(self, xb: np.ndarray) -> np.ndarray:
        backend = get_backend()
        key = (xb.shape[1:], backend.name, backend.inference_chunk_bytes)
        chunk = self._chunks.get(key)
        if chunk is None:
            chunk = self._chunks[key] = chunk_size(self, xb.shape[1:], backend)
        if not chunk or len(xb) <= chunk:
            plan = self.inference_plan(xb.shape)
            return backend.to_host(plan(backend.asarray(xb, dtype=self.dtype)))
        out = None
        for start in range(0, len(xb), chunk):
            part = xb[start:start + chunk]
            y = backend.to_host(self.inference_plan(part.shape)(
                backend.asarray(part, dtype=self.dtype)))
            if out is None:
                out = np.empty((len(xb), *y.shape[1:]), dtype=y.dtype)
            out[start:start + len(part)] = y
        return out

    def predict(self, x, batch_size=32, verbose="auto") -> np.ndarray:
        """Outputs for ``x`` as a host NumPy array, computed ``batch_size`` samples at a time."""
        verbose = _verbose(verbose, "predict")
        batch_size = _positive_int(batch_size, "predict: batch_size")
        x = self._check_x(x, "predict")
        steps = math.ceil(len(x) / batch_size)
        bar = Progbar(steps, verbose=verbose)
        out = None
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            y = self._predict_batch(x[sl])
            if out is None:
                out = np.empty((len(x), *y.shape[1:]), dtype=y.dtype)
            out[sl] = y
            bar.update(step + 1, {})
        bar.finish({})
        if out is None:
            return np.empty((0, *self.output_shape[1:]), dtype=self.dtype)
        return out

    def predict_on_batch(self, x) -> np.ndarray:
        return self._predict_batch(self._check_x(x, "predict_on_batch"))

    # -- saving ------------------------------------------------------------------------------
    def save(self, filepath) -> None:
        """Write architecture, weights, compile settings and optimizer state to one file
        (atomically: a failed save leaves any earlier file intact)."""
        from ..saving import save_model

        save_model(self, filepath)

    def save_weights(self, filepath) -> None:
        from ..saving import save_weights

        save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        from ..saving import load_weights

        load_weights(self, filepath)

