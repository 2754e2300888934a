"""bfloat16 inference against float32 and onnxruntime, from the command line.

The opt-in bfloat16 inference (``FASTCONV_INFERENCE_PRECISION=bfloat16``, see the README) is not
a row of the benchmark suite, whose inference target is float32. This script measures the
lesson network's ``predict_on_batch`` at ``--batch`` images in float32 and in bfloat16 on
``numba-cpu``, and onnxruntime's float32 session of the same network and weights, in rounds that
alternate the three, and prints the best time of each and the ratios. With ``--accuracy`` it
also trains the lesson network for two epochs on MNIST (seed 1) and compares the two precisions'
predictions on the 10,000 test images.

    python -m bench.bfloat16 [--batch 1000] [--rounds 5] [--accuracy]

MNIST comes from ``$FASTCONV_DATA`` or fastconv's cache (downloaded there if missing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from .fit_timing import _cpu_model


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def speed(batch: int, rounds: int) -> None:
    import numpy as np
    import torch

    import fastconv

    from . import lesson, references

    weights = lesson.reference_weights()
    model = lesson.fastconv_model(weights, compile=False)
    x = lesson.images(batch)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "lesson.onnx")
        lesson.export_onnx(torch, lesson.torch_model(torch, weights), path)
        session = references.ort_session(path)
        xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        runs = {
            "onnxruntime": lambda: session.run(None, {"input": xt}),
            "fastconv float32": lambda: model.predict_on_batch(x),
            "fastconv bfloat16": lambda: _in_bfloat16(fastconv, model, x),
        }
        best = {name: float("inf") for name in runs}
        for _ in range(rounds):
            for name, fn in runs.items():
                best[name] = min(best[name], _best(fn, 5))
    print(f"CPU: {_cpu_model()}; lesson network, batch {batch}, best of {rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:18s} {seconds * 1e3:8.2f} ms  {batch / seconds:10,.0f} img/s")
    ort, f32, bf16 = best["onnxruntime"], best["fastconv float32"], best["fastconv bfloat16"]
    print(f"bfloat16 vs float32: {f32 / bf16:.2f}x; vs onnxruntime: float32 {ort / f32:.2f}x, "
          f"bfloat16 {ort / bf16:.2f}x")


def _in_bfloat16(fastconv, model, x):
    with fastconv.use_inference_precision("bfloat16"):
        return model.predict_on_batch(x)


def accuracy() -> None:
    import numpy as np

    import fastconv
    from fastconv.cli import lesson_model
    from fastconv.datasets import mnist
    from fastconv.utils import set_random_seed, to_categorical

    set_random_seed(1)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    model = lesson_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, to_categorical(y_train, 10), epochs=2, batch_size=32, verbose=0)
    p32 = model.predict(x_test, batch_size=1000, verbose=0)
    with fastconv.use_inference_precision("bfloat16"):
        p16 = model.predict(x_test, batch_size=1000, verbose=0)
    same = int((p32.argmax(1) == p16.argmax(1)).sum())
    print(f"MNIST test accuracy after 2 epochs: float32 {(p32.argmax(1) == y_test).mean():.4f}, "
          f"bfloat16 {(p16.argmax(1) == y_test).mean():.4f}; same predicted class for {same} "
          f"of {len(y_test)}; probabilities at most {np.abs(p16 - p32).max():.1e} apart")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--batch", type=int, default=1000, help="images per prediction")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three runs")
    parser.add_argument("--accuracy", action="store_true",
                        help="also train two epochs on MNIST and compare the predictions")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.rounds < 1:
        parser.error("--batch and --rounds must be at least 1")
    # every prediction runs the numba-cpu kernels it names, none on the compile fallback
    os.environ.setdefault("FASTCONV_BACKGROUND_COMPILE", "0")
    from fastconv.backends.numba_cpu import bfloat16

    if not bfloat16.supported():
        print("this CPU has no AVX512-BF16: bfloat16 inference computes in float32 here")
    speed(args.batch, args.rounds)
    if args.accuracy:
        accuracy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
