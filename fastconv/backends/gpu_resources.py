"""Registers, shared memory and spills of every GPU kernel, per architecture, as ``ptxas -v``
reports them, without a GPU.

numba-cuda kernels are compiled to PTX with ``numba.cuda.compile_ptx`` from the signatures they
declare (``numba_cuda.launch.KERNELS``), then assembled by ``ptxas`` (from the
``nvidia-cuda-nvcc-cu12`` wheel, or the system's) for each architecture; the cupy backend's
CUDA C sources report through NVRTC (``cupy_backend.nvrtc``). Each row is a dict: ``kernel``,
``dtype``, ``arch``, ``registers``, ``shared_bytes``, ``spill_stores``, ``spill_loads``.

``python -m fastconv.backends.gpu_resources --out bench/RESOURCES-gpu.md`` writes the committed
table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..io.atomic import atomic_write_bytes

#: Turing (T4), Ampere (A100), Hopper (H100/H200)
ARCHS = ("sm_75", "sm_80", "sm_90")
DTYPES = ("float32", "float64")

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def ptxas_path() -> str:
    """The ``ptxas`` of the nvidia-cuda-nvcc wheel (numba-cuda[cu12]), else one on PATH."""
    spec = importlib.util.find_spec("nvidia.cuda_nvcc")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "ptxas"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("ptxas")
    if found is None:
        raise FileNotFoundError("ptxas was not found: install numba-cuda[cu12] (it brings the "
                                "nvidia-cuda-nvcc-cu12 wheel) or a CUDA toolkit")
    return found


def parse_ptxas_log(log: str) -> list[dict]:
    """Rows (``mangled``, ``arch``, ``registers``, ``shared_bytes``, ``spill_stores``,
    ``spill_loads``) of a ``ptxas -v`` report, one per entry function."""
    rows, current = [], None
    for line in log.splitlines():
        entry = _ENTRY.search(line)
        if entry:
            current = {"mangled": entry.group(1), "arch": entry.group(2), "registers": 0,
                       "shared_bytes": 0, "spill_stores": 0, "spill_loads": 0}
            rows.append(current)
            continue
        if current is None:
            continue
        spills = _SPILLS.search(line)
        if spills:
            current["spill_stores"], current["spill_loads"] = map(int, spills.groups())
        used = _USED.search(line)
        if used:
            current["registers"] = int(used.group(1))
            smem = _SMEM.search(line)
            current["shared_bytes"] = int(smem.group(1)) if smem else 0
    return rows


def assemble(ptx: str, arch: str) -> dict:
    """``ptxas -v`` of one PTX module with one entry function -> its row."""
    with tempfile.TemporaryDirectory(prefix="fastconv-ptxas-") as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run([ptxas_path(), "-v", "--warn-on-spills", f"-arch={arch}",
                               str(source), "-o", os.devnull], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ptxas -arch={arch} failed: {done.stderr.strip()}")
    rows = parse_ptxas_log(done.stderr + done.stdout)
    if len(rows) != 1:
        raise RuntimeError(f"expected one entry function in the ptxas report, got {len(rows)}:"
                           f"\n{done.stderr}")
    return rows[0]


def numba_cuda_rows(archs=ARCHS, dtypes=DTYPES, workers: int | None = None) -> list[dict]:
    """Every numba-cuda kernel (GPU launch sizes) for every architecture and dtype, compiled
    in ``workers`` processes (default: one per core; NVVM holds a per-process lock). Needs the
    simulator off: ``compile_ptx`` is NVVM, not the simulator."""
    from .numba_cuda import kernels_for_gpu

    jobs = [(k.name, dtype, arch) for k in kernels_for_gpu() for dtype in dtypes
            for arch in archs]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [_numba_cuda_row(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(_numba_cuda_row, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


_kernels_by_name: dict = {}


def _numba_cuda_row(job) -> dict:
    """One (kernel, dtype, arch): NVVM to PTX, then ptxas's report."""
    from numba import cuda

    from .numba_cuda import kernels_for_gpu

    name, dtype, arch = job
    if not _kernels_by_name:
        _kernels_by_name.update((k.name, k) for k in kernels_for_gpu())
    kernel = _kernels_by_name[name]
    ptx, _ = cuda.compile_ptx(kernel.pyfunc, kernel.argtypes(dtype),
                              cc=(int(arch[3:-1]), int(arch[-1])))
    report = assemble(ptx, arch)
    row = {"kernel": name, "dtype": dtype}
    row.update({k: v for k, v in report.items() if k != "mangled"})
    return row


def render(tables: dict[str, list[dict]]) -> str:
    """Markdown: per backend, one line per kernel and dtype with registers / shared bytes per
    architecture, and the spills (which must be zero)."""
    lines = ["# GPU kernel resources", "",
             "Registers per thread and static shared memory per block of every kernel, as "
             "`ptxas -v` reports them for each architecture (no GPU is needed to produce this "
             "file: `python -m fastconv.backends.gpu_resources --out bench/RESOURCES-gpu.md`). "
             "A test asserts that no kernel spills registers.", ""]
    for backend, rows in tables.items():
        archs = sorted({r["arch"] for r in rows})
        lines += [f"## {backend}", "",
                  "| kernel | dtype | " + " | ".join(f"{a} regs / smem" for a in archs)
                  + " | spills |",
                  "|---|---|" + "---|" * len(archs) + "---|"]
        grouped: dict[tuple[str, str], dict[str, dict]] = {}
        for r in rows:
            grouped.setdefault((r["kernel"], r["dtype"]), {})[r["arch"]] = r
        for (kernel, dtype), per_arch in sorted(grouped.items()):
            cells = [f"{per_arch[a]['registers']} / {per_arch[a]['shared_bytes']} B"
                     if a in per_arch else "-" for a in archs]
            spills = sum(r["spill_stores"] + r["spill_loads"] for r in per_arch.values())
            lines.append(f"| {kernel} | {dtype} | " + " | ".join(cells) + f" | {spills} |")
        lines.append("")
    return "\n".join(lines)


def collect() -> dict[str, list[dict]]:
    tables = {"numba-cuda": numba_cuda_rows()}
    try:
        from .cupy_backend import nvrtc
    except ImportError:
        return tables
    tables["cupy"] = nvrtc.compile_all()
    return tables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconv.backends.gpu_resources",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    text = render(collect())
    if args.out is None:
        print(text)  # noqa: T201
    else:
        atomic_write_bytes(args.out, (text + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
