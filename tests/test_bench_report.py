"""The benchmark report's results per CPU type (``bench/report.py``): the CPU slug, the files
``--results-dir`` writes for two CPUs from synthetic records, and the index regenerated from the
per-CPU summaries. No benchmark runs here: the records are made up, with known medians, so every
ratio in the summaries is checked against the value it must have."""

from __future__ import annotations

import json

import pytest
from fastconv.bench import report

AMD = "AMD EPYC 9R14 96-Core Processor"
INTEL = "Intel(R) Xeon(R) Platinum 8480+"


@pytest.mark.parametrize(("model", "slug"), [
    (AMD, "amd-epyc"),
    ("AMD EPYC", "amd-epyc"),
    ("AMD EPYC 7B13 64-Core Processor", "amd-epyc"),
    (INTEL, "intel-xeon"),
    ("Intel(R) Xeon(R) CPU @ 2.20GHz", "intel-xeon"),
    ("INTEL XEON Gold 6430", "intel-xeon"),
    ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "intel-core-i7-8700k"),
    ("AMD Ryzen 9 7950X 16-Core Processor", "amd-ryzen-9-7950x"),
    ("Apple M2 Pro", "apple-m2-pro"),
    ("Neoverse-V2 / Graviton4", "neoverse-v2-graviton4"),
    ("x86_64", "x86-64"),
    ("", "unknown-cpu"),
    (None, "unknown-cpu"),
    ("(R) (TM) @ 3GHz", "unknown-cpu"),
])
def test_cpu_slug(model, slug):
    assert report.cpu_slug(model) == slug


def test_cpu_slug_is_a_file_name():
    slug = report.cpu_slug("Some   Vendor's CPU/Model #9 <x> " + "long " * 30)
    assert slug == slug.lower() and len(slug) <= 48
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not slug.startswith("-") and not slug.endswith("-") and "--" not in slug


# -- synthetic runs -----------------------------------------------------------------------------

def record(section, workload, impl, median, **info):
    library = {"torch-cpu": "torch", "onnxruntime": "onnxruntime"}.get(impl, "fastconv")
    extra = {"section": section, "workload": workload, "impl": impl, "library": library,
             "device": "cpu", "threads": 2, **info}
    if library == "fastconv":
        extra["backend"], extra["algo"] = impl.split("/")
    return {"name": f"test_{section}[{workload}-{impl}]", "extra_info": extra,
            "stats": {"median": median, "iqr": median / 50}}


def run_records(scale: float, *, fit: bool = False) -> list[dict]:
    """A small run: fastconv's times are the references' times / ``scale`` for training, x
    ``scale`` for inference, so the ratios are known."""
    conv = dict(flops=2e9, shape="32x13x13x32", **{"pass": "forward"})
    records = [
        record("train", "lesson-train-b32", "torch-cpu", 0.006, batch=32, images=32),
        record("train", "lesson-train-b32", "numba-cpu/auto", 0.006 / scale, batch=32, images=32),
        record("train", "lesson-train-b32", "numpy/auto", 0.02, batch=32, images=32),
        record("infer", "lesson-infer-b1", "onnxruntime", 1e-4, batch=1, images=1),
        record("infer", "lesson-infer-b1", "numba-cpu/auto", 1e-4 * scale, batch=1, images=1),
        record("infer", "lesson-infer-b1000", "onnxruntime", 0.03, batch=1000, images=1000),
        record("infer", "lesson-infer-b1000", "numba-cpu/auto", 0.03 * scale, batch=1000,
               images=1000),
        # fastconv alone at a larger batch (as the Dask benchmark adds): not the compared batch
        record("infer", "lesson-dask-8192", "numba-cpu/auto", 0.4, batch=8192, images=8192),
        record("conv", "lesson-conv2-b32", "torch-cpu", 0.01, **conv),
        record("conv", "lesson-conv2-b32", "numba-cpu/im2col", 0.01 / scale, **conv),
        record("conv", "lesson-conv2-b32", "numba-cpu/direct", 0.05, **conv),
    ]
    if fit:
        fit_info = dict(batch=32, images=12000, data="MNIST training images")
        records += [record("fit", "lesson-fit-b32", "torch-cpu", 3.0, **fit_info),
                    record("fit", "lesson-fit-b32", "numba-cpu/auto", 2.0, **fit_info),
                    record("fit", "lesson-fit-b32", "numpy/auto", 8.0, **fit_info)]
    return records


def env_for(model: str, date: str, commit: str) -> dict:
    return {"date": date, "git": commit, "mode": "full",
            "cpu": {"model": model, "llvm target": "x", "simd": [], "logical cores": 2,
                    "usable cores": 2, "physical cores": 2}}


