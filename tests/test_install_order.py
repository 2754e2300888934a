"""The README's commands, in the README's order, leave a working install, and nothing is written
under the installed package at run time.

A user who follows *Set up and train* and then *Run the tests* runs ``pip install .``,
``fastconv train-mnist``, then ``pip install -e ".[test]"``. Any file written into
``site-packages/fastconv`` at run time (Numba's default cache, ``__pycache__/*.nbi|nbc`` beside
the sources, was one) survives the uninstall that the editable install does, and the folder left
behind is then imported as a namespace package that hides the real one: ``fastconv info`` fails
with an ImportError. ``fastconv.backends.jit_cache`` keeps Numba's cache in fastconv's cache
folder instead; this test checks the whole sequence end to end, as a user runs it:

1. a copy of the repository's sources (the checkout's build outputs and caches left out, and the
   checkout itself never written to) is installed non-editable into a fresh virtual environment,
   offline (``--no-deps --no-build-isolation --no-index``: numpy, numba and setuptools come from
   the environment running the tests);
2. every file under the installed ``site-packages/fastconv`` is recorded (name, size, mtime);
3. from another folder, with ``HOME`` in the temporary folder and fastconv's and Numba's variables
   at their defaults (only ``FASTCONV_DATA`` names the tests' MNIST), it runs ``fastconv info``, a
   short ``fastconv train-mnist --save`` and ``fastconv predict`` of the saved lesson model,
   letting their background compiling processes finish;
4. nothing under the installed package may have been created, modified or removed, and Numba's
   cache files must be under ``~/.cache/fastconv/numba``;
5. ``pip install -e ".[test]"`` from the same sources into the same environment must leave no
   ``site-packages/fastconv`` behind, ``fastconv info`` must succeed and ``import fastconv``
   must resolve to the sources.

About 30 s on a quiet 2-core machine, nearly all of it compiling the lesson network's kernels
from an empty cache (``pytest tests/test_install_order.py``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends import background

REPO = Path(__file__).resolve().parents[1]

#: what a checkout holds besides its sources (see .gitignore); never copied into the build
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", ".ci-cache", "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache",
    ".ruff_cache", ".benchmarks", ".hypothesis", "*.nbi", "*.nbc")
#: build outputs, per folder of the checkout
_OUTPUTS = {REPO: {"build", "dist"}, REPO / "bench": {"out"}}

#: the shortest training run of the lesson network that still compiles and caches every kernel
#: of a training step, validation and evaluation
_TRAIN = ("train-mnist", "--epochs", "1", "--train-samples", "64", "--test-samples", "32",
          "--batch-size", "32", "--seed", "0", "--verbose", "0")

_TIMEOUT = 300


def _ignore(folder: str, names: list[str]) -> set[str]:
    return set(_NOT_SOURCES(folder, names)) | (_OUTPUTS.get(Path(folder), set()) & set(names))


def _test_environment_sites() -> list[str]:
    """The site-packages folders numpy, numba, pip and setuptools are imported from here."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        folders.append(site.getusersitepackages())
    return folders


