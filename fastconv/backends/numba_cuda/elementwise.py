"""Element-wise kernels: fused bias + activation, its backward with the bias sums, Adam, and
uniform random numbers; and the per-channel column sums that the epilogue's backward and batch
normalisation share.

Arrays are viewed as (rows, channels), channels last and contiguous. Element-wise kernels are
1D grid-stride loops over the flat array. Column sums are two kernels: in the first, 2D blocks
of ``CONFIG.threads_2d`` threads (x along the channels, coalesced; y along the rows) each keep
a float64 sum per thread, add them up over the block's y in shared memory and write one
float64 row of partial sums per block row of the grid; :func:`column_sums` adds those rows up.
No atomics: the sums come out the same on every run.

Random numbers are counter-based (Philox-4x32-10, Salmon et al. 2011): element block ``i`` is
the hash of the counter ``i`` under a key drawn once per call from ``fastconv.random.host_rng()``,
so ``set_random_seed`` makes runs reproducible and no generator state lives on the device.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, types

from ... import random as fc_random
from .launch import CONFIG, I32, SIMULATED, U64, array, blocks_for, ceil_div, kernel, real
from .pool import grid_range, split, udiv

F64 = types.float64
#: 2D blocks of the column-sum kernels: x along channels, y along rows
TX, TY = CONFIG.threads_2d
#: at most this many blocks, and this many block rows (rows of partial sums), per column sum
_SUM_BLOCKS, _SUM_BLOCK_ROWS = (CONFIG.max_blocks, CONFIG.max_blocks) if SIMULATED else (1024, 256)


def sum_grid(rows: int, ch: int) -> tuple[int, int]:
    """(blocks along the channels, blocks along the rows) of a column-sum kernel."""
    gx = max(1, min(ceil_div(ch, TX), _SUM_BLOCKS))
    gy = max(1, min(ceil_div(rows, TY), _SUM_BLOCK_ROWS, _SUM_BLOCKS // gx))
    return gx, gy


@cuda.jit(device=True, inline=True)
def block_column_sum(sm, acc, partial, k):
    """Every thread of the block calls this with its float64 ``acc`` for channel ``k``:
    ``partial[blockIdx.y, k]`` receives the sum of ``acc`` over the block's y threads.
    ``sm`` is the block's (TY, TX) float64 shared scratch."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    sm[ty, tx] = acc
    cuda.syncthreads()
    if ty == 0 and k < partial.shape[1]:
        s = sm[0, tx]
        for i in range(1, cuda.blockDim.y):
            s += sm[i, tx]
        partial[cuda.blockIdx.y, k] = s
    cuda.syncthreads()


@kernel(lambda dt: (array(np.float64, 2), array(dt, 1)))
def sum_partials(partial, out):
    """out[k] = sum(partial[:, k]): the second pass of a column sum. Blocks of (TX, TY) threads
    over the channels (grid-stride along x); each thread sums every TY-th row, then the block
    adds its y threads up in shared memory. Launched with one block row."""
    sm = cuda.shared.array((TY, TX), F64)
    rows, ch = partial.shape
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    for k0 in range(cuda.blockIdx.x * TX, ch, cuda.gridDim.x * TX):
        k = k0 + tx
        acc = 0.0
        if k < ch:
            for r in range(ty, rows, cuda.blockDim.y):
                acc += partial[r, k]
        sm[ty, tx] = acc
        cuda.syncthreads()
        if ty == 0 and k < ch:
            s = sm[0, tx]
            for i in range(1, cuda.blockDim.y):
                s += sm[i, tx]
            out[k] = s
        cuda.syncthreads()


def column_sums(be, partial, dtype):
    """The per-channel totals (dtype ``dtype``) of the partial sums of a column-sum kernel;
    a single row of partial sums is the total already (no second launch)."""
    rows, ch = partial.shape
    if rows == 1:
        return be.device(partial[0].astype(dtype))
    out = be.empty((ch,), dtype)
    sum_partials[(sum_grid(1, ch)[0], 1), (TX, TY)](dtype, partial, out)
    return out


# -- bias + activation and its backward ------------------------------------------------------
LINEAR, RELU = 0, 1
ACTIVATION_CODES = {"linear": LINEAR, "relu": RELU}


