"""Launchers of ``kernels/elementwise.cu``: fused bias + activation, its backward with the bias
sums, Adam, uniform random numbers. Arrays are (rows, channels) views, channels last."""

from __future__ import annotations

import numpy as np

from ... import random as fc_random
from .launch import blocks_1d, ceil_div, config, contiguous, i32, kernel, launch, real

SOURCE = "elementwise.cu"
ACTIVATION_CODES = {"linear": 0, "relu": 1}


def _act(activation: str) -> int:
    try:
        return ACTIVATION_CODES[activation]
    except KeyError:
        raise ValueError(f"unknown fused activation {activation!r}; expected one of "
                         f"{sorted(ACTIVATION_CODES)}") from None


def bias_activation(be, y, b, activation):
    """``activation(y + b)`` in place on ``y`` (C-contiguous device memory); returns ``y``."""
    act = _act(activation)
    if not y.flags.c_contiguous:
        raise ValueError("bias_activation works in place on a C-contiguous array")
    ch = y.shape[-1] if y.ndim else 1
    if y.size == 0 or (b is None and act == 0):
        return y
    bias = y if b is None else contiguous(be, b, y.dtype)
    grid, block = blocks_1d(y.size)
    launch(kernel(SOURCE, "bias_activation", y.dtype), grid, block,
           (y, bias, *i32(y.size // ch, ch, b is not None, act)))
    return y


def _column_blocks(rows: int, ch: int):
    """Launch shape of the column sums over (rows, ch): blockDim.x channels by blockDim.y rows,
    grid (channel blocks, row chunks), and the rows per chunk."""
    cfg = config()
    threads = cfg.threads_1d
    bx = 1
    while bx < min(ch, threads):
        bx *= 2
    by = threads // bx
    gx = ceil_div(ch, bx)
    rows_per = max(by, cfg.chunk, ceil_div(rows, max(1, cfg.max_blocks // gx)))
    return (gx, ceil_div(rows, rows_per)), (bx, by), rows_per


def epilogue_backward(be, dy, y, activation, bias):
    """(dz, db) of ``y = activation(z + b)``: dz = dy * (y > 0) for ReLU (dy itself for
    linear); db the per-channel sums of dz when ``bias``, else None."""
    act = _act(activation)
    if act == 0 and not bias:
        return dy, None
    dy = contiguous(be, dy)
    ch = dy.shape[-1]
    rows = dy.size // ch if ch else 0
    dz = be.empty(dy.shape, dy.dtype) if act else dy
    db = be.zeros((ch,), dy.dtype) if bias else None
    y = dy if y is None else contiguous(be, y, dy.dtype)
    if dy.size:
        grid, block, rows_per = _column_blocks(rows, ch)
        launch(kernel(SOURCE, "epilogue_backward", dy.dtype,
                      {"EPILOGUE_THREADS": config().threads_1d}),
               grid, block, (dy, y, dz, dz if db is None else db,
                             *i32(rows, ch, act, bool(bias), rows_per)))
    return dz, db


def adam_update(be, param, grad, m, v, lr_t, beta_1, beta_2, epsilon):
    """One Adam step in place on ``param``, ``m`` and ``v`` (C-contiguous, one dtype)."""
    for name, a in (("param", param), ("m", m), ("v", v)):
        if not a.flags.c_contiguous or a.dtype != param.dtype or a.shape != param.shape:
            raise ValueError(f"adam_update: {name} must be C-contiguous with param's dtype and "
                             f"shape {param.shape}")
    grad = contiguous(be, grad, param.dtype)
    if param.size == 0:
        return
    grid, block = blocks_1d(param.size)
    launch(kernel(SOURCE, "adam_update", param.dtype), grid, block,
           (param, grad, m, v, *i32(param.size),
            *real(param.dtype, lr_t, beta_1, beta_2, epsilon)))


def random_uniform(be, shape, dtype):
    """Uniform [0, 1) samples: a counter-based hash of (seed, index), the seed drawn from the
    seeded host stream (``fastconv.random.host_rng``) at each call."""
    out = be.empty(shape, dtype)
    seed = fc_random.host_rng().integers(0, np.iinfo(np.uint64).max, dtype=np.uint64,
                                         endpoint=True)
    if out.size:
        grid, block = blocks_1d(out.size)
        launch(kernel(SOURCE, "random_uniform", out.dtype), grid, block,
               (out, *i32(out.size), np.uint64(seed)))
    return out
