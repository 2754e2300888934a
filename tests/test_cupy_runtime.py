"""The cupy backend's runtime: the kernel loader, the CPU emulation of CUDA C, the packaging.

Tests marked ``device`` run the self-test kernels (``kernels/selftest.cu``) through
``loader.get_kernel``: in the emulated run (``FASTCONV_CUPY_EMULATE=1``) on the CPU, on a real GPU
through CuPy; the expected values come from NumPy in float64. The others need no GPU and run in
the main process: compile errors (g++ through the emulation, NVRTC's log), the emulation's disk
cache, the kernel-name scanner and the wheel's contents.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastconv import config
from fastconv.backends.cupy_backend import emulation, loader
from fastconv.backends.cupy_backend.errors import KernelCompileError, KernelLaunchError

ROOT = Path(__file__).resolve().parents[1]
device = pytest.mark.device("cupy")


def _xp():
    if loader.EMULATED:
        return np
    import cupy

    return cupy


def _host(a):
    return a if isinstance(a, np.ndarray) else a.get()


def _launch_errors():
    if loader.EMULATED:
        return (KernelLaunchError,)
    import cupy

    return (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError)


# -- the self-test kernels ---------------------------------------------------------------------
@device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n, grid, block", [(1, (1,), (1,)), (37, (2,), (8,)), (1000, (3,), (32,))])
def test_saxpy_matches_numpy(dtype, n, grid, block):
    xp, rng = _xp(), np.random.default_rng(0)
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    scalar = np.dtype(dtype).type(1.5)
    k = loader.get_kernel("selftest.cu", f"fc_saxpy_{dtype[0]}{dtype[-2:]}")
    y_dev = xp.array(y)  # a copy: the kernel updates it in place
    k(grid, block, (np.int32(n), scalar, xp.asarray(x), y_dev))
    expected = 1.5 * x.astype(np.float64) + y.astype(np.float64)
    eps = np.finfo(dtype).eps  # two roundings of terms up to |1.5 x| + |y|
    np.testing.assert_allclose(_host(y_dev), expected, rtol=0,
                               atol=2 * eps * np.max(np.abs(1.5 * x) + np.abs(y)))


@device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("block, grid, n", [(8, 1, 5), (8, 5, 1001), (32, 3, 4099)])
def test_block_sum_with_shared_memory_barriers_and_atomics(dtype, block, grid, n):
    xp, rng = _xp(), np.random.default_rng(1)
    x = rng.random(n).astype(dtype)
    out = xp.zeros(1, dtype=dtype)
    k = loader.get_kernel("selftest.cu", f"fc_block_sum_{dtype[0]}{dtype[-2:]}",
                          {"SELFTEST_BLOCK": block})
    k((grid,), (block,), (np.int32(n), xp.asarray(x), out))
    np.testing.assert_allclose(_host(out)[0], x.astype(np.float64).sum(),
                               rtol=1e-5 if dtype == "float32" else 1e-12)


@device
def test_integer_atomics_histogram():
    xp, rng = _xp(), np.random.default_rng(2)
    values = rng.integers(-2, 12, size=777).astype(np.int32)
    counts = xp.zeros(10, dtype=np.int32)
    k = loader.get_kernel("selftest.cu", "fc_histogram_i32")
    k((4,), (16,), (np.int32(values.size), np.int32(10), xp.asarray(values), counts))
    np.testing.assert_array_equal(_host(counts), np.bincount(values[(values >= 0) & (values < 10)],
                                                             minlength=10))


@device
def test_three_dimensional_grid_and_block_ids():
    xp = _xp()
    grid, block = (3, 2, 2), (4, 2, 2)
    threads = 4 * 2 * 2
    out = xp.full(3 * 2 * 2 * threads, -1, dtype=np.int32)
    loader.get_kernel("selftest.cu", "fc_grid_ids")(grid, block, (np.uint64(threads), out))
    expected = [(((bz * 8 + by) * 8 + bx) * 8 + tz) * 64 + ty * 8 + tx
                for bz in range(2) for by in range(2) for bx in range(3)
                for tz in range(2) for ty in range(2) for tx in range(4)]
    np.testing.assert_array_equal(_host(out), expected)


# -- argument and launch checks ----------------------------------------------------------------
@device
def test_python_scalars_are_refused_with_the_typed_scalar_to_pass():
    xp = _xp()
    x, y = xp.ones(4, dtype=np.float32), xp.ones(4, dtype=np.float32)
    k = loader.get_kernel("selftest.cu", "fc_saxpy_f32")
    with pytest.raises(TypeError, match=r"fc_saxpy_f32: argument 1 of 4.*pass np\.int32"):
        k((1,), (4,), (4, np.float32(2), x, y))
    with pytest.raises(TypeError, match=r"fc_saxpy_f32: argument 2 of 4.*Python float.*"
                                        r"pass np\.float32"):
        k((1,), (4,), (np.int32(4), 2.0, x, y))
    np.testing.assert_array_equal(_host(y), 1.0)  # nothing ran


@device
@pytest.mark.skipif(not loader.EMULATED, reason="CuPy passes whatever it is given; the "
                    "emulation checks the kernel's declared types (this test's subject)")
def test_emulation_checks_declared_types():
    x = np.ones(4, dtype=np.float32)
    k = loader.get_kernel("selftest.cu", "fc_saxpy_f32")
    with pytest.raises(TypeError, match=r"argument 2 of 4 \(float\): expected np\.float32, "
                                        r"got float64"):
        k((1,), (4,), (np.int32(4), np.float64(2), x, x.copy()))
    with pytest.raises(TypeError, match=r"argument 3 of 4 \(float\*\): expected a float32 array, "
                                        r"got float64"):
        k((1,), (4,), (np.int32(4), np.float32(2), x.astype(np.float64), x))
    with pytest.raises(TypeError, match="not C-contiguous"):
        k((1,), (4,), (np.int32(2), np.float32(2), x[::2], x))
    with pytest.raises(TypeError, match="takes 4 arguments"):
        k((1,), (4,), (np.int32(4), np.float32(2), x))


@device
@pytest.mark.parametrize("grid, block", [((1,), (2048,)), ((1,), (64, 32)), ((0,), (8,)),
                                         ((1,), (1, 1, 128))])
def test_invalid_launch_sizes_are_refused(grid, block):
    xp = _xp()
    x = xp.ones(4, dtype=np.float32)
    k = loader.get_kernel("selftest.cu", "fc_saxpy_f32")
    with pytest.raises(_launch_errors()):
        k(grid, block, (np.int32(4), np.float32(1), x, x))


@device
def test_unknown_sources_and_kernels_are_named():
    with pytest.raises(FileNotFoundError, match="no kernel source 'nope.cu'.*selftest.cu"):
        loader.get_kernel("nope.cu", "fc_saxpy_f32")
    with pytest.raises(KeyError, match="selftest.cu has no kernel 'fc_nope'"):
        loader.get_kernel("selftest.cu", "fc_nope")
    with pytest.raises(ValueError, match="name of a .cu file in kernels/"):
        loader.get_kernel("../selftest.cu", "fc_saxpy_f32")
    with pytest.raises(ValueError, match="not a C identifier"):
        loader.get_kernel("selftest.cu", "fc_saxpy_f32", {"1X": 2})


# -- compiling: errors, the disk cache, kernel names (no GPU needed) ---------------------------
needs_gxx = pytest.mark.skipif(emulation.compiler() is None, reason="g++ is not installed")


@needs_gxx
def test_syntax_error_names_file_line_and_message(tmp_path):
    source = tmp_path / "broken.cu"
    source.write_text(textwrap.dedent("""\
        // a kernel with a mistake on line 4
        extern "C" __global__ void fc_broken(int n, float* x) {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) x[i] = undeclared_name;
        }
        """))
    with pytest.raises(KernelCompileError) as info:
        emulation.load(source, loader.kernels_dir())
    err = info.value
    assert err.file.endswith("broken.cu") and err.line == 4
    assert "undeclared_name" in err.message and "was not declared" in err.message
    assert str(err).startswith(f"{err.file}:4: ") and "undeclared_name" in err.log


@needs_gxx
def test_bad_define_value_fails_at_its_use():
    with pytest.raises(KernelCompileError) as info:
        emulation.load(loader.kernels_dir() / "selftest.cu", loader.kernels_dir(),
                       loader._normalize_defines({"SELFTEST_BLOCK": "8 +"}))
    assert info.value.file == "selftest.cu" and info.value.line is not None
    line = (loader.kernels_dir() / "selftest.cu").read_text().splitlines()[info.value.line - 1]
    assert "SELFTEST_BLOCK" in line


def test_nvrtc_log_is_parsed_into_file_line_and_message():
    log = ('pool.cu(12): error: identifier "y" is undefined\n    x[0] = y;\n           ^\n\n'
           '1 error detected in the compilation of "pool.cu".\n')
    err = loader.nvrtc_error(log, "pool.cu")
    assert (err.file, err.line, err.message) == ("pool.cu", 12, 'identifier "y" is undefined')
    assert str(err).startswith("pool.cu:12: identifier")


def test_nvrtc_compile_error_of_a_real_log():
    """The ``#line`` directive the loader puts after its defines makes NVRTC name the file and
    the line of the source itself."""
    from cuda.bindings import nvrtc

    code = ('#define SELFTEST_BLOCK 8\n#line 1 "broken.cu"\n'
            'extern "C" __global__ void k(float* x) {\n  x[0] = y;\n}\n')
    err, prog = nvrtc.nvrtcCreateProgram(code.encode(), b"kernel.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    (status,) = nvrtc.nvrtcCompileProgram(prog, len(loader.NVRTC_OPTIONS),
                                          [o.encode() for o in loader.NVRTC_OPTIONS])
    assert status == nvrtc.nvrtcResult.NVRTC_ERROR_COMPILATION
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    nvrtc.nvrtcDestroyProgram(prog)
    parsed = loader.nvrtc_error(buf.decode(errors="replace"), "broken.cu")
    assert (parsed.file, parsed.line) == ("broken.cu", 2) and '"y"' in parsed.message


@needs_gxx
def test_disk_cache_is_reused_and_keyed_by_defines_and_sanitizer():
    """The session's cache folder (conftest) may hold other builds: an unused define of this
    test's own makes the library a new one."""
    source, kdir = loader.kernels_dir() / "selftest.cu", loader.kernels_dir()
    defines = loader._normalize_defines({"SELFTEST_BLOCK": 16,
                                         "FC_CACHE_PROBE": os.urandom(6).hex()})
    before = emulation.compilations
    first = emulation.load(source, kdir, defines)
    assert emulation.compilations == before + 1
    assert first.path.parent == config.cache_dir() / "cupy-emulation"
    stamp = first.path.stat().st_mtime_ns
    emulation.clear_memory()  # as a new process would: only the disk cache is left
    second = emulation.load(source, kdir, defines)
    assert emulation.compilations == before + 1, "the second load compiled again"
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert second is not first
    assert [p.name for p in first.path.parent.iterdir() if p.name.startswith(".")] == []
    # the library works, and another define is another library
    x, out = np.arange(40, dtype=np.float64), np.zeros(1)
    second.get_function("fc_block_sum_f64")((2,), (16,), (np.int32(40), x, out))
    assert out[0] == x.sum()
    other = emulation._cache_key(source, kdir, loader._normalize_defines({"SELFTEST_BLOCK": 4}),
                                 None)
    sanitized = emulation._cache_key(source, kdir, defines, "address")
    assert len({other, sanitized, emulation._cache_key(source, kdir, defines, None)}) == 3


