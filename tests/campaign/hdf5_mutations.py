"""HDF5-level damage to real Keras files, loaded by fastconv: the campaign of the HDF5 reader.

    nice -n 19 python -m tests.campaign.hdf5_mutations --examples 3000 --seed 1

Each example takes one of four small real Keras files (``.keras``, legacy full-model ``.h5``,
``.weights.h5``, legacy weights; Keras's own ``mini_inception`` from ``../shared/keras_ref``
when it is there, otherwise a small fastconv model written in the same four layouts), damages
its HDF5 file (for ``.keras``, the archive's ``model.weights.h5``) with one mutation of a class:

* ``external-storage``, ``external-link``, ``soft-link``, ``virtual``: a weight dataset (or a
  layer group) replaced by data kept elsewhere: a canary file of distinctive bytes outside the
  model's folder, a canary HDF5 file, a FIFO (opening it would block), the same file;
* ``filters``: a weight rewritten compressed or filtered (gzip, lzf, shuffle, fletcher32,
  scale-offset);
* ``attribute``: an attribute (``layer_names``, ``weight_names``, ``name``, ``model_config`` ...)
  given a wrong type, a huge string, bytes that are not UTF-8, a reference, a compound ...;
* ``header-dims``: a dimension of a dataset's or attribute's dataspace overwritten in the file's
  bytes with a huge value; ``dtype``: a weight rewritten with another type;
* ``structure``: a dataset or group deleted or renamed, a hard link added (a loop, a duplicate);
* ``valid-variant``: what a valid file may hold (chunked or compact datasets, big-endian, float16
  or float64 weights, unallocated datasets): these must load;
* ``byte-flip``, ``overwrite``, ``truncate``: damage to the file's bytes.

and loads it with the loader a user would (``fastconv.models.load_model`` for ``.keras`` and
``.h5``, ``model.load_weights`` on a model of the same architecture for weights files). Each
load is ``loaded``, ``refused`` (``InvalidModelFileError`` naming the file) or a ``defect``: any
other exception, an error that does not name the file, a load past the reader's time bound
(``fastconv.io.hdf5.parse_timeout`` plus ``TIME_SLACK_S``), a loaded weight holding the canary's
bytes, an ``open`` of anything in the canary folder (audited with ``sys.addaudithook``), an
external, virtual or linked object that is not refused for what it is, a filtered dataset that
loads, or a valid variant that does not load. The command prints the counts per class and
outcome and exits with status 1 on any defect (2 when a load never returns).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CLASSES = ("external-storage", "external-link", "soft-link", "virtual", "filters", "attribute",
           "header-dims", "dtype", "structure", "valid-variant", "byte-flip", "overwrite",
           "truncate")
#: Classes whose every example must be refused for what the mutation put in the file.
MUST_REFUSE = {"external-storage": ("external",), "external-link": ("external link",),
               "soft-link": ("soft link",), "virtual": ("virtual",),
               "filters": ("compressed",)}
FORMATS = ("keras", "h5", "weights", "legacy")
#: A load may take the reader's bound plus this much (building the model, assigning weights).
TIME_SLACK_S = 5.0
#: A load still running this long past its bound is hung: the run stops.
HANG_S = 60.0
CANARY = b"CANARY-fastconv!"
_CANARY_WINDOWS = [(CANARY * 2)[i:i + 8] for i in range(0, 16, 4)]

_opened_outside: list = []
_audit = {"dir": None}


def _audit_hook(event, args):
    if event == "open" and _audit["dir"] is not None and args and isinstance(
            args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0]) if not isinstance(args[0], os.PathLike) else \
            os.fspath(args[0])
        if os.path.abspath(path).startswith(_audit["dir"]):
            _opened_outside.append(path)


# -- the base files -----------------------------------------------------------------------------

@dataclass
class Bases:
    """The four good files (bytes) and the model weights files load into."""

    files: dict
    target: object
    shapes: list


def _reference_dir() -> Path | None:
    from ..shared import shared_dir

    shared = shared_dir()
    ref = shared / "keras_ref" if shared is not None else None
    if ref is not None and (ref / "mini_inception.keras").is_file():
        return ref
    return None


def _fastconv_bases(folder: Path) -> dict:
    """The four layouts of a small fastconv model (the legacy ones written with h5py)."""
    import h5py

    from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
    from fastconv.models import Sequential
    from fastconv.utils import set_random_seed

    set_random_seed(3)
    model = Sequential([Input((8, 8, 2)), Conv2D(4, 3, activation="relu", name="conv"),
                        MaxPooling2D(name="pool"), Flatten(name="flat"),
                        Dense(3, activation="softmax", name="out")], name="small")
    model.save(folder / "base.keras")
    model.save_weights(folder / "base.weights.h5")
    with zipfile.ZipFile(folder / "base.keras") as zf:
        config = json.loads(zf.read("config.json"))

    def legacy(group):
        group.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        for layer in model.layers:
            sub = group.create_group(layer.name)
            names = [f"{layer.name}/{v.name.split('/')[-1]}:0" for v in layer.weights]
            sub.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for n, v in zip(names, layer.weights):
                sub.create_dataset(n, data=v.numpy())

    with h5py.File(folder / "base_legacy.h5", "w") as f:
        legacy(f)
    with h5py.File(folder / "base.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.15.0"
        legacy(f.create_group("model_weights"))
    return {"keras": folder / "base.keras", "h5": folder / "base.h5",
            "weights": folder / "base.weights.h5", "legacy": folder / "base_legacy.h5"}


def load_bases(folder: Path) -> Bases:
    import h5py

    from fastconv.models import load_model

    ref = _reference_dir()
    if ref is not None:
        paths = {"keras": ref / "mini_inception.keras", "h5": ref / "mini_inception.h5",
                 "weights": ref / "mini_inception.weights.h5",
                 "legacy": ref / "mini_inception_legacy_weights.h5"}
    else:
        paths = _fastconv_bases(folder)
    files = {fmt: Path(p).read_bytes() for fmt, p in paths.items()}
    target = load_model(paths["keras"])
    shapes = set()
    with h5py.File(io.BytesIO(_inner(files["weights"], "weights")), "r") as f:
        f.visititems(lambda _, obj: shapes.add(obj.shape)
                     if isinstance(obj, h5py.Dataset) else None)
    return Bases(files, target, sorted(shapes))


# -- the canaries -------------------------------------------------------------------------------

@dataclass
class Canaries:
    dir: Path
    bin: Path
    h5: Path
    fifo: Path | None
    models: Path
    targets: list = field(default_factory=list)


def make_canaries(folder: Path, shapes, fifo: bool = True) -> Canaries:
    import h5py

    outside = folder / "outside"
    models = folder / "models"
    outside.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    binary = outside / "canary.bin"
    binary.write_bytes(CANARY * (1 << 16))
    h5 = outside / "canary.h5"
    with h5py.File(h5, "w") as f:
        for shape in shapes:
            n = int(np.prod(shape))
            raw = (CANARY * (n // 4 + 1))[:4 * n]
            f.create_dataset(_shape_key(shape), data=np.frombuffer(raw, "<f4").reshape(shape))
        f.create_group("layers")
    path = outside / "canary.fifo"
    if fifo and hasattr(os, "mkfifo"):
        if not path.exists():
            os.mkfifo(path)
    else:
        path = None
    return Canaries(outside, binary, h5, path, models)


def _shape_key(shape) -> str:
    return "d_" + "x".join(map(str, shape)) if shape else "d_scalar"


def _target_file(rng, canaries: Canaries, hdf5: bool) -> str:
    """An absolute or relative path to a canary (the FIFO at times)."""
    path = canaries.h5 if hdf5 else canaries.bin
    if canaries.fifo is not None and rng.random() < 0.25:
        path = canaries.fifo
    if rng.random() < 0.5:
        return os.path.relpath(path, canaries.models)
    return str(path)


# -- mutations of an open h5py file -------------------------------------------------------------

def _objects(f):
    import h5py

    datasets, groups, owners = [], [], [("/", f)]
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            datasets.append(obj.name)
        else:
            groups.append(obj.name)
        if len(obj.attrs):
            owners.append((obj.name, obj))
    f.visititems(visit)
    return datasets, groups, owners


def _split(path: str):
    parent, _, name = path.rpartition("/")
    return parent or "/", name


def _replace_dataset(f, path, make):
    ds = f[path]
    shape, dtype, data = ds.shape, ds.dtype, ds[()]
    parent, name = _split(path)
    del f[path]
    make(f[parent], name, shape, dtype, data)


def mutate_external_storage(rng, f, ctx):
    datasets, _, _ = _objects(f)
    path = rng.choice(datasets)
    target = _target_file(rng, ctx, hdf5=False)

    def make(group, name, shape, dtype, data):
        nbytes = max(int(np.prod(shape)) * 4, 1)
        group.create_dataset(name, shape, "<f4", external=[(target, 0, nbytes)])
    _replace_dataset(f, path, make)
    return f"{path} stored externally in {target}"


def mutate_external_link(rng, f, ctx):
    import h5py

    datasets, groups, _ = _objects(f)
    target = _target_file(rng, ctx, hdf5=True)
    if groups and rng.random() < 0.2:
        path = rng.choice(groups)
        del f[path]
        f[path] = h5py.ExternalLink(target, "/layers")
        return f"group {path} -> external link to {target}"
    path = rng.choice(datasets)
    key = _shape_key(f[path].shape)
    del f[path]
    f[path] = h5py.ExternalLink(target, "/" + key)
    return f"{path} -> external link to {target}:/{key}"


def mutate_soft_link(rng, f, ctx):
    import h5py

    datasets, groups, _ = _objects(f)
    if groups and rng.random() < 0.2:
        path = rng.choice(groups)
        other = rng.choice(groups + ["/nowhere"])
    else:
        path = rng.choice(datasets)
        same = [d for d in datasets if d != path and f[d].shape == f[path].shape]
        other = rng.choice(same + [path, "/nowhere", datasets[0]])
    del f[path]
    f[path] = h5py.SoftLink(other)
    return f"{path} -> soft link to {other}"


def mutate_virtual(rng, f, ctx):
    import h5py

    datasets, _, _ = _objects(f)
    path = rng.choice(datasets)
    ds = f[path]
    shape = ds.shape
    if rng.random() < 0.25:
        source, inner = ".", rng.choice([d for d in datasets if f[d].shape == shape])
    else:
        source, inner = _target_file(rng, ctx, hdf5=True), "/" + _shape_key(shape)
    parent, name = _split(path)
    del f[path]
    layout = h5py.VirtualLayout(shape, "<f4")
    layout[...] = h5py.VirtualSource(source, inner, shape=shape)
    f[parent].create_virtual_dataset(name, layout, fillvalue=0)
    return f"{path} virtual, from {source}:{inner}"


def mutate_filters(rng, f, ctx):
    datasets, _, _ = _objects(f)
    path = rng.choice(datasets)
    kind = rng.choice(["gzip", "lzf", "shuffle", "fletcher32", "scaleoffset"])

    def make(group, name, shape, dtype, data):
        options = {"gzip": {"compression": "gzip"}, "lzf": {"compression": "lzf"},
                   "shuffle": {"shuffle": True}, "fletcher32": {"fletcher32": True},
                   "scaleoffset": {"scaleoffset": 3}}[kind]
        group.create_dataset(name, data=data, chunks=True if shape else None, **options)
    if f[path].shape == ():
        return mutate_filters(rng, f, ctx)
    _replace_dataset(f, path, make)
    return f"{path} with {kind}"


def _attr_values(rng, f):
    import h5py

    big = rng.choice([70_000, 1_000_000, 4_000_000])
    return {
        "int": lambda: 7,
        "float-array": lambda: np.array([1.5, float("nan"), float("inf")]),
        "int-matrix": lambda: np.arange(6).reshape(2, 3),
        "bytes-not-utf8": lambda: np.bytes_(b"\xff\xfe\x80name"),
        "vlen-not-utf8": lambda: ("vlen", b"\xff\xfeabc\x80"),
        "names-not-utf8": lambda: np.array([b"\xff\xfe", b"conv\x80"], dtype="S"),
        "huge-string": lambda: np.array("x" * big, dtype=h5py.string_dtype()),
        "huge-array": lambda: np.zeros(min(big, 8000), "i1"),
        "compound": lambda: np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "complex": lambda: np.complex64(1 + 2j),
        "reference": lambda: f.ref,
        "empty": lambda: h5py.Empty("f4"),
        "bool": lambda: np.bool_(True),
        "string-matrix": lambda: np.array([[b"a", b"b"], [b"c", b"d"]]),
        "names-of-numbers": lambda: np.array([1, 2, 3]),
        "bad-json": lambda: b"{not json" + b"[" * rng.choice([1, 5000]),
        "wrong-names": lambda: np.array([b"nope", b"nothing"]),
        "unicode": lambda: "\u00e9t\u00e9 \u2603",
        "float16": lambda: np.float16(2.5),
    }


def mutate_attribute(rng, f, ctx):
    import h5py

    _, _, owners = _objects(f)
    where, owner = rng.choice(owners)
    keys = list(owner.attrs) or ["name"]
    key = rng.choice(keys + ["extra"])
    values = _attr_values(rng, f)
    kind = rng.choice(sorted(values))
    value = values[kind]()
    if key in owner.attrs:
        del owner.attrs[key]
    try:
        if isinstance(value, tuple) and value[0] == "vlen":
            owner.attrs.create(key, value[1], dtype=h5py.string_dtype("utf-8"))
        else:
            owner.attrs[key] = value
    except (OSError, ValueError, TypeError):  # too large for the object header
        owner.attrs[key] = np.array("x" * 60_000, dtype=h5py.string_dtype())
        kind += " (as a 60 kB string)"
    return f"attribute {key!r} of {where} := {kind}"


def mutate_dtype(rng, f, ctx):
    datasets, _, _ = _objects(f)
    path = rng.choice(datasets)
    kind = rng.choice(["int32", "int64", "uint8", "bool", "complex64", "S4", "compound",
                       "longdouble"])

    def make(group, name, shape, dtype, data):
        if kind == "compound":
            value = np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i4")])
        elif kind == "S4":
            value = np.full(shape, b"abcd", dtype="S4")
        else:
            value = np.asarray(data).astype(kind)
        group.create_dataset(name, data=value)
    _replace_dataset(f, path, make)
    return f"{path} as {kind}"


def mutate_structure(rng, f, ctx):
    datasets, groups, _ = _objects(f)
    kind = rng.choice(["delete-dataset", "delete-group", "rename", "loop", "duplicate"])
    if kind == "delete-dataset" or not groups:
        path = rng.choice(datasets)
        del f[path]
    elif kind == "delete-group":
        path = rng.choice(groups)
        del f[path]
    elif kind == "rename":
        path = rng.choice(datasets + groups)
        f.move(path, path + "_moved")
    elif kind == "loop":
        path = rng.choice(groups)
        f[path + "/loop"] = f[rng.choice(["/", path, _split(path)[0]])]
    else:
        path = rng.choice(groups)
        f[path + "/again"] = f[rng.choice(datasets)]
    return f"{kind} {path}"


def mutate_valid_variant(rng, f, ctx):
    datasets, _, _ = _objects(f)
    path = rng.choice(datasets)
    kind = rng.choice(["chunked", "compact", "big-endian", "float16", "float64", "hard-link",
                       "unallocated"])
    if kind == "hard-link":
        _, groups, _ = _objects(f)
        f[rng.choice(groups) + "/hardlinked"] = f[path]
        return f"{path} hard-linked once more"

    def make(group, name, shape, dtype, data):
        if kind == "chunked":
            group.create_dataset(name, data=data, chunks=True if shape else None)
        elif kind == "compact":
            from h5py import h5d, h5p, h5s, h5t
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_layout(h5d.COMPACT)
            space = h5s.create_simple(shape) if shape else h5s.create(h5s.SCALAR)
            did = h5d.create(group.id, name.encode(), h5t.py_create(np.dtype("<f4")), space,
                             dcpl=dcpl)
            did.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(data, "<f4"))
        elif kind == "big-endian":
            group.create_dataset(name, data=np.asarray(data).astype(">f4"))
        elif kind == "unallocated":
            group.create_dataset(name, shape, "<f4")
        else:
            group.create_dataset(name, data=np.asarray(data).astype(kind))
    if kind == "compact" and f[path].size * 4 > 60_000:
        kind = "chunked"
    _replace_dataset(f, path, make)
    return f"{path} {kind}"


H5_MUTATIONS = {"external-storage": mutate_external_storage,
                "external-link": mutate_external_link, "soft-link": mutate_soft_link,
                "virtual": mutate_virtual, "filters": mutate_filters,
                "attribute": mutate_attribute, "dtype": mutate_dtype,
                "structure": mutate_structure, "valid-variant": mutate_valid_variant}


# -- mutations of the bytes ---------------------------------------------------------------------

def _offset(rng, size: int) -> int:
    """Half the time among the first 4 kB (the superblock and the first headers)."""
    return rng.randrange(min(size, 4096)) if rng.random() < 0.5 else rng.randrange(size)


def mutate_header_dims(rng, data: bytes, shapes) -> tuple[str, bytes]:
    """Overwrite one dimension of a dataspace (a dataset's shape, or a 1-D attribute's length)
    where its 8-byte encoding appears in the file."""
    candidates = [tuple(s) for s in shapes if s] + [(n,) for n in range(2, 12)]
    rng.shuffle(candidates)
    for shape in candidates:
        pattern = b"".join(struct.pack("<Q", d) for d in shape)
        found, at = [], data.find(pattern)
        while at >= 0 and len(found) < 64:
            found.append(at)
            at = data.find(pattern, at + 1)
        if found:
            # One occurrence, or all of them (a dataspace's current and maximum sizes alike).
            spots = found if rng.random() < 0.3 else [rng.choice(found)]
            dim = rng.randrange(len(shape))
            value = rng.choice([0, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**64 - 1])
            buf = bytearray(data)
            for at in spots:
                buf[at + 8 * dim:at + 8 * dim + 8] = struct.pack("<Q", value)
            return (f"dim {dim} of {shape} at bytes {spots[:4]} := {value}", bytes(buf))
    return "dims: no dataspace found", data


def mutate_bytes(rng, cls: str, data: bytes) -> tuple[str, bytes]:
    buf = bytearray(data)
    if cls == "truncate":
        at = _offset(rng, len(buf))
        return f"truncated at {at}", bytes(buf[:at])
    if cls == "byte-flip":
        spots = []
        for _ in range(rng.randint(1, 8)):
            at = _offset(rng, len(buf))
            bit = rng.randrange(8)
            buf[at] ^= 1 << bit
            spots.append(f"{at}^{1 << bit:#x}")
        return f"flipped {', '.join(spots)}", bytes(buf)
    spots = []
    for _ in range(rng.randint(1, 3)):
        at = _offset(rng, len(buf))
        value = rng.choice([b"\xff" * 8, b"\x00" * 8, b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                            b"\xff" * 4, bytes([rng.randrange(256)])])
        buf[at:at + len(value)] = value
        spots.append(f"{at}:={value.hex()}")
    return f"overwrote {', '.join(spots)}", bytes(buf[:len(data)])


# -- files --------------------------------------------------------------------------------------

_NAMES = {"keras": "model.keras", "h5": "model.h5", "weights": "model.weights.h5",
          "legacy": "model_legacy.h5"}


def _inner(data: bytes, fmt: str) -> bytes:
    """The HDF5 file of a base file (a ``.keras`` archive's ``model.weights.h5``)."""
    if fmt != "keras":
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read("model.weights.h5")


def _outer(base: bytes, fmt: str, inner: bytes) -> bytes:
    if fmt != "keras":
        return inner
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            payload = inner if info.filename == "model.weights.h5" else src.read(info)
            dst.writestr(info.filename, payload)
    return out.getvalue()


def mutant(rng, cls: str, fmt: str, bases: Bases, ctx: Canaries) -> tuple[str, bytes]:
    """``(description, bytes of the damaged file)``."""
    import h5py

    base = bases.files[fmt]
    inner = _inner(base, fmt)
    if cls in H5_MUTATIONS:
        scratch = ctx.models / "scratch.h5"
        scratch.write_bytes(inner)
        with h5py.File(scratch, "r+") as f:
            what = H5_MUTATIONS[cls](rng, f, ctx)
        inner = scratch.read_bytes()
        scratch.unlink()
    elif cls == "header-dims":
        what, inner = mutate_header_dims(rng, inner, bases.shapes)
    else:
        what, inner = mutate_bytes(rng, cls, inner)
    return what, _outer(base, fmt, inner)


# -- the check ----------------------------------------------------------------------------------

def _bound(size: int) -> float:
    try:
        from fastconv.io.hdf5 import parse_timeout
    except ImportError:  # a reader without a bound: the library's own default
        return 10.0 + size / 10e6 + TIME_SLACK_S
    return parse_timeout(size) + TIME_SLACK_S


def _weights_hold_canary(model) -> bool:
    for w in model.get_weights():
        raw = np.ascontiguousarray(w, dtype="<f4").tobytes()
        if any(window in raw for window in _CANARY_WINDOWS):
            return True
    return False


def load(fmt: str, path: Path, bases: Bases):
    """Load ``path`` as a user would; returns the model holding the loaded weights."""
    from fastconv.models import load_model

    if fmt in ("keras", "h5"):
        return load_model(path)
    bases.target.load_weights(path)
    return bases.target


def classify(cls: str, fmt: str, path: Path, bases: Bases, size: int) -> tuple[str, str]:
    """``(outcome, why)``: outcome is 'loaded', 'refused' or 'defect'."""
    from fastconv.saving import InvalidModelFileError

    _opened_outside.clear()
    start = time.perf_counter()
    error = None
    try:
        model = load(fmt, path, bases)
    except InvalidModelFileError as exc:
        error, model = exc, None
    except Exception as exc:  # noqa: BLE001 - any other exception is a defect
        return "defect", f"{type(exc).__name__}: {str(exc)[:300]}"
    elapsed = time.perf_counter() - start
    if elapsed > _bound(size):
        return "defect", f"took {elapsed:.1f} s, more than the bound {_bound(size):.1f} s"
    if _opened_outside:
        return "defect", f"opened {_opened_outside[:3]} outside the model's folder"
    if error is not None:
        text = str(error)
        if str(path) not in text:
            return "defect", f"the error does not name the file: {text[:300]}"
        if cls in MUST_REFUSE and not any(w in text for w in MUST_REFUSE[cls]):
            return "defect", f"refused, but not for the {cls}: {text[:300]}"
        if cls == "valid-variant":
            return "defect", f"a valid file was refused: {text[:300]}"
        return "refused", text
    if _weights_hold_canary(model):
        return "defect", "a loaded weight holds the canary's bytes"
    if cls in MUST_REFUSE:
        return "defect", f"the {cls} was loaded instead of refused"
    return "loaded", ""


#: Refusals worth counting apart: the reader's bounds at work.
_BOUNDS = {"parsing took more than": "time bound", "crashed": "crash", "more memory": "memory"}


@dataclass
class Result:
    counts: collections.Counter = field(default_factory=collections.Counter)
    formats: collections.Counter = field(default_factory=collections.Counter)
    bounds: collections.Counter = field(default_factory=collections.Counter)
    defects: list = field(default_factory=list)
    seconds: float = 0.0
    slowest: tuple = (0.0, "")

    def table(self) -> str:
        lines = [f"{'class':18s} {'loaded':>7s} {'refused':>8s} {'defect':>7s}"]
        for cls in CLASSES:
            row = [self.counts[(cls, o)] for o in ("loaded", "refused", "defect")]
            if any(row):
                lines.append(f"{cls:18s} {row[0]:7d} {row[1]:8d} {row[2]:7d}")
        total = [sum(v for (_, o), v in self.counts.items() if o == out)
                 for out in ("loaded", "refused", "defect")]
        lines.append(f"{'total':18s} {total[0]:7d} {total[1]:8d} {total[2]:7d}")
        lines.append("per format: " + ", ".join(f"{k} {v}" for k, v in sorted(
            self.formats.items())))
        lines.append("refusals by a bound of the reader: " + (", ".join(
            f"{k} {v}" for k, v in sorted(self.bounds.items())) or "none"))
        lines.append(f"slowest load: {self.slowest[0]:.2f} s ({self.slowest[1]})")
        return "\n".join(lines)


def example(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def run(examples: int, seed: int, folder, only: int | None = None, verbose: bool = False,
        progress: int = 0, fifo: bool = True, classes=CLASSES) -> Result:
    """Damage and load ``examples`` files (or only the example ``only``) in ``folder``, drawing
    the mutations from ``classes``; with ``fifo``, some external targets are a FIFO (a reader
    that opens one blocks)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    bases = load_bases(folder)
    ctx = make_canaries(folder, bases.shapes, fifo)
    if not _audit.get("installed"):
        sys.addaudithook(_audit_hook)
        _audit["installed"] = True
    _audit["dir"] = str(ctx.dir)
    result = Result()
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(ctx.models)  # relative external paths resolve from the model's folder
    try:
        for index in range(examples) if only is None else [only]:
            rng = example(seed, index)
            fmt = rng.choice(FORMATS)
            cls = rng.choice(classes)
            what, data = mutant(rng, cls, fmt, bases, ctx)
            path = ctx.models / _NAMES[fmt]
            path.write_bytes(data)
            watchdog = threading.Timer(_bound(len(data)) + HANG_S, _hung,
                                       (index, cls, fmt, what))
            watchdog.daemon = True
            watchdog.start()
            began = time.perf_counter()
            try:
                outcome, why = classify(cls, fmt, path, bases, len(data))
            finally:
                watchdog.cancel()
            took = time.perf_counter() - began
            if took > result.slowest[0]:
                result.slowest = (took, f"#{index} {fmt} {cls}: {what}"[:200])
            for words, bound in _BOUNDS.items():
                if outcome == "refused" and words in why:
                    result.bounds[bound] += 1
            result.counts[(cls, outcome)] += 1
            result.formats[fmt] += 1
            if outcome == "defect":
                result.defects.append((index, cls, fmt, what, why))
            if verbose:
                print(f"#{index} {fmt} {cls}: {what} -> {outcome} {why[:200]}", flush=True)
            if progress and (index + 1) % progress == 0:
                print(f"{index + 1} examples, {len(result.defects)} defects, "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
    finally:
        os.chdir(cwd)
        _audit["dir"] = None
    result.seconds = time.perf_counter() - start
    return result


def _hung(index, cls, fmt, what) -> None:
    print(f"DEFECT: example #{index} ({fmt}, {cls}: {what}) has not returned after its time "
          f"bound plus {HANG_S:.0f} s", flush=True)
    os._exit(2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", help="where the files go (default: a new temporary folder)")
    parser.add_argument("--only", type=int, help="run only this example (to reproduce it)")
    parser.add_argument("--parse-timeout", type=float,
                        help="the reader's base time bound in seconds (fastconv.io.hdf5."
                             "TIMEOUT_BASE_S), lowered to spend less time on files that hang")
    parser.add_argument("--no-fifo", action="store_true",
                        help="no FIFO among the external targets (a reader that follows them "
                             "blocks forever, which stops the run)")
    parser.add_argument("--classes", help="comma-separated classes to draw from (default: all)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.parse_timeout is not None:
        from fastconv.io import hdf5

        hdf5.TIMEOUT_BASE_S = args.parse_timeout
    folder = args.folder or tempfile.mkdtemp(prefix="fastconv-hdf5-")
    result = run(args.examples, args.seed, folder, only=args.only, verbose=args.verbose,
                 progress=0 if args.verbose else 500, fifo=not args.no_fifo,
                 classes=tuple(args.classes.split(",")) if args.classes else CLASSES)
    print(result.table())
    for index, cls, fmt, what, why in result.defects[:50]:
        print(f"DEFECT #{index} ({fmt}, {cls}: {what}): {why}")
    n = sum(result.counts.values())
    print(f"{n} examples, {len(result.defects)} defects, {result.seconds:.0f} s (seed "
          f"{args.seed}, folder {folder})")
    return 1 if result.defects else 0


if __name__ == "__main__":
    sys.exit(main())
