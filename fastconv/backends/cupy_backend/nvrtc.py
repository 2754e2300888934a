"""Compile check of the cupy backend's CUDA C sources with NVRTC, without a GPU or a driver.

Every ``kernels/*.cu`` file is compiled to a cubin for each architecture in :data:`ARCHS` with
the options CuPy passes to NVRTC (``-ftz=true``, ``--device-as-default-execution-space``, the
architecture) plus ``-I<kernels>``, ``-std=c++17`` and ``--ptxas-options=-v``, so that the
program log carries ptxas's resource report. :func:`compile_all` parses that report into one row
per kernel, dtype and architecture (registers, static shared memory, spills); a compile error
raises :class:`NvrtcCompileError` naming the file, the line and NVRTC's message.

Files compiled with more than one set of defines (the Winograd kernels: F(2x2,3x3) by default,
F(4x4,3x3) through the launcher's defines) are listed in :func:`variants`.

Needs ``cuda-bindings`` and ``nvidia-cuda-nvrtc-cu12`` (``pip install 'fastconv[nvrtc]'``).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: Architectures checked: Turing, Ampere, Hopper.
ARCHS = ("sm_75", "sm_80", "sm_90")

#: NVRTC options CuPy passes (cupy/cuda/compiler.py), besides the architecture.
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

#: ``extern "C" __global__ void name(`` in a source: the kernels a report must list.
KERNEL_DECL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_PROPS = re.compile(r"Function properties for (\w+)")
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_ERROR = re.compile(r"^(?P<file>[^\s(]+)\((?P<line>\d+)\): (?:catastrophic )?error: (?P<msg>.*)$",
                    re.MULTILINE)


class NvrtcCompileError(RuntimeError):
    """A kernel source failed to compile; the message names the file, line and NVRTC's error."""


def kernels_dir() -> Path:
    """The folder of the CUDA C sources (the loader's: the source tree's or the wheel's)."""
    from .loader import kernels_dir

    return kernels_dir()


def sources() -> list[Path]:
    """Every ``.cu`` file of the kernels folder (the emulation's own files excluded)."""
    return sorted(kernels_dir().glob("*.cu"))


def variants(source: str) -> list[dict[str, object]]:
    """The sets of defines a source is compiled with: ``{}`` (its defaults) and any other the
    launchers use (the F(4x4,3x3) transforms of the Winograd kernels)."""
    if source == "conv_winograd.cu":
        from ...winograd import F4x4_3x3
        from .conv import winograd_defines

        return [{}, winograd_defines(F4x4_3x3)]
    return [{}]


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ImportError(
            "the NVRTC compile check needs cuda-bindings and nvidia-cuda-nvrtc-cu12 "
            "(pip install 'fastconv[nvrtc]')") from exc
    return nvrtc


def _check(nvrtc, result, what: str):
    err = result[0]
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC {what} failed: {err.name}")
    return result[1:] if len(result) > 2 else (result[1] if len(result) == 2 else None)


def _log(nvrtc, prog) -> str:
    size = _check(nvrtc, nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
    buf = b" " * size
    _check(nvrtc, nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
    return buf.rstrip(b"\0 ").decode(errors="replace")


def define_lines(defines: dict[str, object] | None) -> str:
    """The ``#define`` lines prepended to a source for ``defines`` (as the loader does)."""
    return "".join(f"#define {k} {v}\n" for k, v in (defines or {}).items())


def compile_source(path: Path, arch: str, defines: dict[str, object] | None = None) -> str:
    """Compile one source to a cubin for ``arch``; returns the program log (ptxas's report)."""
    nvrtc = _nvrtc()
    prefix = define_lines(defines)
    code = prefix + path.read_text()
    prog = _check(nvrtc, nvrtc.nvrtcCreateProgram(code.encode(), path.name.encode(), 0, [], []),
                  "nvrtcCreateProgram")
    options = [*CUPY_OPTIONS, f"-arch={arch}", f"-I{kernels_dir()}", "-std=c++17",
               "--ptxas-options=-v"]
    try:
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
        log = _log(nvrtc, prog)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise NvrtcCompileError(_describe_error(path, log, prefix.count("\n"), arch,
                                                    defines))
        return log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _describe_error(path: Path, log: str, shift: int, arch: str, defines) -> str:
    """'file:line: message' for each error in the log, lines counted in the file itself."""
    lines = []
    for m in _ERROR.finditer(log):
        line = int(m["line"])
        name = m["file"]
        if Path(name).name == path.name:  # the main source: undo the prepended defines
            name, line = str(path), line - shift
        lines.append(f"{name}:{line}: {m['msg']}")
    detail = "\n".join(lines) or log.strip()
    extra = f" with defines {defines}" if defines else ""
    return f"NVRTC failed to compile {path.name} for {arch}{extra}:\n{detail}"


def parse_report(log: str, arch: str) -> list[dict[str, object]]:
    """Rows of ptxas's ``-v`` report: kernel, dtype (from the ``_f32``/``_f64`` suffix), arch,
    registers, shared_bytes, spill_stores, spill_loads."""
    rows: dict[str, dict[str, object]] = {}
    current = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current = m[1]
            rows[current] = {"kernel": current, "dtype": _dtype(current), "arch": m[2],
                             "registers": 0, "shared_bytes": 0, "spill_stores": 0,
                             "spill_loads": 0}
        elif m := _PROPS.search(line):
            current = m[1] if m[1] in rows else current
        elif (m := _SPILLS.search(line)) and current in rows:
            rows[current]["spill_stores"] = int(m[2])
            rows[current]["spill_loads"] = int(m[3])
        elif (m := _USED.search(line)) and current in rows:
            rows[current]["registers"] = int(m[1])
            s = _SMEM.search(line)
            rows[current]["shared_bytes"] = int(s[1]) if s else 0
    for row in rows.values():
        row["arch"] = arch
    return list(rows.values())


#: kernel name suffix -> dtype of its arrays
SUFFIX_DTYPES = {"_f32": "float32", "_f64": "float64", "_i32": "int32"}


def _dtype(kernel: str) -> str:
    return SUFFIX_DTYPES.get(kernel[-4:], "")


def declared_kernels(path: Path) -> list[str]:
    """The ``extern "C" __global__`` kernels a source declares."""
    return KERNEL_DECL.findall(path.read_text())


def compile_all(archs=ARCHS, workers: int = 2) -> list[dict[str, object]]:
    """Compile every source (and variant) for every architecture; one row per kernel, dtype,
    architecture and variant (``variant``: '' for the defaults, else the defines' summary)."""
    jobs = [(path, arch, defines) for path in sources() for defines in variants(path.name)
            for arch in archs]

    def run(job):
        path, arch, defines = job
        rows = parse_report(compile_source(path, arch, defines), arch)
        variant = ",".join(f"{k}={v}" for k, v in defines.items() if not str(v).startswith("{"))
        for row in rows:
            row["source"] = path.name
            row["variant"] = variant
        return rows

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [row for rows in pool.map(run, jobs) for row in rows]


def format_report(rows) -> str:
    """The rows as an aligned text table."""
    head = ("kernel", "variant", "arch", "registers", "shared_bytes", "spill_stores",
            "spill_loads")
    table = [head] + [tuple(str(r[k]) for k in head) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(t, widths)) for t in table)


if __name__ == "__main__":  # python -m fastconv.backends.cupy_backend.nvrtc
    import sys

    sys.stdout.write(format_report(compile_all()) + "\n")