def test_kernel_names_found_after_macro_expansion():
    pre = textwrap.dedent("""\
        template <typename T> __fc_emu_global__ void templated(T* x) {}
        extern "C" __fc_emu_global__ void fc_a_f32(float* x) { templated<float>(x); }
        extern "C" __fc_emu_global__ void fc_a_f64(double* x) {}
        extern "C" {
        __fc_emu_global__ void fc_in_block(int n) { if (n) { } }
        }
        __fc_emu_global__ void not_extern_c(int n) {}
        extern "C" __fc_emu_global__ void fc_a_f32(float* x);
        """)
    assert emulation.kernel_names(pre) == ["fc_a_f32", "fc_a_f64", "fc_in_block"]


@needs_gxx
def test_macro_generated_kernels_are_launchable(tmp_path):
    source = tmp_path / "macros.cu"
    source.write_text(textwrap.dedent("""\
        template <typename T>
        __device__ void fill(int n, T v, T* x) {
            for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = v;
        }
        #define FILL(SUFFIX, T) \\
            extern "C" __global__ void fc_fill_##SUFFIX(int n, T v, T* x) { fill<T>(n, v, x); }
        FILL(f32, float)
        FILL(f64, double)
        """))
    module = emulation.load(source, loader.kernels_dir())
    x = np.zeros(5)
    module.get_function("fc_fill_f64")((1,), (2,), (np.int32(5), np.float64(3), x))
    np.testing.assert_array_equal(x, 3.0)
    assert "fc_fill_f32(int, float, float*)" in repr(module.get_function("fc_fill_f32"))