@kernel(lambda dt: (array(dt, 2), array(dt, 1), I32, I32))
def bias_act(y, b, has_bias, act):
    """y[r, k] = act(y[r, k] + b[k]) in place (act: RELU or LINEAR; ``b`` unused when
    ``has_bias`` is 0). 1D grid-stride over the rows * channels elements."""
    rows, ch = y.shape
    start, step = grid_range()
    for t in range(start, np.int32(rows * ch), step):
        r, k = split(t, ch)
        v = y[r, k]
        if has_bias != 0:
            v += b[k]
        if act == RELU and v < 0:  # NaN stays NaN, as numpy.maximum(v, 0)
            v = y.dtype.type(0)
        y[r, k] = v


@kernel(lambda dt: (array(dt, 2), array(dt, 2), I32, I32, array(dt, 2), array(np.float64, 2)))
def epilogue_grad(dy, y, act, with_bias, dz, partial):
    """dz = dy * (y > 0) for RELU (written), dz = dy for LINEAR (not written: ``dz`` may be
    any array); with_bias: partial[blockIdx.y, k] = float64 sum of dz[:, k] over this block
    row's rows (see :func:`block_column_sum`). 2D blocks (TX, TY), grid-stride along both."""
    sm = cuda.shared.array((TY, TX), F64)
    rows, ch = dy.shape
    tx = cuda.threadIdx.x
    row0 = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    row_step = cuda.gridDim.y * cuda.blockDim.y
    for k0 in range(cuda.blockIdx.x * TX, ch, cuda.gridDim.x * TX):
        k = k0 + tx
        acc = 0.0
        if k < ch:
            for r in range(row0, rows, row_step):
                g = dy[r, k]
                if act == RELU:
                    if not y[r, k] > 0:
                        g = dy.dtype.type(0)
                    dz[r, k] = g
                acc += g
        if with_bias != 0:
            block_column_sum(sm, acc, partial, k)


def bias_activation(be, y, b, activation):
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"unknown fused activation {activation!r}; expected one of "
                         f"{tuple(ACTIVATION_CODES)}")
    ch = y.shape[-1] if y.ndim else 1
    work = y if be.is_device_array(y) and y.flags.c_contiguous else be.asarray(y)
    rows = work.size // ch if ch else 0
    has_bias = b is not None
    bias = be.asarray(b, dtype=work.dtype) if has_bias else be.zeros((1,), work.dtype)
    if has_bias and bias.shape != (ch,):
        raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({ch},) for an output "
                         f"of shape {tuple(y.shape)}")
    bias_act[blocks_for(work.size)](work.dtype, work.reshape(rows, ch), bias,
                                    np.int32(has_bias), np.int32(ACTIVATION_CODES[activation]))
    if work is not y:
        y[...] = work
    return y


def epilogue_backward(be, dy, y, activation, bias):
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"unknown fused activation {activation!r}; expected one of "
                         f"{tuple(ACTIVATION_CODES)}")
    act = ACTIVATION_CODES[activation]
    if act == LINEAR and not bias:
        return dy, None
    dy = be.asarray(dy)
    ch = dy.shape[-1]
    rows = dy.size // ch if ch else 0
    dy2 = dy.reshape(rows, ch)
    if act == RELU:
        y2 = be.asarray(y, dtype=dy.dtype).reshape(rows, ch)
        dz = be.empty(dy.shape, dy.dtype)
    else:
        y2, dz = dy2, dy
    gx, gy = sum_grid(rows, ch)
    partial = be.empty((gy, ch) if bias else (1, 1), np.float64)
    epilogue_grad[(gx, gy), (TX, TY)](dy.dtype, dy2, y2, np.int32(act), np.int32(bias),
                                      dz.reshape(rows, ch), partial)
    return dz, (column_sums(be, partial, dy.dtype) if bias else None)


# -- Adam ------------------------------------------------------------------------------------
@kernel(lambda dt: (array(dt, 1), array(dt, 1), array(dt, 1), array(dt, 1), real(dt), real(dt),
                    real(dt), real(dt)))
def adam(p, g, m, v, lr_t, one_b1, one_b2, eps):
    """One Adam step in place, in the arrays' precision: m += (g - m)(1 - b1);
    v += (g^2 - v)(1 - b2); p -= lr_t * m / (sqrt(v) + eps). 1D grid-stride."""
    start, step = grid_range()
    for i in range(start, np.int32(p.shape[0]), step):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_b1
        vi = v[i] + (gi * gi - v[i]) * one_b2
        m[i] = mi
        v[i] = vi
        p[i] -= lr_t * mi / (math.sqrt(vi) + eps)


