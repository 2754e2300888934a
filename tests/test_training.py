"""compile / fit / evaluate / predict on tiny data: optimizers, losses, validation, verbosity,
callbacks, non-finite losses, seeding, batching, and the optimizers' update rules."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fastconv import callbacks as cb
from fastconv import optimizers
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from fastconv.models import NonFiniteLossError, Sequential, load_model
from fastconv.tensor import Variable
from fastconv.utils import set_random_seed, to_categorical

from .devices import EMULATED

#: An emulated device runs each kernel launch in Python (milliseconds each): the end-to-end
#: training tests take fewer samples and epochs there, with the same assertions.
FIT_SAMPLES, FIT_EPOCHS = (32, 3) if EMULATED else (64, 8)


def blobs(rng, n=64, features=4, classes=3):
    """Linearly separable-ish classes around distinct centres."""
    centres = rng.standard_normal((classes, features)) * 3
    labels = rng.integers(0, classes, n)
    x = centres[labels] + rng.standard_normal((n, features)) * 0.5
    return x.astype("float32"), labels


def mlp(classes=3, activation="softmax", features=4):
    return Sequential([Input((features,)), Dense(8, activation="relu"),
                       Dense(classes, activation=activation)])


def small_cnn():
    return Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(),
                       Flatten(), Dropout(0.25), Dense(2, activation="softmax")])


# -- optimizers and losses end to end -----------------------------------------------------------


@pytest.mark.parametrize("make_optimizer", [
    lambda: "adam", lambda: "sgd", lambda: "rmsprop",
    lambda: optimizers.Adam(learning_rate=0.01),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.RMSprop(learning_rate=0.01),
    lambda: optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
], ids=["adam", "sgd", "rmsprop", "Adam", "SGD-momentum", "SGD-nesterov", "RMSprop",
        "RMSprop-centered-momentum"])
def test_fit_reduces_the_loss(backend, rng, make_optimizer):
    optimizer = make_optimizer()
    x, labels = blobs(rng, n=FIT_SAMPLES)
    y = to_categorical(labels, 3)
    model = mlp()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    if isinstance(optimizer, str):
        assert model.optimizer.name == optimizer
    else:
        assert model.optimizer is optimizer
    start = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=FIT_EPOCHS, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert len(history.history["loss"]) == FIT_EPOCHS
    assert history.epoch == list(range(FIT_EPOCHS))
    end = model.evaluate(x, y, verbose=0)
    assert end[0] < start[0]
    assert model.optimizer.iterations == FIT_EPOCHS * (FIT_SAMPLES // 16)


@pytest.mark.parametrize("loss, labels_kind, activation", [
    ("categorical_crossentropy", "one-hot", "softmax"),
    ("sparse_categorical_crossentropy", "ids", "softmax"),
    ({"name": "categorical_crossentropy", "config": {"from_logits": True}}, "one-hot", None),
    ({"name": "sparse_categorical_crossentropy", "config": {"from_logits": True}}, "ids", None),
])
def test_cross_entropy_losses(backend, rng, loss, labels_kind, activation):
    x, ids = blobs(rng)
    y = to_categorical(ids, 3) if labels_kind == "one-hot" else ids
    model = mlp(activation=activation)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    loss_value, accuracy = model.evaluate(x, y, batch_size=10, verbose=0)
    out = model.predict(x, verbose=0).astype(np.float64)
    if activation is None:  # logits
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
    expected = -np.log(out[np.arange(len(ids)), ids]).mean()
    assert loss_value == pytest.approx(expected, rel=1e-4)
    assert accuracy == pytest.approx((out.argmax(axis=1) == ids).mean())


def test_probability_cross_entropy_with_sigmoid_output(backend, rng):
    """Without a softmax to take logits from, the loss uses the clipped probabilities."""
    x, ids = blobs(rng, classes=2)
    y = to_categorical(ids, 2)
    model = mlp(classes=2, activation="sigmoid")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    p = model.predict(x, verbose=0).astype(np.float64)
    expected = -(y * np.log(np.clip(p, 1e-7, 1 - 1e-7))).sum(axis=1).mean()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("loss", ["mse", "mean_squared_error"])
def test_mse_regression(backend, rng, loss):
    x = rng.standard_normal((FIT_SAMPLES, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype("float32")
    model = Sequential([Dense(1, input_shape=(3,))])
    model.compile(optimizer=optimizers.SGD(0.1), loss=loss, metrics=["mae"])
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.01 * history.history["loss"][0]
    mse, mae = model.evaluate(x, y, verbose=0)
    p = model.predict(x, verbose=0)
    assert mse == pytest.approx(((p - y) ** 2).mean(), rel=1e-4)
    assert mae == pytest.approx(np.abs(p - y).mean(), rel=1e-4)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel[:, 0], [1.0, -2.0, 0.5], atol=0.05)


def test_cnn_trains(backend, rng):
    x = rng.random((16 if EMULATED else 40, 8, 8, 1)).astype("float32")
    ids = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(int)
    model = small_cnn()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, ids, epochs=4 if EMULATED else 6, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_unknown_names(backend):
    model = mlp()
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; valid optimizers: sgd, "
                                         "adam, adamw, nadam, adagrad, rmsprop"):
        model.compile(optimizer="lion", loss="mse")
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid losses: "
                                         "categorical_crossentropy"):
        model.compile(optimizer="adam", loss="hinge")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile(optimizer="adam", loss="mse", metrics=["f1"])
    with pytest.raises(ValueError, match="a loss is required"):
        model.compile(optimizer="adam")
    with pytest.raises(TypeError, match="unsupported argument"):
        model.compile(optimizer="adam", loss="mse", run_eagerly=True)


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        optimizers.SGD(learning_rate=0)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=-0.1)
    with pytest.raises(ValueError, match="beta_1 must be in"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match="rho must be in"):
        optimizers.RMSprop(rho=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.Adam(learning_rate=float("nan"))


def test_fit_argument_errors(backend, rng):
    model = mlp()
    x, ids = blobs(rng, n=10)
    with pytest.raises(RuntimeError, match="compile the model first"):
        model.fit(x, ids)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="x and y hold different numbers of samples: 10 and 9"):
        model.fit(x, ids[:9], verbose=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        model.fit(x, ids, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        model.fit(x, ids, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="verbose must be 0, 1, 2"):
        model.fit(x, ids, verbose=3)
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        model.fit(x, ids, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        model.fit(x, ids, validation_split=0.2, validation_data=(x, ids), verbose=0)
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        model.fit(x, ids, validation_data=x, verbose=0)
    with pytest.raises(ValueError, match=r"sparse labels must lie in \[0, 3\)"):
        model.fit(x, ids + 3, verbose=0)
    with pytest.raises(TypeError, match="callbacks must be fastconv.callbacks.Callback"):
        model.fit(x, ids, callbacks=[lambda: None], verbose=0)
    with pytest.raises(ValueError, match="x and y are empty"):
        model.fit(x[:0], ids[:0], verbose=0)


# -- validation --------------------------------------------------------------------------------


def test_validation_split_adds_val_keys(backend, rng):
    x, ids = blobs(rng, n=50)
    y = to_categorical(ids, 3)
    model = mlp()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert model.history is history
    # Keras validates on the last 20% (not shuffled); the last value is for the final weights.
    val_loss, val_accuracy = model.evaluate(x[40:], y[40:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert history.history["val_accuracy"][-1] == pytest.approx(val_accuracy)


def test_validation_data_adds_val_keys(backend, rng):
    x, ids = blobs(rng, n=40)
    xv, idv = blobs(rng, n=13)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, ids, epochs=3, validation_data=(xv, idv), verbose=0)
    assert set(history.history) == {"loss", "val_loss"}
    assert len(history.history["val_loss"]) == 3
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv, idv, verbose=0), rel=1e-6)


# -- verbosity ---------------------------------------------------------------------------------


def test_verbose_0_prints_nothing(backend, rng, capsys):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, ids, epochs=2, verbose=0)
    model.evaluate(x, ids, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_verbose_2_prints_one_line_per_epoch(backend, rng, capsys):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, ids, epochs=3, batch_size=8, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("Epoch")] == [
        "Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    epoch_lines = [line for line in lines if not line.startswith("Epoch")]
    assert len(epoch_lines) == 3
    for line, loss in zip(epoch_lines, history.history["loss"]):
        assert re.fullmatch(r"3/3 - \d+s - \d+(us|ms|s)/step - accuracy: [0-9.e-]+ - loss: "
                            r"[0-9.e-]+", line), line
        assert float(line.rsplit("loss: ", 1)[1]) == pytest.approx(loss, rel=1e-3, abs=1e-4)


def test_verbose_1_prints_the_progress_line(backend, rng, capsys):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, ids, epochs=2, batch_size=5, verbose=1)
    out = capsys.readouterr().out
    assert "\x1b" not in out  # not a terminal: no colours, no redraws
    lines = out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.fullmatch(r"4/4 ━{20} \d+s \d+(us|ms|s)/step - loss: [0-9.e-]+", lines[1])
    model.evaluate(x, ids, verbose=1)
    assert re.fullmatch(r"1/1 ━{20} .* - loss: [0-9.e-]+\n", capsys.readouterr().out)


# -- callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("patience", [0, 2])
def test_early_stopping_stops(backend, rng, patience):
    """min_delta larger than any change: only the first epoch counts as an improvement, so
    training stops after ``patience`` epochs without one (Keras: 1 + patience epochs run)."""
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    stop = cb.EarlyStopping(monitor="loss", min_delta=1e9, patience=patience)
    history = model.fit(x, ids, epochs=10, callbacks=[stop], verbose=0)
    ran = max(2, 1 + patience)  # Keras never stops after the very first epoch
    assert len(history.history["loss"]) == ran
    assert stop.stopped_epoch == ran - 1


def test_early_stopping_restores_best_weights(backend, rng):
    """Keras 3 restores the best epoch's weights when training ends."""
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    seen = []
    record = cb.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.get_weights()))
    stop = cb.EarlyStopping(monitor="loss", min_delta=1e9, patience=2,
                            restore_best_weights=True)
    model.fit(x, ids, epochs=10, callbacks=[record, stop], verbose=0)
    assert len(seen) == 3
    for got, best in zip(model.get_weights(), seen[0]):
        np.testing.assert_array_equal(got, best)

    # Also when training runs out of epochs before patience does.
    seen.clear()
    stop = cb.EarlyStopping(monitor="loss", min_delta=1e9, patience=5,
                            restore_best_weights=True)
    model.fit(x, ids, epochs=3, callbacks=[record, stop], verbose=0)
    assert len(seen) == 3 and stop.stopped_epoch == 0
    assert not np.array_equal(seen[0][0], seen[2][0])
    for got, best in zip(model.get_weights(), seen[0]):
        np.testing.assert_array_equal(got, best)


