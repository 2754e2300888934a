"""bfloat16 operands for the opt-in bfloat16 inference (``fastconv.backends.precision``).

bfloat16 keeps float32's sign and exponent and the top 7 bits of its mantissa: a float32 with
its low 16 bits rounded away (to nearest, ties to even; NaN stays a quiet NaN, infinities stay
infinite, values beyond the largest bfloat16 round to infinity). Arrays of bfloat16 are uint16
arrays here. The micro-kernel (``microkernel_bias_act`` with a uint16 ``a_like``) reads A rows
of bfloat16 and B packed as bfloat16 pairs by ``pack_pairs``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import helper, sized_kernel
from .microkernel import NR32, W32, _target_features, tile_columns


def supported() -> bool:
    """Whether this CPU (as Numba compiles for it) has AVX512-BF16's ``vdpbf16ps``."""
    return W32 == 16 and "avx512bf16" in _target_features()


@helper
def bf16_bits(u):
    """The bfloat16 nearest to the float32 whose bits are ``u`` (uint32; ties to even), as
    uint16 bits; a NaN becomes a quiet NaN of the same sign. Branch-free, so that loops over
    it vectorise."""
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet = (u >> np.uint32(16)) | np.uint32(0x40)
    return np.uint16(quiet if nan else rounded)


@helper
def _convert_run(x, out):
    for i in range(x.shape[0]):
        out[i] = bf16_bits(x[i])


@sized_kernel(1 << 16, fastmath=False)
def to_bfloat16(x, out, chunk):
    """out[i] = bfloat16 of x[i] (x: flat float32 bits as uint32, out: flat uint16)."""
    n = x.shape[0]
    for t in prange((n + chunk - 1) // chunk):
        _convert_run(x[t * chunk:min(n, (t + 1) * chunk)], out[t * chunk:min(n, (t + 1) * chunk)])


@helper
def pack_pairs(b, k, n, bp):
    """B (k x n, float32 bits as uint32, k even) as bfloat16 pairs in NR-column panels: panel
    jp, pair row kp, column j holds (B[2kp, jp*NR + j], B[2kp+1, jp*NR + j]) at
    bp[((jp*(k/2) + kp)*NR + j)*2 + (0, 1)]; columns beyond n are zero."""
    nr = tile_columns(np.empty(0, dtype=np.float32))
    pairs = k // 2
    for jp in range((n + nr - 1) // nr):
        for kp in range(pairs):
            base = (jp * pairs + kp) * nr * 2
            for j in range(nr):
                col = jp * nr + j
                if col < n:
                    bp[base + 2 * j] = bf16_bits(b[2 * kp, col])
                    bp[base + 2 * j + 1] = bf16_bits(b[2 * kp + 1, col])
                else:
                    bp[base + 2 * j] = 0
                    bp[base + 2 * j + 1] = 0


def packed_pairs(b):
    """``pack_pairs`` of the float32 matrix ``b`` (k x n, k even) into a new uint16 array."""
    k, n = b.shape
    bp = np.empty(-(-n // NR32) * NR32 * k, dtype=np.uint16)
    pack_pairs(np.ascontiguousarray(b, dtype=np.float32).view(np.uint32), k, n, bp)
    return bp


def converted(x, threads: int):
    """x (float32, any shape) as bfloat16 (uint16, same shape)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint16)
    chunk = max(4096, -(-flat.size // max(threads, 1)))
    to_bfloat16(flat.size, flat.view(np.uint32), out, chunk)
    return out.reshape(np.shape(x))
