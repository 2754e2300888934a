"""Training callbacks with Keras's hooks: History, EarlyStopping, ModelCheckpoint,
LearningRateScheduler, LambdaCallback, ReduceLROnPlateau, CSVLogger, TerminateOnNaN and
BackupAndRestore. Every file they write goes through ``fastconv.io.atomic``: a crash leaves the
previous version whole."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import numbers
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .io.atomic import atomic_write_bytes
from .progbar import write_line


class Callback:
    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        """Calls ``on_batch_begin`` (Keras's older name for it), as Keras does."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """Calls ``on_batch_end`` (Keras's older name for it), as Keras does."""
        self.on_batch_end(batch, logs)


class History(Callback):
    """``history.history`` maps each logged name to its per-epoch values."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _better(mode: str, monitor: str):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor and "loss" not in monitor) else "min"
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b), mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False):
        super().__init__()
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), int(patience)
        self._is_better, self.mode = _better(mode, monitor)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights = 0, 0, None
        self.best = -math.inf if self.mode == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping: the monitored value {self.monitor!r} is not "
                             f"logged; logged: {', '.join(logs or {})}")
        delta = self.min_delta if self.mode == "max" else -self.min_delta
        if self._is_better(value, self.best + delta):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        # Keras: stop once ``patience`` epochs in a row brought no improvement (never after
        # the first epoch).
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        # Keras 3 restores the best epoch's weights whenever training ends, stopped or not.
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) after each epoch; ``filepath`` may hold ``{epoch}`` and
    logged names, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.fcm"``."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__()
        self.filepath, self.monitor = str(filepath), monitor
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self._is_better, self.mode = _better(mode, monitor)
        self.best = -math.inf if self.mode == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warnings.warn(f"ModelCheckpoint: can save the best model only with "
                              f"{self.monitor!r} available, but the logs hold only "
                              f"{', '.join(sorted(logs)) or 'nothing'}; skipping (epoch "
                              f"{epoch + 1})", RuntimeWarning, stacklevel=2)
                return
            if not self._is_better(value, self.best):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch start from ``schedule(epoch, lr)``."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, self.model.optimizer.learning_rate))
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"LearningRateScheduler: the schedule returned {lr!r}")
        self.model.optimizer.learning_rate = lr


class LambdaCallback(Callback):
    """Callbacks from plain functions: ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``."""

    def __init__(self, **hooks):
        super().__init__()
        valid = {"on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
                 "on_train_batch_begin", "on_train_batch_end"}
        for name, fn in hooks.items():
            if name not in valid:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; valid: "
                                f"{', '.join(sorted(valid))}")
            setattr(self, name, fn)


