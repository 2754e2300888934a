"""Lesson training through ``model.fit`` against a PyTorch eager loop doing the same work.

fastconv: ``model.fit(x, y, batch_size=32, epochs=1, verbose=0)`` on the lesson network,
compiled as the lesson does (Adam, categorical cross-entropy, the accuracy metric), after one
warm-up epoch (compilation, autotuning). PyTorch: the same network and weights
(``bench.lesson.torch_model``), Adam with Keras's defaults, cross-entropy on logits, the
accuracy counted per batch, one warm-up epoch. Both shuffle each epoch. The figure is images per
second over whole epochs, the best of ``--repeats`` epochs each, measured alternately in one
process (PyTorch first: see bench/README.md on Numba's workers slowing PyTorch's pool).

    python -m bench.fit_timing [--samples 12000] [--repeats 3]

MNIST comes from ``$FASTCONV_DATA`` or fastconv's cache (fastconv.datasets.mnist).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _torch_epoch(torch, model, opt, x, y, batch: int, rng) -> float:
    loss_fn = torch.nn.CrossEntropyLoss()
    order = rng.permutation(len(x))
    start = time.perf_counter()
    correct = 0
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        xb = torch.from_numpy(x[idx])
        yb = torch.from_numpy(y[idx])
        opt.zero_grad(set_to_none=True)
        logits = model(xb)
        loss = loss_fn(logits, yb)
        loss.backward()
        opt.step()
        correct += int((logits.argmax(1) == yb).sum())
        loss.item()  # the loss reaches the host every step, as in fit's progress logs
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--samples", type=int, default=12000, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each")
    args = parser.parse_args(argv)

    import torch

    from fastconv.datasets import mnist
    from fastconv.utils import to_categorical

    from .lesson import ADAM, fastconv_model, reference_weights, torch_model

    (x_train, y_train), _ = mnist.load_data()
    x = x_train[:args.samples].reshape(-1, 28, 28, 1).astype("float32") / 255.0
    ids = y_train[:args.samples].astype("int64")
    weights = reference_weights()

    tmodel = torch_model(torch, weights, softmax=False)
    topt = torch.optim.Adam(tmodel.parameters(), **ADAM)
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    rng = np.random.default_rng(0)
    _torch_epoch(torch, tmodel, topt, x_nchw, ids, 32, rng)  # warm-up
    torch_times = [_torch_epoch(torch, tmodel, topt, x_nchw, ids, 32, rng)
                   for _ in range(args.repeats)]

    model = fastconv_model(weights, compile=False)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    y = to_categorical(ids, 10)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # warm-up: compilation, autotuning
    fc_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        fc_times.append(time.perf_counter() - start)

    n = len(x)
    fc, tt = n / min(fc_times), n / min(torch_times)
    print(f"CPU: {_cpu_model()}; threads: torch {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"fastconv model.fit (accuracy on): {fc:,.0f} img/s (epochs "
          f"{', '.join(f'{t:.2f}' for t in fc_times)} s)")
    print(f"PyTorch eager loop (accuracy on): {tt:,.0f} img/s (epochs "
          f"{', '.join(f'{t:.2f}' for t in torch_times)} s)")
    print(f"ratio: {fc / tt:.2f}x")
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