AMD_ENV = env_for(AMD, "2026-11-26T11:00:00+00:00", "abc1234")
INTEL_ENV = env_for(INTEL, "2026-11-27T09:30:00+00:00", "def5678")


def by_kind(summary: dict, kind: str) -> list[dict]:
    return [e for e in summary["ratios"] if e["kind"] == kind]


def test_results_dir_for_two_cpus(tmp_path):
    results = tmp_path / "bench"
    _, written = report.write_report(run_records(2.0), AMD_ENV, tmp_path / "out-amd",
                                     results_dir=results)
    assert written == [results / "RESULTS-amd-epyc.md", results / "RESULTS.md"]
    report.write_report(run_records(0.5, fit=True), INTEL_ENV, tmp_path / "out-intel",
                        results_dir=results)

    for slug, out in (("amd-epyc", "out-amd"), ("intel-xeon", "out-intel")):
        text = (results / f"RESULTS-{slug}.md").read_text(encoding="utf-8")
        # the same report as report.md, its images in the CPU's own folder
        own = (tmp_path / out / "report.md").read_text(encoding="utf-8")
        assert text == own.replace("](layers_gflops.png)", f"](results/{slug}/layers_gflops.png)")
        assert f"](results/{slug}/layers_gflops.png)" in text
        assert (results / "results" / slug / "layers_gflops.png").is_file()
        assert (results / "results" / f"{slug}.json").is_file()
    # no run's plot outside its CPU's folder: only the index's plot is shared
    assert [p.name for p in (results / "results").glob("*.png")] == ["cpu_ratios.png"]

    amd = json.loads((results / "results" / "amd-epyc.json").read_text(encoding="utf-8"))
    intel = json.loads((results / "results" / "intel-xeon.json").read_text(encoding="utf-8"))
    assert (amd["cpu"], amd["slug"], amd["date"], amd["commit"]) == (
        AMD, "amd-epyc", "2026-11-26T11:00:00+00:00", "abc1234")
    assert (intel["slug"], intel["commit"]) == ("intel-xeon", "def5678")
    [train] = by_kind(amd, "train")
    assert train["ratio"] == pytest.approx(2.0) and train["target"] == 1.5
    assert train["fastconv"]["impl"] == "numba-cpu/auto"
    assert train["fastconv"]["median_s"] == pytest.approx(0.003)
    assert train["fastconv"]["value"] == pytest.approx(32 / 0.003)
    assert train["reference"] == {"impl": "torch-cpu", "median_s": 0.006,
                                  "value": pytest.approx(32 / 0.006)}
    [infer] = by_kind(amd, "infer")
    assert "batch 1000" in infer["label"]  # the largest batch onnxruntime ran, not 8192
    assert infer["ratio"] == pytest.approx(0.5) and infer["reference"]["impl"] == "onnxruntime"
    [latency] = by_kind(amd, "latency")
    assert latency["ratio"] == pytest.approx(0.5) and latency["unit"] == "ms"
    assert latency["fastconv"]["value"] == pytest.approx(0.2)
    [conv] = by_kind(amd, "conv")
    assert conv["ratio"] == pytest.approx(2.0) and conv["fastconv"]["impl"] == "numba-cpu/im2col"
    assert conv["fastconv"]["value"] == pytest.approx(400.0)  # GFLOP/s
    assert by_kind(amd, "fit") == []
    [fit] = by_kind(intel, "fit")
    assert fit["label"] == "Lesson net model.fit, batch 32 (vs PyTorch)"
    assert fit["ratio"] == pytest.approx(1.5) and fit["target"] == 1.5
    assert fit["fastconv"] == {"impl": "numba-cpu/auto", "median_s": 2.0,
                               "value": pytest.approx(6000.0)}
    assert fit["reference"] == {"impl": "torch-cpu", "median_s": 3.0,
                                "value": pytest.approx(4000.0)}
    assert by_kind(intel, "train")[0]["ratio"] == pytest.approx(0.5)

    index = (results / "RESULTS.md").read_text(encoding="utf-8")
    for model, slug in ((AMD, "amd-epyc"), (INTEL, "intel-xeon")):
        assert f"- **{model}** (`{slug}`)" in index
        assert f"[RESULTS-{slug}.md](RESULTS-{slug}.md)" in index
    assert "commit abc1234" in index and "commit def5678" in index
    header = next(line for line in index.splitlines() if line.startswith("| Benchmark"))
    assert header == f"| Benchmark | Target | {AMD} | {INTEL} |"
    train_row = next(line for line in index.splitlines()
                     if line.startswith("| Lesson net training step"))
    assert train_row.split(" | ")[1:] == [">= 1.5x", "2.00x (10,667 vs 5,333 img/s)",
                                          "0.50x (2,667 vs 5,333 img/s) |"]
    fit_row = next(line for line in index.splitlines() if "model.fit" in line)
    assert fit_row == ("| Lesson net model.fit, batch 32 (vs PyTorch) | >= 1.5x | - | "
                       "1.50x (6,000 vs 4,000 img/s) |")
    # the training figures come first: the step, then model.fit
    labels = [line.split(" | ")[0] for line in index.splitlines() if line.startswith("| Lesson")]
    assert labels[:2] == ["| Lesson net training step, batch 32 (vs PyTorch)",
                          "| Lesson net model.fit, batch 32 (vs PyTorch)"]
    assert "(training step and model.fit 1.5x, inference and latency 1.0x)" in index
    assert "](results/cpu_ratios.png)" in index
    assert (results / "results" / "cpu_ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_rows_in_the_report(tmp_path):
    """model.fit rows: a summary row with the 1.5x target, a table in the lesson network's
    section (every implementation, the ratio to PyTorch's loop, s/epoch), the data named."""
    records = run_records(2.0, fit=True)
    report.write_report(records, AMD_ENV, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    summary = next(line for line in text.splitlines()
                   if line.startswith("| Lesson net model.fit"))
    assert summary == ("| Lesson net model.fit, batch 32 (vs PyTorch) | numba-cpu/auto | "
                       "6,000 img/s | torch-cpu | 4,000 img/s | 1.50x | >= 1.5x | yes |")
    lesson = text[text.index("## Lesson network"):]
    end = lesson.find("\n## ", 1)
    lesson = lesson if end < 0 else lesson[:end]
    assert lesson.index("### Training step") < lesson.index("### Training through model.fit") \
        < lesson.index("### Inference")
    fit = lesson[lesson.index("### Training through model.fit"):lesson.index("### Inference")]
    assert "on MNIST training images" in fit
    rows = [line for line in fit.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| Batch | Images per epoch | Implementation | Median s/epoch | IQR s | "
                       "img/s | s/epoch (60,000 img) | vs PyTorch |")
    assert rows[1:] == [
        "| 32 | 12,000 | numba-cpu/auto | 2.00 | 0.04 | 6,000 | 10.0 | 1.50x |",
        "|  |  | numpy/auto | 8.00 | 0.16 | 1,500 | 40.0 | 0.38x |",
        "|  |  | torch-cpu | 3.00 | 0.06 | 4,000 | 15.0 |  |",
    ]
    # below the target: not met
    slow = [dict(r, stats={"median": 2.5, "iqr": 0.0})
            if r["extra_info"]["impl"] == "numba-cpu/auto" and r["extra_info"]["section"] == "fit"
            else r for r in records]
    report.write_report(slow, AMD_ENV, tmp_path / "slow")
    text = (tmp_path / "slow" / "report.md").read_text(encoding="utf-8")
    summary = next(line for line in text.splitlines()
                   if line.startswith("| Lesson net model.fit"))
    assert summary.endswith("| 1.20x | >= 1.5x | **no** |")


def test_fit_rows_alone_and_without_reference(tmp_path):
    """A run of the fit benchmark only still has its section; without PyTorch's row the
    summary shows fastconv's figure and no ratio."""
    fit_only = [r for r in run_records(2.0, fit=True) if r["extra_info"]["section"] == "fit"]
    report.write_report(fit_only, AMD_ENV, tmp_path / "a")
    text = (tmp_path / "a" / "report.md").read_text(encoding="utf-8")
    assert "## Lesson network\n\n### Training through model.fit" in text
    assert "### Training step" not in text and "### Inference" not in text
    no_torch = [r for r in fit_only if r["extra_info"]["library"] != "torch"]
    [target] = report.summary_targets(report.Results(no_torch))
    assert target.kind == "fit" and target.ratio is None and target.reference is None
    assert target.row.impl == "numba-cpu/auto"


def test_index_regenerates_idempotently(tmp_path):
    results = tmp_path / "bench"
    report.write_report(run_records(2.0), AMD_ENV, tmp_path / "a", results_dir=results)
    report.write_report(run_records(0.5, fit=True), INTEL_ENV, tmp_path / "i",
                        results_dir=results)
    index, plot = results / "RESULTS.md", results / "results" / "cpu_ratios.png"
    first = index.read_bytes(), plot.read_bytes()
    assert report.write_index(results) == index
    assert (index.read_bytes(), plot.read_bytes()) == first
    # rewriting one CPU's results from the same run changes nothing either
    report.write_report(run_records(2.0), AMD_ENV, tmp_path / "a", results_dir=results)
    assert (index.read_bytes(), plot.read_bytes()) == first
    # a newer run of one CPU replaces its column; the other CPU's stays
    newer = env_for(AMD, "2026-11-28T08:00:00+00:00", "0123abc")
    report.write_report(run_records(4.0), newer, tmp_path / "a", results_dir=results)
    text = index.read_text(encoding="utf-8")
    assert "commit 0123abc" in text and "commit abc1234" not in text and "commit def5678" in text
    assert "4.00x" in text and plot.read_bytes() != first[1]
    # the index follows the summaries found: without the Intel one, only AMD is listed
    (results / "results" / "intel-xeon.json").unlink()
    report.write_index(results)
    text = index.read_text(encoding="utf-8")
    assert "intel-xeon" not in text and INTEL not in text and "amd-epyc" in text


def test_index_ignores_other_json_and_names_a_broken_summary(tmp_path):
    results = tmp_path / "bench"
    report.write_report(run_records(2.0), AMD_ENV, tmp_path / "a", results_dir=results)
    (results / "results" / "notes.json").write_text('{"something": "else"}', encoding="utf-8")
    report.write_index(results)
    assert "**AMD EPYC" in (results / "RESULTS.md").read_text(encoding="utf-8")
    broken = results / "results" / "zz-cpu.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="zz-cpu.json"):
        report.write_index(results)


def test_index_without_training_or_inference_draws_no_plot(tmp_path):
    results = tmp_path / "bench"
    conv_only = [r for r in run_records(2.0) if r["extra_info"]["section"] == "conv"]
    report.write_report(conv_only, AMD_ENV, tmp_path / "a", results_dir=results)
    text = (results / "RESULTS.md").read_text(encoding="utf-8")
    assert "Conv forward lesson-conv2-b32" in text and "cpu_ratios.png" not in text
    assert not (results / "results" / "cpu_ratios.png").exists()


def test_stale_plots_of_a_cpu_are_removed(tmp_path):
    results = tmp_path / "bench"
    report.write_report(run_records(2.0), AMD_ENV, tmp_path / "a", results_dir=results)
    layers = results / "results" / "amd-epyc" / "layers_gflops.png"
    assert layers.is_file()
    no_conv = [r for r in run_records(2.0) if r["extra_info"]["section"] != "conv"]
    report.write_report(no_conv, AMD_ENV, tmp_path / "b", results_dir=results)
    assert not layers.exists()
    assert "layers_gflops.png" not in (results / "RESULTS-amd-epyc.md").read_text(
        encoding="utf-8")


def test_report_command_keeps_results_md_and_adds_results_dir(tmp_path, capsys):
    data = {"benchmarks": run_records(2.0),
            "fastconv": {"environment": INTEL_ENV, "skipped": [["test_x", "no GPU"]]}}
    source = tmp_path / "benchmark.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    single = tmp_path / "single" / "RESULTS.md"
    single.parent.mkdir()
    results = tmp_path / "bench"
    assert report.main([str(source), "--out", str(tmp_path / "out"), "--results-md",
                        str(single), "--results-dir", str(results)]) == 0
    printed = capsys.readouterr().out
    assert f"results: {single}" in printed and f"results: {results / 'RESULTS.md'}" in printed
    # --results-md as before: the report, its plots in results/ next to it
    text = single.read_text(encoding="utf-8")
    assert "](results/layers_gflops.png)" in text and "no GPU" in text
    assert (single.parent / "results" / "layers_gflops.png").is_file()
    assert (results / "RESULTS-intel-xeon.md").read_text(encoding="utf-8") == text.replace(
        "](results/", "](results/intel-xeon/")
    assert (results / "results" / "intel-xeon.json").is_file()


def test_results_md_cannot_be_the_index(tmp_path):
    with pytest.raises(ValueError, match="index"):
        report.write_report(run_records(2.0), AMD_ENV, tmp_path / "out",
                            results_md=tmp_path / "bench" / "RESULTS.md",
                            results_dir=tmp_path / "bench")


def test_fastconv_bench_passes_results_dir(monkeypatch, tmp_path):
    import pytest_benchmark  # noqa: F401 - `fastconv bench` needs it; the test extra has it

    from fastconv import cli

    commands = []

    class Done:
        returncode = 0

    monkeypatch.setattr("subprocess.run", lambda command, **kw: commands.append(command) or Done)
    args = cli.build_parser().parse_args(["bench", "--quick", "--out", str(tmp_path / "out"),
                                          "--results-dir", str(tmp_path / "bench")])
    assert cli.cmd_bench(args) == 0
    [command] = commands
    i = command.index("--results-dir")
    assert command[i + 1] == str((tmp_path / "bench").resolve())
    assert "--results-md" not in command
