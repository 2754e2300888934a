"""The lesson network trained through ``model.fit``, against a PyTorch eager loop doing the same
work: the figure is images per second over a whole epoch.

fastconv: ``model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=True)`` with the
lesson's compile settings (Adam, categorical cross-entropy, the accuracy metric), on every
selected backend (the model algorithm, ``auto`` by default). PyTorch: the same network and
weights (``bench.lesson.torch_model``), Adam with Keras's defaults, cross-entropy on the logits,
the accuracy counted per batch and ``loss.item()`` every step, samples reshuffled each epoch
(``bench.lesson.torch_fit``); it is the reference row and, as every reference, runs before
fastconv's rows (``bench/conftest.py``).

Images: the mode's ``fit_samples`` first MNIST training images where MNIST is found
(``$FASTCONV_DATA`` or fastconv's cache; never downloaded by the benchmark), else as many random
images with random labels (``bench.lesson.fit_data``); the rows record which in ``data``. One
untimed warm-up epoch (compilation, autotuning), then the mode's minimum rounds of one epoch
each: an epoch is longer than the mode's timing target, so that is what the other training rows
get for work of that length too.
"""

from __future__ import annotations

import pytest

import fastconv

from . import lesson, subjects


@pytest.fixture(scope="session")
def fit_data(settings):
    """(x NHWC float32, class ids, what they are) for one epoch of the mode."""
    return lesson.fit_data(settings.fit_samples)


def fit_info(settings, source: str) -> dict:
    n, batch = settings.fit_samples, lesson.FIT_BATCH
    return {"section": "fit", "workload": f"lesson-fit-b{batch}", "batch": batch, "images": n,
            "shape": f"{n}x28x28x1", "data": source}


def test_fit_fastconv(measure, settings, lesson_weights, fit_data, fc_backend, model_algo):
    x, ids, source = fit_data
    with fastconv.use_backend(fc_backend.name), fastconv.use_conv_algo(model_algo):
        epoch = lesson.fastconv_fit(lesson_weights, x, ids)
        measure(epoch, {**fit_info(settings, source),
                        **subjects.backend_info(fc_backend, model_algo)},
                rounds=settings.timing.min_rounds)


@pytest.mark.usefixtures("torch_lesson")
def test_fit_torch(measure, settings, lesson_weights, fit_data, torch_dev):
    torch, device = torch_dev
    x, ids, source = fit_data
    epoch = lesson.torch_fit(torch, lesson_weights, x, ids, device=device)
    measure(epoch, {**fit_info(settings, source), "library": "torch", "impl": f"torch-{device}",
                    "device": device, "threads": torch.get_num_threads()},
            rounds=settings.timing.min_rounds)