def adam_update(be, param, grad, m, v, lr_t, beta_1, beta_2, epsilon):
    for name, a in (("param", param), ("m", m), ("v", v)):
        if not be.is_device_array(a) or not a.flags.c_contiguous:
            raise ValueError(f"adam_update: {name} must be a C-contiguous device array "
                             f"(it is updated in place)")
        if a.shape != param.shape or a.dtype != param.dtype:
            raise ValueError(f"adam_update: {name} is {a.dtype} {tuple(a.shape)}, param is "
                             f"{param.dtype} {tuple(param.shape)}")
    grad = be.asarray(grad, dtype=param.dtype)
    if grad.shape != param.shape:
        raise ValueError(f"adam_update: grad has shape {tuple(grad.shape)}, param "
                         f"{tuple(param.shape)}")
    dt = param.dtype.type  # float32 arrays: float32 arithmetic
    adam[blocks_for(param.size)](param.dtype, param.reshape(-1), grad.reshape(-1),
                                 m.reshape(-1), v.reshape(-1), dt(lr_t), dt(1 - beta_1),
                                 dt(1 - beta_2), dt(epsilon))


# -- random numbers --------------------------------------------------------------------------
_MASK32 = np.uint64(0xFFFFFFFF)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_S5, _S6, _S8, _S32 = np.uint64(5), np.uint64(6), np.uint64(8), np.uint64(32)


@cuda.jit(device=True, inline=True)
def philox4x32(c0, c1, k0, k1):
    """Philox-4x32-10 of the counter (c0, c1, 0, 0) under the key (k0, k1): four 32-bit
    words. Every value is a 32-bit word held in a uint64, so the 32 x 32-bit products never
    overflow (and the words stay exact in the simulator's NumPy scalars too)."""
    x0, x1, x2, x3 = c0, c1, np.uint64(0), np.uint64(0)
    for _ in range(10):
        p0 = _M0 * x0
        p1 = _M1 * x2
        x0, x1, x2, x3 = ((p1 >> _S32) ^ x1 ^ k0, p1 & _MASK32,
                          (p0 >> _S32) ^ x3 ^ k1, p0 & _MASK32)
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return x0, x1, x2, x3


@kernel(lambda dt: (array(dt, 1), U64, U64, I32))
def uniform(out, k0, k1, wide):
    """out[i] uniform in [0, 1): counter ``i // 4`` gives four float32 values of 24 bits
    (``wide`` 0), or counter ``i // 2`` two float64 values of 53 bits (``wide`` 1).
    1D grid-stride over the counters."""
    n = np.int32(out.shape[0])
    per = np.int32(2) if wide != 0 else np.int32(4)
    start, step = grid_range()
    for c in range(start, udiv(n + per - 1, per), step):
        x0, x1, x2, x3 = philox4x32(np.uint64(c), np.uint64(0), k0, k1)
        i = c * per
        if wide != 0:
            out[i] = (np.float64(x0 >> _S5) * 67108864.0 + np.float64(x1 >> _S6)) \
                * (1.0 / 9007199254740992.0)
            if i + 1 < n:
                out[i + 1] = (np.float64(x2 >> _S5) * 67108864.0 + np.float64(x3 >> _S6)) \
                    * (1.0 / 9007199254740992.0)
        else:
            scale = np.float32(1.0 / 16777216.0)
            out[i] = np.float32(x0 >> _S8) * scale
            if i + 1 < n:
                out[i + 1] = np.float32(x1 >> _S8) * scale
            if i + 2 < n:
                out[i + 2] = np.float32(x2 >> _S8) * scale
            if i + 3 < n:
                out[i + 3] = np.float32(x3 >> _S8) * scale


def random_uniform(be, shape, dtype):
    """Uniform [0, 1) samples of ``dtype`` (float32: 24 random bits, float64: 53)."""
    dtype = np.dtype(dtype)
    if dtype.name not in ("float32", "float64"):
        raise TypeError(f"random_uniform: dtype must be float32 or float64, got {dtype}")
    out = be.empty(shape, dtype)
    n = out.size
    if n >= 2**31:
        raise ValueError(f"random_uniform: {n} values asked; at most 2**31 - 1 per call")
    key = int(fc_random.host_rng().integers(0, 2**63, dtype=np.int64))
    wide = dtype.name == "float64"
    uniform[blocks_for(ceil_div(n, 2 if wide else 4))](
        dtype, out.reshape(-1), np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32),
        np.int32(wide))
    return out