def test_early_stopping_unknown_monitor(backend, rng):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="'val_loss' is not logged; logged: loss"):
        model.fit(x, ids, epochs=2, callbacks=[cb.EarlyStopping()], verbose=0)


def test_model_checkpoint_writes(backend, rng, tmp_path):
    x, ids = blobs(rng, n=30)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    every = cb.ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.fcm", monitor="loss")
    weights = cb.ModelCheckpoint(tmp_path / "w-{epoch}.fcw", save_weights_only=True)
    history = model.fit(x, ids, epochs=3, validation_split=0.2, callbacks=[every, weights],
                        verbose=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    losses = history.history["loss"]
    assert names == sorted([f"ckpt-{e + 1:02d}-{loss:.3f}.fcm" for e, loss in enumerate(losses)]
                           + ["w-1.fcw", "w-2.fcw", "w-3.fcw"])
    last = load_model(tmp_path / names[2])
    np.testing.assert_array_equal(last.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_checkpoint_save_best_only(backend, rng, tmp_path):
    """mode='max' on a falling loss: only the first epoch is 'best', so the file keeps the
    first epoch's weights."""
    x, ids = blobs(rng, n=30)
    model = mlp()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    path = tmp_path / "best.fcm"
    best = cb.ModelCheckpoint(path, monitor="loss", save_best_only=True, mode="max")
    seen = []
    spy = cb.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.get_weights()))
    history = model.fit(x, ids, epochs=3, callbacks=[best, spy], verbose=0)
    losses = history.history["loss"]
    assert losses[0] > losses[1] > losses[2]
    assert best.best == losses[0]
    for got, first in zip(load_model(path).get_weights(), seen[0]):
        np.testing.assert_array_equal(got, first)
    assert not np.array_equal(seen[0][0], seen[2][0])


