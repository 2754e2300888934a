"""The ONNX importer's shape operators on computed tensors: Shape (a constant, the batch size a
symbol: ``symbolic``), Cast, Unsqueeze, Squeeze, Slice, Split, and If on a constant condition.

Axes are ONNX's. A tensor held channels-last (layout ``"nchw"``) maps ONNX axis ``a`` to the
held axis ``_HELD_AXIS[rank][a]``; a 5D ``"nchw"`` tensor is ONNX's ``(N, A, B, H, W)`` held as
``(N, H, W, A, B)``, the form a channel shuffle's reshape takes.
"""

from __future__ import annotations

import numpy as np

from ._common import MAX_RANK, L, Sym, _short
from .symbolic import PROBES, BatchValue, combine

#: ONNX axis -> fastconv's held axis of a channels-last tensor, by rank
_HELD_AXIS = {3: {0: 0, 1: 2, 2: 1}, 4: {0: 0, 1: 3, 2: 1, 3: 2},
              5: {0: 0, 1: 3, 2: 4, 3: 1, 4: 2}}

#: ONNX element types that Cast may target on a computed tensor: FLOAT and DOUBLE (fastconv
#: computes in float32; a cast to a narrower type would round, which it does not do)
_FLOAT_TYPES = (1, 11)


class ShapeOps:
    """Mixed into the importer (``_import._Importer``): its helpers make the layers."""

    def op_Shape(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        shape = x.onnx_shape
        if None in shape[1:]:
            raise self._fail(node, f"the shape of a tensor whose size is not known at load time "
                                   f"({shape}); fastconv resolves shapes when it loads a model")
        start = self._int(node, a, "start", 0)
        end = self._int(node, a, "end", None)
        return combine([np.asarray([probe, *shape[1:]], np.int64)[start:end]
                        for probe in PROBES])

    def op_Cast(self, node, a):  # noqa: N802
        to = self._int(node, a, "to")
        if to not in _FLOAT_TYPES:
            raise self._fail(node, f"a cast of a computed tensor to element type {to}; fastconv "
                                   f"computes in float32")
        return self.sym(node, 0)

    def _axes_of(self, node, a, what="axes"):
        if "axes" in a:
            return self._ints(node, a, "axes")
        if len(node.input) > 1 and node.input[1]:
            return self._int_list(node, self.const(node, 1, what), what)
        return None

    def _reshaped_sym(self, node, x: Sym, shape) -> Sym:
        """``x`` (any layout) reshaped to the ONNX shape ``shape`` (batch axis first, kept)."""
        rest = tuple(shape[1:])
        if not rest:
            raise self._fail(node, f"a result of shape {tuple(shape)} has no axis besides the "
                                   f"batch")
        if x.layout == "nchw" and x.flat_chw is None and all(
                d == 1 for d in x.onnx_shape[2:]):
            t = x.t  # channels with unit spatial axes: the held order is ONNX's
        else:
            t = self.as_plain(node, x).t
        if tuple(t.shape[1:]) == rest:
            return Sym(t)
        return Sym(self.call(node, L.Reshape(rest, name=self.layer_name(node)), t))

    def op_Unsqueeze(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        axes = self._axes_of(node, a)
        if axes is None:
            raise self._invalid(node, "missing axes")
        shape = list(x.onnx_shape)
        rank = len(shape) + len(axes)
        axes = sorted(self._axis(node, v, rank) for v in axes)
        if len(set(axes)) != len(axes) or rank > MAX_RANK:
            raise self._invalid(node, f"axes {axes} repeat or make more than {MAX_RANK} axes")
        if 0 in axes:
            raise self._fail(node, "a new axis before the batch axis; fastconv keeps the batch "
                                   "axis first")
        for ax in axes:
            shape.insert(ax, 1)
        return self._reshaped_sym(node, x, shape)

    def op_Squeeze(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        shape = list(x.onnx_shape)
        axes = self._axes_of(node, a)
        if axes is None:
            axes = [i for i, d in enumerate(shape) if i and d == 1]
        axes = {self._axis(node, v, len(shape)) for v in axes}
        if 0 in axes:
            raise self._fail(node, "squeezing the batch axis; fastconv keeps the batch axis")
        if any(shape[ax] != 1 for ax in axes):
            raise self._invalid(node, f"squeezing axes {sorted(axes)} of shape "
                                      f"{tuple(shape)}: not all of them have length 1")
        return self._reshaped_sym(node, x, [d for i, d in enumerate(shape) if i not in axes])

    def _slice_sym(self, node, x: Sym, cuts) -> Sym:
        """``x`` cut by ``cuts``: {ONNX axis: (start, stop, step)} on axes of known length."""
        if x.flat_chw is not None:
            x = self.as_plain(node, x)
        rank = len(x.t.shape)
        held = _HELD_AXIS[rank] if x.layout == "nchw" else {i: i for i in range(rank)}
        t = x.t
        for axis, (start, stop, step) in sorted(cuts.items()):
            suffix = f"_{axis}" if len(cuts) > 1 else ""
            t = self.call(node, L.Slice(held[axis], start, stop, step,
                                        name=self.layer_name(node, suffix)), t)
        return Sym(t, x.layout)

    def _cut(self, node, size, axis, start, end, step):
        """(start, stop, step) of ONNX's slice of an axis of ``size``, for a Python slice."""
        if size is None:
            raise self._fail(node, f"slicing axis {axis}, whose length is not known at load "
                                   f"time")
        start, stop, step = slice(start, end, step).indices(size)
        if not len(range(start, stop, step)):
            raise self._fail(node, f"an empty slice of axis {axis} (length {size})")
        return start, (None if stop < 0 else stop), step

    def op_Slice(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        shape = x.onnx_shape
        if self.opset < 10:
            starts, ends = self._ints(node, a, "starts"), self._ints(node, a, "ends")
            if starts is None or ends is None:
                raise self._invalid(node, "missing attribute 'starts' or 'ends'")
            axes = self._ints(node, a, "axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            def given(i, what):
                v = self.const(node, i, what, optional=True)
                return None if v is None else self._int_list(node, v, what)

            starts, ends = given(1, "starts"), given(2, "ends")
            if starts is None or ends is None:
                raise self._invalid(node, "missing input starts or ends")
            axes = given(3, "axes")
            axes = list(range(len(starts))) if axes is None else axes
            steps = given(4, "steps")
            steps = [1] * len(starts) if steps is None else steps
        if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise self._invalid(node, f"starts, ends, axes and steps of lengths {len(starts)}, "
                                      f"{len(ends)}, {len(axes)} and {len(steps)} (steps "
                                      f"{_short(steps, 40)})")
        cuts = {}
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = self._axis(node, ax, len(shape))
            if ax in cuts:
                raise self._invalid(node, f"axis {ax} sliced twice")
            if ax == 0:
                if st in (0, -(1 << 63)) and sp == 1 and en >= (1 << 31) - 1:
                    continue  # the whole batch
                raise self._fail(node, "slicing the batch axis; fastconv keeps every sample")
            cut = self._cut(node, shape[ax], ax, st, en, sp)
            if cut != (0, shape[ax], 1):
                cuts[ax] = cut
        return self._slice_sym(node, x, cuts) if cuts else x

    def op_Split(self, node, a):  # noqa: N802
        x = self.sym(node, 0)
        shape = x.onnx_shape
        axis = self._axis(node, self._int(node, a, "axis", 0), len(shape))
        if axis == 0:
            raise self._fail(node, "splitting the batch axis; fastconv keeps every sample")
        size = shape[axis]
        outputs = len(node.output)
        if len(node.input) > 1 and node.input[1]:
            sizes = self._int_list(node, self.const(node, 1, "split"), "split")
        elif "split" in a:
            sizes = self._ints(node, a, "split")
        else:
            parts = self._int(node, a, "num_outputs", outputs, lo=1)
            if size is None:
                raise self._fail(node, f"splitting axis {axis} of unknown length")
            chunk = -(-size // parts)
            sizes = [min(chunk, size - i * chunk) for i in range(parts)]
        if size is None or any(s < 0 for s in sizes) or sum(sizes) != size or (
                len(sizes) != outputs):
            raise self._invalid(node, f"split sizes {_short(sizes, 60)} for {outputs} outputs "
                                      f"do not cover axis {axis} of length {size}")
        if 0 in sizes:
            raise self._fail(node, f"split sizes {_short(sizes, 60)}: an empty output")
        outs, start = [], 0
        for s in sizes:
            outs.append(self._slice_sym(node, x, {axis: (start, start + s, 1)})
                        if s != size else x)
            start += s
        return outs

    def op_If(self, node, a):  # noqa: N802
        cond = self.values.get(node.input[0]) if node.input and node.input[0] else None
        if cond is None:
            raise self._invalid(node, "missing input (the condition)")
        if isinstance(cond, Sym):
            raise self._fail(node, "a condition computed from the input's values; fastconv "
                                   "runs one graph for every input")
        if isinstance(cond, BatchValue):
            raise self._fail(node, "a condition that depends on the batch size; fastconv runs "
                                   "one graph for every batch size (export with a fixed batch "
                                   "size, or without the branch)")
        cond = np.asarray(cond)
        if cond.size != 1 or cond.dtype.kind not in "biuf":
            raise self._invalid(node, f"the condition is a {cond.dtype} tensor of shape "
                                      f"{cond.shape}; expected one boolean")
        branch = a.get("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch")
        if branch is None:
            raise self._invalid(node, "missing attribute then_branch or else_branch")
        self.load_initializers(branch.initializer)
        for inner in branch.node:
            self.import_node(inner, self.consumed)
        self.current = node
        outs = []
        for vo in branch.output:
            v = self.values.get(vo.name)
            if v is None:
                raise self._invalid(node, f"the branch's output '{_short(vo.name)}' is never "
                                          f"produced")
            outs.append(v)
        if len(outs) != len(node.output):
            raise self._invalid(node, f"the branch has {len(outs)} outputs for the node's "
                                      f"{len(node.output)}")
        return outs

