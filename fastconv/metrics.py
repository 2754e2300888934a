"""Metrics with Keras's names, arguments and values, accumulated over an epoch.

A metric reduces each batch to a few totals where the arrays live (on the backend, a GPU, in a
training step; only the totals come back) with :meth:`Metric.batch_totals`, and adds them up on
the host with :meth:`Metric.add`:

* mean metrics (accuracies, errors) total their per-sample ``values`` and count the samples;
* confusion metrics (``Precision``, ``Recall``, ``AUC``) total true/false positives/negatives
  per threshold, as Keras's ``update_confusion_matrix_variables`` does (counts in float32 inputs,
  predictions strictly above a threshold are positive, labels are positive where non-zero).

The computations use only array methods, operators and functions that NumPy and CuPy share.
Keras's ``update_state`` / ``result`` / ``reset_state`` work on host arrays.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

#: Keras's default metric dtype: confusion metrics compare in it
_FLOAT = np.float32


def _xp(a):
    """The array module (NumPy or CuPy) that ``a`` belongs to."""
    if isinstance(a, np.ndarray):
        return np
    return sys.modules[type(a).__module__.split(".")[0]]


def _auto_name(base: str) -> str:
    from .layers.base import unique_name

    return unique_name(base)


class Metric:
    """A metric named ``name`` (its key in the training logs)."""

    #: Keras's default name; None for metrics named uniquely (``precision``, ``precision_1``)
    default_name: str | None = None
    #: 'up' where higher is better, 'down' where lower is (Keras's ``_direction``), else None
    direction: str | None = None

    def __init__(self, name: str | None = None):
        if name is None:
            name = self.default_name or _auto_name(_snake(type(self).__name__))
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string, got "
                             f"{name!r}")
        self.name = name
        self.reset()

    # -- accumulation ----------------------------------------------------------------------------
    def reset(self) -> None:
        self._total = 0.0
        self._count = 0

    def values(self, y_true, y_pred):
        """Per-sample values (mean metrics)."""
        raise NotImplementedError

    def batch_totals(self, y_true, y_pred) -> tuple:
        """What one batch adds: a 1-D array of totals (where the arrays live) and the number of
        samples. Mean metrics: the sum of the per-sample values."""
        v = self.values(y_true, y_pred)
        return v.reshape(-1).sum(keepdims=True), int(v.size)

    def add(self, totals, count: int) -> None:
        """Add :meth:`batch_totals`'s totals (brought to the host) of ``count`` samples."""
        self._total += float(np.sum(totals))
        self._count += count

    def update(self, y_true, y_pred) -> None:
        """Accumulate one batch of host arrays."""
        totals, count = self.batch_totals(np.asarray(y_true), np.asarray(y_pred))
        self.add(np.asarray(totals, dtype=np.float64), count)

    def result(self):
        return self._total / self._count if self._count else 0.0

    #: whether ``result()`` is one number (compile takes only those)
    scalar = True

    # -- Keras's names -------------------------------------------------------------------------
    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Keras's name for :meth:`update` (host arrays; no sample weights)."""
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}.update_state: sample_weight is not "
                             f"supported by fastconv")
        self.update(y_true, y_pred)

    def reset_state(self) -> None:
        """Keras's name for :meth:`reset`."""
        self.reset()

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        dtype = config.pop("dtype", None)
        if dtype not in (None, "float32"):
            raise ValueError(f"{cls.__name__}: dtype={dtype!r} is not supported (fastconv "
                             f"metrics give Python floats, as Keras's default float32)")
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _snake(name: str) -> str:
    from .layers.base import snake_case

    return snake_case(name)


def _same_shape(metric: str, y_true, y_pred):
    """``y_true`` reshaped to ``y_pred``'s shape (Keras squeezes or expands a trailing axis of
    one); a different number of elements is an error."""
    if y_true.shape == y_pred.shape:
        return y_true
    if y_true.size != y_pred.size:
        raise ValueError(f"{metric}: labels of shape {tuple(y_true.shape)} do not match "
                         f"predictions of shape {tuple(y_pred.shape)}")
    return y_true.reshape(y_pred.shape)


