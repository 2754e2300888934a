"""What the ONNX importer's parts share: the layers it makes, the symbolic tensor it tracks,
the layout tables between ONNX's channels-first axes and fastconv's channels-last ones, the
limits a file must respect, and the helpers that name things in messages."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .. import layers as _layers

#: The most elements one sample of any tensor of the model may hold (8 GiB of float32).
MAX_SAMPLE_ELEMENTS = 1 << 31
#: Padding on one side of an axis may not exceed this many times the larger of the axis's
#: length and the window's extent.
MAX_PAD_FACTOR = 16
#: The most axes a tensor may have (NumPy's limit).
MAX_RANK = 64
#: The largest kernel size, stride or dilation accepted.
MAX_WINDOW = (1 << 31) - 1

_NCHW_TO_NHWC = (0, 2, 3, 1)
_NHWC_TO_NCHW = (0, 3, 1, 2)
#: fastconv's axes of a channels-last tensor -> ONNX's channels-first, by rank
_TO_ONNX = {3: (0, 2, 1), 4: _NHWC_TO_NCHW, 5: (0, 3, 4, 1, 2)}
#: Permute layer dims taking ONNX's channels-first order to fastconv's, and back
_PERMUTE_IN = {3: (2, 1), 4: (2, 3, 1), 5: (3, 4, 1, 2)}
_PERMUTE_OUT = {3: (2, 1), 4: (3, 1, 2), 5: (3, 4, 1, 2)}


class UnsupportedOnnxError(ValueError):
    """The ONNX file uses operators (or operator options) fastconv does not implement."""


class _LayerArgumentError(Exception):
    """A layer refused the arguments the file gave it (its message says which)."""


class _CheckedLayers:
    """``fastconv.layers`` whose constructors raise _LayerArgumentError where the layer's own
    validation refuses an argument: the importer reports it naming the node."""

    def __getattr__(self, name):
        cls = getattr(_layers, name)

        def make(*args, **kwargs):
            try:
                return cls(*args, **kwargs)
            except (ValueError, TypeError) as exc:
                raise _LayerArgumentError(str(exc)) from None

        setattr(self, name, make)  # one constructor per layer class: ``is`` compares them
        return make


L = _CheckedLayers()


@dataclass
class Sym:
    """A fastconv symbolic tensor standing for an ONNX tensor."""

    t: object  # KerasTensor
    layout: str = "plain"  # or "nchw"
    flat_chw: tuple | None = None  # a flattened image in H, W, C order; ONNX's is (C, H, W)

    @property
    def onnx_shape(self) -> tuple:
        shape = tuple(self.t.shape)
        if self.layout == "nchw":
            return tuple(shape[i] for i in _TO_ONNX[len(shape)])
        return shape


def _perm(node):
    """A Transpose's perm as a list, or None where it is missing or unreadable."""
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def _text(v) -> str:
    """A name from the file as text (a damaged file's names may not be UTF-8)."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _short(text, limit: int = 80) -> str:
    text = f"a {type(text).__name__}" if hasattr(text, "DESCRIPTOR") else str(text)
    return text if len(text) <= limit else text[:limit] + "..."


class _Names:
    """Unique layer names; a name's next free suffix is remembered, so that many nodes of one
    name take linear time."""

    def __init__(self):
        self.used: set = set()
        self.next: dict = {}

    def take(self, text: str) -> str:
        text = _text(text)
        base = re.sub(r"[^0-9A-Za-z_]+", "_", text[:200]).strip("_") or "onnx"
        base = base[:60]
        i = self.next.get(base, 1)
        name = base if i == 1 else f"{base}_{i}"
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.next[base] = i + 1
        self.used.add(name)
        return name


def _show(v) -> str:
    """An attribute's value for a message: short, one line."""
    return f"a {type(v).__name__}" if hasattr(v, "DESCRIPTOR") else _short(repr(v), 60)


def _name(text: str, used: _Names) -> str:
    return used.take(text)


def _lazy(v) -> bool:
    """True for a broadcast constant (a ConstantOfShape): one value seen at every index."""
    return (isinstance(v, np.ndarray) and v.size > 1
            and all(s == 0 for s, d in zip(v.strides, v.shape) if d > 1))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
