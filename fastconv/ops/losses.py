"""Loss ops: fused softmax cross-entropy, cross-entropy on probabilities, binary cross-entropy
(on probabilities or logits), mean squared error."""

from __future__ import annotations

import numpy as np

from ..tensor import Function, Tensor
from .base import as_tensor


class Labels:
    """Labels checked on the host and uploaded to the backend once: a loss and the metrics of
    one training step read the same backend array (``array``), so a step on a GPU uploads its
    labels once."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


def cross_entropy_labels(y_pred: Tensor, y_true, sparse: bool) -> Labels:
    """``y_true`` checked against predictions ``y_pred`` (batch, classes) and uploaded."""
    if y_pred.ndim != 2:
        raise ValueError(f"cross-entropy expects (batch, classes) predictions, got {y_pred.shape}")
    return Labels(_labels_array(y_pred._backend, y_true, y_pred.shape[0], y_pred.shape[1],
                                sparse, y_pred.dtype))


def mean_squared_error_labels(y_pred: Tensor, y_true) -> Labels:
    """Targets checked against predictions ``y_pred`` and uploaded."""
    return Labels(_target_array(y_pred, y_true))


def binary_crossentropy_labels(y_pred: Tensor, y_true) -> Labels:
    """Binary targets (one per prediction element) checked and uploaded."""
    return Labels(_target_array(y_pred, y_true, "binary_crossentropy"))


def _labels_array(backend, y_true, n: int, classes: int, sparse: bool, dtype):
    """Labels as a backend array: int class ids (sparse) or (n, classes) probabilities."""
    if isinstance(y_true, Labels):
        return y_true.array
    y = y_true.data if isinstance(y_true, Tensor) else y_true
    if sparse:
        y = backend.to_host(y) if not isinstance(y, np.ndarray) else y
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (n,):
            raise ValueError(f"sparse labels must have shape ({n},), got {y.shape}")
        if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and np.any(y != np.round(y))):
            raise TypeError(f"sparse labels must be integer class ids, got dtype {y.dtype}")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"sparse labels must lie in [0, {classes}), got values "
                             f"{int(y.min())}..{int(y.max())}")
        return backend.asarray(y)
    y = backend.asarray(y, dtype=dtype)
    if y.shape != (n, classes):
        raise ValueError(f"one-hot labels must have shape ({n}, {classes}), got {y.shape}")
    return y


class SoftmaxCrossEntropyOp(Function):
    """Mean over the batch of ``-sum(y * log_softmax(z))``, fused and stable (log-sum-exp).
    Backward: ``(softmax(z) - y) / N``."""

    def forward(self, z, *, labels, sparse):
        xp = self.backend.xp
        shifted = z - z.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        log_p = shifted - xp.log(s)
        n = z.shape[0]
        if sparse:
            loss = -log_p[xp.arange(n), labels].sum() / n
        else:
            loss = -(labels * log_p).sum() / n
        self.p, self.labels, self.sparse = e / s, labels, sparse
        return xp.asarray(loss, dtype=z.dtype)

    def backward(self, dy):
        xp = self.backend.xp
        n = self.p.shape[0]
        g = self.p.copy()
        if self.sparse:
            g[xp.arange(n), self.labels] -= 1
        else:
            g -= self.labels
        return (g * (dy / n),)


def _not_empty(op: str, shape) -> None:
    """A batch mean over no samples is undefined (it would come back as NaN)."""
    if 0 in shape:
        raise ValueError(f"{op}: empty batch (predictions of shape {tuple(shape)}): a mean "
                         f"over no samples is undefined")


def softmax_cross_entropy(logits, y_true, sparse: bool = False) -> Tensor:
    """Cross-entropy between integer or one-hot labels and ``softmax(logits)``, batch mean."""
    logits = as_tensor(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy expects (batch, classes) logits, got "
                         f"{logits.shape}")
    _not_empty("softmax_cross_entropy", logits.shape)
    labels = _labels_array(logits._backend, y_true, logits.shape[0], logits.shape[1], sparse,
                           logits.dtype)
    return SoftmaxCrossEntropyOp.apply(logits, labels=labels, sparse=sparse)


class ProbabilityCrossEntropyOp(Function):
    """Mean over the batch of ``-sum(y * log(clip(p, eps, 1 - eps)))`` (Keras, probabilities)."""

    def forward(self, p, *, labels, sparse, eps):
        xp = self.backend.xp
        n = p.shape[0]
        clipped = xp.clip(p, eps, 1 - eps)
        if sparse:
            picked = clipped[xp.arange(n), labels]
            loss = -xp.log(picked).sum() / n
        else:
            loss = -(labels * xp.log(clipped)).sum() / n
        self.p, self.clipped, self.labels, self.sparse, self.eps = p, clipped, labels, sparse, eps
        return xp.asarray(loss, dtype=p.dtype)

    def backward(self, dy):
        xp = self.backend.xp
        n = self.p.shape[0]
        inside = (self.p > self.eps) & (self.p < 1 - self.eps)
        if self.sparse:
            g = xp.zeros_like(self.p)
            g[xp.arange(n), self.labels] = -1 / self.clipped[xp.arange(n), self.labels]
        else:
            g = -self.labels / self.clipped
        return (g * inside * (dy / n),)


def cross_entropy(y_pred, y_true, sparse: bool = False, from_logits: bool = False,
                  eps: float = 1e-7) -> Tensor:
    """Categorical cross-entropy; uses the fused softmax form when ``y_pred`` are logits or the
    output of :func:`softmax`."""
    y_pred = as_tensor(y_pred, "predictions")
    if from_logits:
        return softmax_cross_entropy(y_pred, y_true, sparse)
    if y_pred._logits is not None:
        return softmax_cross_entropy(y_pred._logits, y_true, sparse)
    if y_pred.ndim != 2:
        raise ValueError(f"cross-entropy expects (batch, classes) predictions, got {y_pred.shape}")
    _not_empty("cross-entropy", y_pred.shape)
    labels = _labels_array(y_pred._backend, y_true, y_pred.shape[0], y_pred.shape[1], sparse,
                           y_pred.dtype)
    return ProbabilityCrossEntropyOp.apply(y_pred, labels=labels, sparse=sparse, eps=eps)


class MeanSquaredErrorOp(Function):
    def forward(self, p, *, target):
        self.diff = p - target
        return (self.diff * self.diff).mean(dtype=p.dtype)

    def backward(self, dy):
        return (self.diff * (2 * dy / self.diff.size),)


def mean_squared_error(y_pred, y_true) -> Tensor:
    y_pred = as_tensor(y_pred, "predictions")
    _not_empty("mean_squared_error", y_pred.shape)
    return MeanSquaredErrorOp.apply(y_pred, target=_target_array(y_pred, y_true))


def _target_array(y_pred: Tensor, y_true, op: str = "mean_squared_error"):
    if isinstance(y_true, Labels):
        return y_true.array
    target = y_true.data if isinstance(y_true, Tensor) else y_true
    target = y_pred._backend.asarray(target, dtype=y_pred.dtype)
    if target.shape != y_pred.shape:
        if target.size == y_pred.size:
            target = target.reshape(y_pred.shape)
        else:
            raise ValueError(f"{op}: targets of shape {target.shape} do not match "
                             f"predictions of shape {y_pred.shape}")
    return target


class BinaryCrossEntropyOp(Function):
    """Mean over every element of ``-(y log c + (1 - y) log(1 - c))``, ``c = clip(p, eps,
    1 - eps)`` (Keras, probabilities). Backward: ``(c - y) / (c (1 - c)) / size`` where ``p`` is
    inside the clip, 0 outside."""

    def forward(self, p, *, target, eps):
        xp = self.backend.xp
        c = xp.clip(p, eps, 1 - eps)
        loss = -(target * xp.log(c) + (1 - target) * xp.log(1 - c)).mean()
        self.p, self.c, self.target, self.eps = p, c, target, eps
        return xp.asarray(loss, dtype=p.dtype)

    def backward(self, dy):
        c, y = self.c, self.target
        inside = (self.p > self.eps) & (self.p < 1 - self.eps)
        g = (c - y) / (c * (1 - c))
        return (g * inside * (dy / c.size),)


class BinaryCrossEntropyLogitsOp(Function):
    """Mean over every element of ``max(z, 0) - z y + log(1 + exp(-|z|))``, the binary
    cross-entropy of ``sigmoid(z)`` written stably. Backward: ``(sigmoid(z) - y) / size``."""

    def forward(self, z, *, target):
        xp = self.backend.xp
        loss = (xp.maximum(z, 0) - z * target + xp.log1p(xp.exp(-abs(z)))).mean()
        self.z, self.target = z, target
        return xp.asarray(loss, dtype=z.dtype)

    def backward(self, dy):
        xp = self.backend.xp
        z = self.z
        # sigmoid without overflow: exp of a non-positive number only
        e = xp.exp(-abs(z))
        sigmoid = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
        return ((sigmoid - self.target) * (dy / z.size),)


def binary_crossentropy(y_pred, y_true, from_logits: bool = False, label_smoothing: float = 0.0,
                        eps: float = 1e-7) -> Tensor:
    """Keras's binary cross-entropy, the mean over every element; ``label_smoothing`` moves the
    targets towards 0.5: ``y (1 - s) + s / 2``."""
    y_pred = as_tensor(y_pred, "predictions")
    _not_empty("binary_crossentropy", y_pred.shape)
    target = _target_array(y_pred, y_true, "binary_crossentropy")
    if label_smoothing:
        target = target * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return BinaryCrossEntropyLogitsOp.apply(y_pred, target=target)
    return BinaryCrossEntropyOp.apply(y_pred, target=target, eps=eps)
