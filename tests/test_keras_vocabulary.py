"""Keras users' everyday vocabulary, each compared with Keras 3 itself on the same weights,
gradients, predictions or logs: the optimizers (AdamW, Adam with AMSGrad, Nadam, Adagrad,
gradient clipping, weight decay), the learning-rate schedules, the callbacks ReduceLROnPlateau,
CSVLogger, TerminateOnNaN and BackupAndRestore, metric objects (BinaryAccuracy, top-k
accuracies, Precision, Recall, AUC) and the binary cross-entropy loss, and their compile
settings in Keras files."""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402 - after choosing its backend

import fastconv  # noqa: E402
from fastconv import callbacks as cb  # noqa: E402
from fastconv import losses, metrics, optimizers  # noqa: E402
from fastconv.layers import Dense, Input  # noqa: E402
from fastconv.models import NonFiniteLossError, Sequential, load_model  # noqa: E402
from fastconv.ops import losses as loss_ops  # noqa: E402
from fastconv.optimizers import schedules  # noqa: E402
from fastconv.tensor import Variable  # noqa: E402
from fastconv.utils import set_random_seed  # noqa: E402

from .test_gradients import check_backward  # noqa: E402

K = keras.optimizers
KS = keras.optimizers.schedules

#: Keras's torch backend turns tensors into arrays through torch's ``__array__``, which NumPy 2
#: warns about
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword")


def _np(x) -> np.ndarray:
    """A Keras tensor or variable as a NumPy array."""
    return keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(x))


@pytest.fixture
def numpy_backend():
    with fastconv.use_backend("numpy") as be:
        yield be


def mlp(outputs=1, activation="sigmoid", features=4):
    return Sequential([Input((features,)), Dense(6, activation="relu"),
                       Dense(outputs, activation=activation)])


def binary_data(rng, n=48, features=4):
    x = rng.standard_normal((n, features)).astype("float32")
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0).astype("float32")
    return x, y


# -- optimizers: the same gradients, the same weights as Keras ----------------------------------

SHAPES = [(3, 4), (4,)]


def _gradients(steps=6, seed=3):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * (1 + 2 * k % 3) for s in SHAPES] for k in range(steps)]


def _start(seed=4):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


OPTIMIZER_CASES = {
    "adam-amsgrad": (lambda m: m.Adam(0.05, amsgrad=True)),
    "adamw": (lambda m: m.AdamW(0.05, weight_decay=0.1)),
    "adamw-amsgrad-clipvalue": (lambda m: m.AdamW(0.05, amsgrad=True, clipvalue=0.8)),
    "nadam": (lambda m: m.Nadam(0.05)),
    "nadam-global-clipnorm": (lambda m: m.Nadam(0.02, beta_1=0.8, global_clipnorm=1.5)),
    "adagrad": (lambda m: m.Adagrad(0.1)),
    "adagrad-clipnorm-decay": (lambda m: m.Adagrad(0.1, initial_accumulator_value=0.5,
                                                   clipnorm=1.0, weight_decay=0.2)),
    "sgd-nesterov-clipnorm": (lambda m: m.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=2.0)),
    "rmsprop-global-clipnorm": (lambda m: m.RMSprop(0.01, centered=True, global_clipnorm=1.0)),
    # norms of about 4 to 12: some steps are clipped, some are not
    "sgd-global-clipnorm": (lambda m: m.SGD(0.05, momentum=0.9, global_clipnorm=7.0)),
    "adam-clipnorm": (lambda m: m.Adam(0.05, clipnorm=4.0)),
    "adam-decay": (lambda m: m.Adam(0.05, weight_decay=0.05)),
    "sgd-exponential-staircase": (lambda m: m.SGD(m.schedules.ExponentialDecay(
        0.1, decay_steps=2, decay_rate=0.5, staircase=True), momentum=0.5)),
    "adam-cosine-warmup": (lambda m: m.Adam(m.schedules.CosineDecay(
        0.01, decay_steps=4, alpha=0.1, warmup_target=0.05, warmup_steps=2))),
    "rmsprop-piecewise": (lambda m: m.RMSprop(m.schedules.PiecewiseConstantDecay(
        [1, 3], [0.05, 0.02, 0.01]))),
    "adamw-exponential": (lambda m: m.AdamW(m.schedules.ExponentialDecay(0.05, 3, 0.7),
                                            weight_decay=0.3)),
}