def _per_sample_mean(v):
    return v.reshape(len(v), -1).mean(axis=1) if v.ndim > 1 else v


def _in_top_k(scores, target_scores, k: int):
    """Whether each row's target score is at least the row's k-th largest (ties count as in,
    as ``keras.ops.in_top_k``)."""
    classes = scores.shape[-1]
    if k >= classes:
        return target_scores == target_scores  # every class is in the top k (NaN aside)
    kth = _xp(scores).sort(scores, axis=-1)[:, classes - k]
    return target_scores >= kth


def _positive_int(owner: str, name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
    return int(value)


class CategoricalAccuracy(Metric):
    """Whether the argmax of the prediction matches the argmax of the one-hot label."""

    default_name = "categorical_accuracy"
    direction = "up"

    def values(self, y_true, y_pred):
        return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(np.float64)


class SparseCategoricalAccuracy(Metric):
    """Whether the argmax of the prediction is the integer label."""

    default_name = "sparse_categorical_accuracy"
    direction = "up"

    def values(self, y_true, y_pred):
        return (y_true.reshape(-1) == y_pred.argmax(axis=-1)).astype(np.float64)


class BinaryAccuracy(Metric):
    """Whether ``(y_pred > threshold)`` equals the label, averaged over each sample's
    elements."""

    default_name = "binary_accuracy"
    direction = "up"

    def __init__(self, name: str | None = None, threshold: float = 0.5):
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
            raise ValueError(f"BinaryAccuracy: threshold must be a number, got {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true = _same_shape(self.name, y_true, y_pred)
        hit = y_true == (y_pred > getattr(self, "threshold", 0.5)).astype(y_true.dtype)
        return _per_sample_mean(hit.astype(np.float64))

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class TopKCategoricalAccuracy(Metric):
    """Whether the one-hot label's class is among the ``k`` highest predictions."""

    default_name = "top_k_categorical_accuracy"
    direction = "up"

    def __init__(self, k: int = 5, name: str | None = None):
        self.k = _positive_int(type(self).__name__, "k", k)
        super().__init__(name)

    def values(self, y_true, y_pred):
        target = y_true.argmax(axis=-1).reshape(-1)
        scores = y_pred.reshape(-1, y_pred.shape[-1])
        picked = scores[_xp(scores).arange(len(scores)), target]
        return _in_top_k(scores, picked, self.k).astype(np.float64)

    def get_config(self):
        return {"name": self.name, "k": self.k}


class SparseTopKCategoricalAccuracy(Metric):
    """Whether the integer label is among the ``k`` highest predictions (with
    ``from_sorted_ids``: among the first ``k`` class ids of each prediction row)."""

    default_name = "sparse_top_k_categorical_accuracy"
    direction = "up"

    def __init__(self, k: int = 5, name: str | None = None, from_sorted_ids: bool = False):
        self.k = _positive_int(type(self).__name__, "k", k)
        self.from_sorted_ids = bool(from_sorted_ids)
        super().__init__(name)

    def values(self, y_true, y_pred):
        target = y_true.reshape(-1)
        scores = y_pred.reshape(-1, y_pred.shape[-1])
        if len(target) != len(scores):
            raise ValueError(f"{self.name}: {len(target)} labels for {len(scores)} predictions")
        if self.from_sorted_ids:
            return (scores[:, :self.k] == target[:, None]).any(axis=1).astype(np.float64)
        xp = _xp(scores)
        picked = scores[xp.arange(len(scores)), target.astype(np.int64)]
        return _in_top_k(scores, picked, self.k).astype(np.float64)

    def get_config(self):
        config = {"name": self.name, "k": self.k}
        if self.from_sorted_ids:
            config["from_sorted_ids"] = True
        return config


class MeanAbsoluteError(Metric):
    default_name = "mean_absolute_error"
    direction = "down"

    def values(self, y_true, y_pred):
        return abs(y_pred - y_true.reshape(y_pred.shape)).reshape(len(y_pred), -1).mean(axis=1)


class MeanSquaredError(Metric):
    default_name = "mean_squared_error"
    direction = "down"

    def values(self, y_true, y_pred):
        return ((y_pred - y_true.reshape(y_pred.shape)) ** 2).reshape(len(y_pred), -1).mean(axis=1)


class AutoAccuracy(Metric):
    """Keras's 'accuracy' for a loss that does not fix the flavour: categorical for several
    outputs, binary for one."""

    default_name = "accuracy"
    direction = "up"

    def values(self, y_true, y_pred):
        if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
            if y_true.shape == y_pred.shape:
                return CategoricalAccuracy.values(self, y_true, y_pred)
            return SparseCategoricalAccuracy.values(self, y_true, y_pred)
        return BinaryAccuracy.values(self, y_true, y_pred)


# -- confusion metrics -------------------------------------------------------------------------


def _thresholds(owner: str, thresholds, default: float) -> list[float]:
    values = [default] if thresholds is None else (
        list(thresholds) if isinstance(thresholds, (list, tuple)) else [thresholds])
    for t in values:
        if not isinstance(t, numbers.Real) or isinstance(t, bool) or not 0 <= t <= 1:
            raise ValueError(f"{owner}: thresholds must lie in [0, 1], got {thresholds!r}")
    if not values:
        raise ValueError(f"{owner}: thresholds must not be empty")
    return [float(t) for t in values]


def _divide_no_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


class _ConfusionMetric(Metric):
    """Counts of true/false positives/negatives per threshold (``counted`` of them), over every
    element of the labels and predictions (or one class: ``class_id``; or the ``top_k``
    predictions of each sample)."""

    counted: tuple[str, ...] = ("tp", "fp", "tn", "fn")
    direction = "up"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        owner = type(self).__name__
        self.top_k = None if top_k is None else _positive_int(owner, "top_k", top_k)
        if class_id is not None and (not isinstance(class_id, numbers.Integral)
                                     or isinstance(class_id, bool) or class_id < 0):
            raise ValueError(f"{owner}: class_id must be an int >= 0, got {class_id!r}")
        self.class_id = class_id
        self._given_thresholds = thresholds
        # with top_k and no threshold, every one of the top k predictions counts as positive
        self.thresholds = _thresholds(owner, thresholds, 0.5) if thresholds is not None or \
            top_k is None else [-1e10]
        super().__init__(name)

    @property
    def scalar(self) -> bool:
        return len(self.thresholds) == 1

    def reset(self):
        self._counts = np.zeros((len(self.counted), len(self.thresholds)))

    def _prepare(self, y_true, y_pred):
        """Labels (bool) and predictions (float32), flattened, after top_k and class_id."""
        y_true = _same_shape(self.name, y_true, y_pred)
        y_pred = y_pred.astype(_FLOAT)
        xp = _xp(y_pred)
        if self.top_k is not None:
            rows = y_pred.reshape(-1, y_pred.shape[-1])
            order = xp.argsort(-rows, axis=-1)[:, :min(self.top_k, rows.shape[1])]
            mask = xp.zeros(rows.shape, dtype=_FLOAT)
            mask[xp.arange(len(rows))[:, None], order] = 1
            mask = mask.reshape(y_pred.shape)
            y_pred = y_pred * mask + _FLOAT(-1e10) * (1 - mask)
        if self.class_id is not None:
            if y_pred.ndim < 2 or self.class_id >= y_pred.shape[-1]:
                raise ValueError(f"{self.name}: class_id={self.class_id} needs predictions of "
                                 f"shape (samples, classes > {self.class_id}), got "
                                 f"{tuple(y_pred.shape)}")
            y_true, y_pred = y_true[..., self.class_id], y_pred[..., self.class_id]
        return y_true.reshape(-1) != 0, y_pred.reshape(-1)

    def batch_totals(self, y_true, y_pred):
        positive, pred = self._prepare(y_true, y_pred)
        xp = _xp(pred)
        thresholds = xp.asarray(np.asarray(self.thresholds, dtype=_FLOAT))
        above = pred[None, :] > thresholds[:, None]
        label = positive[None, :]
        cells = {"tp": label & above, "fp": ~label & above, "tn": ~label & ~above,
                 "fn": label & ~above}
        totals = xp.concatenate([cells[c].sum(axis=1).astype(np.float64)
                                 for c in self.counted])
        return totals, int(len(y_pred))

    def add(self, totals, count):
        self._counts += np.asarray(totals, dtype=np.float64).reshape(self._counts.shape)

    def _count(self, cell: str) -> np.ndarray:
        return self._counts[self.counted.index(cell)]

    def _value(self, values: np.ndarray):
        return float(values[0]) if self.scalar else [float(v) for v in values]

    def get_config(self):
        return {"name": self.name, "thresholds": self._given_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_ConfusionMetric):
    """``tp / (tp + fp)`` at each threshold (0.5 by default), 0 where nothing is predicted
    positive."""

    counted = ("tp", "fp")

    def result(self):
        tp = self._count("tp")
        return self._value(_divide_no_nan(tp, tp + self._count("fp")))


class Recall(_ConfusionMetric):
    """``tp / (tp + fn)`` at each threshold (0.5 by default), 0 where no label is positive."""

    counted = ("tp", "fn")

    def result(self):
        tp = self._count("tp")
        return self._value(_divide_no_nan(tp, tp + self._count("fn")))


class AUC(Metric):
    """Area under the ROC or precision-recall curve, Keras's approximation: confusion counts at
    ``num_thresholds`` thresholds (evenly spaced in [0, 1], the ends moved out by 1e-7, unless
    ``thresholds`` are given), summed as a Riemann sum with ``summation_method`` heights
    ('interpolation': trapezoids; for the PR curve Davis & Goadrich's interpolation, as Keras);
    ``curve`` 'ROC', 'PR' or 'PRGAIN'. ``multi_label``: one curve per label (the last axis),
    averaged (weighted by ``label_weights``); otherwise every element counts once, weighted by
    ``label_weights`` along the last axis."""

    direction = "up"
    _CURVES = ("ROC", "PR", "PRGAIN")
    _SUMMATIONS = ("interpolation", "minoring", "majoring")

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        if str(curve).upper() not in self._CURVES:
            raise ValueError(f"AUC: curve must be one of {', '.join(self._CURVES)}, got "
                             f"{curve!r}")
        if str(summation_method).lower() not in self._SUMMATIONS:
            raise ValueError(f"AUC: summation_method must be one of "
                             f"{', '.join(self._SUMMATIONS)}, got {summation_method!r}")
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        self._given_thresholds = None
        eps = 1e-7
        if thresholds is not None:
            inner = sorted(_thresholds("AUC", thresholds, 0.5))
            self._given_thresholds = inner
            self.num_thresholds = len(inner) + 2
            even = np.arange(self.num_thresholds, dtype=np.float32) / (self.num_thresholds - 1)
            self._evenly = self.num_thresholds >= 3 and bool(np.allclose(
                [0.0, *inner, 1.0], even, atol=eps))
        else:
            if (not isinstance(num_thresholds, numbers.Integral) or isinstance(num_thresholds, bool)
                    or num_thresholds <= 1):
                raise ValueError(f"AUC: num_thresholds must be an int > 1, got "
                                 f"{num_thresholds!r}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
            self._evenly = True
        self.thresholds = [0.0 - eps, *inner, 1.0 + eps]
        self.multi_label = bool(multi_label)
        if num_labels is not None and not self.multi_label:
            raise ValueError("AUC: num_labels is needed only when multi_label is True")
        self.num_labels = None if num_labels is None else _positive_int("AUC", "num_labels",
                                                                        num_labels)
        self.label_weights = None if label_weights is None else np.asarray(
            label_weights, dtype=np.float64).reshape(-1)
        if self.label_weights is not None and (self.label_weights < 0).any():
            raise ValueError("AUC: label_weights must be >= 0")
        self.from_logits = bool(from_logits)
        super().__init__(name)

    def reset(self):
        labels = self.num_labels if self.multi_label else 1
        self._counts = None if labels is None else np.zeros((4, self.num_thresholds, labels))

    def batch_totals(self, y_true, y_pred):
        y_true = _same_shape(self.name, y_true, y_pred)
        xp = _xp(y_pred)
        samples = int(len(y_pred))
        y_pred = y_pred.astype(_FLOAT)
        if self.from_logits:
            y_pred = 1 / (1 + xp.exp(-y_pred))
        if self.multi_label:
            if y_pred.ndim != 2:
                raise ValueError(f"{self.name}: multi_label=True needs predictions of rank 2, "
                                 f"got shape {tuple(y_pred.shape)}")
            labels = y_pred.shape[1]
            if self.num_labels is not None and labels != self.num_labels:
                raise ValueError(f"{self.name}: num_labels={self.num_labels}, but the "
                                 f"predictions have {labels} labels")
            positive, pred = (y_true != 0).astype(_FLOAT), y_pred
            weights = xp.ones_like(pred)
        else:
            labels = 1
            weights = xp.ones_like(y_pred)
            if self.label_weights is not None:
                weights = weights * xp.asarray(self.label_weights.astype(_FLOAT))
            positive = (y_true != 0).astype(_FLOAT).reshape(-1, 1)
            pred, weights = y_pred.reshape(-1, 1), weights.reshape(-1, 1)
        true_w, false_w = positive * weights, (1 - positive) * weights
        t = self.num_thresholds
        if self._evenly:  # Keras's bucketed form: each prediction falls in one bucket
            pred = xp.clip(pred, 0.0, 1.0)
            bucket = xp.maximum(xp.ceil(pred * _FLOAT(t - 1)) - 1, 0).astype(np.int64)
            index = (bucket * labels + xp.arange(labels)[None, :]).reshape(-1)
            tp_b = xp.bincount(index, weights=true_w.reshape(-1), minlength=t * labels)
            fp_b = xp.bincount(index, weights=false_w.reshape(-1), minlength=t * labels)
            tp = xp.flip(xp.cumsum(xp.flip(tp_b.reshape(t, labels), 0), axis=0), 0)
            fp = xp.flip(xp.cumsum(xp.flip(fp_b.reshape(t, labels), 0), axis=0), 0)
        else:
            thresholds = xp.asarray(np.asarray(self.thresholds, dtype=_FLOAT))
            above = (pred[None, :, :] > thresholds[:, None, None]).astype(_FLOAT)
            tp = (above * true_w[None]).sum(axis=1)
            fp = (above * false_w[None]).sum(axis=1)
        fn = true_w.sum(axis=0)[None, :] - tp
        tn = false_w.sum(axis=0)[None, :] - fp
        totals = xp.concatenate([c.astype(np.float64).reshape(-1) for c in (tp, fp, tn, fn)])
        return totals, samples

    def add(self, totals, count):
        totals = np.asarray(totals, dtype=np.float64)
        labels = totals.size // (4 * self.num_thresholds)
        if self._counts is None:
            self._counts = np.zeros((4, self.num_thresholds, labels))
        if self._counts.shape[2] != labels:
            raise ValueError(f"{self.name}: the predictions changed from "
                             f"{self._counts.shape[2]} to {labels} labels")
        self._counts += totals.reshape(self._counts.shape)

    def result(self):
        if self._counts is None:
            return 0.0
        tp, fp, tn, fn = self._counts
        if self.curve == "PR" and self.summation_method == "interpolation":
            area = self._interpolated_pr(tp, fp, fn)
        else:
            recall = _divide_no_nan(tp, tp + fn)
            if self.curve == "ROC":
                x, y = _divide_no_nan(fp, fp + tn), recall
            elif self.curve == "PR":
                x, y = recall, _divide_no_nan(tp, tp + fp)
            else:
                scale = _divide_no_nan(tp + fn, tn + fp)
                recall_gain = np.where(tp == 0, 0.0, 1 - scale * _divide_no_nan(fn, tp))
                x = np.maximum(recall_gain, 0.0)
                y = np.where(tp == 0, 1.0, 1 - scale * _divide_no_nan(fp, tp))
            if self.summation_method == "interpolation":
                heights = (y[:-1] + y[1:]) / 2
            elif self.summation_method == "minoring":
                heights = np.minimum(y[:-1], y[1:])
            else:
                heights = np.maximum(y[:-1], y[1:])
            area = ((x[:-1] - x[1:]) * heights).sum(axis=0)
        return self._average(area)

    @staticmethod
    def _interpolated_pr(tp, fp, fn):
        """Davis & Goadrich's interpolation of the PR curve between thresholds (Keras's
        ``interpolate_pr_auc``)."""
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        with np.errstate(divide="ignore"):
            log_ratio = np.log(np.where(ratio > 0, ratio, 1.0))
        increment = _divide_no_nan(slope * (dtp + intercept * log_ratio),
                                   np.maximum(tp[1:] + fn[1:], 0))
        return increment.sum(axis=0)

    def _average(self, by_label: np.ndarray) -> float:
        if not self.multi_label:
            return float(by_label.sum())
        if self.label_weights is None:
            return float(by_label.mean())
        w = self.label_weights
        total = w.sum()
        return float((by_label * w).sum() / total) if total else 0.0

    def get_config(self):
        config = {"name": self.name, "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": self.multi_label, "num_labels": self.num_labels,
                  "label_weights": None if self.label_weights is None else
                  self.label_weights.tolist(), "from_logits": self.from_logits}
        if self._given_thresholds is not None:
            config["thresholds"] = list(self._given_thresholds)
        return config


_ACCURACY = {"categorical": CategoricalAccuracy, "sparse_categorical": SparseCategoricalAccuracy,
             "binary": BinaryAccuracy, "auto": AutoAccuracy}

_METRICS = {
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}

#: metric classes by Keras class name, for configs
_CLASSES = {cls.__name__: cls for cls in (
    CategoricalAccuracy, SparseCategoricalAccuracy, BinaryAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy, Precision, Recall, AUC, MeanAbsoluteError, MeanSquaredError)}


def get(identifier, loss) -> Metric:
    """A metric from a Keras name ('accuracy'/'acc' takes its flavour from the loss), a Keras
    class name, a config (``{"class_name", "config"}``), or a Metric instance. Compile takes
    metrics whose result is one number."""
    if isinstance(identifier, Metric):
        metric = identifier
    elif isinstance(identifier, dict):
        cls = _CLASSES.get(str(identifier.get("class_name")))
        if cls is None:
            raise ValueError(f"unknown metric config {str(identifier)[:80]!r}; valid metric "
                             f"classes: {', '.join(_CLASSES)}")
        metric = cls.from_config(identifier.get("config") or {})
    elif identifier in ("accuracy", "acc"):
        metric = _ACCURACY[loss.accuracy_kind](identifier)
        metric._by_name = True
        return metric
    elif isinstance(identifier, str) and (identifier in _METRICS or identifier in _CLASSES):
        cls = _METRICS.get(identifier) or _CLASSES[identifier]
        metric = cls(name=identifier if identifier in _METRICS else None)
        metric._by_name = identifier in _METRICS
        return metric
    else:
        raise ValueError(f"unknown metric {identifier!r}; valid metrics: accuracy, "
                         f"{', '.join(_METRICS)}, a metric class name or a Metric instance")
    if not metric.scalar:
        raise ValueError(f"metric {metric.name!r} gives {len(metric.thresholds)} values (one per "
                         f"threshold); compile takes metrics that give one value, so give it "
                         f"one threshold")
    return metric


def serialize(metric: Metric):
    """A metric as compile settings keep it: its name where :func:`get` makes it from the name,
    else ``{"class_name", "config"}``."""
    if getattr(metric, "_by_name", False):
        return metric.name
    cls = type(metric).__name__
    if cls not in _CLASSES:
        return metric.name
    return {"class_name": cls, "config": metric.get_config()}