def test_lambda_callback_is_called(backend, rng):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    calls = []
    hooks = cb.LambdaCallback(
        on_train_begin=lambda logs=None: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs=None: calls.append(f"epoch_begin {epoch}"),
        on_train_batch_end=lambda batch, logs: calls.append(f"batch {batch} {sorted(logs)}"),
        on_epoch_end=lambda epoch, logs: calls.append(f"epoch_end {epoch} {sorted(logs)}"),
        on_train_end=lambda logs=None: calls.append("train_end"))
    model.fit(x, ids, epochs=2, batch_size=8, callbacks=[hooks], verbose=0)
    epoch = ["batch 0 ['loss']", "batch 1 ['loss']", "batch 2 ['loss']"]
    assert calls == (["train_begin", "epoch_begin 0", *epoch, "epoch_end 0 ['loss']",
                      "epoch_begin 1", *epoch, "epoch_end 1 ['loss']", "train_end"])
    with pytest.raises(TypeError, match="unknown hook 'on_batch'"):
        cb.LambdaCallback(on_batch=print)


def test_learning_rate_scheduler(backend, rng):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    seen = []
    sched = cb.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    spy = cb.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        model.optimizer.learning_rate))
    model.fit(x, ids, epochs=3, callbacks=[sched, spy], verbose=0)
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_stop_training_from_a_callback(backend, rng):
    x, ids = blobs(rng, n=20)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    def stop(batch, logs):
        model.stop_training = True

    history = model.fit(x, ids, epochs=5, callbacks=[cb.LambdaCallback(on_train_batch_end=stop)],
                        verbose=0)
    assert len(history.history["loss"]) == 1