@pytest.mark.parametrize("case", list(OPTIMIZER_CASES))
def test_optimizer_steps_match_keras(numpy_backend, case):
    """Six steps on two float64 variables from the same gradients: the weights after each step
    equal Keras's, and so does the learning rate each step used."""
    make = OPTIMIZER_CASES[case]
    ours, theirs = make(optimizers), make(K)
    start = _start()
    fc_vars = [Variable(numpy_backend.asarray(w.copy()), name=f"dense/w{i}")
               for i, w in enumerate(start)]
    k_vars = [keras.Variable(w.copy(), dtype="float64") for w in start]
    for step, grads in enumerate(_gradients()):
        assert ours.learning_rate == pytest.approx(
            float(_np(theirs.learning_rate)), rel=1e-6)
        for var, g in zip(fc_vars, grads):
            var.grad = numpy_backend.asarray(g.copy())
        ours.apply(fc_vars)
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), v)
                                for g, v in zip(grads, k_vars)])
        for var, k_var in zip(fc_vars, k_vars):
            np.testing.assert_allclose(var.numpy(), _np(k_var),
                                       rtol=2e-6, atol=1e-7, err_msg=f"{case}, step {step + 1}")
    assert ours.iterations == int(_np(theirs.iterations))


def test_weight_decay_exclusion_matches_keras(numpy_backend):
    ours, theirs = optimizers.AdamW(0.05, weight_decay=0.2), K.AdamW(0.05, weight_decay=0.2)
    start = _start()
    fc_vars = [Variable(numpy_backend.asarray(start[0].copy()), name="dense/kernel"),
               Variable(numpy_backend.asarray(start[1].copy()), name="dense/bias")]
    k_vars = [keras.Variable(start[0].copy(), dtype="float64", name="kernel"),
              keras.Variable(start[1].copy(), dtype="float64", name="bias")]
    ours.exclude_from_weight_decay(var_names=["bias"])
    theirs.exclude_from_weight_decay(var_names=["bias"])
    for grads in _gradients(3):
        for var, g in zip(fc_vars, grads):
            var.grad = numpy_backend.asarray(g.copy())
        ours.apply(fc_vars)
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), v)
                                for g, v in zip(grads, k_vars)])
    for var, k_var in zip(fc_vars, k_vars):
        np.testing.assert_allclose(var.numpy(), _np(k_var), rtol=2e-6)


def test_clipping_options_are_exclusive_as_in_keras():
    for kwargs in ({"clipnorm": 1.0, "clipvalue": 1.0}, {"clipnorm": 1.0, "global_clipnorm": 2.0},
                   {"clipvalue": 1.0, "global_clipnorm": 2.0}):
        with pytest.raises(ValueError, match="Only one of"):
            K.Adam(**kwargs)
        with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and "
                                             "global_clipnorm"):
            optimizers.Adam(**kwargs)
    with pytest.raises(ValueError, match="clipnorm must be a finite number > 0"):
        optimizers.SGD(clipnorm=-1.0)
    with pytest.raises(ValueError, match="use_ema=True is not supported"):
        optimizers.Adam(use_ema=True)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=4 is not supported"):
        optimizers.SGD(gradient_accumulation_steps=4)
    with pytest.raises(TypeError, match="unknown argument 'foo'"):
        optimizers.Nadam(foo=1)
    with pytest.raises(ValueError, match="AdamW: weight_decay must be a number"):
        optimizers.AdamW(weight_decay=None)


@pytest.mark.parametrize("name, cls", [("adamw", optimizers.AdamW), ("nadam", optimizers.Nadam),
                                       ("adagrad", optimizers.Adagrad)])
