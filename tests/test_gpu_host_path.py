"""The GPU backends' host path: what a launch costs the CPU before the kernel runs.

* numba-cuda: Numba synchronises the host with the stream of every array it imports through the
  CUDA Array Interface (``NUMBA_CUDA_ARRAY_INTERFACE_SYNC``, default 1). fastconv launches on
  the stream CuPy exports, so it turns that off, leaving an explicit environment setting alone
  and never touching the environment (which would make Numba's next compile re-read every
  setting and undo those made in its config module). Unit tests of the configuration, with the
  launch seams (``launch.cuda``, a stand-in ``cupy``) where a GPU would be needed.
* cupy: the loader caches kernel handles per (source, name, defines, device, build mode): a
  second launch neither touches the file system nor builds a kernel object. Checked through a
  stand-in ``cupy`` module (the GPU code path, any machine) and, in the emulated run
  (``FASTCONV_CUPY_EMULATE=1``) and on a GPU, with the real kernels.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from fastconv.backends.cupy_backend import launch as cupy_launch
from fastconv.backends.cupy_backend import loader
from fastconv.backends.numba_cuda import launch as numba_launch

SYNC = numba_launch.CAI_SYNC_VARIABLE


# -- numba-cuda: CUDA Array Interface synchronisation ------------------------------------------
@pytest.fixture
def numba_sync_on(monkeypatch):
    """Numba's default (sync on) in every config module, the variable unset; restored after."""
    modules = numba_launch._numba_config_modules()
    assert modules, "Numba has no CUDA_ARRAY_INTERFACE_SYNC setting"
    for module in modules:
        monkeypatch.setattr(module, "CUDA_ARRAY_INTERFACE_SYNC", 1)
    monkeypatch.delenv(SYNC, raising=False)
    return modules


def test_the_sync_is_turned_off_in_numba_config_not_in_the_environment(numba_sync_on):
    assert numba_launch.array_interface_sync()
    assert numba_launch.configure_array_interface_sync() is True
    assert not numba_launch.array_interface_sync()
    assert all(m.CUDA_ARRAY_INTERFACE_SYNC == 0 for m in numba_sync_on)
    import os

    assert SYNC not in os.environ
    # idempotent
    assert numba_launch.configure_array_interface_sync() is True
    assert not numba_launch.array_interface_sync()


def test_the_setting_survives_numba_reloading_its_config(numba_sync_on):
    import numba.core.config

    numba_launch.configure_array_interface_sync()
    numba.core.config.reload_config()  # what Numba does at every compile
    assert not numba_launch.array_interface_sync()


@pytest.mark.parametrize("value", ["1", "0"])
def test_an_explicit_environment_setting_is_left_alone(numba_sync_on, monkeypatch, value):
    monkeypatch.setenv(SYNC, value)
    assert numba_launch.configure_array_interface_sync() is False
    assert all(m.CUDA_ARRAY_INTERFACE_SYNC == 1 for m in numba_sync_on)


def test_a_first_gpu_compile_applies_it_after_numba_reread_its_settings(numba_sync_on,
                                                                        monkeypatch):
    """The compile may re-read Numba's settings (a changed NUMBA_* variable): the setting is
    applied after it, before the launch."""
    compiled = []

    def jit(signature, **options):
        def compile_(pyfunc):
            for module in numba_sync_on:  # Numba re-reading its settings from the environment
                module.CUDA_ARRAY_INTERFACE_SYNC = 1
            compiled.append(signature)
            return pyfunc
        return compile_

    monkeypatch.setattr(numba_launch, "SIMULATED", False)
    monkeypatch.setattr(numba_launch, "cuda", types.SimpleNamespace(jit=jit))

    def body(x, n):
        pass

    k = numba_launch.Kernel(body, lambda dt: (numba_launch.array(dt, 1), numba_launch.I32),
                            "host_path_probe", {})
    assert k.compiled(np.float32) is body
    assert len(compiled) == 1
    assert not numba_launch.array_interface_sync()


def test_launches_go_to_the_stream_cupy_exports(monkeypatch):
    """CuPy's default stream (pointer 0) is the legacy default stream, whatever Numba's own
    default stream is; any other stream is CuPy's, wrapped."""
    current = types.SimpleNamespace(ptr=0)
    fake_cupy = types.ModuleType("cupy")
    fake_cupy.cuda = types.SimpleNamespace(get_current_stream=lambda: current)
    fake_cuda = types.SimpleNamespace(legacy_default_stream=lambda: "legacy",
                                      default_stream=lambda: "numba-default",
                                      external_stream=lambda ptr: f"external {ptr:#x}")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(numba_launch, "SIMULATED", False)
    monkeypatch.setattr(numba_launch, "cuda", fake_cuda)
    monkeypatch.setattr(numba_launch, "_streams", {})
    assert numba_launch.current_stream() == "legacy"
    current.ptr = 0xBEEF
    assert numba_launch.current_stream() == "external 0xbeef"


@pytest.mark.device("numba-cuda")
@pytest.mark.skipif(numba_launch.SIMULATED, reason="the simulator's arrays have no CUDA Array "
                    "Interface: nothing to synchronise")