# -- non-finite losses ------------------------------------------------------------------------


def test_nan_in_data_stops_training(backend, rng):
    x, ids = blobs(rng, n=32)
    x[20, 1] = np.nan
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:16], ids[:16], epochs=1, verbose=0)  # a clean epoch first
    before = model.get_weights()
    with pytest.raises(NonFiniteLossError, match=r"the loss became nan at epoch 1, batch 2") as e:
        model.fit(x, ids, epochs=3, batch_size=16, shuffle=False, verbose=0)
    assert isinstance(e.value, FloatingPointError)
    assert e.value.history.history == {}  # no epoch finished
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)  # the bad batch updated nothing
    assert not np.array_equal(after[0], before[0])  # the first (clean) batch did train


def test_huge_learning_rate_stops_training(backend, rng):
    x = rng.standard_normal((32, 3)).astype("float32") * 10
    y = rng.standard_normal((32, 1)).astype("float32") * 10
    model = Sequential([Dense(1, input_shape=(3,))])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e6), loss="mse")
    # On the way NumPy reports the float32 overflow as a RuntimeWarning, which this suite's
    # filterwarnings=error would turn into the exception; the test is about what fit raises.
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(NonFiniteLossError, match="try a smaller learning rate") as e:
            model.fit(x, y, epochs=50, batch_size=4, verbose=0)
    finished = e.value.history.history.get("loss", [])
    assert len(finished) < 50 and all(math.isfinite(v) for v in finished)


# -- determinism and batching ---------------------------------------------------------------------


