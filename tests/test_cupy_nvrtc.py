"""The cupy backend's CUDA C sources compile with NVRTC for Turing, Ampere and Hopper (no GPU
or driver needed), every kernel they declare is in ptxas's report, and no kernel spills.

cuda-bindings and nvidia-cuda-nvrtc-cu12 are in the test extra: without them these tests fail
(a missing compiler must not pass as a skipped check)."""

from __future__ import annotations

import pytest

from fastconv.backends.cupy_backend import nvrtc


@pytest.fixture(scope="module")
def report():
    try:
        import cuda.bindings.nvrtc  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the NVRTC compile check needs cuda-bindings and nvidia-cuda-nvrtc-cu12 "
                    f"(pip install 'fastconv[nvrtc]', part of the test extra): {exc}")
    return nvrtc.compile_all()


def test_every_source_compiles_for_every_arch(report):
    compiled = {(r["source"], r["arch"]) for r in report}
    wanted = {(p.name, arch) for p in nvrtc.sources() for arch in nvrtc.ARCHS}
    assert wanted <= compiled, f"no report for {sorted(wanted - compiled)}"
    names = {p.name for p in nvrtc.sources()}
    assert {"conv_direct.cu", "conv_implicit_gemm.cu", "conv_winograd.cu", "elementwise.cu",
            "gemm.cu", "normalization.cu", "pool.cu"} <= names


def test_every_declared_kernel_is_reported(report):
    for path in nvrtc.sources():
        declared = nvrtc.declared_kernels(path)
        assert declared, f"{path.name} declares no extern \"C\" kernel"
        for name in declared:
            for variant in nvrtc.variants(path.name):
                for arch in nvrtc.ARCHS:
                    rows = [r for r in report if r["kernel"] == name and r["arch"] == arch
                            and r["source"] == path.name]
                    assert len(rows) == len(nvrtc.variants(path.name)), (name, arch, variant)
                    assert all(r["dtype"] == nvrtc.SUFFIX_DTYPES.get(name[-4:], "") for r in rows)
                    assert all(r["registers"] > 0 for r in rows)


def test_no_kernel_spills(report):
    spilling = [r for r in report if r["spill_stores"] or r["spill_loads"]]
    assert not spilling, "kernels spilling registers:\n" + nvrtc.format_report(spilling)


def test_tiled_kernels_use_static_shared_memory(report):
    tiled = [r for r in report if r["kernel"].startswith(("fc_gemm", "fc_implicit_gemm"))]
    assert len(tiled) == 8 * len(nvrtc.ARCHS)
    assert all(r["shared_bytes"] > 0 for r in tiled)


def test_gpu_launch_sizes_are_the_compiled_defaults():
    """The launchers pass their GPU tile sizes as defines; the sources' #ifndef defaults (what
    this check compiles) are the same numbers."""
    from fastconv.backends.cupy_backend.launch import GPU_CONFIG

    tiles = (nvrtc.kernels_dir() / "gemm_tile.cuh").read_text()
    for name, value in GPU_CONFIG.gemm_defines().items():
        assert f"#define {name} {value}\n" in tiles, name
    for source, name in (("elementwise.cu", "EPILOGUE_THREADS"),
                         ("normalization.cu", "NORM_THREADS")):
        text = (nvrtc.kernels_dir() / source).read_text()
        assert f"#define {name} {GPU_CONFIG.threads_1d} " in text, name


def test_compile_error_names_file_line_and_message(tmp_path, monkeypatch):
    bad = tmp_path / "broken.cu"
    bad.write_text('#include "common.cuh"\n\nextern "C" __global__ void fc_bad_f32(float* x) {\n'
                   "    x[0] = undeclared_name;\n}\n")
    with pytest.raises(nvrtc.NvrtcCompileError) as info:
        nvrtc.compile_source(bad, "sm_80", {"UNUSED": 1})
    message = str(info.value)
    assert "broken.cu:4:" in message and "undeclared_name" in message and "sm_80" in message


def test_report_parser():
    log = ("ptxas info    : Compiling entry function 'fc_x_f64' for 'sm_90'\n"
           "ptxas info    : Function properties for fc_x_f64\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 4096 bytes smem, 400 bytes "
           "cmem[0]\n")
    (row,) = nvrtc.parse_report(log, "sm_90")
    assert row == {"kernel": "fc_x_f64", "dtype": "float64", "arch": "sm_90", "registers": 40,
                   "shared_bytes": 4096, "spill_stores": 4, "spill_loads": 12}