@needs_gxx
def test_a_missing_syncthreads_reads_stale_shared_memory(tmp_path):
    """Emulated threads each run to their next barrier before the next thread starts, so a
    kernel missing a ``__syncthreads`` reads stale shared memory every time, not by chance."""
    source = tmp_path / "barrier.cu"
    source.write_text(textwrap.dedent("""\
        template <bool SYNC>
        __device__ void rotate(int n, float v, float* out) {
            __shared__ float s[64];
            s[threadIdx.x] = v + threadIdx.x;
            if (SYNC) __syncthreads();
            out[threadIdx.x] = s[(threadIdx.x + 1) % n];
        }
        extern "C" __global__ void fc_with(int n, float v, float* out) { rotate<true>(n, v, out); }
        extern "C" __global__ void fc_without(int n, float v, float* out) {
            rotate<false>(n, v, out);
        }
        """))
    module = emulation.load(source, loader.kernels_dir())
    n, out = 8, np.zeros(8, np.float32)
    fresh = 200 + (np.arange(n) + 1) % n
    for name in ("fc_with", "fc_without"):
        module.get_function(name)((1,), (n,), (np.int32(n), np.float32(100), out))
        module.get_function(name)((1,), (n,), (np.int32(n), np.float32(200), out))
        if name == "fc_with":
            np.testing.assert_array_equal(out, fresh)
        else:  # every thread but the last read its neighbour's value of the launch before
            np.testing.assert_array_equal(out[:-1], fresh[:-1] - 100)
            assert out[-1] == fresh[-1]


