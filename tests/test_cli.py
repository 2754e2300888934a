"""The ``fastconv`` command: info (with --explain), train-mnist on a subset, and clear errors."""

from __future__ import annotations

import subprocess
import sys

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
