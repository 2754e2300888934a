"""What fastconv reads and writes never destroys a user's file or blocks on a special one.

Every writer goes through ``fastconv.io.atomic`` (temporary file, fsync, rename): a write cut
by SIGKILL or a full disk leaves the previous file whole. Inputs are read from regular files
only (a FIFO or ``/dev/zero`` is refused before a byte is read), an output path that is one of
the command's inputs is refused, and a broken autotuning cache degrades to no cache with one
warning.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends import autotune, background
from fastconv.cli import main
from fastconv.io.atomic import atomic_write, atomic_write_bytes
from fastconv.io.files import open_regular
from fastconv.layers import Conv2D, Dense, Flatten
from fastconv.models import Sequential, load_model
from fastconv.saving import InvalidModelFileError

from .campaign import kill_writers


def small_model():
    return Sequential([Conv2D(2, 3, input_shape=(6, 6, 1)), Flatten(), Dense(3)])


@pytest.fixture
def files(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.fcm")
    np.save(tmp_path / "x.npy", np.ones((4, 6, 6, 1), np.float32))
    return tmp_path


# -- special files --------------------------------------------------------------------------

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_open_regular_refuses_a_fifo_without_blocking(fifo):
    with pytest.raises(InvalidModelFileError, match="FIFO"):
        open_regular(fifo, "model file")


def test_open_regular_refuses_a_device_and_a_folder(tmp_path):
    with pytest.raises(InvalidModelFileError, match="device"):
        open_regular("/dev/zero", "model file")
    with pytest.raises(IsADirectoryError, match="folder"):
        open_regular(tmp_path, "model file")


@pytest.mark.parametrize("name", ["pipe", "/dev/zero"])
def test_loaders_refuse_special_files(fifo, name):
    path = fifo if name == "pipe" else Path(name)
    with pytest.raises(InvalidModelFileError, match="regular"):
        load_model(path)
    with pytest.raises(InvalidModelFileError, match="regular"):
        small_model().load_weights(path)


def test_cli_refuses_special_files_as_model_input_and_out(files, fifo, capsys):
    assert main(["predict", str(fifo), str(files / "x.npy"), "--out",
                 str(files / "o.npy")]) == 2
    assert "FIFO" in capsys.readouterr().err
    assert main(["predict", str(files / "m.fcm"), "/dev/zero", "--out",
                 str(files / "o.npy")]) == 2
    assert "device" in capsys.readouterr().err
    assert main(["predict", str(files / "m.fcm"), str(files / "x.npy"), "--out",
                 str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_atomic_write_refuses_a_special_target(fifo):
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write_bytes(fifo, b"data")
    assert fifo.is_fifo()


# -- outputs that are inputs ----------------------------------------------------------------

@pytest.mark.parametrize("which", ["m.fcm", "x.npy"])
def test_predict_refuses_an_out_that_is_an_input(files, which, capsys):
    before = (files / which).read_bytes()
    link = files / "alias"
    os.link(files / which, link)  # the same file under another name
    for out in (files / which, link):
        assert main(["predict", str(files / "m.fcm"), str(files / "x.npy"), "--out",
                     str(out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and ("MODEL" in err or "INPUT" in err) and "destroy" in err
    assert (files / which).read_bytes() == before


def test_convert_refuses_a_destination_that_is_the_source(files, capsys):
    before = (files / "m.fcm").read_bytes()
    assert main(["convert", str(files / "m.fcm"), str(files / "m.fcm")]) == 2
    assert "SRC" in capsys.readouterr().err
    assert (files / "m.fcm").read_bytes() == before


# -- interrupted and failed writes ----------------------------------------------------------

def test_a_failing_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.npy"
    path.write_bytes(b"previous")

    def write(fh):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device; any previous file"):
        atomic_write(path, write)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.npy"]  # no temporary left


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from fastconv.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[2:]))
""")