def _seeded_run(seed, x, ids):
    set_random_seed(seed)
    model = small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, ids, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    return model.get_weights(), history.history


def test_set_random_seed_makes_runs_identical(backend, rng):
    n = 12 if EMULATED else 24  # 9 training samples: two batches, the second short
    x = rng.random((n, 8, 8, 1)).astype("float32")
    ids = rng.integers(0, 2, n)
    w1, h1 = _seeded_run(5, x, ids)
    w2, h2 = _seeded_run(5, x, ids)
    w3, _ = _seeded_run(6, x, ids)
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(w1[0], w3[0])


def test_predict_is_batched(backend, rng):
    set_random_seed(1)
    model = Sequential([Input((8, 8, 1), dtype="float64"),
                        Conv2D(3, 3, activation="relu", dtype="float64"),
                        MaxPooling2D(dtype="float64"), Flatten(dtype="float64"),
                        Dense(2, activation="softmax", dtype="float64")])
    x = rng.random((23, 8, 8, 1))
    full = model.predict_on_batch(x)
    for batch_size in (1, 4, 23, 100):
        got = model.predict(x, batch_size=batch_size, verbose=0)
        assert got.shape == (23, 2) and got.dtype == np.float64
        np.testing.assert_allclose(got, full, rtol=1e-12, atol=1e-15)
    assert model.predict(x[:0], verbose=0).shape == (0, 2)


def test_evaluate_is_batch_size_weighted(backend, rng):
    x, ids = blobs(rng, n=23)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    a = model.evaluate(x, ids, batch_size=23, verbose=0)
    b = model.evaluate(x, ids, batch_size=5, verbose=0)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    d = model.evaluate(x, ids, verbose=0, return_dict=True)
    assert set(d) == {"loss", "accuracy"} and d["loss"] == pytest.approx(a[0], rel=1e-6)


def test_epoch_loss_is_the_sample_weighted_mean(backend, rng):
    """23 samples in batches of 10: the short last batch counts for 3 samples, not 10. A learning
    rate of 1e-12 keeps the weights still, so the epoch's loss equals evaluate's."""
    x, ids = blobs(rng, n=23)
    model = mlp()
    model.compile(optimizer=optimizers.SGD(1e-12), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    batch_losses = [model.test_on_batch(x[i:i + 10], ids[i:i + 10])[0] for i in (0, 10, 20)]
    assert max(batch_losses) - min(batch_losses) > 0.01  # the weighting matters
    history = model.fit(x, ids, batch_size=10, shuffle=False, verbose=0)
    loss, accuracy = model.evaluate(x, ids, verbose=0)
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-6)
    assert history.history["accuracy"][0] == pytest.approx(accuracy)


def test_train_and_test_on_batch(backend, rng):
    x, ids = blobs(rng, n=16)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    loss, accuracy = model.test_on_batch(x, ids)
    assert loss == pytest.approx(model.evaluate(x, ids, verbose=0)[0], rel=1e-6)
    before = model.get_weights()
    out = model.train_on_batch(x, ids)
    assert out[0] == pytest.approx(loss, rel=1e-6)  # the loss before the update
    assert not np.array_equal(model.get_weights()[0], before[0])


# -- optimizer update rules against hand-written Keras formulas ------------------------------------


def _var(backend, values):
    return Variable(backend.asarray(np.array(values, dtype=np.float64)), name="v")


GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.3, 0.2, 1.0]), np.array([1.5, 0.0, -2.0])]
START = np.array([1.0, -2.0, 0.5])


def _run(backend, opt):
    var = _var(backend, START)
    out = []
    for g in GRADS:
        var.grad = backend.asarray(g.copy())
        opt.apply([var])
        out.append(backend.to_host(var.data).copy())
    return out


def test_adam_update_rule(backend):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    got = _run(backend, optimizers.Adam(lr, b1, b2, eps))
    w, m, v = START.copy(), np.zeros(3), np.zeros(3)
    for t, (g, step) in enumerate(zip(GRADS, got), start=1):
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr_t * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(step, w, rtol=1e-13)


