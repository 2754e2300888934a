"""Lesson training through ``model.fit`` against a PyTorch eager loop doing the same work, from
the command line, outside the benchmark suite.

The suite measures the same thing in ``bench/test_fit.py`` (section "fit" of the report, with
the summary's 1.5x target); this wrapper runs its two epochs (``bench.lesson.fastconv_fit`` and
``bench.lesson.torch_fit``) alone: one warm-up epoch of each, then ``--repeats`` timed epochs,
PyTorch first (see ``pytest_collection_modifyitems`` in bench/conftest.py on Numba's workers
slowing PyTorch's pool), and prints the best epoch of each in images per second and the ratio.

    python -m bench.fit_timing [--samples 12000] [--repeats 3] [--backend numba-cpu]

Images: the first ``--samples`` MNIST training images where MNIST is found (``$FASTCONV_DATA``
or fastconv's cache), else random images (``bench.lesson.fit_data``).
"""

from __future__ import annotations

import argparse
import os
import time


def _epochs(epoch, repeats: int) -> list[float]:
    epoch()  # warm-up: compilation, autotuning
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--samples", type=int, default=12000, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each")
    parser.add_argument("--backend", default=None,
                        help="fastconv backend (default: fastconv's default backend)")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.repeats < 1:
        parser.error("--samples and --repeats must be at least 1")
    # as in the suite: every epoch runs the kernels it names, none on the compile fallback
    os.environ.setdefault("FASTCONV_BACKGROUND_COMPILE", "0")
    # and every shape is tuned in the warm-up epoch, never inside a timed one
    os.environ.setdefault("FASTCONV_TUNE_COMPILE", "0")

    import torch

    import fastconv

    from .lesson import fastconv_fit, fit_data, reference_weights, torch_fit

    x, ids, source = fit_data(args.samples)
    weights = reference_weights()
    torch_times = _epochs(torch_fit(torch, weights, x, ids), args.repeats)
    backend = args.backend or fastconv.get_backend().name
    with fastconv.use_backend(backend):
        fc_times = _epochs(fastconv_fit(weights, x, ids), args.repeats)

    fc, tt = len(x) / min(fc_times), len(x) / min(torch_times)
    print(f"CPU: {_cpu_model()}; threads: torch {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}; {len(x)} {source}, batch 32")
    print(f"fastconv model.fit ({backend}, accuracy on): {fc:,.0f} img/s (epochs "
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