def test_optimizers_by_name_with_keras_defaults(name, cls):
    ours, theirs = optimizers.get(name), K.get(name)
    assert type(ours) is cls
    keras_config = theirs.get_config()
    for key, value in ours.get_config().items():
        want = keras_config[key]
        assert value == (want if want is None or isinstance(want, bool) else pytest.approx(
            want, rel=1e-6)), key
    # a Keras config (name, EMA defaults and all) builds the same optimizer
    again = optimizers.get({"class_name": type(theirs).__name__, "config": keras_config})
    assert type(again) is cls
    assert again.get_config().keys() == ours.get_config().keys()
    assert again.learning_rate == pytest.approx(ours.learning_rate, rel=1e-6)


def test_get_config_from_config_round_trip_with_a_schedule():
    opt = optimizers.Nadam(schedules.CosineDecay(0.01, 100, alpha=0.2, warmup_target=0.1,
                                                 warmup_steps=10), clipnorm=2.0)
    config = json.loads(json.dumps(optimizers.serialize(opt)))  # what files hold
    again = optimizers.get(config)
    assert isinstance(again.schedule, schedules.CosineDecay)
    assert again.get_config() == opt.get_config()
    for step in (0, 5, 10, 60, 200):
        again.iterations = opt.iterations = step
        assert again.learning_rate == opt.learning_rate
    with pytest.raises(TypeError, match="learning rate cannot be set"):
        opt.learning_rate = 0.1


