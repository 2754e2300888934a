"""The lesson network on a busy machine: quiet and with busy programs beside it, back to back.

For each setting, a fresh Python process measures the lesson network's training throughput
(``fit``, Adam, batch 32, on random MNIST-shaped images, after a warm-up epoch) and its batch-1
inference latency (median of ``predict_on_batch`` on one image), with fastconv's default
settings; PyTorch's training of the same network (its default threads) is measured the same way.
Each setting runs quiet, then with ``--busy`` processes spinning on the CPU beside it, so the
ratio loaded / quiet says what a busy machine leaves of the speed:

* ``fastconv``: the defaults (``FASTCONV_ADAPTIVE_THREADS=1``);
* ``fastconv, fixed threads``: ``FASTCONV_ADAPTIVE_THREADS=0`` (every parallel kernel on all
  threads, whatever the load);
* ``pytorch``: ``torch.nn`` with the default threads.

    python -m bench.contention [--images 4096] [--busy 2] [--rounds 1]

Run it on an otherwise quiet machine (``uptime``); the report says the CPU and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FASTCONV_CHILD = """\
import json, sys, time
import numpy as np
import fastconv
from fastconv.applications import lesson_model
from fastconv.utils import set_random_seed, to_categorical

images = int(sys.argv[1])
set_random_seed(1)
rng = np.random.default_rng(0)
x = rng.random((images, 28, 28, 1), dtype=np.float32)
y = to_categorical(rng.integers(0, 10, images), 10)
model = lesson_model()
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:512], y[:512], batch_size=32, epochs=1, verbose=0)  # compiles, tunes
start = time.perf_counter()
model.fit(x, y, batch_size=32, epochs=1, verbose=0)
train = images / (time.perf_counter() - start)
one = x[:1]
for _ in range(50):
    model.predict_on_batch(one)
times = []
for _ in range(400):
    t = time.perf_counter()
    model.predict_on_batch(one)
    times.append(time.perf_counter() - t)
print(json.dumps({"train_images_per_s": train,
                  "batch1_ms": 1e3 * sorted(times)[len(times) // 2]}))
"""

TORCH_CHILD = """\
import json, sys, time
import torch
images = int(sys.argv[1])
torch.manual_seed(1)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(64, 64, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    torch.nn.Linear(576, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
x = torch.rand(images, 1, 28, 28)
y = torch.randint(0, 10, (images,))
loss_fn = torch.nn.CrossEntropyLoss()

def epoch(n):
    for i in range(0, n, 32):
        opt.zero_grad()
        loss = loss_fn(net(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()

epoch(512)
start = time.perf_counter()
epoch(images)
train = images / (time.perf_counter() - start)
net.eval()
one = x[:1]
times = []
with torch.no_grad():
    for _ in range(50):
        net(one)
    for _ in range(400):
        t = time.perf_counter()
        net(one)
        times.append(time.perf_counter() - t)
print(json.dumps({"train_images_per_s": train,
                  "batch1_ms": 1e3 * sorted(times)[len(times) // 2]}))
"""

SETTINGS = {
    "fastconv": (FASTCONV_CHILD, {"FASTCONV_ADAPTIVE_THREADS": "1"}),
    "fastconv, fixed threads": (FASTCONV_CHILD, {"FASTCONV_ADAPTIVE_THREADS": "0"}),
    "pytorch": (TORCH_CHILD, {}),
}


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _measure(code: str, env: dict, images: int) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(images)], env={**os.environ, **env},
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(images: int, busy: int, rounds: int, settings=SETTINGS) -> dict:
    results = {}
    for name, (code, env) in settings.items():
        quiet, loaded = [], []
        for _ in range(rounds):
            quiet.append(_measure(code, env, images))
            spinners = _busy(busy)
            try:
                time.sleep(0.5)
                loaded.append(_measure(code, env, images))
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()

        def median(rows, key):
            return statistics.median(r[key] for r in rows)

        results[name] = {
            "quiet_train": median(quiet, "train_images_per_s"),
            "loaded_train": median(loaded, "train_images_per_s"),
            "quiet_batch1_ms": median(quiet, "batch1_ms"),
            "loaded_batch1_ms": median(loaded, "batch1_ms")}
    return results


def report(results: dict, busy: int) -> str:
    lines = [f"| setting | training, quiet | with {busy} busy processes | kept | batch 1, "
             f"quiet | loaded | kept |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['quiet_train']:.0f} img/s | {r['loaded_train']:.0f} img/s | "
            f"{r['loaded_train'] / r['quiet_train']:.2f} | {r['quiet_batch1_ms']:.3f} ms | "
            f"{r['loaded_batch1_ms']:.3f} ms | "
            f"{r['quiet_batch1_ms'] / r['loaded_batch1_ms']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--busy", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=sorted(SETTINGS), action="append")
    args = parser.parse_args(argv)
    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only}
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    results = run(args.images, args.busy, args.rounds, settings)
    print(report(results, args.busy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
