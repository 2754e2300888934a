"""The import rules (fastconv.tools.check_imports): the package passes with its allowlist, and
the checker finds each kind of violation in small synthetic packages."""

from __future__ import annotations

import textwrap

import pytest

from fastconv.tools import check_imports as ci

TIERS = {"": "low", "low": "low", "mid": "mid", "high": "high", "plugins": "mid"}
ORDER = ("high", "mid", "low")


def test_fastconv_passes_its_import_rules():
    result = ci.check()
    assert result.ok, "\n".join(ci.report(result))


def test_every_fastconv_module_has_a_tier():
    modules = ci.scan(ci.PACKAGE_DIR)
    assert len(modules) > 100
    untiered = [m for m in modules if ci.tier_of(m, "fastconv") is None]
    assert untiered == []
    assert ci.tier_of("fastconv", "fastconv") == "tensor"
    assert ci.tier_of("fastconv.backends.numba_cpu.gemm", "fastconv") == "backends"
    assert ci.tier_of("fastconv.io.atomic", "fastconv") == "core"
    assert ci.tier_of("fastconv.saving", "fastconv") == "io"


def test_the_allowlist_names_a_reason_for_each_entry():
    entries = ci.read_allowlist(ci.ALLOWLIST)
    assert entries
    assert all(reason and reason != "TODO" for reason in entries.values())
    assert {key.split(" | ")[0] for key in entries} <= set(ci.KINDS)


def make_package(tmp_path, files: dict[str, str], dependencies=("numpy",)):
    package = tmp_path / "pkg"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    deps = ", ".join(f'"{d}>=1"' for d in dependencies)
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "pkg"\ndependencies = [{deps}]\n\n'
        '[project.optional-dependencies]\nextra = ["h5py>=3"]\n')
    return package


def run(package, allowlist=None):
    return ci.check(package, allowlist=allowlist, tiers=TIERS, order=ORDER)


def keys(result, kind=None):
    return sorted(v.key for v in result.violations if kind is None or v.kind == kind)


def test_a_clean_package_passes(tmp_path):
    package = make_package(tmp_path, {
        "low.py": "import os\nimport numpy as np\n",
        "mid.py": "from . import low\nfrom .low import np\n",
        "high.py": "from pkg.mid import low\nfrom .plugins import tool\n",
        "plugins/__init__.py": "",
        "plugins/tool.py": "from ..low import os\n",
    })
    result = run(package)
    assert result.ok and result.violations == []
    edges = {(i.importer, i.target) for m in result.modules.values() for i in m.imports
             if i.origin == "internal"}
    assert edges == {("pkg.mid", "pkg.low"), ("pkg.high", "pkg.mid"),
                     ("pkg.high", "pkg.plugins.tool"), ("pkg.plugins.tool", "pkg.low")}


def test_a_module_level_cycle(tmp_path):
    package = make_package(tmp_path, {"mid.py": "from . import low\n",
                                      "low.py": "import pkg.mid\n"})
    result = run(package)
    assert keys(result, "cycle") == ["cycle | pkg.low, pkg.mid"]
    assert keys(result, "runtime-cycle") == ["runtime-cycle | pkg.low, pkg.mid"]
    assert keys(result, "upward") == ["upward | pkg.low (low) -> pkg.mid (mid) [module]"]
    assert not result.ok


def test_a_cycle_closed_inside_a_function(tmp_path):
    package = make_package(tmp_path, {
        "mid.py": "from .low import helper\n",
        "low.py": "def helper():\n    from .mid import helper\n    return helper\n",
    })
    result = run(package)
    assert keys(result, "cycle") == []
    assert keys(result, "runtime-cycle") == ["runtime-cycle | pkg.low, pkg.mid"]
    assert keys(result, "function-import") == ["function-import | pkg.low -> pkg.mid"]
    assert keys(result, "upward") == ["upward | pkg.low (low) -> pkg.mid (mid) [function]"]


def test_an_upward_import(tmp_path):
    package = make_package(tmp_path, {"high.py": "", "mid.py": "from .high import x\n"})
    result = run(package)
    assert keys(result) == ["upward | pkg.mid (mid) -> pkg.high (high) [module]"]
    assert result.new[0].where == ("mid.py:1",)


def test_a_function_level_internal_import(tmp_path):
    package = make_package(tmp_path, {
        "low.py": "",
        "mid.py": "class A:\n    def f(self):\n        from . import low\n        return low\n",
    })
    result = run(package)
    assert keys(result) == ["function-import | pkg.mid -> pkg.low"]