SCHEDULE_CASES = {
    "exponential": lambda m: m.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.6),
    "exponential-staircase": lambda m: m.ExponentialDecay(0.1, 3, 0.6, staircase=True),
    "piecewise": lambda m: m.PiecewiseConstantDecay([2, 5, 9], [1.0, 0.5, 0.1, 0.01]),
    "cosine": lambda m: m.CosineDecay(0.1, decay_steps=10),
    "cosine-alpha": lambda m: m.CosineDecay(0.1, decay_steps=10, alpha=0.25),
    "cosine-warmup": lambda m: m.CosineDecay(0.0, 10, alpha=0.1, warmup_target=0.2,
                                             warmup_steps=4),
}


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_schedule_values_match_keras(case):
    ours, theirs = SCHEDULE_CASES[case](schedules), SCHEDULE_CASES[case](KS)
    got = [ours(step) for step in range(20)]
    want = [float(_np(theirs(step))) for step in range(20)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert ours.get_config() == theirs.get_config()
    assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="decay_steps must be a finite number > 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="boundaries must have one entry fewer than values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'InverseTimeDecay'"):
        schedules.deserialize({"class_name": "InverseTimeDecay", "config": {}})


def test_adamw_trains_a_model_with_a_schedule(numpy_backend, rng):
    x, y = binary_data(rng)
    model = mlp()
    opt = optimizers.AdamW(schedules.ExponentialDecay(0.05, 4, 0.5, staircase=True),
                           weight_decay=0.01, global_clipnorm=1.0)
    model.compile(optimizer=opt, loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert opt.iterations == 12
    assert opt.learning_rate == pytest.approx(0.05 * 0.5 ** 3)


# -- the binary cross-entropy loss --------------------------------------------------------------


@pytest.mark.parametrize("from_logits, smoothing", [(False, 0.0), (True, 0.0), (False, 0.2),
                                                    (True, 0.1)])
def test_binary_crossentropy_matches_keras(numpy_backend, rng, from_logits, smoothing):
    y = rng.integers(0, 2, (8, 3)).astype("float32")
    if from_logits:
        p = rng.standard_normal((8, 3)).astype("float32") * 4
    else:
        p = rng.uniform(0, 1, (8, 3)).astype("float32")
        p[0, 0], p[1, 1] = 0.0, 1.0  # the clipped ends
    loss = losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    ours = float(loss(y, fastconv.Tensor(numpy_backend.asarray(p))).numpy())
    theirs = float(keras.losses.BinaryCrossentropy(from_logits=from_logits,
                                                   label_smoothing=smoothing)(y, p))
    assert ours == pytest.approx(theirs, rel=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy_gradient(numpy_backend, rng, from_logits):
    y = rng.integers(0, 2, (5, 2)).astype(np.float64)
    p = rng.standard_normal((5, 2)) if from_logits else rng.uniform(0.05, 0.95, (5, 2))
    check_backward(numpy_backend, lambda t: loss_ops.binary_crossentropy(
        t, y, from_logits=from_logits, label_smoothing=0.1), [p])


def test_binary_crossentropy_in_compile_uses_binary_accuracy(numpy_backend, rng):
    x, y = binary_data(rng)
    model = mlp()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    assert isinstance(model._metrics[0], metrics.BinaryAccuracy)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    p = model.predict(x, verbose=0)
    assert loss == pytest.approx(float(keras.losses.binary_crossentropy(y, p).numpy().mean()),
                                 rel=1e-5)
    assert accuracy == pytest.approx(float(keras.metrics.BinaryAccuracy()(y, p)), rel=1e-6)
    with pytest.raises(ValueError, match="reduction='sum' is not supported"):
        losses.BinaryCrossentropy(reduction="sum")


# -- metrics: the same predictions, the same values as Keras --------------------------------------


def _keras_value(metric, batches):
    for y, p in batches:
        metric.update_state(y, p)
    return _np(metric.result())


def _ours(metric, batches):
    for y, p in batches:
        metric.update_state(y, p)
    return metric.result()


def _binary_batches(rng, n=(40, 25), labels=1):
    out = []
    for size in n:
        y = rng.integers(0, 2, (size, labels)).astype("float32")
        p = np.clip(y * 0.35 + rng.uniform(0, 0.65, (size, labels)), 0, 1).astype("float32")
        p[:3] = np.round(p[:3] * 4) / 4  # predictions exactly on thresholds
        out.append((y, p))
    return out


def _class_batches(rng, classes=5, n=(30, 17), ties=False):
    out = []
    for size in n:
        ids = rng.integers(0, classes, size)
        p = rng.dirichlet(np.ones(classes), size).astype("float32")
        if ties:
            p = np.round(p * 4) / 4
        out.append((np.eye(classes, dtype="float32")[ids], p))
    return out


METRIC_CASES = {
    "binary_accuracy": (lambda m: m.BinaryAccuracy(threshold=0.6), "binary"),
    "precision": (lambda m: m.Precision(), "binary"),
    "precision-threshold": (lambda m: m.Precision(thresholds=0.75), "binary"),
    "precision-top_k": (lambda m: m.Precision(top_k=2), "classes"),
    "recall": (lambda m: m.Recall(), "binary"),
    "recall-class_id": (lambda m: m.Recall(class_id=2), "classes"),
    "recall-top_k": (lambda m: m.Recall(top_k=1), "classes"),
    "auc": (lambda m: m.AUC(), "binary"),
    "auc-pr": (lambda m: m.AUC(curve="PR"), "binary"),
    "auc-pr-majoring": (lambda m: m.AUC(curve="PR", summation_method="majoring"), "binary"),
    "auc-roc-minoring": (lambda m: m.AUC(summation_method="minoring", num_thresholds=13),
                         "binary"),
    "auc-prgain": (lambda m: m.AUC(curve="PRGAIN"), "binary"),
    "auc-thresholds": (lambda m: m.AUC(thresholds=[0.1, 0.3, 0.42, 0.9]), "binary"),
    "auc-even-thresholds": (lambda m: m.AUC(thresholds=[0.25, 0.5, 0.75]), "binary"),
    "auc-multi-label": (lambda m: m.AUC(multi_label=True, label_weights=[1.0, 0.5, 2.0]),
                        "multi"),
    "auc-multi-label-pr": (lambda m: m.AUC(multi_label=True, curve="PR", num_labels=3), "multi"),
    "auc-label-weights": (lambda m: m.AUC(label_weights=[1.0, 0.0, 3.0]), "multi"),
    "auc-logits": (lambda m: m.AUC(from_logits=True), "logits"),
    "auc-outside-0-1": (lambda m: m.AUC(num_thresholds=7), "wide"),
    "top_k": (lambda m: m.TopKCategoricalAccuracy(k=2), "classes"),
    "top_k-ties": (lambda m: m.TopKCategoricalAccuracy(k=2), "ties"),
}


@pytest.mark.parametrize("case", list(METRIC_CASES))
def test_metric_values_match_keras(rng, case):
    make, kind = METRIC_CASES[case]
    if kind == "binary":
        batches = _binary_batches(rng)
    elif kind == "multi":
        batches = _binary_batches(rng, labels=3)
    elif kind == "logits":
        batches = [(y, (p - 0.5) * 8) for y, p in _binary_batches(rng)]
    elif kind == "wide":  # predictions outside [0, 1] (Keras clips them into the end buckets)
        batches = [(y, p * 1.6 - 0.3) for y, p in _binary_batches(rng)]
    else:
        batches = _class_batches(rng, ties=kind == "ties")
    ours, theirs = _ours(make(metrics), batches), _keras_value(make(keras.metrics), batches)
    assert ours == pytest.approx(float(theirs), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("ties", [False, True])
def test_sparse_top_k_matches_keras(rng, ties):
    batches = [(y.argmax(axis=1), p) for y, p in _class_batches(rng, ties=ties)]
    ours = _ours(metrics.SparseTopKCategoricalAccuracy(k=2), batches)
    theirs = _keras_value(keras.metrics.SparseTopKCategoricalAccuracy(k=2), batches)
    assert ours == pytest.approx(float(theirs), rel=1e-6)
    ids = [(y, np.argsort(-p, axis=1)) for y, p in batches]
    ours = _ours(metrics.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True), ids)
    theirs = _keras_value(keras.metrics.SparseTopKCategoricalAccuracy(
        k=2, from_sorted_ids=True), ids)
    assert ours == pytest.approx(float(theirs), rel=1e-6)


def test_precision_with_several_thresholds_matches_keras(rng):
    batches = _binary_batches(rng)
    ours = _ours(metrics.Precision(thresholds=[0.3, 0.5, 0.8]), batches)
    theirs = _keras_value(keras.metrics.Precision(thresholds=[0.3, 0.5, 0.8]), batches)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    with pytest.raises(ValueError, match="gives 3 values .* give it one threshold"):
        metrics.get(metrics.Precision(thresholds=[0.3, 0.5, 0.8]), None)


def test_metric_objects_in_compile_match_keras_on_the_predictions(numpy_backend, rng):
    """Metric objects (and names) in compile: their log names, and evaluate's values equal
    Keras's metrics on the model's own predictions."""
    x = rng.standard_normal((50, 4)).astype("float32")
    ids = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    y = np.eye(3, dtype="float32")[ids]
    model = mlp(outputs=3, activation="softmax")
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=[metrics.CategoricalAccuracy(name="acc"),
                           metrics.TopKCategoricalAccuracy(k=2, name="top2"),
                           metrics.Precision(name="prec"), "recall", metrics.AUC()])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert sorted(history.history) == ["acc", "auc", "loss", "prec", "recall", "top2"]
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    want = {"acc": keras.metrics.CategoricalAccuracy(),
            "top2": keras.metrics.TopKCategoricalAccuracy(k=2),
            "prec": keras.metrics.Precision(), "recall": keras.metrics.Recall(),
            "auc": keras.metrics.AUC()}
    for name, metric in want.items():
        assert logs[name] == pytest.approx(float(_keras_value(metric, [(y, p)])), rel=1e-5,
                                           abs=1e-7), name


def test_metric_names_and_errors():
    assert metrics.CategoricalAccuracy().name == "categorical_accuracy"
    assert [metrics.Precision().name, metrics.Precision().name] == ["precision", "precision_1"]
    assert metrics.AUC(name="roc").name == "roc"
    with pytest.raises(ValueError, match="thresholds must lie in"):
        metrics.Precision(thresholds=1.5)
    with pytest.raises(ValueError, match="curve must be one of ROC, PR, PRGAIN"):
        metrics.AUC(curve="DET")
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        metrics.Recall().update_state([1], [0.4], sample_weight=[2.0])
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        metrics.get("f1", losses.get("mse"))


# -- callbacks --------------------------------------------------------------------------------


def _keras_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=K.SGD(0.1), loss="mse")
    return model


@pytest.mark.parametrize("kwargs, monitor, values", [
    ({"patience": 2}, "val_loss", [1.0, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85, 0.86, 0.87, 0.88]),
    ({"patience": 1, "factor": 0.5, "cooldown": 2, "min_lr": 0.02}, "val_loss",
     [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]),
    ({"patience": 1, "min_delta": 0.05}, "loss", [1.0, 0.97, 0.9, 0.88, 0.8]),
    ({"patience": 1, "mode": "max", "factor": 0.3}, "val_accuracy",
     [0.5, 0.6, 0.6, 0.7, 0.65, 0.66, 0.8]),
])
def test_reduce_lr_on_plateau_matches_keras(numpy_backend, kwargs, monitor, values):
    model = mlp(outputs=1, activation=None, features=2)
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    ours = cb.ReduceLROnPlateau(monitor=monitor, **kwargs)
    theirs = keras.callbacks.ReduceLROnPlateau(monitor=monitor, **kwargs)
    k_model = _keras_model()
    ours.set_model(model)
    theirs.set_model(k_model)
    ours.on_train_begin()
    theirs.on_train_begin()
    got, want = [], []
    for epoch, value in enumerate(values):
        logs_ours, logs_theirs = {monitor: value}, {monitor: value}
        ours.on_epoch_end(epoch, logs_ours)
        theirs.on_epoch_end(epoch, logs_theirs)
        assert logs_ours["learning_rate"] == pytest.approx(logs_theirs["learning_rate"], rel=1e-6)
        got.append(model.optimizer.learning_rate)
        want.append(float(_np(k_model.optimizer.learning_rate)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert len(set(got)) > 1  # the case reduces the rate at least once


def test_reduce_lr_on_plateau_in_fit(numpy_backend, rng):
    x, y = binary_data(rng, n=32)
    model = mlp()
    model.compile(optimizer=optimizers.SGD(1e-9), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, verbose=0, validation_split=0.25,
                        callbacks=[cb.ReduceLROnPlateau(monitor="val_accuracy", patience=1,
                                                        factor=0.5)])
    # the rate each epoch ran with; a plateau of val_accuracy halves it from the second on
    assert history.history["learning_rate"] == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10],
                                                             rel=1e-9)
    assert model.optimizer.learning_rate == pytest.approx(1.25e-10, rel=1e-9)
    with pytest.raises(ValueError, match="factor must be in"):
        cb.ReduceLROnPlateau(factor=1.5)
    opt = optimizers.Adam(schedules.ExponentialDecay(0.1, 10, 0.5))
    model.compile(optimizer=opt, loss="binary_crossentropy")
    with pytest.raises(TypeError, match="learning rate cannot be set"):
        model.fit(x, y, epochs=3, verbose=0,
                  callbacks=[cb.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=10)])


