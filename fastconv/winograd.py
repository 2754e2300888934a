"""Winograd minimal-filtering transforms F(m x m, 3 x 3), shared by every backend.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). For an input tile
``d`` of ``a x a`` pixels (``a = m + 2``) and a 3x3 filter ``g`` (cross-correlation, as in CNNs):

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* is element-wise, Y is m x m)

Over a whole layer the element-wise product becomes ``a * a`` independent GEMMs over channels:
``M[i, j] = V[i, j] @ U[i, j]`` with ``V`` the transformed input tiles (tiles x C) and ``U`` the
transformed filters (C x O).

F(2x2,3x3) uses interpolation points 0, 1, -1, inf; F(4x4,3x3) uses 0, 1, -1, 2, -2, inf. The
matrices are kept in float64; backends cast them to their compute dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WinogradTransform:
    """The three transforms of F(m x m, r x r); ``alpha = m + r - 1`` is the input-tile size."""

    m: int
    r: int
    BT: np.ndarray  # (alpha, alpha) input transform
    G: np.ndarray   # (alpha, r) filter transform
    AT: np.ndarray  # (m, alpha) output transform

    @property
    def alpha(self) -> int:
        return self.m + self.r - 1

    @property
    def multiply_reduction(self) -> float:
        """Multiplications saved per output against direct convolution: (m*r)^2 / alpha^2."""
        return (self.m * self.r) ** 2 / self.alpha ** 2


def _frozen(rows) -> np.ndarray:
    a = np.array(rows, dtype=np.float64)
    a.setflags(write=False)
    return a


F2x2_3x3 = WinogradTransform(
    m=2, r=3,
    BT=_frozen([[1, 0, -1, 0],
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, 1, 0, -1]]),
    G=_frozen([[1, 0, 0],
               [0.5, 0.5, 0.5],
               [0.5, -0.5, 0.5],
               [0, 0, 1]]),
    AT=_frozen([[1, 1, 1, 0],
                [0, 1, -1, -1]]),
)

F4x4_3x3 = WinogradTransform(
    m=4, r=3,
    BT=_frozen([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]]),
    G=_frozen([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]]),
    AT=_frozen([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]]),
)

#: Algorithm name -> transform.
TRANSFORMS = {"winograd": F2x2_3x3, "winograd4": F4x4_3x3}


def tile_counts(oh: int, ow: int, m: int) -> tuple[int, int]:
    """Number of m x m output tiles covering an ``oh x ow`` output."""
    return -(-oh // m), -(-ow // m)


def transform_filter(w: np.ndarray, t: WinogradTransform) -> np.ndarray:
    """HWIO 3x3 filters -> ``U`` of shape (alpha, alpha, C, O): ``U = G g G^T`` per (c, o)."""
    G = t.G.astype(w.dtype)
    return np.einsum("ai,ijco,bj->abco", G, w, G, optimize=True)
