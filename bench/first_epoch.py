"""The first epoch of a fresh install against a warm one, from the command line.

``fastconv train-mnist`` trains the lesson network on MNIST; on a fresh install its first epoch
also compiles every kernel it uses (and whatever autotuning decides to time). This wrapper runs
the same training (the lesson network, Adam, batch 32, the accuracy metric, the test images as
validation data, ``--epochs`` epochs, seed 1) in a new Python process twice, with fastconv's
default settings (background compilation and autotuning as a user gets them):

1. *fresh*: empty ``NUMBA_CACHE_DIR`` and ``FASTCONV_CACHE_DIR`` (nothing compiled or tuned);
2. *warm*: the same folders again, once the first run's compiling process (if any) is done.

It prints each epoch's seconds (validation included, as ``train-mnist`` reports them) and the
ratio of the fresh run's first epoch to the warm run's median epoch; the target is at most 2x.

    python -m bench.first_epoch [--epochs 2] [--train-samples 60000]

MNIST comes from ``$FASTCONV_DATA`` or fastconv's cache (downloaded there if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .fit_timing import _cpu_model

CHILD = """\
import json, sys, time
import fastconv
from fastconv.callbacks import Callback
from fastconv.cli import lesson_model
from fastconv.datasets import mnist
from fastconv.utils import set_random_seed, to_categorical

epochs, samples = int(sys.argv[1]), int(sys.argv[2])
set_random_seed(1)
(x, y), (xt, yt) = mnist.load_data()
x = x[:samples].reshape(-1, 28, 28, 1).astype("float32") / 255.0
xt = xt.reshape(-1, 28, 28, 1).astype("float32") / 255.0
y, yt = to_categorical(y[:samples], 10), to_categorical(yt, 10)


class Seconds(Callback):
    times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


model = lesson_model()
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(xt, yt), verbose=0,
          callbacks=[Seconds()])
print(json.dumps(Seconds.times))
"""

#: settings the benchmark suite or a caller may have set, which a fresh install has at defaults
USER_DEFAULTS = ("FASTCONV_BACKGROUND_COMPILE", "FASTCONV_TUNE_COMPILE", "FASTCONV_AUTOTUNE",
                 "FASTCONV_CONV_ALGO", "FASTCONV_BACKEND")


def run_once(folder: Path, epochs: int, samples: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in USER_DEFAULTS}
    env.update(NUMBA_CACHE_DIR=str(folder / "numba"), FASTCONV_CACHE_DIR=str(folder / "cache"))
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", CHILD, str(epochs), str(samples)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the training process exited with {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run (default 2)")
    parser.add_argument("--train-samples", type=int, default=60000,
                        help="training images per epoch (default: all 60000)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or not 1 <= args.train_samples <= 60000:
        parser.error("--epochs must be at least 1 and --train-samples between 1 and 60000")

    from fastconv.backends import background

    with tempfile.TemporaryDirectory(prefix="fastconv-first-epoch-") as tmp:
        folder = Path(tmp)
        fresh = run_once(folder, args.epochs, args.train_samples)
        if not background.wait(folder / "cache" / background.FOLDER, timeout=900):
            raise RuntimeError("the fresh run's compiling process ran over 900 s")
        warm = run_once(folder, args.epochs, args.train_samples)
    warm_epoch = statistics.median(warm)
    print(f"CPU: {_cpu_model()}; {args.train_samples} MNIST training images, batch 32, "
          f"10000 validation images; load average {os.getloadavg()[0]:.2f}")
    print(f"fresh install: epochs {', '.join(f'{t:.1f}' for t in fresh)} s")
    print(f"warm caches:   epochs {', '.join(f'{t:.1f}' for t in warm)} s")
    print(f"first epoch / warm epoch: {fresh[0] / warm_epoch:.2f}x (target: at most 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