def test_the_backend_on_a_gpu_runs_without_the_sync():
    import os

    import fastconv

    fastconv.get_backend("numba-cuda")
    assert numba_launch.array_interface_sync() == bool(os.environ.get(SYNC, "").strip() == "1")


# -- cupy: kernel handles cached ---------------------------------------------------------------
class _FakeCupy:
    """A stand-in ``cupy`` for the loader's GPU path: counts modules compiled and functions
    fetched; ``device`` is the current device."""

    def __init__(self):
        self.device = 0
        self.modules = 0
        self.functions = 0
        fake = self

        class CompileException(Exception):
            pass

        class RawModule:
            def __init__(self, code, options):
                fake.modules += 1
                self.code = code

            def compile(self):
                pass

            def get_function(self, name):
                fake.functions += 1
                return lambda grid, block, args, shared_mem=0: None

        self.module = types.ModuleType("cupy")
        self.module.RawModule = RawModule
        self.module.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDevice=lambda: fake.device),
            Device=lambda: types.SimpleNamespace(id=fake.device),
            compiler=types.SimpleNamespace(CompileException=CompileException))


@pytest.fixture
def fake_gpu_loader(monkeypatch):
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake.module)
    monkeypatch.setattr(loader, "EMULATED", False)
    monkeypatch.setattr(loader, "SANITIZER", None)
    monkeypatch.setattr(loader, "_modules", {})
    monkeypatch.setattr(loader, "_kernels", {})
    return fake


def test_a_second_launch_builds_nothing_and_reads_no_file(fake_gpu_loader, monkeypatch):
    fake = fake_gpu_loader
    first = cupy_launch.kernel("pool.cu", "max_pool_forward", np.float32)
    builds = loader.kernel_builds
    assert (fake.modules, fake.functions) == (1, 1)

    def no_file_access(*args, **kwargs):
        raise AssertionError("a cached launch looked at the kernel source again")

    monkeypatch.setattr(loader, "get_module", no_file_access)
    monkeypatch.setattr(loader, "kernels_dir", no_file_access)
    second = cupy_launch.kernel("pool.cu", "max_pool_forward", np.float32)
    assert second is first
    assert loader.kernel_builds == builds
    assert (fake.modules, fake.functions) == (1, 1)


def test_kernel_handles_are_keyed_by_source_name_defines_and_device(fake_gpu_loader):
    fake = fake_gpu_loader
    gemm = {"TILE_M": 64, "TILE_N": 64, "TILE_K": 8, "THREAD_M": 4, "THREAD_N": 4}
    a = loader.get_kernel("gemm.cu", "fc_gemm_f32", gemm)
    assert loader.get_kernel("gemm.cu", "fc_gemm_f32", dict(gemm)) is a
    assert (fake.modules, fake.functions) == (1, 1)
    # another kernel of the same module: a handle, no compile
    b = loader.get_kernel("gemm.cu", "fc_gemm_f64", gemm)
    assert b is not a and (fake.modules, fake.functions) == (1, 2)
    # other defines: another module
    c = loader.get_kernel("gemm.cu", "fc_gemm_f32", {**gemm, "TILE_K": 16})
    assert c is not a and fake.modules == 2
    # 1 and 1.0 are equal Python values but different #defines
    loader.get_kernel("gemm.cu", "fc_gemm_f32", {**gemm, "TILE_K": 8.0})
    assert fake.modules == 3
    # another device: its own module and handle
    fake.device = 1
    d = loader.get_kernel("gemm.cu", "fc_gemm_f32", gemm)
    assert d is not a and fake.modules == 4
    fake.device = 0
    assert loader.get_kernel("gemm.cu", "fc_gemm_f32", gemm) is a


def test_failures_are_not_cached(fake_gpu_loader):
    with pytest.raises(ValueError, match="C identifier"):
        loader.get_kernel("gemm.cu", "fc_gemm_f32", {"1X": 2})
    with pytest.raises(FileNotFoundError):
        loader.get_kernel("nope.cu", "fc_gemm_f32")
    assert loader._kernels == {}


def test_clear_memory_forgets_the_handles(fake_gpu_loader):
    a = loader.get_kernel("pool.cu", "fc_avg_pool_forward_f32")
    loader.clear_memory()
    assert loader.get_kernel("pool.cu", "fc_avg_pool_forward_f32") is not a
    assert fake_gpu_loader.modules == 2


@pytest.mark.device("cupy")
def test_a_second_launch_reuses_the_handle_of_the_real_kernels(monkeypatch):
    """Emulated run and GPU: the real loader and kernels."""
    first = cupy_launch.kernel("selftest.cu", "saxpy", np.float32)
    builds = loader.kernel_builds

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a cached launch compiled or loaded the module again")

    monkeypatch.setattr(loader, "get_module", no_rebuild)
    monkeypatch.setattr(loader, "_module_at", no_rebuild)
    assert cupy_launch.kernel("selftest.cu", "saxpy", np.float32) is first
    assert loader.kernel_builds == builds
