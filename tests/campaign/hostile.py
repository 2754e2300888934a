"""Damaged model files, made from good ones: the loader's fuzzing campaign and its CI sample.

``mutants(draw)`` is a hypothesis strategy of ``(description, bytes)``; ``check(path)`` loads a
file the two ways a user can (``load_model`` and ``load_weights`` into a model of the right
architecture) and asserts that each either succeeds or raises ``InvalidModelFileError`` naming
the file, within a memory bound (``MEMORY_FACTOR`` times the file's size, plus
``MEMORY_SLACK``).

Mutations, each drawn with its parameters:

* a value of the manifest (``fastconv.json``) replaced by another JSON value: wrong types,
  extreme numbers (1e308, 2**64, -1, NaN), long strings, deep nesting, huge layer sizes;
* an ``.npy`` header rewritten: shape, dtype, order, header length;
* a member recompressed with deflate, expanded to a "zip bomb" of the declared size;
* bytes flipped, inserted, deleted, or the file truncated;
* members dropped, duplicated or renamed.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import warnings
import zipfile

import numpy as np
from hypothesis import strategies as st

import fastconv
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv.models import Sequential
from fastconv.saving import InvalidModelFileError
from fastconv.utils import set_random_seed

#: Peak memory of one load, at most MEMORY_FACTOR x the file's size + MEMORY_SLACK bytes.
MEMORY_FACTOR = 16
MEMORY_SLACK = 8 << 20

EXTREME_NUMBERS = [0, -1, 1, 2, 3, 10**8, 1e8, 2**31, 2**63, 2**64, 10**30, 1e308, -1e308,
                   1.5, 0.5, float("nan"), float("inf"), -(2**63)]


def make_model():
    """The architecture of the base file (also the target of ``load_weights``)."""
    return Sequential([Conv2D(4, 3, input_shape=(8, 8, 1), activation="relu", name="conv"),
                       MaxPooling2D(name="pool"), Flatten(name="flat"),
                       Dense(3, activation="softmax", name="out")])


def base_file(path) -> bytes:
    """A good, compiled and trained model file (optimizer state included)."""
    set_random_seed(7)
    model = make_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    model.fit(x, y, epochs=1, verbose=0)
    model.save(path)
    with open(path, "rb") as fh:
        return fh.read()


# -- helpers that rebuild an archive ------------------------------------------------------------

def members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def archive(items, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the mutations
        with zipfile.ZipFile(buf, "w", compression=compression) as zf:
            for name, payload in items:
                zf.writestr(name, payload)
    return buf.getvalue()


def with_manifest(data: bytes, manifest) -> bytes:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return archive([(n, text.encode() if n == "fastconv.json" else p)
                    for n, p in members(data)])


def manifest_of(data: bytes) -> dict:
    return json.loads(dict(members(data))["fastconv.json"])


def npy_bytes(header: dict, payload: bytes, version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    write = (np.lib.format.write_array_header_1_0 if version == (1, 0)
             else np.lib.format.write_array_header_2_0)
    write(buf, header)
    return buf.getvalue() + payload


def bomb(data: bytes, member: str, size: int) -> bytes:
    """``member`` replaced by ``size`` zero bytes (behind a valid .npy header declaring that
    many bytes where it is an array), deflated: a small file that expands to ``size``."""
    items = []
    for name, payload in members(data):
        if name == member:
            if name.endswith(".npy"):
                payload = npy_bytes({"descr": "<f4", "fortran_order": False,
                                     "shape": (size // 4,)}, bytes(size - size % 4))
            else:
                payload = b" " * size
        items.append((name, payload))
    return archive(items, compression=zipfile.ZIP_DEFLATED)


def paths(value, prefix=()):
    """Every path to a value inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def replaced(doc, path, value):
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


# -- hypothesis strategies ----------------------------------------------------------------------

