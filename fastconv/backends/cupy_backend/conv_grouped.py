"""Launchers of ``kernels/conv_grouped.cu``: grouped and depthwise convolution, every group in
one launch per pass.

x (N, H, W, C), w (KH, KW, C/G, O) (Keras's ``Conv2D(groups=G)`` kernel; depthwise: G == C,
(KH, KW, 1, C*M)), y and dy (N, OH, OW, O); ``g`` is the geometry of the whole convolution
(``c`` = C, ``o`` = O). Forward and backward-data: one thread per output / input element,
grid-stride. Backward-weight: one block per kernel element, its threads striding over the
N*OH*OW pixels and summing in shared memory (deterministic); the block size reaches the kernel
as ``GROUPED_THREADS``.
"""

from __future__ import annotations

from ..derived import DerivedCache
from .elementwise import _act
from .launch import blocks_1d, check_sizes, config, contiguous, i32, kernel, launch, same_dtype

SOURCE = "conv_grouped.cu"


def _defines() -> dict[str, int] | None:
    """``GROUPED_THREADS`` = the launch's block size where it differs from the source's
    default (256, the GPU's)."""
    threads = config().threads_1d
    return None if threads == 256 else {"GROUPED_THREADS": threads}


def _check_groups(g, groups) -> int:
    groups = int(groups)
    if groups < 1 or g.c % groups or g.o % groups:
        raise ValueError(f"cupy grouped convolution: {g.c} input and {g.o} output channels do "
                         f"not split into groups={groups}")
    return groups


def _w_shape(g, groups):
    return (g.kh, g.kw, g.c // groups, g.o)


def _device(be, what, *pairs):
    """``(array or None, expected shape)`` pairs -> C-contiguous device arrays of one dtype,
    checked against the geometry's shapes and the kernels' 32-bit indices."""
    arrays = [None if a is None else contiguous(be, a) for a, _ in pairs]
    same_dtype(what, arrays[0].dtype, *arrays[1:])
    for a, (_, shape) in zip(arrays, pairs):
        if a is not None and tuple(a.shape) != tuple(shape):
            raise ValueError(f"{what}: an operand of shape {tuple(a.shape)} where the geometry "
                             f"expects {tuple(shape)}")
    check_sizes(*arrays)
    return arrays


def forward(be, x, w, b, g, groups, activation):
    """y = act(grouped_conv(x, w) + b) on device arrays already checked (``b`` may be None)."""
    y = be.empty(g.y_shape, x.dtype)
    check_sizes(y)
    grid, block = blocks_1d(y.size)
    launch(kernel(SOURCE, "grouped_forward", x.dtype), grid, block,
           (x, w, y if b is None else b, y, *i32(b is not None, _act(activation), groups),
            *i32(*g.astuple())))
    return y


def grouped_forward(be, x, w, b, g, groups, activation):
    """``grouped_conv2d_forward``."""
    groups = _check_groups(g, groups)
    x, w, b = _device(be, "grouped conv2d", (x, g.x_shape), (w, _w_shape(g, groups)),
                      (b, (g.o,)))
    return forward(be, x, w, b, g, groups, activation)


def prepare_grouped_forward(be, g, groups, activation):
    """``run(x, w, b, weights_key)`` for inference: w and b as device arrays once per
    ``weights_key``, then one launch per call."""
    groups = _check_groups(g, groups)
    _act(activation)
    cache = DerivedCache()

    def prepared(w, b):  # w and b kept so that their ids in the key stay theirs
        w_dev, b_dev = _device(be, "grouped conv2d", (w, _w_shape(g, groups)), (b, (g.o,)))
        return w, b, w_dev, b_dev

    def run(x, w, b, weights_key):
        _, _, w_dev, b_dev = cache.get(weights_key, lambda: prepared(w, b))
        (x,) = _device(be, "grouped conv2d", (x, g.x_shape))
        same_dtype("grouped conv2d", x.dtype, w_dev)
        return forward(be, x, w_dev, b_dev, g, groups, activation)

    return run


def grouped_backward_data(be, dy, w, g, groups):
    """``grouped_conv2d_backward_data``: dx (N, H, W, C)."""
    groups = _check_groups(g, groups)
    dy, w = _device(be, "grouped conv2d backward-data", (dy, g.y_shape),
                    (w, _w_shape(g, groups)))
    dx = be.empty(g.x_shape, dy.dtype)
    check_sizes(dx)
    grid, block = blocks_1d(dx.size)
    launch(kernel(SOURCE, "grouped_backward_data", dy.dtype), grid, block,
           (dy, w, dx, *i32(groups), *i32(*g.astuple())))
    return dx


def grouped_backward_weight(be, x, dy, g, groups):
    """``grouped_conv2d_backward_weight``: dw (KH, KW, C/G, O)."""
    groups = _check_groups(g, groups)
    x, dy = _device(be, "grouped conv2d backward-weight", (x, g.x_shape), (dy, g.y_shape))
    dw = be.empty(_w_shape(g, groups), x.dtype)
    check_sizes(dw)
    cfg = config()
    blocks = max(1, min(dw.size, cfg.max_blocks))
    launch(kernel(SOURCE, "grouped_backward_weight", x.dtype, _defines()), (blocks,),
           (cfg.threads_1d,), (x, dy, dw, *i32(groups), *i32(*g.astuple())))
    return dw
