"""Numba's machine code goes to fastconv's cache folder, keyed by version, CPU and sources;
nothing is written under the installed package at run time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fastconv
from fastconv.backends import jit_cache

PACKAGE = Path(fastconv.__file__).resolve().parent


def _numba_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


def test_numba_caches_into_fastconvs_folder_not_the_package(tmp_path):
    before = _numba_files(PACKAGE)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(FASTCONV_CACHE_DIR=str(tmp_path), FASTCONV_BACKGROUND_COMPILE="0")
    code = ("from fastconv.backends.numba_cpu import fpenv\n"
            "fpenv._leave(fpenv._enter())\n"  # two small kernels, compiled and cached
            "import numba; print(numba.config.CACHE_DIR)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600, check=True).stdout.strip().splitlines()[-1]
    folder = Path(out)
    assert folder.parent == tmp_path / "numba" and folder.name == jit_cache.sources_key()
    assert _numba_files(folder), "nothing was cached"
    assert _numba_files(PACKAGE) == before  # nothing new beside the sources


def test_the_key_changes_with_any_kernel_source(monkeypatch, tmp_path):
    fake = tmp_path / "fastconv"
    (fake / "backends" / "numba_cpu").mkdir(parents=True)
    helper = fake / "backends" / "numba_cpu" / "microkernel.py"
    helper.write_text("x = 1\n")
    monkeypatch.setattr(jit_cache, "_package_root", lambda: fake)
    first = jit_cache.sources_key()
    helper.write_text("x = 2\n")
    assert jit_cache.sources_key() != first
    monkeypatch.setattr(jit_cache, "__version__", "0.0.0-other")
    helper.write_text("x = 1\n")
    assert jit_cache.sources_key() != first