def test_optional_dependencies_may_be_imported_in_functions(tmp_path):
    package = make_package(tmp_path, {"low.py": textwrap.dedent("""\
        def read():
            import h5py
            from numba import cuda
            import onnx.helper
            return h5py, cuda, onnx
        """)}, dependencies=("numpy", "numba"))
    result = run(package)
    assert result.ok and result.violations == []
    origins = {i.target: i.origin for i in result.modules["pkg.low"].imports}
    assert origins == {"h5py": "optional", "numba.cuda": "optional", "onnx.helper": "optional"}


def test_required_and_stdlib_imports_in_functions_are_violations(tmp_path):
    package = make_package(tmp_path, {"low.py": textwrap.dedent("""\
        def f():
            import json
            import numpy as np
            import llvmlite.binding
            return json, np, llvmlite
        """)}, dependencies=("numpy", "numba"))
    assert keys(run(package)) == ["function-import | pkg.low -> json",
                                  "function-import | pkg.low -> llvmlite.binding",
                                  "function-import | pkg.low -> numpy"]


def test_imports_for_type_checking_are_skipped(tmp_path):
    package = make_package(tmp_path, {
        "high.py": "",
        "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                  "    from .high import Thing\n",
    })
    assert run(package).violations == []


def test_imports_by_string(tmp_path):
    package = make_package(tmp_path, {
        "high.py": "",
        "mid.py": "",
        "low.py": textwrap.dedent("""\
            import importlib

            REGISTRY = {"a": "pkg.mid", "b": "not.a.module"}

            def load(name):
                return importlib.import_module(REGISTRY[name])

            def tool():
                return __import__("pkg.high")
            """),
    })
    result = run(package)
    assert keys(result, "string-import") == ["string-import | pkg.low -> pkg.high",
                                             "string-import | pkg.low -> pkg.mid"]
    assert keys(result, "upward") == ["upward | pkg.low (low) -> pkg.high (high) [string]",
                                      "upward | pkg.low (low) -> pkg.mid (mid) [string]"]


def test_a_module_without_a_tier(tmp_path):
    package = make_package(tmp_path, {"stray.py": ""})
    assert keys(run(package)) == ["untiered | pkg.stray"]


def test_the_allowlist_only_shrinks(tmp_path):
    package = make_package(tmp_path, {"high.py": "", "mid.py": "from .high import x\n"})
    allowlist = tmp_path / "allow.txt"
    key = "upward | pkg.mid (mid) -> pkg.high (high) [module]"
    allowlist.write_text(f"# known\n\n{key} | mid borrows x from high\n")
    result = run(package, allowlist)
    assert result.ok and result.new == [] and result.stale == []

    (package / "mid.py").write_text("")  # fixed: the entry is stale and must go
    result = run(package, allowlist)
    assert not result.ok and result.stale == [key]

    allowlist.write_text(f"{key}\n")
    with pytest.raises(ValueError, match="kind | subject | reason"):
        run(package, allowlist)


def test_main_reports_and_exits_with_the_status(tmp_path, capsys):
    package = make_package(tmp_path, {"stray.py": ""})
    allowlist = tmp_path / "allow.txt"
    assert ci.main(["--package", str(package), "--allowlist", str(allowlist)]) == 1
    out = capsys.readouterr().out
    assert "untiered | pkg.stray" in out and "import check FAILED" in out

    allowlist.write_text("untiered | pkg.stray | a test module\n")
    assert ci.main(["--package", str(package), "--allowlist", str(allowlist),
                    "--inventory"]) == 0
    out = capsys.readouterr().out
    assert "import check passed (1 allowlisted)" in out
    assert "tree (lines, tier):" in out


def test_strongly_connected_components():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"f"}}
    assert ci.strongly_connected(graph) == [["a", "b", "c"], ["d", "e"]]


def test_dependencies_read_without_tomllib(tmp_path, monkeypatch):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndynamic = ["version"]\n'
                         'dependencies = [\n    "numpy>=1.24",\n    "dask[array]>=2",\n]\n\n'
                         '[project.optional-dependencies]\nextra = ["h5py"]\n')
    expected = ci._dependencies(pyproject)
    monkeypatch.setattr(ci, "tomllib", None)
    assert ci._dependencies(pyproject) == expected == {"numpy", "dask"}