# -- packaging ---------------------------------------------------------------------------------
def test_wheel_ships_every_kernel_source(tmp_path):
    """Build the wheel from a copy of the project (the working tree is left alone), check that
    every kernels/*.cu and *.cuh file and the emulation header are in it, and that the loader
    finds them in the unpacked wheel."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "out")
    for name in ("fastconv", "bench", "kernels"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(project)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("fastconv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [p for p in (ROOT / "kernels").rglob("*") if p.suffix in (".cu", ".cuh", ".h")]
    assert any(p.name == "selftest.cu" for p in expected)
    missing = [str(p.relative_to(ROOT)) for p in expected
               if f"fastconv/kernels/{p.relative_to(ROOT / 'kernels').as_posix()}" not in names]
    assert missing == [], f"kernel sources missing from the wheel: {missing}"

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = textwrap.dedent(f"""\
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, {str(unpacked)!r})
        import fastconv
        from fastconv.backends.cupy_backend import loader
        assert fastconv.__file__.startswith({str(unpacked)!r}), fastconv.__file__
        print(loader.kernels_dir())
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == unpacked / "fastconv" / "kernels"


# -- availability ------------------------------------------------------------------------------
def test_unavailable_reasons_name_the_missing_piece(monkeypatch):
    import importlib.util

    import fastconv.backends.cupy_backend as cupy_backend

    monkeypatch.setattr(cupy_backend, "EMULATED", True)
    monkeypatch.setattr(emulation, "compiler", lambda: None)
    assert "g++" in cupy_backend.unavailable_reason()

    monkeypatch.setattr(cupy_backend, "EMULATED", False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cupy" else real_find_spec(name, *a))
    for driver, expected in ((None, "no CUDA driver (libcuda.so.1 not found)"),
                             (12080, "driver supports CUDA 12.8: pip install 'fastconv[cuda12]' "
                                     "(cupy-cuda12x)"),
                             (13010, "pip install 'fastconv[cuda13]' (cupy-cuda13x)"),
                             (11080, "a newer NVIDIA driver first: this one supports CUDA 11.8")):
        monkeypatch.setattr(cupy_backend, "_driver_version", lambda d=driver: d)
        reason = cupy_backend.unavailable_reason()
        assert expected in reason and "FASTCONV_CUPY_EMULATE=1" in reason, reason


# -- the GPU path, with NVRTC standing in for CuPy -------------------------------------------
class _FakeCupy:
    """Just enough of CuPy for the loader's GPU path: ``RawModule`` compiles with the real NVRTC
    (CuPy's own options added) and raises CuPy's ``CompileException`` with NVRTC's log."""

    def __init__(self, nvrtc):
        import types

        class CompileException(Exception):
            pass

        fake = self

        class RawModule:
            def __init__(self, code, options=()):
                self.code, self.options, self.compiled = code, options, False

            def compile(self):
                opts = [*options_cupy_adds, *self.options]
                err, prog = nvrtc.nvrtcCreateProgram(self.code.encode(), b"kernel.cu", 0, [], [])
                (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts),
                                                      [o.encode() for o in opts])
                _, size = nvrtc.nvrtcGetProgramLogSize(prog)
                log = b" " * size
                nvrtc.nvrtcGetProgramLog(prog, log)
                nvrtc.nvrtcDestroyProgram(prog)
                if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
                    raise CompileException(log.decode(errors="replace"))
                self.compiled = True
                fake.compilations += 1

            def get_function(self, name):
                assert self.compiled
                if f" {name}(" not in self.code:
                    raise RuntimeError("CUDA_ERROR_NOT_FOUND: named symbol not found")
                return lambda grid, block, args, shared_mem=0: fake.launches.append(
                    (name, grid, block, args))

        options_cupy_adds = ("-ftz=true", "--device-as-default-execution-space",
                             "-arch=compute_80")
        self.compilations, self.launches = 0, []
        self.RawModule = RawModule
        self.cuda = types.SimpleNamespace(
            compiler=types.SimpleNamespace(CompileException=CompileException),
            Device=lambda: types.SimpleNamespace(id=0))