def _count(owner: str, name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{owner}: {name} must be an int >= 0, got {value!r}")
    return int(value)


def _metric_direction(model, name: str) -> str | None:
    """'up' or 'down' for a logged metric of ``model`` (its Keras ``_direction``), else None."""
    for _, metric, log in getattr(model, "_metric_specs", ()):
        if name in (log, metric.name):
            return getattr(metric, "direction", None)
    return None


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` (never below ``min_lr``) when ``monitor`` has
    not improved by more than ``min_delta`` for ``patience`` epochs, then wait ``cooldown``
    epochs before counting again; logs the learning rate as ``learning_rate`` (Keras 3).

    ``mode='auto'`` minimises a loss and follows a metric's own direction (accuracies up,
    errors down), as Keras."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        owner = "ReduceLROnPlateau"
        if (not isinstance(factor, numbers.Real) or isinstance(factor, bool)
                or not 0 < factor < 1):
            raise ValueError(f"{owner}: factor must be in (0, 1) (a factor >= 1 would not "
                             f"reduce the rate), got {factor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        for name, value in (("min_delta", min_delta), ("min_lr", min_lr)):
            if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                    or not math.isfinite(value) or value < 0):
                raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
        self.monitor, self.factor, self.mode = monitor, float(factor), mode
        self.patience = _count(owner, "patience", patience)
        self.cooldown = _count(owner, "cooldown", cooldown)
        self.verbose = _count(owner, "verbose", verbose)
        self.min_delta, self.min_lr = float(min_delta), float(min_lr)
        self._less = None  # whether lower values are better, settled at the first epoch end
        self._reset()

    def _reset(self):
        self.best, self.cooldown_counter, self.wait = None, 0, 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _lower_is_better(self) -> bool:
        if self.mode != "auto":
            return self.mode == "min"
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if name == "loss":
            return True
        direction = _metric_direction(self.model, name)
        if direction is None:
            raise ValueError(f"ReduceLROnPlateau: cannot tell whether {self.monitor!r} should "
                             f"go up or down; pass mode='max' or mode='min'")
        return direction == "down"

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        if self._less is None:
            self._less = self._lower_is_better()
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ReduceLROnPlateau: the learning rate reduction watches "
                          f"{self.monitor!r}, which is not logged; logged: "
                          f"{', '.join(logs)}", RuntimeWarning, stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.best is None or (current + self.min_delta < self.best if self._less
                                 else current - self.min_delta > self.best):
            self.best, self.wait = current, 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        old_lr = float(optimizer.learning_rate)
        if old_lr > np.float32(self.min_lr):
            new_lr = max(old_lr * self.factor, self.min_lr)
            optimizer.learning_rate = new_lr
            if self.verbose:
                write_line(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                           f"{new_lr}.")
            self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row, as Keras's ``CSVLogger`` writes them (columns
    ``epoch`` and the logged names in sorted order, ``val_`` columns added as ``NA`` when
    there is no validation; ``separator`` between fields; ``append`` continues an existing
    file without a second header). The whole file is rewritten atomically at every epoch end,
    so it always holds whole rows."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.sep, self.append = separator, bool(append)
        self.keys = None
        self._text = ""
        self._header = True

    def on_train_begin(self, logs=None):
        self._text, self._header, self.keys = "", True, None
        path = Path(self.filename)
        if self.append and path.is_file():
            with open(path, encoding="utf-8", newline="") as fh:
                self._text = fh.read()
            self._header = not self._text.split("\n", 1)[0]
        self._write()

    def _write(self) -> None:
        atomic_write_bytes(self.filename, self._text.encode("utf-8"))

    @staticmethod
    def _cell(value):
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) > 0:
            return '"[' + ", ".join(map(str, value)) + ']"'
        return value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]

        class Dialect(csv.excel):
            delimiter = self.sep

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["epoch", *self.keys], dialect=Dialect)
        if self._header:
            writer.writeheader()
            self._header = False
        writer.writerow({"epoch": epoch, **{k: self._cell(logs.get(k, "NA"))
                                            for k in self.keys}})
        self._text += buffer.getvalue()
        self._write()


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite (with ``raise_error``: raise a
    RuntimeError instead). fastconv never applies the update of such a batch, so the weights
    stay those of the last good batch; without this callback ``fit`` raises
    ``NonFiniteLossError``."""

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        write_line(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class BackupAndRestore(Callback):
    """Back up the training state to ``backup_dir`` at each epoch end (or every ``save_freq``
    batches), and resume from it when ``fit`` starts again after an interruption: the weights,
    the optimizer's state (moments, step count, learning rate) and the epoch, as Keras; fastconv
    also restores its host random generator, so that the resumed run shuffles (and, on the CPU
    backends, drops out) as the uninterrupted run would have. A run that resumes within an
    epoch (``save_freq`` in batches) starts that epoch again, as Keras.

    The state is one file, ``backup_dir/backup.fcb``, written atomically: a crash while saving
    leaves the previous backup whole. ``double_checkpoint`` keeps the previous one too
    (``backup.fcb.bkp``) and falls back to it when the latest cannot be read.
    ``delete_checkpoint`` removes the backup when ``fit`` completes."""

    FILENAME = "backup.fcb"
    FORMAT = "fastconv-backup"

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore: backup_dir must name a folder, got an empty "
                             "value")
        if save_freq != "epoch" and (not isinstance(save_freq, numbers.Integral)
                                     or isinstance(save_freq, bool) or save_freq < 1):
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch' or an int >= 1 "
                             f"(batches), got {save_freq!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._path = Path(self.backup_dir) / self.FILENAME
        self._previous = Path(f"{self._path}.bkp")
        self._current_epoch = 0
        self._last_batch_seen = 0
        self._batches_since_save = 0
        self._epoch_rng = None

    # -- restoring -------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError(f"BackupAndRestore: model '{self.model.name}' must be built before "
                             f"fit (call it on a batch, or give it an Input)")
        if not self._path.exists():
            return
        try:
            state = self._read(self._path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            if not (self.double_checkpoint and self._previous.exists()):
                raise ValueError(f"BackupAndRestore: cannot resume from {str(self._path)!r}: "
                                 f"{exc}") from exc
            state = self._read(self._previous)
        self._restore(state)

    def _read(self, path: Path) -> dict:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("state.json"))
            if meta.get("format") != self.FORMAT:
                raise ValueError(f"{str(path)!r} is not a fastconv backup")

            def array(name):
                return np.load(io.BytesIO(zf.read(name)), allow_pickle=False)

            meta["weights"] = [array(f"weights/{i}.npy") for i in range(meta["n_weights"])]
            meta["optimizer_arrays"] = {key: array(f"optimizer/{i}.npy")
                                        for i, key in enumerate(meta["optimizer_keys"])}
        return meta

    def _restore(self, state: dict) -> None:
        model = self.model
        weights = state["weights"]
        expected = [w.shape for w in model.weights]
        if [tuple(w.shape) for w in weights] != [tuple(s) for s in expected]:
            raise ValueError(f"BackupAndRestore: the backup in {self.backup_dir!r} holds "
                             f"weights of other shapes than model '{model.name}'; it belongs "
                             f"to another model (use another backup_dir)")
        model.set_weights(weights)
        optimizer = model.optimizer
        optimizer.set_state({"iterations": state["iterations"],
                             "arrays": state["optimizer_arrays"]}, _numbered(model))
        if state.get("learning_rate") is not None and optimizer.schedule is None:
            optimizer.learning_rate = state["learning_rate"]
        if state.get("rng") is not None:
            from . import random as fc_random

            fc_random.host_rng().bit_generator.state = state["rng"]
        model._initial_epoch = int(state["epoch"])

    # -- saving ----------------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        from . import random as fc_random

        self._epoch_rng = fc_random.host_rng().bit_generator.state

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if self.save_freq == "epoch":
            self._save(end_of_epoch=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        if batch <= self._last_batch_seen:  # a new epoch
            self._batches_since_save += batch + 1
        else:
            self._batches_since_save += batch - self._last_batch_seen
        self._last_batch_seen = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(end_of_epoch=False)

    def _save(self, end_of_epoch: bool) -> None:
        from . import random as fc_random

        model = self.model
        optimizer = model.optimizer
        paths = _numbered(model)  # by position: a rebuilt model's layer names may differ
        state = optimizer.get_state(paths)
        keys = list(state["arrays"])
        rng = fc_random.host_rng().bit_generator.state if end_of_epoch else self._epoch_rng
        meta = {"format": self.FORMAT, "epoch": self._current_epoch,
                "batch": self._last_batch_seen, "iterations": state["iterations"],
                "learning_rate": None if optimizer.schedule is not None else
                float(optimizer.learning_rate),
                "rng": rng, "n_weights": len(model.weights), "optimizer_keys": keys}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("state.json", json.dumps(meta))
            for i, w in enumerate(model.get_weights()):
                zf.writestr(f"weights/{i}.npy", _npy(w))
            for i, key in enumerate(keys):
                var = paths[key.rpartition("/")[0]]
                zf.writestr(f"optimizer/{i}.npy", _npy(var._backend.to_host(state["arrays"][key])))
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and self._path.exists():
            atomic_write_bytes(self._previous, self._path.read_bytes())
        atomic_write_bytes(self._path, buffer.getvalue())

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        for path in (self._path, self._previous):
            if path.exists():
                path.unlink()
        try:
            os.rmdir(self.backup_dir)  # only when nothing else is left in it
        except OSError:
            pass


def _numbered(model) -> dict:
    """The model's weights keyed by their position (each shared weight once)."""
    unique = {}
    for var in model.weights:
        unique.setdefault(id(var), var)
    return {str(i): var for i, var in enumerate(unique.values())}


def _npy(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(a), allow_pickle=False)
    return buffer.getvalue()


class TensorBoard(Callback):
    """Keras's ``TensorBoard`` callback writes TensorFlow event files; fastconv cannot write
    them, so creating one raises, naming ``CSVLogger`` as the way to log each epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        advice = ("use fastconv.callbacks.CSVLogger(filename) to log each epoch's loss and "
                  "metrics instead")
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(f"TensorBoard: writing TensorBoard event files needs the "
                              f"'tensorboard' package, which is not installed; {advice}")
        raise NotImplementedError(f"TensorBoard: fastconv does not write TensorBoard event "
                                  f"files; {advice}")
