"""Training callbacks with Keras's hooks: History, EarlyStopping, ModelCheckpoint,
LearningRateScheduler, LambdaCallback."""

from __future__ import annotations

import math
import warnings

import numpy as np


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