def test_adam_defaults_are_keras():
    opt = optimizers.get("adam")
    assert (opt.learning_rate, opt.beta_1, opt.beta_2, opt.epsilon) == (1e-3, 0.9, 0.999, 1e-7)
    assert optimizers.get("sgd").learning_rate == 0.01
    rms = optimizers.get("rmsprop")
    assert (rms.learning_rate, rms.rho, rms.epsilon) == (1e-3, 0.9, 1e-7)


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update_rule(backend, momentum, nesterov):
    lr = 0.1
    got = _run(backend, optimizers.SGD(lr, momentum, nesterov))
    w, vel = START.copy(), np.zeros(3)
    for g, step in zip(GRADS, got):
        vel = momentum * vel - lr * g
        w = w + (momentum * vel - lr * g if nesterov else vel)
        np.testing.assert_allclose(step, w, rtol=1e-13)


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.5, False), (0.0, True),
                                                (0.5, True)])
def test_rmsprop_update_rule(backend, momentum, centered):
    lr, rho, eps = 0.01, 0.9, 1e-7
    got = _run(backend, optimizers.RMSprop(lr, rho, momentum, eps, centered))
    w, v, avg, mom = START.copy(), np.zeros(3), np.zeros(3), np.zeros(3)
    for g, step in zip(GRADS, got):
        v = rho * v + (1 - rho) * g * g
        denominator = v
        if centered:
            avg = rho * avg + (1 - rho) * g
            denominator = v - avg * avg
        increment = lr * g / np.sqrt(denominator + eps)
        if momentum:
            mom = momentum * mom + increment
            w = w - mom
        else:
            w = w - increment
        np.testing.assert_allclose(step, w, rtol=1e-13)


def test_optimizer_skips_variables_without_gradient(backend):
    var = _var(backend, START)
    opt = optimizers.Adam()
    opt.apply([var])
    np.testing.assert_array_equal(backend.to_host(var.data), START)
    assert opt.iterations == 1


def test_one_optimizer_shared_by_two_models_keeps_their_moments_apart(backend, rng):
    """Keras layer names repeat across models built after clear_session(); an optimizer used on
    both must still keep one set of moments per variable."""
    from fastconv.utils import clear_session

    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    opt = optimizers.Adam(lr, b1, b2, eps)
    first = small_cnn()
    clear_session()
    second = small_cnn()
    assert [w.name for w in first.weights] == [w.name for w in second.weights]
    variables = first.trainable_weights + second.trainable_weights
    # each variable its own gradients, different in the two models: moments that were shared
    # (or keyed by name) would mix them and miss the per-variable values below
    grads = [[rng.standard_normal(var.shape) * (1 + i) for var in variables] for i in range(2)]
    want = [(backend.to_host(var.data).astype(np.float64), np.zeros(var.shape),
             np.zeros(var.shape)) for var in variables]
    for t, step in enumerate(grads, start=1):
        for var, g in zip(variables, step):
            var.grad = backend.asarray(g.astype(var.dtype))
        opt.apply(variables)
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for k, g in enumerate(step):
            w, m, v = want[k]
            g = g.astype(np.float32).astype(np.float64)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            want[k] = (w - lr_t * m / (np.sqrt(v) + eps), m, v)
    assert len(opt._slots) == len(variables) == len(first.trainable_weights) * 2
    for var, (w, m, v) in zip(variables, want):
        slots = opt.slots(var)
        # float32 moments: 1 - beta_2 and the products round to about 1e-5 of the value
        np.testing.assert_allclose(backend.to_host(slots["m"]), m, rtol=1e-4, atol=1e-7,
                                   err_msg=var.name)
        np.testing.assert_allclose(backend.to_host(slots["v"]), v, rtol=1e-4, atol=1e-9,
                                   err_msg=var.name)
        np.testing.assert_allclose(backend.to_host(var.data), w, rtol=1e-5, atol=1e-6,
                                   err_msg=var.name)