def test_predict_out_on_a_full_disk_keeps_the_previous_file(files):
    """A file-size limit stands in for a full disk: the write of --out fails part way."""
    out = files / "o.npy"
    np.save(files / "big.npy", np.ones((4000, 6, 6, 1), np.float32))
    out.write_bytes(b"previous predictions")
    limit = 4096  # the predictions need 4000 x 3 x 4 bytes
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(limit), "predict",
                           str(files / "m.fcm"), str(files / "big.npy"), "--out", str(out),
                           "--backend", "numpy"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write" in proc.stderr and "left as it was" in proc.stderr
    assert out.read_bytes() == b"previous predictions"
    assert sorted(os.listdir(files)) == ["big.npy", "m.fcm", "o.npy", "x.npy"]


def test_sigkill_during_every_writer_leaves_the_previous_file(tmp_path):
    """One SIGKILL per writer at a random moment (the campaign runs many)."""
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY
    outcomes = kill_writers.run(rounds=1, seed=int(os.environ.get("FASTCONV_SEED", "0")),
                                folder=tmp_path)
    assert set(outcomes) == set(kill_writers.WRITERS)
    assert all(r == ["ok"] for r in outcomes.values()), outcomes


# -- inputs of predict ----------------------------------------------------------------------

def _predict(files, name, capsys):
    code = main(["predict", str(files / "m.fcm"), str(files / name), "--out",
                 str(files / "o.npy")])
    return code, capsys.readouterr().err


def test_an_npz_archive_gets_a_clear_message(files, capsys):
    np.savez(files / "a.npz", x=np.ones((2, 6, 6, 1), np.float32))
    code, err = _predict(files, "a.npz", capsys)
    assert code == 2 and "ZIP archive" in err and "numpy.save" in err
    assert "Traceback" not in err


def test_a_raw_pickle_is_named_as_one(files, capsys):
    (files / "p.npy").write_bytes(pickle.dumps([1, 2, 3]))
    code, err = _predict(files, "p.npy", capsys)
    assert code == 2 and "Python pickle" in err and "never unpickles" in err


def test_an_object_array_is_refused(files, capsys):
    np.save(files / "o_in.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, err = _predict(files, "o_in.npy", capsys)
    assert code == 2 and "Python objects" in err


def test_an_npy_header_larger_than_its_file_is_refused_before_allocating(files, capsys):
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**11, 6, 6, 1)}
    with open(files / "huge.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    code, err = _predict(files, "huge.npy", capsys)
    assert code == 2 and "declares an array of shape" in err and "truncated" in err


def test_predict_writes_the_predictions(files):
    assert main(["predict", str(files / "m.fcm"), str(files / "x.npy"), "--out",
                 str(files / "o.npy"), "--backend", "numpy"]) == 0
    expected = load_model(files / "m.fcm").predict(np.load(files / "x.npy"), verbose=0)
    np.testing.assert_allclose(np.load(files / "o.npy"), expected, rtol=1e-6)


# -- the autotuning cache -------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(autotune, "_warned", set())
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


def test_a_deeply_nested_cache_is_no_cache_with_one_warning(cache):
    (cache / autotune.FILE_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.warns(RuntimeWarning, match="nested deeper"):
        assert autotune.read_entries() == {}
    assert autotune.read_entries() == {}  # warned once only (filterwarnings=error)


def test_a_cache_linked_to_dev_zero_is_refused_before_reading(cache):
    os.symlink("/dev/zero", cache / autotune.FILE_NAME)
    with pytest.warns(RuntimeWarning, match="device"):
        assert autotune.read_entries() == {}
    assert autotune.update_entries({"k": {"choice": "direct"}}) is False  # not replaced


def test_a_cache_that_is_not_json_is_no_cache(cache):
    (cache / autotune.FILE_NAME).write_bytes(b"\xff\xfe not json")
    with pytest.warns(RuntimeWarning, match="not JSON"):
        assert autotune.read_entries() == {}
    assert autotune.update_entries({"k": {"choice": "direct"}}) is True  # replaced whole
    assert json.loads((cache / autotune.FILE_NAME).read_text())["entries"] == {
        "k": {"choice": "direct"}}


def test_an_unreadable_compile_folder_means_not_compiled(monkeypatch):
    class Unreadable(type(Path())):
        def exists(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(background, "folder", lambda: Unreadable("/nowhere"))
    monkeypatch.setattr(background, "_lock_holder", lambda where: None)
    assert background.done("key") is False
    assert background.failed("key") is False
