"""The model loader's fuzzing campaign: ``hostile.mutants`` drawn by hypothesis, each file
loaded both ways (``load_model`` and ``load_weights``) with its peak memory measured.

    nice -n 19 python -m tests.campaign.fuzz_loader --examples 100000

prints, after each chunk of inputs, the count of inputs, how each loader answered (loaded /
refused), the largest peak of traced memory and the time taken; any crash, exception other than
``InvalidModelFileError``, unnamed file or peak over the bound stops the run with the input that
caused it (hypothesis shrinks it first). CI runs a sample of the same mutations
(``tests/test_hostile_files.py::test_random_damage_sample``).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import hostile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=1000,
                        help="inputs per hypothesis run (a progress line after each)")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="fastconv-fuzz-")
    base = hostile.base_file(os.path.join(folder, "base.fcm"))
    outcomes = collections.Counter()
    kinds = collections.Counter()
    worst = [0.0, ""]
    start = time.perf_counter()

    def report(final: bool) -> None:
        elapsed = time.perf_counter() - start
        total = sum(kinds.values())
        print(f"{'final' if final else 'so far'}: inputs {total} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); loads {2 * total} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}); crashes 0, "
              f"wrong exception types 0, unnamed files 0, peaks over the bound 0; largest peak "
              f"of traced memory {worst[0] / 2**20:.1f} MiB ({worst[1]}), bound "
              f"{hostile.MEMORY_FACTOR} x file size + {hostile.MEMORY_SLACK >> 20} MiB; "
              f"{elapsed:.0f} s", flush=True)

    chunk = min(args.chunk, args.examples)

    @settings(max_examples=chunk, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        what, blob = data.draw(hostile.mutants(base))
        path = os.path.join(folder, "damaged.fcm")
        with open(path, "wb") as fh:
            fh.write(blob)
        tracemalloc.start()
        try:
            outcome = hostile.check(path, measure_memory=False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        if peak > hostile.MEMORY_FACTOR * len(blob) + hostile.MEMORY_SLACK:
            raise AssertionError(f"peak {peak} bytes for a file of {len(blob)}: {what}")
        if peak > worst[0]:
            worst[:] = [peak, f"a file of {len(blob)} bytes: {what[:100]}"]
        kinds[what.split()[0]] += 1
        for loader, result in outcome.items():
            outcomes[f"{loader} {result}"] += 1

    while sum(kinds.values()) < args.examples:  # chunks, each reported as it ends
        run()
        report(final=False)
    report(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
