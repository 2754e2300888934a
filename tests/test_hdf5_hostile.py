"""Hostile and damaged HDF5 files given to the Keras readers (``fastconv.io.hdf5``).

Every file here starts as a small real Keras file (Keras's own ``mini_inception`` from
``../shared/keras_ref`` when it is there, a small fastconv model in the same four layouts
otherwise) and is damaged with h5py or in its bytes. The reader must refuse, with an
``InvalidModelFileError`` naming the file, whatever is not stored inside the file itself, and
bound the time and memory any file can cost.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
import zipfile

import h5py
import numpy as np
import pytest

from fastconv import keras_io
from fastconv.io import hdf5
from fastconv.saving import InvalidModelFileError

from .campaign import hdf5_mutations as campaign

#: the damage at byte offsets of Keras's own files: a test that needs them fails without them
#: (the conftest fixture ``keras_ref``)
needs_ref = pytest.mark.usefixtures("keras_ref")
FORMATS = campaign.FORMATS
SECRET = b"TOP-SECRET-bytes" * 64


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return campaign.load_bases(tmp_path_factory.mktemp("bases"))


@pytest.fixture
def place(tmp_path):
    """``(models folder, outside folder)``: the model's folder, and a folder beside it holding
    ``secret.bin`` (distinctive bytes) and ``other.h5`` (an HDF5 file of such bytes)."""
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    (outside / "secret.bin").write_bytes(SECRET)
    return models, outside


def _secret_h5(outside, shape):
    n = int(np.prod(shape))
    raw = (SECRET * (4 * n // len(SECRET) + 1))[:4 * n]
    with h5py.File(outside / "other.h5", "w") as f:
        f.create_dataset("data", data=np.frombuffer(raw, "<f4").reshape(shape))
    return outside / "other.h5"


def damaged(bases, fmt: str, folder, edit):
    """The base file of ``fmt`` written to ``folder`` after ``edit(h5py_file)`` changed its
    HDF5 file (a ``.keras`` archive's ``model.weights.h5``); returns its path."""
    inner = campaign._inner(bases.files[fmt], fmt)
    scratch = folder / "scratch.h5"
    scratch.write_bytes(inner)
    with h5py.File(scratch, "r+") as f:
        edit(f)
    inner = scratch.read_bytes()
    scratch.unlink()
    path = folder / campaign._NAMES[fmt]
    path.write_bytes(campaign._outer(bases.files[fmt], fmt, inner))
    return path


def with_bytes(bases, fmt: str, folder, change):
    """The base file of ``fmt`` with ``change(bytearray)`` applied to its HDF5 bytes."""
    buf = bytearray(campaign._inner(bases.files[fmt], fmt))
    change(buf)
    path = folder / campaign._NAMES[fmt]
    path.write_bytes(campaign._outer(bases.files[fmt], fmt, bytes(buf)))
    return path


def load(bases, fmt: str, path):
    return campaign.load(fmt, path, bases)


def first_weight(f) -> str:
    """The path of the first float dataset holding a layer's kernel."""
    found = []
    f.visititems(lambda name, obj: found.append(obj.name) if isinstance(obj, h5py.Dataset)
                 and obj.ndim >= 2 else None)
    return found[0]


def refused(bases, fmt, path, *words):
    with pytest.raises(InvalidModelFileError) as info:
        load(bases, fmt, path)
    text = str(info.value)
    assert str(path) in text
    for word in words:
        assert word in text, text
    return text


# -- 1. data kept outside the file ----------------------------------------------------------------

def _external_storage(outside, target):
    def edit(f):
        path = first_weight(f)
        shape = f[path].shape
        del f[path]
        nbytes = int(np.prod(shape)) * 4
        f.create_dataset(path, shape, "<f4", external=[(str(target), 0, nbytes)])
        edit.path = path
    return edit


@pytest.mark.parametrize("fmt", FORMATS)
def test_external_storage_is_refused(bases, place, fmt):
    """A weight whose bytes HDF5 would read from another file (here a secret beside the
    model's folder): refused, naming the file and the dataset; the secret is never loaded."""
    models, outside = place
    edit = _external_storage(outside, outside / "secret.bin")
    path = damaged(bases, fmt, models, edit)
    text = refused(bases, fmt, path, "external storage", edit.path, "secret.bin")
    assert "TOP-SECRET" not in text


def test_predict_does_not_leak_an_external_file(bases, place, capsys):
    """``fastconv predict evil.keras zeros.npy --out leak.npy`` with a weight stored in
    /etc/passwd: refused on stderr, status 2, no output written."""
    from fastconv.cli import main

    models, outside = place
    edit = _external_storage(outside, "/etc/passwd")
    path = damaged(bases, "keras", models, edit)
    zeros = models / "zeros.npy"
    np.save(zeros, np.zeros((1, *bases.target.input_shape[1:]), "float32"))
    assert main(["predict", str(path), str(zeros), "--out", str(models / "leak.npy")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "external storage" in err
    assert not (models / "leak.npy").exists()


def _link(kind, outside):
    def edit(f):
        path = first_weight(f)
        shape = f[path].shape
        other = _secret_h5(outside, shape)
        del f[path]
        if kind == "external-link":
            f[path] = h5py.ExternalLink(str(other), "/data")
        elif kind == "soft-link":
            f[path] = h5py.SoftLink(path)  # a link to itself
        else:
            source, inner = {"virtual-file": (str(other), "/data"),
                             "virtual-fifo": (str(outside / "fifo"), "/data"),
                             "virtual-itself": (".", path)}[kind]
            layout = h5py.VirtualLayout(shape, "<f4")
            layout[...] = h5py.VirtualSource(source, inner, shape=shape)
            parent, name = path.rsplit("/", 1)
            f[parent or "/"].create_virtual_dataset(name, layout, fillvalue=0)
        edit.path = path
    return edit


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["external-link", "soft-link", "virtual-file", "virtual-fifo",
                                  "virtual-itself"])
def test_links_and_virtual_datasets_are_refused(bases, place, fmt, kind):
    """External links and virtual datasets load another file (a FIFO would block the load for
    good; a virtual dataset mapping itself crashes the HDF5 library); soft links are refused
    too. Each is refused for what it is, before anything is read."""
    if kind == "virtual-fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    models, outside = place
    if kind == "virtual-fifo":
        os.mkfifo(outside / "fifo")
    edit = _link(kind, outside)
    path = damaged(bases, fmt, models, edit)
    word = {"external-link": "external link", "soft-link": "soft link"}.get(kind, "virtual")
    refused(bases, fmt, path, word, edit.path)


def test_a_group_behind_an_external_link_is_refused(bases, place):
    models, outside = place
    other = _secret_h5(outside, (2,))

    def edit(f):
        del f["layers"]
        f["layers"] = h5py.ExternalLink(str(other), "/")
    path = damaged(bases, "weights", models, edit)
    refused(bases, "weights", path, "'/layers' is an external link", "other.h5")


# -- 2. a file that makes the HDF5 library hang or crash -------------------------------------------

def test_a_bit_flip_that_hangs_hdf5_is_cut_at_the_bound(bases, place, monkeypatch, keras_ref):
    """Byte 2497 of mini_inception_legacy_weights.h5 set from 0x00 to 0x08: h5py loops for
    ever inside an attribute read. The child is killed at the bound, the load refused."""
    monkeypatch.setattr(hdf5, "TIMEOUT_BASE_S", 2.0)
    models, _ = place
    data = bytearray((keras_ref / "mini_inception_legacy_weights.h5").read_bytes())
    assert data[2497] == 0x00
    data[2497] = 0x08
    path = models / "flipped.h5"
    path.write_bytes(data)
    start = time.monotonic()
    with pytest.raises(InvalidModelFileError, match=r"parsing took more than 2 s: the file is "
                                                    r"damaged") as info:
        bases.target.load_weights(path)
    assert str(path) in str(info.value)
    assert time.monotonic() - start < hdf5.parse_timeout(len(data)) + 3


def _in_child(monkeypatch, replacement):
    """Replace the walk the child runs (the fork copies the patched module)."""
    monkeypatch.setattr(hdf5, "_walk", replacement)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the parse runs in a child only with fork")
def test_a_parse_that_never_returns_is_killed(bases, place, monkeypatch):
    monkeypatch.setattr(hdf5, "TIMEOUT_BASE_S", 1.0)
    _in_child(monkeypatch, lambda *args: time.sleep(3600))
    path = place[0] / "w.weights.h5"
    path.write_bytes(bases.files["weights"])
    start = time.monotonic()
    refused(bases, "weights", path, "parsing took more than 1 s")
    assert time.monotonic() - start < 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the parse runs in a child only with fork")
def test_a_crash_inside_the_parse_is_a_refusal(bases, place, monkeypatch):
    _in_child(monkeypatch, lambda *args: os.kill(os.getpid(), signal.SIGSEGV))
    path = place[0] / "w.weights.h5"
    path.write_bytes(bases.files["weights"])
    refused(bases, "weights", path, "crashed", "SIGSEGV")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_the_parse_is_bounded_in_memory(bases, place, monkeypatch):
    """The child may grow by MEMORY_FACTOR x the file's size + MEMORY_MARGIN, no more."""
    size = len(bases.files["weights"])

    def greedy(*args):
        # more than the bound plus all the child inherited: memory the parent freed but kept
        # mapped (a long test session's heap) cannot serve it without growing the address space
        inherited = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGESIZE")
        bytearray(hdf5.MEMORY_FACTOR * size + hdf5.MEMORY_MARGIN + inherited + (64 << 20))
        raise AssertionError("allocated past the bound")
    _in_child(monkeypatch, greedy)
    path = place[0] / "w.weights.h5"
    path.write_bytes(bases.files["weights"])
    refused(bases, "weights", path, "more memory")


# -- 3. raw exceptions from h5py -------------------------------------------------------------------

#: (format, byte, new bytes) of the reference files' HDF5 bytes, and what h5py raised through the
#: reader before: each must be an InvalidModelFileError naming the file.
BYTE_DAMAGE = [
    ("weights", 14987, b"\x08", "RuntimeError: Link iteration failed (bad heap free list)"),
    ("weights", 21757, b"\xff", "RuntimeError: Unable to get group info (addr overflow)"),
    ("weights", 25790, b"\x06", "RuntimeError: Link iteration failed (invalid link name)"),
    ("h5", 870, b"\x08", "RuntimeError: Can't synchronously determine if attribute exists"),
    ("legacy", 1142, b"\x08", "RuntimeError: Can't synchronously determine if attribute exists"),
    ("legacy", 801, b"\x80", "KeyError: Unable to synchronously open object"),
    # an attribute's dataspace of 2 elements claiming 2**64 - 1
    ("keras", 705, b"\xff" * 8, "OverflowError: Python int too large to convert to C ssize_t"),
]


@needs_ref
@pytest.mark.parametrize(("fmt", "at", "value", "before"), BYTE_DAMAGE)
def test_h5py_errors_become_invalid_model_file_errors(bases, place, fmt, at, value, before):
    def change(buf):
        buf[at:at + len(value)] = value
    path = with_bytes(bases, fmt, place[0], change)
    refused(bases, fmt, path)


def test_huge_dimensions_are_refused_before_allocating(bases, place):
    """Three unallocated datasets, each within the file's size, together claiming more than
    the file: refused before any is read."""
    def unallocated(f):
        path = first_weight(f)
        n = len(bases.files["weights"]) // 4 * 6 // 10  # 60 % of the file each
        for i in range(3):
            f.create_dataset(f"{path}_{i}", (n,), "<f4")
    path = damaged(bases, "weights", place[0], unallocated)
    refused(bases, "weights", path, "more than the whole file")


# -- 4. only regular files -------------------------------------------------------------------------

def _returns_within(fn, seconds: float, unblock):
    """Run ``fn`` in a thread; fail if it has not returned after ``seconds`` (``unblock``
    then frees it)."""
    outcome = {}

    def target():
        try:
            fn()
            outcome["result"] = "returned"
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["result"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"still reading after {seconds} s")
    return outcome["result"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("name", ["model.keras", "model.h5", "w.weights.h5"])
def test_a_fifo_is_refused_before_reading(bases, tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def unblock():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    for call in (lambda: keras_io.load_model(fifo),
                 lambda: keras_io.load_weights(bases.target, fifo),
                 lambda: hdf5.read_hdf5(fifo)):
        result = _returns_within(call, 10, unblock)
        assert isinstance(result, InvalidModelFileError) and "FIFO" in str(result), result
        assert str(fifo) in str(result)
    assert keras_io.is_keras_file(fifo) == name.endswith((".keras", ".h5"))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused_before_reading(bases):
    for call in (lambda: keras_io.load_model("/dev/zero"),
                 lambda: keras_io.load_weights(bases.target, "/dev/zero")):
        result = _returns_within(call, 10, lambda: None)
        assert isinstance(result, InvalidModelFileError) and "a device" in str(result)


# -- attributes and dataset headers --------------------------------------------------------------

def _attribute(key_of, value):
    def edit(f):
        owner, key = key_of(f)
        del owner.attrs[key]
        if isinstance(value, tuple):
            owner.attrs.create(key, value[1], dtype=h5py.string_dtype("utf-8"))
        else:
            owner.attrs[key] = value
    return edit


def _vars_name(f):
    found = []
    f.visititems(lambda name, obj: found.append(obj) if "name" in obj.attrs else None)
    return found[0], "name"


@pytest.mark.parametrize(("fmt", "key_of", "value", "words"), [
    ("weights", _vars_name, ("vlen", b"conv\xff\xfe"), ["is not UTF-8", "'name'"]),
    ("legacy", lambda f: (f, "layer_names"), np.array([b"\xff\xfe"]), ["is not UTF-8"]),
    ("legacy", lambda f: (f, "layer_names"), np.array([(1, 2.0)], dtype=[("a", "<i4"),
                                                                          ("b", "<f8")]),
     ["fastconv reads only text and numbers"]),
    ("h5", lambda f: (f, "model_config"), np.complex64(1 + 2j),
     ["fastconv reads only text and numbers"]),
    ("h5", lambda f: (f, "model_config"), np.array([1, 2, 3]), ["model_config", "not text"]),
    ("keras", _vars_name, np.array("x" * 2_000_000, dtype=object), []),
])
def test_damaged_attributes_are_refused(bases, place, fmt, key_of, value, words):
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = np.array(value.item(), dtype=h5py.string_dtype())
    path = damaged(bases, fmt, place[0], _attribute(key_of, value))
    if not words:  # a 2 MB name: read, and the layer found by its group's name instead
        load(bases, fmt, path)
        return
    refused(bases, fmt, path, *words)


@pytest.mark.parametrize("kind", ["gzip", "lzf", "shuffle", "fletcher32", "scaleoffset"])
def test_filtered_datasets_are_refused(bases, place, kind):
    options = {"gzip": {"compression": "gzip"}, "lzf": {"compression": "lzf"},
               "shuffle": {"shuffle": True}, "fletcher32": {"fletcher32": True},
               "scaleoffset": {"scaleoffset": 3}}[kind]

    def edit(f):
        path = first_weight(f)
        data = f[path][()]
        del f[path]
        f.create_dataset(path, data=data, chunks=True, **options)
    path = damaged(bases, "legacy", place[0], edit)
    refused(bases, "legacy", path, "compressed or filtered",
            {"gzip": "deflate"}.get(kind, kind))


def test_valid_variants_load_the_same_weights(bases, place):
    """What a valid file may hold: chunked, compact and big-endian datasets, float64 and float16
    weights, hard links (a loop back to the root and a duplicate), a named datatype, a
    userblock before the superblock; the same weights load."""
    bases.target.load_weights(damaged(bases, "weights", place[0], lambda f: None))
    expected = [w.copy() for w in bases.target.get_weights()]

    def edit(f):
        found = []
        f.visititems(lambda name, obj: found.append(obj.name)
                     if isinstance(obj, h5py.Dataset) else None)
        for i, path in enumerate(found):
            data = f[path][()]
            del f[path]
            kind = i % 4
            if kind == 0:
                f.create_dataset(path, data=data, chunks=True if data.ndim else None)
            elif kind == 1:
                f.create_dataset(path, data=data.astype(">f4"))
            elif kind == 2:
                f.create_dataset(path, data=data.astype("float64"))
            else:
                from h5py import h5d, h5p, h5s, h5t
                dcpl = h5p.create(h5p.DATASET_CREATE)
                dcpl.set_layout(h5d.COMPACT)
                parent, name = path.rsplit("/", 1)
                did = h5d.create(f[parent].id, name.encode(), h5t.py_create(np.dtype("<f4")),
                                 h5s.create_simple(data.shape), dcpl=dcpl)
                did.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(data, "<f4"))
        f["layers/loop"] = f["/"]
        f["layers/again"] = f[found[0]]
        f["a_type"] = np.dtype("<f4")
    path = damaged(bases, "weights", place[0], edit)
    bases.target.set_weights([np.zeros_like(w) for w in expected])
    bases.target.load_weights(path)
    for got, want in zip(bases.target.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    # a userblock: the superblock 512 bytes into the file
    buf = io.BytesIO()
    with h5py.File(buf, "w", userblock_size=512) as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "d"
        g.create_dataset("0", data=np.arange(12, dtype="<f4").reshape(4, 3))
    tree = hdf5.read_hdf5(buf.getvalue(), "userblock.h5")
    np.testing.assert_array_equal(tree.array(tree.root, "layers/dense/vars/0"),
                                  np.arange(12).reshape(4, 3))


def test_large_weights_are_read_from_the_file_itself(tmp_path):
    """Weights of 64 kB and more are read by the parent straight from the file, at the place
    the child checked; a kernel starting within the first bytes the parent read (its file
    object's buffer) comes back right too."""
    from fastconv.layers import Dense, Input
    from fastconv.models import Sequential

    rng = np.random.default_rng(5)
    model = Sequential([Input((128,)), Dense(256, name="d")])
    model.set_weights([rng.standard_normal(w.shape).astype("float32")
                       for w in model.get_weights()])
    with h5py.File(tmp_path / "w.weights.h5", "w", libver="latest") as f:
        group = f.create_group("layers/dense/vars")
        group.attrs["name"] = "d"
        for i, w in enumerate(model.get_weights()):
            group.create_dataset(str(i), data=w)
        assert f["layers/dense/vars/0"].id.get_offset() < 8192
    other = Sequential([Input((128,)), Dense(256, name="d")])
    other.load_weights(tmp_path / "w.weights.h5")
    for got, want in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_float16_weights_load(bases, place):
    def edit(f):
        path = first_weight(f)
        data = f[path][()]
        del f[path]
        f.create_dataset(path, data=data.astype("float16"))
    bases.target.load_weights(damaged(bases, "weights", place[0], edit))


# -- the reader itself ---------------------------------------------------------------------------

def test_the_in_process_reader_validates_the_same(bases, place, monkeypatch):
    """Where fork is missing (or fails) the file is parsed in this process, with the same
    refusals and the same arrays."""
    models, outside = place
    good = models / "good.weights.h5"
    good.write_bytes(bases.files["weights"])
    isolated = hdf5.read_hdf5(good)
    inline = hdf5.read_hdf5(good, isolate=False)
    assert list(isolated.group("layers")) == list(inline.group("layers"))
    with h5py.File(good, "r") as f:
        first = first_weight(f)
    np.testing.assert_array_equal(isolated.array(isolated.root, first),
                                  inline.array(inline.root, first))
    path = damaged(bases, "weights", models, _external_storage(outside, outside / "secret.bin"))
    with pytest.raises(InvalidModelFileError, match="external storage"):
        hdf5.read_hdf5(path, isolate=False)

    def no_fork():
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(InvalidModelFileError, match="external storage"):
        bases.target.load_weights(path)
    bases.target.load_weights(good)


@pytest.mark.parametrize("doc", [
    {"nodes": []},
    {"nodes": [{"k": "d", "a": {}, "t": "float32", "s": [1]}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["x", 5]]}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["a/b", 0]]}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["x", 1]]},
               {"k": "d", "a": {}, "t": "float32", "s": [4], "o": 8}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["x", 1]]},
               {"k": "d", "a": {}, "t": "<f4", "s": [4], "f": 2**40}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["x", 1]]},
               {"k": "d", "a": {}, "t": "int64", "s": [1], "o": 0}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["x", 1]]},
               {"k": "d", "a": {}, "t": "float32", "s": [-1], "o": 0}]},
    {"nodes": [{"k": "g", "a": {}, "l": [["x", 1], ["y", 2]]},
               {"k": "d", "a": {}, "t": "<f4", "s": [27], "f": 0},
               {"k": "d", "a": {}, "t": "<f4", "s": [27], "f": 0}]},
    {"nodes": "x"},
    {"other": 1},
])
def test_a_malformed_description_from_the_child_is_refused(doc):
    """The parent checks what the child sends (a file that crashed into the child may make it
    send anything)."""
    source = hdf5._Source(data=b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(InvalidModelFileError, match="'f.h5'"):
        hdf5._build(doc, np.zeros(16, np.uint8), source, "f.h5")


def test_a_keras_archive_names_its_inner_file(bases, place):
    models, outside = place
    edit = _external_storage(outside, outside / "secret.bin")
    path = damaged(bases, "keras", models, edit)
    text = refused(bases, "keras", path)
    assert f"{path}/model.weights.h5" in text
    with zipfile.ZipFile(path) as zf:
        assert zf.read("model.weights.h5").startswith(hdf5.HDF5_SIGNATURE)


# -- 5. the campaign's sample ----------------------------------------------------------------------

def test_hdf5_mutation_sample(tmp_path, monkeypatch):
    """60 HDF5-level mutations of the four Keras layouts (tests/campaign/hdf5_mutations.py):
    every load loads or is refused naming the file, in time, reading nothing outside."""
    monkeypatch.setattr(hdf5, "TIMEOUT_BASE_S", 2.0)
    result = campaign.run(60, seed=int(os.environ.get("FASTCONV_HDF5_SEED", "2026")),
                          folder=tmp_path)
    assert sum(result.counts.values()) == 60
    assert not result.defects, result.defects
    assert {o for _, o in result.counts} <= {"loaded", "refused"}
