"""SIGKILL campaign over every writer: a child process writes the same file over and over
(each write a different version), the parent kills it with SIGKILL at a random moment, and the
file left must be whole: it loads, and holds one of the versions the child wrote.

Writers: ``model.save`` to ``.fcm`` and ``.keras``, ``save_weights`` to ``.weights.h5``,
``fastconv convert`` to ``.onnx``, ``fastconv predict --out``, and the autotuning cache
(``autotune.update_entries``).

``python -m tests.campaign.kill_writers --rounds N --seed S`` prints the outcome per writer and
exits non-zero on any damaged file; CI runs one round of each (tests/test_io_safety.py).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

WRITERS = ("fcm", "keras", "weights_h5", "onnx", "predict_out", "autotune")

# Version v of every file is made from a model whose weights are all v (so a loaded file tells
# which version it holds); the child prints "ready" once the first version is on disk.
_CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from fastconv.layers import Conv2D, Dense, Flatten
    from fastconv.models import Sequential

    writer, path, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    ready, sys.stdout = sys.stdout, open(os.devnull, "w")  # the CLI's messages go nowhere
    model = Sequential([Conv2D(8, 3, input_shape=(12, 12, 2)), Flatten(), Dense(600),
                        Dense(3)])

    def version(v):
        model.set_weights([np.full(w.shape, v, w.dtype) for w in model.get_weights()])

    if writer == "onnx" or writer == "predict_out":
        from fastconv.cli import main
        src = os.path.join(folder, "src.fcm")
        x = os.path.join(folder, "x.npy")
        np.save(x, np.ones((64, 12, 12, 2), np.float32))
    if writer == "autotune":
        os.environ["FASTCONV_CACHE_DIR"] = folder
        from fastconv.backends import autotune
    v = 0
    while True:
        v += 1
        version(v)
        if writer == "fcm" or writer == "keras":
            model.save(path)
        elif writer == "weights_h5":
            model.save_weights(path)
        elif writer == "onnx":
            model.save(src)
            assert main(["convert", src, path]) == 0
        elif writer == "predict_out":
            model.save(src)
            code = main(["predict", src, x, "--out", path, "--backend", "numpy"])
            assert code == 0, code
        elif writer == "autotune":
            entries = {f"key{i}": {"version": v, "pad": "x" * 200} for i in range(2000)}
            autotune.update_entries(entries, clear=True, path=autotune.cache_file())
        if v == 1:
            print("ready", file=ready, flush=True)
""")

_NAMES = {"fcm": "m.fcm", "keras": "m.keras", "weights_h5": "m.weights.h5", "onnx": "m.onnx",
          "predict_out": "out.npy", "autotune": "autotune.json"}


def _version_of(writer: str, path: Path, folder: Path) -> int:
    """The version held by the file ``path``; raises if it is damaged."""
    if writer in ("fcm", "keras"):
        from fastconv.models import load_model

        weights = load_model(path, compile=False).get_weights()
    elif writer == "weights_h5":
        from fastconv.layers import Conv2D, Dense, Flatten
        from fastconv.models import Sequential

        model = Sequential([Conv2D(8, 3, input_shape=(12, 12, 2)), Flatten(), Dense(600),
                            Dense(3)])
        model.load_weights(path)
        weights = model.get_weights()
    elif writer == "onnx":
        import fastconv.onnx

        weights = fastconv.onnx.load(path).get_weights()
    elif writer == "predict_out":
        out = np.load(path, allow_pickle=False)
        assert out.shape == (64, 3), out.shape
        assert (out == out[0]).all(), "rows of different versions"  # equal inputs, one model
        return 1
    else:
        import json

        data = json.loads(path.read_text())
        versions = {e["version"] for e in data["entries"].values()}
        assert len(data["entries"]) == 2000 and len(versions) == 1, "mixed or partial entries"
        return versions.pop()
    values = {float(v) for w in weights for v in np.unique(w)}
    assert len(values) == 1, f"mixed versions {sorted(values)[:4]}"
    return int(values.pop())


def kill_once(writer: str, folder: Path, rng: random.Random, timeout: float = 120.0) -> str:
    """One SIGKILL of a writing child; 'ok' or why the file is damaged."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _NAMES[writer]
    env = dict(os.environ, FASTCONV_BACKGROUND_COMPILE="0")
    log = folder / "child.log"

    def why() -> str:
        return repr(log.read_text(errors="replace")[-800:])

    with open(log, "wb") as err:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, writer, str(path),
                                  str(folder)], stdout=subprocess.PIPE, stderr=err, env=env)
    try:
        deadline = time.monotonic() + timeout
        line = child.stdout.readline()  # "ready", or nothing once the child has ended
        if line.strip() != b"ready":
            child.kill()
            child.wait()
            return f"the child did not start: {why()}"
        time.sleep(rng.uniform(0.0, 1.5))
        if child.poll() is not None:
            return f"the child died by itself: {why()}"
        child.send_signal(signal.SIGKILL)
        child.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    try:
        version = _version_of(writer, path, folder)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the defect looked for
        return f"damaged: {type(exc).__name__}: {str(exc)[:300]}"
    return "ok" if version >= 1 else f"unexpected version {version}"


def run(rounds: int, seed: int, folder: Path, writers=WRITERS) -> dict[str, list[str]]:
    rng = random.Random(seed)
    outcomes: dict[str, list[str]] = {}
    for writer in writers:
        outcomes[writer] = [kill_once(writer, folder / writer, rng) for _ in range(rounds)]
    return outcomes


def main(argv=None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run(args.rounds, args.seed, Path(tmp))
    bad = 0
    for writer, results in outcomes.items():
        damaged = [r for r in results if r != "ok"]
        bad += len(damaged)
        print(f"{writer:12s} {len(results) - len(damaged)}/{len(results)} loadable"
              + "".join(f"\n    {r}" for r in damaged))
    print(f"{sum(map(len, outcomes.values()))} kills, {bad} damaged files, "
          f"{time.monotonic() - start:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