# Any code point but lone surrogates, with no codec: hypothesis's utf-8 codec check warns about
# characters that it itself generates.
JSON_CHARACTERS = st.characters(exclude_categories=("Cs",))
json_scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(EXTREME_NUMBERS),
                         st.integers(), st.floats(allow_nan=True),
                         st.text(JSON_CHARACTERS, max_size=20), st.sampled_from(
                             ["", "Dense", "Conv2D", "Sequential", "float16", "object", "<f4",
                              "arrays/0.npy", "../x", "fastconv-model", "fastconv-weights",
                              "relu", "same", "adam", "x" * 5000]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(JSON_CHARACTERS, max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def manifest_mutant(draw, data: bytes):
    doc = manifest_of(data)
    all_paths = list(paths(doc))
    n = draw(st.integers(1, 3))
    what = []
    for _ in range(n):
        path = draw(st.sampled_from(all_paths))
        value = draw(json_values)
        try:
            doc = replaced(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue
        what.append(f"{'/'.join(map(str, path))}={str(value)[:40]!r}")
        all_paths = list(paths(doc))
    try:
        text = json.dumps(doc)
    except ValueError:
        text = json.dumps(doc, allow_nan=True)
    return "manifest " + ", ".join(what), with_manifest(data, text)


@st.composite
def nesting_mutant(draw, data: bytes):
    depth = draw(st.sampled_from([100, 1000, 10_000, 200_000]))
    doc = manifest_of(data)
    key = draw(st.sampled_from(["model", "weights", "compile", "optimizer", "extra"]))
    doc[key] = "@"
    text = json.dumps(doc).replace('"@"', "[" * depth + "]" * depth)
    return f"manifest nested {depth} deep at {key}", with_manifest(data, text)


@st.composite
def npy_mutant(draw, data: bytes):
    items = members(data)
    i = draw(st.integers(1, len(items) - 1))
    name, payload = items[i]
    header = {"descr": draw(st.sampled_from(["<f4", "<f8", "<i8", "|O", "<f2", ">f4", "<c8",
                                             "[('a', '<f4')]", "|V4", "<U3"])),
              "fortran_order": draw(st.booleans()),
              "shape": tuple(draw(st.lists(st.sampled_from([0, 1, 3, 4, 36, 2**20, 2**31,
                                                            2**40, 10**12]), max_size=4)))}
    keep = draw(st.sampled_from(["payload", "empty", "header-only-bytes"]))
    body = payload[128:] if keep == "payload" else b"" if keep == "empty" else b"\0" * 64
    try:
        new = npy_bytes(header, body, draw(st.sampled_from([(1, 0), (2, 0)])))
    except ValueError:
        new = payload
    items[i] = (name, new)
    return f"npy {name} header {header} {keep}", archive(items)


@st.composite
def bomb_mutant(draw, data: bytes):
    items = members(data)
    member = draw(st.sampled_from([n for n, _ in items]))
    size = draw(st.sampled_from([1 << 20, 1 << 22, 1 << 24]))  # 128 MiB: test_hostile_files
    return f"deflate bomb {member} of {size} bytes", bomb(data, member, size)


@st.composite
def byte_mutant(draw, data: bytes):
    buf = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
    at = draw(st.integers(0, len(buf) - 1))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del buf[at:]
    elif kind == "insert":
        buf[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        del buf[at:at + draw(st.integers(1, 64))]
    else:
        value = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                      b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"]))
        buf[at:at + 4] = value
    return f"bytes {kind} at {at}", bytes(buf)


@st.composite
def member_mutant(draw, data: bytes):
    items = members(data)
    kind = draw(st.sampled_from(["drop", "duplicate", "rename", "swap", "empty"]))
    i = draw(st.integers(0, len(items) - 1))
    j = draw(st.integers(0, len(items) - 1))
    name, payload = items[i]
    if kind == "drop":
        del items[i]
    elif kind == "duplicate":
        items.append((name, items[j][1]))
    elif kind == "rename":
        new = draw(st.sampled_from(["../evil", "/abs", "arrays/99.npy", "x" * 300,
                                    "fastconv.json"]))
        items[i] = (new, payload)
    elif kind == "swap":
        items[i], items[j] = (name, items[j][1]), (items[j][0], payload)
    else:
        items[i] = (name, b"")
    return f"members {kind} {name}", archive(items)


class _Base(bytes):
    """The good file's bytes, with a short repr (hypothesis prints the strategies' args)."""

    def __repr__(self):
        return f"<base file of {len(self)} bytes>"


def mutants(data: bytes):
    """Every kind of damage, weighted towards the manifest."""
    data = _Base(data)
    return st.one_of(manifest_mutant(data), manifest_mutant(data), nesting_mutant(data),
                     npy_mutant(data), bomb_mutant(data), byte_mutant(data),
                     byte_mutant(data), member_mutant(data))


# -- the check ----------------------------------------------------------------------------------

def _load_model(path):
    return fastconv.models.load_model(path)


_target = []


def _load_weights(path):
    """Into one model of the base architecture, made once: a load either assigns every
    weight or raises before assigning any."""
    if not _target:
        _target.append(make_model())
    _target[0].load_weights(path)


LOADERS = {"load_model": _load_model, "load_weights": _load_weights}


def check(path, size: int | None = None, measure_memory: bool = True) -> dict:
    """Load ``path`` both ways; returns {loader: 'ok' | 'refused'}. Raises AssertionError on
    any other exception, on an error message that does not name the file, or on a peak of
    memory over the bound."""
    import os

    size = os.path.getsize(path) if size is None else size
    bound = MEMORY_FACTOR * size + MEMORY_SLACK
    outcome = {}
    for name, load in LOADERS.items():
        if measure_memory:
            tracemalloc.start()
        try:
            load(path)
            outcome[name] = "ok"
        except InvalidModelFileError as exc:
            if str(path) not in str(exc):
                raise AssertionError(f"{name}: the error does not name the file: {exc}") from exc
            outcome[name] = "refused"
        except Exception as exc:  # noqa: BLE001 - anything else is the defect under test
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}"[:2000]) from exc
        finally:
            if measure_memory:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        if measure_memory and peak > bound:
            raise AssertionError(f"{name}: peak memory {peak} bytes for a file of {size} bytes "
                                 f"(bound {bound})")
    return outcome
