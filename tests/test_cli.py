"""The ``fastconv`` command: info (with --explain), train-mnist on a subset, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv.cli import main


def test_info_lists_backends_algorithms_threads_and_cpu(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in fastconv.backend_names():
        assert name in out
    for algo in ("direct", "im2col", "winograd", "winograd4"):
        assert algo in out
    assert "threads:" in out and "SIMD:" in out and fastconv.__version__ in out


def test_train_mnist_then_explain(mnist_dir, tmp_path, capsys):
    path = tmp_path / "lesson.fcm"
    code = main(["train-mnist", "--epochs", "1", "--train-samples", "600", "--batch-size", "64",
                 "--data", str(mnist_dir), "--save", str(path), "--seed", "0", "--verbose", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and path.exists()
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert 0.5 < accuracy <= 1.0  # 600 images, one epoch: well above chance
    assert main(["info", "--explain", str(path), "--batch-size", "4"]) == 0
    explained = capsys.readouterr().out
    for conv_pass in ("forward", "backward_data", "backward_weight"):
        assert conv_pass in explained
    assert "28x28x1 -> 26x26x32" in explained


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    assert main(["train-mnist", "--backend", "no-such-backend", "--data", str(tmp_path)]) == 2
    assert "unknown backend 'no-such-backend'" in capsys.readouterr().err
    assert main(["info", "--explain", str(tmp_path / "missing.fcm")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "fastconv.cli", "info"], capture_output=True,
                         text=True, timeout=120, check=True)
    assert "backends:" in out.stdout


# -- version, help, parsing --------------------------------------------------------------------

def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastconv {fastconv.__version__}"


def test_python_dash_m_fastconv():
    out = subprocess.run([sys.executable, "-m", "fastconv", "--version"], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == f"fastconv {fastconv.__version__}"


def test_every_option_has_help_and_help_shows_no_markup():
    from fastconv.cli import build_parser

    parser = build_parser()
    commands = _subparsers(parser)
    assert {"info", "predict", "convert", "summary", "train-mnist", "autotune",
            "bench"} <= set(commands)
    for name, sub in [("fastconv", parser), *commands.items()]:
        for action in sub._actions:
            if action.dest in ("help", "command"):
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        text = sub.format_help()
        for markup in ("``", ":class:", ":func:", ".. "):
            assert markup not in text, f"{name} --help shows {markup!r}"


@pytest.mark.parametrize("argv,abbreviated", [
    (["train-mnist", "--epoch", "2"], "--epoch"),
    (["train-mnist", "--train-sample", "10"], "--train-sample"),
    (["info", "--expl", "m.fcm"], "--expl"),
    (["predict", "m.fcm", "x.npy", "--out", "o.npy", "--batch", "4"], "--batch"),
    (["bench", "--qui"], "--qui"),
])
def test_abbreviated_options_are_refused(argv, abbreviated, capsys, monkeypatch):
    from fastconv.datasets import mnist

    monkeypatch.setattr(mnist, "load_data", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and abbreviated in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_train_samples_must_be_positive(value, capsys, monkeypatch):
    """0 used to train on all 60,000 images and -5 on all but the last five."""
    from fastconv.datasets import mnist

    monkeypatch.setattr(mnist, "load_data", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as info:
        main(["train-mnist", "--train-samples", value])
    assert info.value.code == 2
    assert "--train-samples: expected a positive integer" in capsys.readouterr().err


def test_save_into_missing_folder_fails_before_training(tmp_path, capsys, monkeypatch):
    from fastconv.datasets import mnist

    monkeypatch.setattr(mnist, "load_data", lambda *a, **k: pytest.fail("data was loaded"))
    target = tmp_path / "no" / "such" / "model.fcm"
    assert main(["train-mnist", "--save", str(target), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--save" in err and str(tmp_path / "no" / "such") in err and "does not exist" in err
    assert main(["train-mnist", "--save", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_missing_data_folder_is_an_error_not_a_fallback(tmp_path, capsys, monkeypatch):
    from fastconv.datasets import mnist

    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path))  # would have been the fallback
    monkeypatch.setattr(mnist, "load_data", lambda *a, **k: pytest.fail("data was loaded"))
    missing = tmp_path / "nonexistent"
    assert main(["train-mnist", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such folder" in err


def test_data_folder_without_mnist_does_not_fall_back(tmp_path, monkeypatch):
    """An explicit folder is the only place looked in, even when FASTCONV_DATA is set."""
    from fastconv.datasets import mnist

    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "elsewhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(mnist.DatasetNotFoundError) as info:
        mnist.load_data(str(empty), download=False)
    assert str(empty) in str(info.value) and "elsewhere" not in str(info.value)


def test_explain_batch_size_zero_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["info", "--explain", str(tmp_path / "m.fcm"), "--batch-size", "0"])
    assert info.value.code == 2
    assert "--batch-size: expected a positive integer, got 0" in capsys.readouterr().err


# -- predict, convert, summary -----------------------------------------------------------------

def _small_model():
    from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from fastconv.models import Sequential

    return Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(2),
                       Flatten(), Dense(6, activation="softmax")])


@pytest.fixture
def saved(tmp_path):
    model = _small_model()
    path = tmp_path / "small.fcm"
    model.save(path)
    return model, path


def _x(n, seed=0, shape=(8, 8, 1)):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def test_predict_npy_file(saved, tmp_path, capsys):
    model, path = saved
    x = _x(11)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "probs.npy"
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out", str(out),
                 "--batch-size", "4"]) == 0
    assert "11 samples from 1 file" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out), model.predict(x, batch_size=4, verbose=0))


def test_predict_folder_in_name_order_single_samples_and_batches(saved, tmp_path):
    model, path = saved
    folder = tmp_path / "inputs"
    folder.mkdir()
    x = _x(6, seed=1)
    np.save(folder / "b.npy", x[1:4])  # a batch
    np.save(folder / "a.npy", x[0])  # one sample, no batch axis
    np.save(folder / "c.npy", x[4:])
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "o.npy"
    assert main(["predict", str(path), str(folder), "--out", str(out), "--backend",
                 "numpy"]) == 0
    with fastconv.use_backend("numpy"):
        expected = model.predict(x, verbose=0)
    np.testing.assert_array_equal(np.load(out), expected)


def test_predict_top_k_writes_index_and_probability(saved, tmp_path):
    model, path = saved
    x = _x(5, seed=2)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "top.npy"
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out", str(out),
                 "--top-k", "3"]) == 0
    top = np.load(out, allow_pickle=False)
    assert top.shape == (5, 3) and top.dtype.names == ("index", "probability")
    probs = model.predict(x, verbose=0)
    for row, p in zip(top, probs):
        assert list(row["index"]) == list(np.argsort(-p, kind="stable")[:3])
        np.testing.assert_array_equal(row["probability"], p[row["index"]])
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out", str(out),
                 "--top-k", "99"]) == 0
    assert np.load(out).shape == (5, 6)  # k larger than the classes: all of them


def test_predict_on_a_local_dask_cluster(saved, tmp_path):
    import distributed  # noqa: F401 - the test extra installs it: missing is an error
    model, path = saved
    x = _x(40, seed=3)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "o.npy"
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out", str(out),
                 "--scheduler", "local", "--batch-size", "8"]) == 0
    np.testing.assert_array_equal(np.load(out), model.predict(x, batch_size=8, verbose=0))


def test_predict_bad_inputs_one_line_errors(saved, tmp_path, capsys):
    _, path = saved
    out = str(tmp_path / "o.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object),
            allow_pickle=True)
    assert main(["predict", str(path), str(tmp_path / "objects.npy"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "objects.npy" in err and "object array" in err
    np.save(tmp_path / "wrong.npy", _x(3, shape=(9, 9, 1)))
    assert main(["predict", str(path), str(tmp_path / "wrong.npy"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "(None, 8, 8, 1)" in err and "(3, 9, 9, 1)" in err
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert main(["predict", str(path), str(tmp_path / "junk.npy"), "--out", out]) == 2
    assert "junk.npy" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.fcm"
    corrupt.write_bytes(b"PK\x03\x04garbage")
    np.save(tmp_path / "x.npy", _x(2))
    assert main(["predict", str(corrupt), str(tmp_path / "x.npy"), "--out", out]) == 2
    assert str(corrupt) in capsys.readouterr().err
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "missing" / "o.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(path), str(empty), "--out", out]) == 2
    assert "no .npy files" in capsys.readouterr().err
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--out", out, "--backend",
                 "nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_cli_errors_print_one_line_without_traceback(tmp_path):
    corrupt = tmp_path / "model.fcm"
    corrupt.write_bytes(b"hello")
    np.save(tmp_path / "x.npy", _x(1))
    for argv in (["predict", str(corrupt), str(tmp_path / "x.npy"), "--out",
                  str(tmp_path / "o.npy")],
                 ["summary", str(tmp_path / "missing.keras")],
                 ["convert", str(corrupt), str(tmp_path / "m.keras")]):
        run = subprocess.run([sys.executable, "-m", "fastconv", *argv], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 2, run
        assert "Traceback" not in run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fastconv: error:"), run.stderr


def test_convert_between_fcm_and_keras(saved, tmp_path, capsys):
    import h5py  # noqa: F401 - the test extra installs it: missing is an error
    model, path = saved
    keras_file = tmp_path / "m.keras"
    back = tmp_path / "back.fcm"
    assert main(["convert", str(path), str(keras_file)]) == 0
    assert main(["convert", str(keras_file), str(back)]) == 0
    assert "Keras 3" in capsys.readouterr().out
    x = _x(4, seed=5)
    from fastconv.models import load_model

    np.testing.assert_allclose(load_model(back).predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert main(["convert", str(path), str(tmp_path / "m.h5")]) == 2
    assert "does not write" in capsys.readouterr().err
    weights = tmp_path / "m.weights.h5"
    assert main(["convert", str(path), str(weights)]) == 0
    assert "Keras 3 weights" in capsys.readouterr().out
    other = load_model(back)
    other.set_weights([np.zeros_like(w) for w in other.get_weights()])
    other.load_weights(weights)
    np.testing.assert_allclose(other.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert main(["convert", str(path), str(tmp_path / "m.txt")]) == 2
    assert "unknown format '.txt'" in capsys.readouterr().err


def test_convert_to_and_from_onnx(saved, tmp_path):
    import fastconv.onnx  # noqa: F401 - onnx is in the test extra: missing is an error
    model, path = saved
    onnx_file = tmp_path / "m.onnx"
    assert main(["convert", str(path), str(onnx_file)]) == 0
    assert main(["convert", str(onnx_file), str(tmp_path / "back.fcm")]) == 0
    from fastconv.models import load_model

    x = _x(3, seed=6)
    np.testing.assert_allclose(load_model(tmp_path / "back.fcm").predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_summary(saved, capsys):
    model, path = saved
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    for layer in model.layers:
        assert layer.name in out
    assert "Total params" in out


def test_tests_find_mnist_as_the_library_does(mnist_dir, tmp_path):
    """Without FASTCONV_DATA the suite uses MNIST from the user cache, and skips with a clear
    reason only when the cache lacks it too (the README's test command names no folder)."""
    import os
    from pathlib import Path

    from fastconv.datasets import mnist

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTCONV_DATA", "FASTCONV_CACHE_DIR", "XDG_CACHE_HOME")}
    cache = tmp_path / "xdg" / "fastconv" / "datasets" / "mnist"
    cache.mkdir(parents=True)
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
               "tests/test_mnist.py::test_load_data_from_fastconv_data"]
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    empty = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                           timeout=300)
    assert "1 skipped" in empty.stdout and "MNIST not found" in empty.stdout, empty.stdout
    assert str(cache) in empty.stdout
    for name in mnist.FILES:
        (cache / name).symlink_to(mnist_dir / name)
    found = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                           timeout=300)
    assert "1 passed" in found.stdout, found.stdout + found.stderr