CSV_LOGS = [
    [{"loss": 0.5, "accuracy": 0.75}, {"loss": 0.25, "accuracy": 0.875}],
    [{"loss": 0.5, "val_loss": 0.625, "auc": 0.9}, {"loss": 0.125, "val_loss": 0.5, "auc": 1.0}],
]


@pytest.mark.parametrize("separator", [",", ";"])
@pytest.mark.parametrize("logs", CSV_LOGS, ids=["no-validation", "validation"])
def test_csv_logger_writes_what_keras_writes(tmp_path, separator, logs):
    ours_path, keras_path = tmp_path / "ours.csv", tmp_path / "keras.csv"
    for append in (False, True, True):
        ours = cb.CSVLogger(ours_path, separator=separator, append=append)
        theirs = keras.callbacks.CSVLogger(str(keras_path), separator=separator, append=append)
        for logger in (ours, theirs):
            logger.on_train_begin()
            for epoch, one in enumerate(logs):
                logger.on_epoch_end(epoch, dict(one))
            logger.on_train_end()
        assert ours_path.read_bytes() == keras_path.read_bytes()
    assert ours_path.read_bytes().count(b"epoch") == 1  # appending writes no second header


def test_csv_logger_in_fit_holds_whole_rows_after_every_epoch(numpy_backend, rng, tmp_path):
    x, y = binary_data(rng, n=32)
    model = mlp()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    path = tmp_path / "log.csv"
    rows_seen = []
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        cb.CSVLogger(path), cb.LambdaCallback(on_epoch_end=lambda e, logs: rows_seen.append(
            len(path.read_text().splitlines())))])
    assert rows_seen == [2, 3, 4]
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert [float(v) for v in lines[-1].split(",")[1:3]] == [
        history.history["accuracy"][-1], history.history["loss"][-1]]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.csv"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb.CSVLogger(tmp_path / "folder.csv")])


