"""The mutation campaign's CI sample (``tests/campaign/mutants``): the catalogue still fits the
tree, and two cheap pure-Python mutants (an autograd backward pass, the ONNX importer's
flatten reorder) are killed by their tests, numpy backend only. The full campaign:
``python -m tests.campaign.mutants run`` (``tests/campaign/README.md``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.campaign.mutants.catalogue import (
    BY_ID,
    FAMILIES,
    HOST_ONLY_FILES,
    MUTANTS,
)
from tests.campaign.mutants.runner import ROOT, Workspace, count_occurrences, select

#: (mutant, the narrower -k this sample runs it with: the cheapest test that kills it)
SAMPLE = (("ops-tanh-grad", "test_gradient and numpy-tanh"),
          ("onnx-flatten-hw-swap", "pytorch_exports_match_pytorch and small_cnn"))


def test_every_search_string_occurs_exactly_once():
    """Catalogue rot: a search string edited away (or duplicated) by a change to the code."""
    bad = {m.id: n for m in MUTANTS if (n := count_occurrences(m)) != 1}
    assert not bad, f"search strings not found exactly once (id: count): {bad}"


def test_catalogue_is_well_formed():
    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    assert len(MUTANTS) >= 40
    assert {m.family for m in MUTANTS} == set(FAMILIES)
    for m in MUTANTS:
        assert m.search != m.replace, m.id
        assert m.description, m.id
        for test in m.tests:
            assert (ROOT / test).is_file(), f"{m.id}: no test file {test}"
        assert set(m.env) <= {"NUMBA_ENABLE_CUDASIM", "FASTCONV_CUPY_EMULATE"}, m.id


def test_host_only_files_define_no_kernel():
    """A mutant of these files reuses the pristine kernel cache: they must compile nothing."""
    for name in HOST_ONLY_FILES:
        source = (ROOT / name).read_text(encoding="utf-8")
        assert not re.search(r"^@(sized_kernel|helper|njit|jit|intrinsic)\b", source, re.M), name


def test_sample_spreads_over_the_families():
    chosen = select(sample=len(FAMILIES), seed=3)
    assert sorted(m.family for m in chosen) == sorted(FAMILIES)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    ws = Workspace(Path(tmp_path_factory.mktemp("mutants")), nice=0)
    ws.prepare()  # also checks that the child imports the copy's fastconv
    return ws


@pytest.mark.parametrize("mutant_id, k", SAMPLE, ids=[s[0] for s in SAMPLE])
def test_sample_mutant_is_killed(workspace, mutant_id, k):
    mutant = dataclasses.replace(BY_ID[mutant_id], k=k)
    path = workspace.tree / mutant.file
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    result = workspace.run(mutant, timeout=120)
    assert result.status == "killed", result
    # the copy's file is put back as it was, time included (kernel caches check it)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
