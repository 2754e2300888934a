"""The lesson network: a training step at the training batches, inference at batch 1 (latency)
and at the large batch (throughput); PyTorch (same weights) and onnxruntime (PyTorch's copy
exported to ONNX) measured alongside.

fastconv runs ``model.train_on_batch`` and ``model.predict_on_batch`` (host NumPy arrays in and
out, as a user calls them); PyTorch runs forward, cross-entropy, backward and ``Adam.step`` on
tensors prepared before the timed region.
"""

from __future__ import annotations

import os

import pytest

import fastconv

from . import lesson, references, subjects


def model_info(section: str, batch: int) -> dict:
    return {"section": section, "workload": f"lesson-{section}-b{batch}", "batch": batch,
            "images": batch, "shape": f"{batch}x28x28x1"}


def test_train_fastconv(measure, lesson_weights, fc_backend, model_algo, train_batch):
    x = lesson.images(train_batch)
    y = lesson.one_hot(lesson.labels(train_batch))
    with fastconv.use_backend(fc_backend.name), fastconv.use_conv_algo(model_algo):
        model = lesson.fastconv_model(lesson_weights)
        measure(lambda: model.train_on_batch(x, y),
                {**model_info("train", train_batch), **subjects.backend_info(fc_backend,
                                                                               model_algo)})


@pytest.mark.usefixtures("torch_lesson")
def test_train_torch(measure, lesson_weights, torch_dev, train_batch):
    torch, device = torch_dev
    model = lesson.torch_model(torch, lesson_weights, softmax=False, device=device).train()
    optimizer = torch.optim.Adam(model.parameters(), **lesson.ADAM)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = references.nchw(torch, lesson.images(train_batch), device)
    y = torch.from_numpy(lesson.labels(train_batch)).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    measure(step, {**model_info("train", train_batch), "library": "torch",
                   "impl": f"torch-{device}", "device": device,
                   "threads": torch.get_num_threads()})


def test_infer_fastconv(measure, lesson_weights, fc_backend, model_algo, infer_batch):
    x = lesson.images(infer_batch)
    with fastconv.use_backend(fc_backend.name), fastconv.use_conv_algo(model_algo):
        model = lesson.fastconv_model(lesson_weights, compile=False)
        measure(lambda: model.predict_on_batch(x),
                {**model_info("infer", infer_batch), **subjects.backend_info(fc_backend,
                                                                               model_algo)})


def test_infer_torch(measure, lesson_weights, torch_lesson, torch_dev, infer_batch):
    torch, device = torch_dev
    predict = lesson.torch_predictor(torch, torch_lesson, lesson_weights, device, infer_batch)
    measure(predict, {**model_info("infer", infer_batch), "library": "torch",
                      "impl": f"torch-{device}", "device": device,
                      "threads": torch.get_num_threads()})


def test_infer_onnxruntime(measure, lesson_onnx, infer_batch):
    threads = os.cpu_count() or 1
    session = references.ort_session(lesson_onnx, threads)
    x = lesson.images(infer_batch).transpose(0, 3, 1, 2).copy()
    measure(lambda: session.run(None, {"input": x}),
            {**model_info("infer", infer_batch), "library": "onnxruntime",
             "impl": "onnxruntime", "device": "cpu", "threads": threads})