def test_terminate_on_nan_stops_training_as_keras(numpy_backend, rng, capsys):
    x, y = binary_data(rng, n=48)
    x[20, 1] = np.nan
    model = mlp(activation=None)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                        callbacks=[cb.TerminateOnNaN()])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert len(history.history["loss"]) == 1 and math.isnan(history.history["loss"][0])
    assert all(np.isfinite(w).all() for w in model.get_weights())  # the bad batch applied nothing
    k_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    k_model.compile(optimizer="adam", loss="mse")
    k_history = k_model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                            callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(k_history.history["loss"]) == 1 and math.isnan(k_history.history["loss"][0])
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0,
                  callbacks=[cb.TerminateOnNaN(raise_error=True)])
    with pytest.raises(NonFiniteLossError):
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)


class _Interrupt(cb.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("save_freq, resumed_epochs, steps", [
    ("epoch", [3, 4], 25),
    # every 2 batches of 5: the last backup was taken in epoch 2 after 14 steps, and the
    # resumed run starts that epoch again (Keras)
    (2, [2, 3, 4], 14 + 15),
])
def test_backup_and_restore_resumes_an_interrupted_fit(numpy_backend, rng, tmp_path, save_freq,
                                                       resumed_epochs, steps):
    """A fit interrupted at epoch 3 and run again resumes where the last backup was taken
    (Keras: the history holds the remaining epochs); from an epoch's end it ends with the
    weights of the uninterrupted run."""
    x, y = binary_data(rng, n=40)
    set_random_seed(7)
    straight = mlp()
    straight.compile(optimizer=optimizers.Adam(schedules.ExponentialDecay(0.05, 3, 0.5)),
                     loss="binary_crossentropy")
    straight.fit(x, y, epochs=5, batch_size=8, verbose=0)

    set_random_seed(7)
    model = mlp()
    model.compile(optimizer=optimizers.Adam(schedules.ExponentialDecay(0.05, 3, 0.5)),
                  loss="binary_crossentropy")
    backup = cb.BackupAndRestore(tmp_path / "backup", save_freq=save_freq)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[backup, _Interrupt(3)])
    assert (tmp_path / "backup" / "backup.fcb").is_file()

    set_random_seed(99)  # a new process: other weights, another random state
    resumed = mlp()
    resumed.compile(optimizer=optimizers.Adam(schedules.ExponentialDecay(0.05, 3, 0.5)),
                    loss="binary_crossentropy")
    history = resumed.fit(x, y, epochs=5, batch_size=8, verbose=0,
                          callbacks=[cb.BackupAndRestore(tmp_path / "backup",
                                                         save_freq=save_freq)])
    assert history.epoch == resumed_epochs
    assert resumed.optimizer.iterations == steps
    if save_freq == "epoch":
        for ours, want in zip(resumed.get_weights(), straight.get_weights()):
            np.testing.assert_allclose(ours, want, rtol=1e-6, atol=1e-7)
    assert not (tmp_path / "backup").exists()  # delete_checkpoint: gone after a finished fit


