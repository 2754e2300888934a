"""``fastconv bench MODEL``: the user's model timed against onnxruntime and Keras, with the
plan's steps broken down."""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import pytest

import fastconv
from fastconv.cli import main
from fastconv.layers import BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D
from fastconv.models import Sequential
from fastconv.tools import model_bench


def small_model():
    model = Sequential([Conv2D(4, 3, input_shape=(9, 7, 2), name="c1"),
                        BatchNormalization(name="bn"), MaxPooling2D(name="pool"),
                        Flatten(name="flat"), Dense(3, name="out")])
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.3 + 0.1
                       for w in model.get_weights()])
    bn = model.get_layer("bn")  # statistics away from 0 and 1, a positive variance
    bn.set_weights([w if i < 3 else np.abs(w) + 0.5 for i, w in enumerate(bn.get_weights())])
    return model


@pytest.fixture
def files(tmp_path):
    import fastconv.onnx

    model = small_model()
    model.save(tmp_path / "m.fcm")
    fastconv.onnx.export(model, tmp_path / "m.onnx")
    model.save(tmp_path / "m.keras")
    return tmp_path


def _run(path, **kwargs):
    with fastconv.use_backend("numpy"):
        return model_bench.bench_model(str(path), batch_size=3, repeat=2, **kwargs)


@pytest.mark.parametrize("name", ["m.fcm", "m.onnx"])
def test_times_fastconv_and_onnxruntime_and_agrees_with_it(files, name):
    result = _run(files / name, references=("onnxruntime",))
    assert result["batch_size"] == 3 and result["backend"] == "numpy"
    assert result["fastconv"]["seconds"] > 0
    (ort,) = result["references"]
    assert ort["name"] == "onnxruntime" and ort["seconds"] > 0
    assert ort["ratio"] == pytest.approx(ort["seconds"] / result["fastconv"]["seconds"])
    assert ort["max_relative_difference"] < 1e-5  # the same model, the same input
    names = [row["layers"] for row in result["steps"]]
    assert names[0][0] in ("c1", "c1_1") or "c1" in names[0][0]
    assert sum(len(n) for n in names) >= 4  # every layer appears, fused ones together
    assert sum(row["share"] for row in result["steps"]) == pytest.approx(1.0)


def test_the_steps_name_the_fused_layers_and_the_algorithm(files):
    result = _run(files / "m.fcm", references=())
    first = result["steps"][0]
    assert first["layers"][:2] == ["c1", "bn"] and first["fused"]  # normalisation folded
    assert first["algorithm"] in ("direct", "im2col", "winograd", "winograd4")
    assert [row["layers"] for row in result["steps"][1:]] == [["pool"], ["flat"], ["out"]]
    assert not any(row["fused"] for row in result["steps"][1:])


def test_without_onnxruntime_it_says_so(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    result = _run(files / "m.fcm", references=("onnxruntime",))
    assert result["references"] == []
    assert result["missing"] == [{"name": "onnxruntime",
                                  "why": "onnxruntime is not installed (pip install onnxruntime)"}]
    assert "onnxruntime  not run: onnxruntime is not installed" in model_bench.format_report(
        result)


def test_keras_times_a_keras_file(files, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    result = _run(files / "m.keras", references=("keras",))
    (ref,) = result["references"]
    assert ref["name"].startswith("keras") and ref["max_relative_difference"] < 1e-5


def test_the_command_prints_and_writes_json_and_plot(files, capsys):
    with fastconv.use_backend("numpy"):
        code = main(["bench", str(files / "m.onnx"), "--batch-size", "2", "--repeat", "2",
                     "--json", str(files / "r.json"), "--plot", str(files / "r.png")])
    assert code == 0
    out = capsys.readouterr().out
    assert "batch 2" in out and "onnxruntime" in out and "step" in out
    data = json.loads((files / "r.json").read_text())
    assert data["batch_size"] == 2 and data["steps"]
    assert (files / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suite_options_are_refused_with_a_model(files, capsys):
    assert main(["bench", str(files / "m.fcm"), "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err


def test_an_output_that_is_the_model_is_refused(files, capsys):
    before = (files / "m.fcm").read_bytes()
    assert main(["bench", str(files / "m.fcm"), "--json", str(files / "m.fcm")]) == 2
    assert "MODEL" in capsys.readouterr().err
    assert (files / "m.fcm").read_bytes() == before


def test_a_pytorch_export_gets_its_nchw_input(tmp_path):
    """PyTorch's files take NCHW: onnxruntime gets the same images, transposed, and the two
    engines agree."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(5, 4)).eval()
    path = tmp_path / "t.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 8, 6),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    result = _run(path, references=("onnxruntime",))
    (ort,) = result["references"]
    assert ort["max_relative_difference"] < 1e-5