def _run(command: list[str], *, env: dict[str, str], cwd: Path) -> str:
    """Run ``command``; its stdout, or a failure that shows what it printed."""
    done = subprocess.run([str(part) for part in command], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} exited with {done.returncode}\n"
                    f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n"
                    f"{done.stderr[-4000:]}")
    return done.stdout


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: relative path -> (size, mtime) for a file,
    ``("folder",)`` for a folder."""
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            entries[os.path.relpath(os.path.join(folder, name), root)] = ("folder",)
        for name in files:
            path = os.path.join(folder, name)
            stat = os.lstat(path)
            entries[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return entries


def _changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    created = [f"created {name}" for name in sorted(after.keys() - before.keys())]
    removed = [f"removed {name}" for name in sorted(before.keys() - after.keys())]
    modified = [f"modified {name}" for name in sorted(before.keys() & after.keys())
                if before[name] != after[name]]
    return created + modified + removed


def _numba_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="the virtual environment's layout (bin/) and "
                    "background compiling (fcntl) are POSIX's")
def test_readme_install_order_leaves_a_working_install(tmp_path, mnist_dir):
    sites = _test_environment_sites()
    shadowing = [folder for folder in sites if (Path(folder) / "fastconv").exists()]
    if shadowing:
        pytest.skip(f"this environment has fastconv installed non-editable in {shadowing}, which "
                    f"the temporary environment would import from; install it editable, as the "
                    f"README does (pip install -e \".[test]\")")
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail("the test environment has no setuptools, which builds fastconv offline "
                    "(pip install --no-build-isolation; pyproject.toml's build-system.requires)")

    source = tmp_path / "fastconv-src"
    shutil.copytree(REPO, source, ignore=_ignore, symlinks=True)
    venv, home, work = tmp_path / "venv", tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    # the test environment's pip serves when it has one (no ensurepip: faster, and offline)
    own_pip = importlib.util.find_spec("pip") is None
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                    *(() if own_pip else ("--without-pip",)), str(venv)],
                   check=True, timeout=_TIMEOUT, capture_output=True)
    python, cli = venv / "bin" / "python", venv / "bin" / "fastconv"

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FASTCONV_", "NUMBA_", "PYTHON")) and k != "XDG_CACHE_HOME"}
    env.update(HOME=str(home), VIRTUAL_ENV=str(venv), FASTCONV_DATA=str(mnist_dir),
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        env=env, cwd=work).strip())
    # --system-site-packages names the base interpreter's packages; a test environment that is
    # itself a virtual environment is added by a .pth file (its own .pth files are not run, so an
    # editable fastconv there stays out of sight)
    (purelib / "_test_environment.pth").write_text("".join(f"{p}\n" for p in sites))
    pip = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]

    # pip install .
    _run([*pip, source], env=env, cwd=work)
    where = _run([python, "-c", "import fastconv; print(fastconv.__file__)"], env=env, cwd=work)
    package = Path(where.strip()).resolve().parent
    assert package == (purelib / "fastconv").resolve(), f"imported fastconv from {package}"
    before = _snapshot(package)

    cache = home / ".cache" / "fastconv"
    try:
        assert "backends:" in _run([cli, "info"], env=env, cwd=work)
        model = work / "lesson.fcm"
        out = _run([cli, *_TRAIN, "--save", model], env=env, cwd=work)
        assert "test accuracy" in out and model.is_file(), out
        assert background.wait(cache / background.FOLDER, timeout=_TIMEOUT)
        images = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
        np.save(work / "digits.npy", images)
        _run([cli, "predict", model, "digits.npy", "--out", "probs.npy"], env=env, cwd=work)
        probabilities = np.load(work / "probs.npy")
        assert probabilities.shape == (8, 10)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    finally:  # no compiling process may outlive the test
        idle = background.wait(cache / background.FOLDER, timeout=_TIMEOUT)
    assert idle, f"a compiling process still runs in {cache / background.FOLDER}"

    written = _changes(before, _snapshot(package))
    assert not written, (f"{len(written)} changes under the installed package {package} at run "
                         f"time:\n" + "\n".join(written[:50]))
    cached = _numba_files(home)
    assert cached, f"Numba cached nothing under {home}"
    assert all(cache / "numba" in p.parents for p in cached), \
        [str(p) for p in cached if cache / "numba" not in p.parents]
    assert not _numba_files(venv) and not _numba_files(work)

    # pip install -e ".[test]" (the extras are the test environment's already)
    _run([*pip, "-e", f"{source}[test]"], env=env, cwd=work)
    if package.exists():
        left = [str(p.relative_to(package)) for p in package.rglob("*")]
        pytest.fail(f"the editable install left {package} behind, a namespace package that "
                    f"hides the sources: {left[:50]}")
    assert "backends:" in _run([cli, "info"], env=env, cwd=work)
    where = _run([python, "-c", "import fastconv, fastconv.backends; print(fastconv.__file__)"],
                 env=env, cwd=work)
    assert Path(where.strip()).resolve() == (source / "fastconv" / "__init__.py").resolve()
