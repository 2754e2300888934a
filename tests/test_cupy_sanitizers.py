"""The cupy backend's CUDA C under AddressSanitizer and ThreadSanitizer (emulated run).

For each sanitizer, a subprocess builds the emulated kernels with ``-fsanitize=address`` or
``-fsanitize=thread`` (``FASTCONV_CUPY_SANITIZE``), preloads the sanitizer's runtime into Python
and runs this file as a script: every primitive of the cupy backend once on odd shapes, in
float32 and float64 (``tests/kernel_smoke.py``: the four convolution algorithms in their three
passes, pooling, epilogues, GEMM, Adam, normalisations, random numbers), and the self-test
kernels. The test asserts that the sanitizer reported nothing, that every primitive gave the
numpy backend's values, and that every ``extern "C" __global__`` kernel of every
``kernels/*.cu`` file was launched (so a new source or kernel is covered without editing this
file, and a kernel no primitive reaches is named).

The script then launches two kernels with planted bugs (a missing ``__syncthreads`` and a store
one element past the end), so the test also proves that the sanitizer was active and reports
kernel lines. On a GPU, ``compute-sanitizer`` does this job (``bench/gpu_run.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends.cupy_backend import emulation, loader

ROOT = Path(__file__).resolve().parents[1]
CLEAN_DONE = "---- clean part done ----"

PROBE_SOURCE = textwrap.dedent("""\
    // Kernels with planted bugs: the sanitizers must report them.
    extern "C" __global__ void fc_probe_racy(int n, float* out) {
        __shared__ float s[64];
        s[threadIdx.x] = static_cast<float>(threadIdx.x);
        // __syncthreads() missing: the read below races with another thread's write
        out[threadIdx.x] = s[(threadIdx.x + 1) % n];
    }
    extern "C" __global__ void fc_probe_out_of_bounds(int n, float* out) {
        out[threadIdx.x + n] = 1.0f;  // thread 0 stores one element past the end
    }
    """)

pytestmark = [
    pytest.mark.device("cupy"),
    pytest.mark.skipif(not loader.EMULATED, reason="sanitizer builds are for the CPU emulation; "
                       "on a GPU compute-sanitizer checks the kernels (bench/gpu_run.sh)"),
]


def _runtime(sanitizer: str) -> str | None:
    cxx = emulation.compiler()
    if cxx is None:
        return None
    lib = {"address": "libasan.so", "thread": "libtsan.so"}[sanitizer]
    path = subprocess.run([cxx, f"-print-file-name={lib}"], capture_output=True,
                          text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.parametrize("sanitizer", ["address", "thread"])
def test_every_kernel_is_clean_under_the_sanitizer(sanitizer, tmp_path):
    runtime = _runtime(sanitizer)
    assert runtime is not None, f"g++ has no {sanitizer} sanitizer runtime"
    env = dict(os.environ, FASTCONV_CUPY_EMULATE="1", FASTCONV_CUPY_SANITIZE=sanitizer,
               FASTCONV_BACKEND="numpy", LD_PRELOAD=runtime,
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
               TSAN_OPTIONS="halt_on_error=0:exitcode=66:report_signal_unsafe=0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    out, err = proc.stdout, proc.stderr
    assert CLEAN_DONE in out, f"the clean part did not finish:\n{out[-3000:]}\n{err[-6000:]}"
    clean_out, probe_out = out.split(CLEAN_DONE, 1)
    result = json.loads(clean_out.strip().splitlines()[-1])

    # 1. nothing reported while the backend's kernels ran
    marker = "ERROR: AddressSanitizer" if sanitizer == "address" else \
        "WARNING: ThreadSanitizer"
    clean_err = err.split(CLEAN_DONE, 1)[0]
    assert marker not in clean_err, f"{sanitizer} sanitizer report:\n{clean_err[-8000:]}"
    assert result["sanitizer"] == sanitizer
    # 2. every primitive gave the numpy backend's values (a stray read or write shows there too)
    assert result["mismatches"] == [], (
        f"primitives that disagree with numpy: {result['mismatches']}")
    # 3. every kernel of every source ran
    assert result["not_launched"] == {}, (
        f"kernels no primitive launched: {result['not_launched']}")
    assert "fc_saxpy_f32" in result["launched"] and len(result["sources"]) >= 1
    # 4. the planted bugs were caught, at their lines of the probe source
    probe_err = err.split(CLEAN_DONE, 1)[1] if CLEAN_DONE in err else ""
    assert marker in probe_err and "probe.cu" in probe_err, (
        f"the planted bug was not reported:\n{probe_out[-2000:]}\n{probe_err[-4000:]}")
    if sanitizer == "thread":
        assert "probe.cu:6" in probe_err or "probe.cu:4" in probe_err, probe_err[-4000:]
    else:
        assert "heap-buffer-overflow" in probe_err and "probe.cu:9" in probe_err, \
            probe_err[-4000:]


# -- the script run under the sanitizer ------------------------------------------------------
def _selftests() -> None:
    rng = np.random.default_rng(3)
    for dtype, suffix in ((np.float32, "f32"), (np.float64, "f64")):
        x, y = rng.standard_normal(37).astype(dtype), rng.standard_normal(37).astype(dtype)
        want = 2 * x + y
        loader.get_kernel("selftest.cu", f"fc_saxpy_{suffix}")(
            (2,), (8,), (np.int32(37), dtype(2), x, y))
        assert np.allclose(y, want)
        out = np.zeros(1, dtype)
        loader.get_kernel("selftest.cu", f"fc_block_sum_{suffix}", {"SELFTEST_BLOCK": 8})(
            (3,), (8,), (np.int32(37), x, out))
        assert np.isclose(out[0], x.sum())
    values = rng.integers(-1, 6, 50).astype(np.int32)
    counts = np.zeros(5, np.int32)
    loader.get_kernel("selftest.cu", "fc_histogram_i32")(
        (2,), (8,), (np.int32(50), np.int32(5), values, counts))
    assert counts.sum() == ((values >= 0) & (values < 5)).sum()
    ids = np.zeros(2 * 2 * 3 * 2, np.int32)
    loader.get_kernel("selftest.cu", "fc_grid_ids")((2, 2), (3, 2), (np.uint64(6), ids))


def _main(workdir: str) -> int:
    from tests import kernel_smoke

    mismatches = kernel_smoke.run("cupy")
    _selftests()
    loaded: dict[str, set[str]] = {}
    for module in list(emulation._libraries.values()):
        loaded.setdefault(module.source_name, set()).update(module.kernel_names)
    not_launched = {}
    for source in loader.sources():
        names = loaded.get(source)
        if names is None:  # no primitive loaded this file at all: list what it holds
            names = set(loader.get_module(source).kernel_names) or {"(no kernels found)"}
        missing = sorted(names - emulation.launched)
        if missing:
            not_launched[source] = missing
    print(json.dumps({"sanitizer": loader.SANITIZER, "mismatches": mismatches,
                      "not_launched": not_launched, "launched": sorted(emulation.launched),
                      "sources": loader.sources()}))
    sys.stdout.flush()
    print(CLEAN_DONE, flush=True)
    print(CLEAN_DONE, file=sys.stderr, flush=True)

    probe = Path(workdir) / "probe.cu"
    probe.write_text(PROBE_SOURCE)
    out = np.zeros(8, np.float32)
    loader.get_kernel_at(probe, "fc_probe_racy")((1,), (8,), (np.int32(8), out))
    loader.get_kernel_at(probe, "fc_probe_out_of_bounds")((1,), (1,), (np.int32(8), out))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