def test_gpu_path_compiles_once_and_names_compile_errors(monkeypatch, tmp_path):
    from cuda.bindings import nvrtc

    fake = _FakeCupy(nvrtc)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(loader, "EMULATED", False)
    monkeypatch.setattr(loader, "_modules", {})

    k = loader.get_kernel("selftest.cu", "fc_block_sum_f64", {"SELFTEST_BLOCK": 64})
    assert loader.get_kernel("selftest.cu", "fc_saxpy_f32", {"SELFTEST_BLOCK": 64}) is not None
    assert fake.compilations == 1  # one module per (source, defines, device)
    with pytest.raises(TypeError, match=r"fc_block_sum_f64: argument 1 of 3 .*pass np\.int32"):
        k((1,), (64,), (5, "x", "out"))
    k((1,), (64,), (np.int32(5), "x", "out"))
    assert fake.launches == [("fc_block_sum_f64", (1,), (64,), (np.int32(5), "x", "out"))]
    with pytest.raises(KeyError, match="selftest.cu has no kernel 'fc_nope'"):
        loader.get_kernel("selftest.cu", "fc_nope", {"SELFTEST_BLOCK": 64})

    source = tmp_path / "broken_gpu.cu"
    source.write_text('#include "common.cuh"\n\nextern "C" __global__ void fc_b(float* x) {\n'
                      "    x[0] = SELFTEST_BLOCK + missing;\n}\n")
    with pytest.raises(KernelCompileError) as info:
        loader.get_kernel_at(source, "fc_b", {"SELFTEST_BLOCK": 3})
    assert (info.value.file, info.value.line) == ("broken_gpu.cu", 4)
    assert "missing" in info.value.message and str(info.value).startswith("broken_gpu.cu:4: ")
