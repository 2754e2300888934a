"""Scaling: lesson network inference time against batch size, and one convolution layer's
forward time against the thread count (``fastconv.set_num_threads``, ``torch.set_num_threads``;
restored afterwards)."""

from __future__ import annotations

import os

import pytest

import fastconv
from fastconv.backends.base import Backend

from . import lesson, references, subjects
from .test_layers import layer_info


def batch_info(batch: int) -> dict:
    return {"section": "batch", "workload": f"lesson-infer-b{batch}", "batch": batch,
            "images": batch, "shape": f"{batch}x28x28x1"}


def test_batch_fastconv(measure, lesson_weights, fc_backend, model_algo, scaling_batch):
    x = lesson.images(scaling_batch)
    with fastconv.use_backend(fc_backend.name), fastconv.use_conv_algo(model_algo):
        model = lesson.fastconv_model(lesson_weights, compile=False)
        measure(lambda: model.predict_on_batch(x),
                {**batch_info(scaling_batch), **subjects.backend_info(fc_backend, model_algo)})


def test_batch_torch(measure, torch_lesson, lesson_weights, torch_dev, scaling_batch):
    torch, device = torch_dev
    predict = lesson.torch_predictor(torch, torch_lesson, lesson_weights, device, scaling_batch)
    measure(predict, {**batch_info(scaling_batch), "library": "torch",
                      "impl": f"torch-{device}", "device": device,
                      "threads": torch.get_num_threads()})


def check_threads(threads: int) -> None:
    cores = os.cpu_count() or 1
    if threads > cores:
        pytest.skip(f"{threads} threads: this machine has {cores} logical cores")


def threads_info(settings, threads: int) -> dict:
    return {**layer_info(settings.thread_layer, "forward"), "section": "threads",
            "threads": threads}


def test_threads_fastconv(measure, settings, fc_backend, thread_algo, threads):
    check_threads(threads)
    if type(fc_backend).set_num_threads is Backend.set_num_threads:
        pytest.skip(f"backend {fc_backend.name} does not set its thread count (NumPy's BLAS "
                    f"picks its own)")
    subjects.check_algorithm(fc_backend, thread_algo)
    layer = settings.thread_layer
    subjects.check_budget(settings, fc_backend, layer.flops / 1e9)
    previous = fc_backend.num_threads()
    try:
        fc_backend.set_num_threads(threads)
    except ValueError as exc:
        pytest.skip(str(exc))
    try:
        fn, chosen = subjects.conv_fn(fc_backend, layer, thread_algo, "forward",
                                      subjects.conv_arrays(layer))
        measure(fn, {**subjects.backend_info(fc_backend, thread_algo),
                     **threads_info(settings, threads), "algorithms used": chosen})
    finally:
        fc_backend.set_num_threads(previous)


def test_threads_torch(measure, settings, torch_cpu, threads):
    check_threads(threads)
    torch = torch_cpu
    layer = settings.thread_layer
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fn = references.conv_fn(torch, layer, "forward", "cpu", *subjects.conv_arrays(layer))
        measure(fn, {"library": "torch", "impl": "torch-cpu", "device": "cpu",
                     **threads_info(settings, threads)})
    finally:
        torch.set_num_threads(previous)