def test_backup_and_restore_falls_back_to_the_previous_backup(numpy_backend, rng, tmp_path):
    x, y = binary_data(rng, n=16)
    model = mlp()
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    folder = tmp_path / "b"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[
        cb.BackupAndRestore(folder, double_checkpoint=True, delete_checkpoint=False)])
    assert (folder / "backup.fcb.bkp").is_file()
    (folder / "backup.fcb").write_bytes(b"not a zip")  # a damaged latest backup
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        cb.BackupAndRestore(folder, double_checkpoint=True)])
    assert history.epoch == [1, 2]  # resumed after the first epoch, from the previous backup
    folder.mkdir()
    (folder / "backup.fcb").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot resume from"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb.BackupAndRestore(folder)])
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or an int"):
        cb.BackupAndRestore(folder, save_freq="batch")


def test_tensorboard_names_csv_logger():
    with pytest.raises((ImportError, NotImplementedError), match="CSVLogger"):
        cb.TensorBoard(log_dir="logs")


# -- compile settings in Keras files ------------------------------------------------------------


def test_keras_reads_the_new_compile_settings(numpy_backend, rng, tmp_path):
    x, y = binary_data(rng, n=16)
    model = mlp()
    model.compile(optimizer=optimizers.AdamW(schedules.CosineDecay(0.01, 50, alpha=0.1),
                                             weight_decay=0.02, clipnorm=1.5, amsgrad=True),
                  loss=losses.BinaryCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy", metrics.Precision(thresholds=0.6, name="p60"),
                           metrics.AUC(curve="PR")])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        k_model = keras.saving.load_model(tmp_path / "m.keras")  # fastconv saves no moments
    opt = k_model.optimizer
    assert type(opt).__name__ == "AdamW" and opt.amsgrad
    assert (opt.weight_decay, opt.clipnorm) == (0.02, 1.5)
    assert isinstance(opt._learning_rate, KS.CosineDecay) and opt._learning_rate.alpha == 0.1
    k_config = k_model.get_compile_config()
    assert k_config["loss"]["config"]["label_smoothing"] == 0.1
    assert [m if isinstance(m, str) else m["class_name"] for m in k_config["metrics"]] == [
        "accuracy", "Precision", "AUC"]
    again = load_model(tmp_path / "m.keras")
    assert again.compiled
    assert again.optimizer.get_config() == model.optimizer.get_config()
    assert [m.name for m in again._metrics] == ["accuracy", "p60", "auc"]
    assert again._metrics[1].thresholds == [0.6] and again._metrics[2].curve == "PR"
    assert again.loss.label_smoothing == 0.1


