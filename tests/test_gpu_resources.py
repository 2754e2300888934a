"""Every numba-cuda kernel compiles for real (NVVM to PTX, ptxas to SASS) for sm_75, sm_80 and
sm_90 in both dtypes, without spilling registers; the committed table lists them all.

The CUDA simulator does not type-check kernels, so this is where a kernel that would not
compile on a GPU fails. It needs no GPU: numba-cuda[cu12] (the test extra) brings NVVM and
ptxas. It runs in the main test process (the simulator must be off).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fastconv.backends import gpu_resources

TABLE = Path(__file__).resolve().parents[1] / "bench" / "RESOURCES-gpu.md"

SAMPLE_LOG = """\
ptxas info    : 8 bytes gmem, 8 bytes cmem[4]
ptxas info    : Compiling entry function '_ZN6kernel1kE' for 'sm_80'
ptxas info    : Function properties for _ZN6kernel1kE
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 4352 bytes smem, 468 bytes cmem[0]
ptxas info    : Compile time = 2.381 ms
"""

def test_the_ptxas_report_is_read_field_by_field():
    (row,) = gpu_resources.parse_ptxas_log(SAMPLE_LOG)
    assert row == {"mangled": "_ZN6kernel1kE", "arch": "sm_80", "registers": 40,
                   "shared_bytes": 4352, "spill_stores": 8, "spill_loads": 4}


@pytest.fixture(scope="module")
def rows():
    return gpu_resources.numba_cuda_rows()


def test_every_kernel_compiles_for_every_architecture_and_dtype(rows):
    from fastconv.backends.numba_cuda import kernels_for_gpu

    names = {k.name for k in kernels_for_gpu()}
    assert len(names) >= 20, sorted(names)  # conv (4 algorithms x 3 passes), pooling, ...
    combos = {(r["kernel"], r["dtype"], r["arch"]) for r in rows}
    assert combos == {(n, d, a) for n in names for d in gpu_resources.DTYPES
                      for a in gpu_resources.ARCHS}
    assert all(r["registers"] > 0 for r in rows)


def test_no_kernel_spills_registers(rows):
    spilling = [f"{r['kernel']} {r['dtype']} {r['arch']}: {r['spill_stores']} B stored, "
                f"{r['spill_loads']} B loaded" for r in rows
                if r["spill_stores"] or r["spill_loads"]]
    assert spilling == []


def test_the_committed_table_lists_every_kernel(rows):
    text = TABLE.read_text()
    missing = sorted({r["kernel"] for r in rows if f"| {r['kernel']} |" not in text})
    assert missing == [], (f"{TABLE.name} lacks {missing}: regenerate it with python -m "
                           f"fastconv.backends.gpu_resources --out bench/RESOURCES-gpu.md")