def test_keras_files_with_the_new_optimizers_load_compiled(numpy_backend, tmp_path, caplog):
    k_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    k_model.compile(optimizer=K.Nadam(KS.ExponentialDecay(0.01, 5, 0.9, staircase=True),
                                      global_clipnorm=2.0),
                    loss="categorical_crossentropy",
                    metrics=[keras.metrics.TopKCategoricalAccuracy(k=1, name="top1"), "auc"])
    k_model.save(tmp_path / "k.keras")
    model = load_model(tmp_path / "k.keras")
    assert isinstance(model.optimizer, optimizers.Nadam)
    assert model.optimizer.global_clipnorm == 2.0
    assert model.optimizer.schedule.get_config() == k_model.optimizer._learning_rate.get_config()
    assert [m.name for m in model._metrics] == ["top1", "auc"]
    assert model._metrics[0].k == 1
    k_model.compile(optimizer=K.Adam(use_ema=True), loss="categorical_crossentropy")
    k_model.save(tmp_path / "ema.keras")
    with caplog.at_level("WARNING", logger="fastconv.keras_io"):
        assert not load_model(tmp_path / "ema.keras").compiled
    assert "use_ema=True is not supported" in caplog.text


def test_fastconv_files_keep_metric_objects(numpy_backend, rng, tmp_path):
    x, y = binary_data(rng, n=16)
    model = mlp()
    model.compile(optimizer=optimizers.Adagrad(0.1, clipvalue=0.5), loss="binary_crossentropy",
                  metrics=[metrics.BinaryAccuracy(threshold=0.3, name="acc30"), "recall"])
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.fcm")
    again = load_model(tmp_path / "m.fcm")
    assert again.optimizer.get_config() == model.optimizer.get_config()
    assert again.optimizer.iterations == model.optimizer.iterations
    assert [m.name for m in again._metrics] == ["acc30", "recall"]
    assert again._metrics[0].threshold == 0.3
    assert again.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    with zipfile.ZipFile(tmp_path / "m.fcm") as zf:
        manifest = json.loads(zf.read("fastconv.json"))
    assert manifest["compile"]["metrics"][1] == "recall"
