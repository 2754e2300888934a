"""The Winograd transforms of fastconv/winograd.py compute exact correlations (Lavin & Gray):

    1D: y = A^T [(G g) * (B^T d)]          2D: Y = A^T [(G g G^T) * (B^T d B)] A
"""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import winograd
from fastconv.winograd import TRANSFORMS, F2x2_3x3, F4x4_3x3

from . import naive

TRANSFORM_IDS = ["F2x2_3x3", "F4x4_3x3"]
BOTH = pytest.mark.parametrize("t", [F2x2_3x3, F4x4_3x3], ids=TRANSFORM_IDS)


@BOTH
def test_shapes(t):
    a = t.m + t.r - 1
    assert t.alpha == a
    assert t.BT.shape == (a, a) and t.G.shape == (a, t.r) and t.AT.shape == (t.m, a)
    for matrix in (t.BT, t.G, t.AT):
        assert matrix.dtype == np.float64
        assert not matrix.flags.writeable  # shared by every backend: never modified in place


def test_algorithm_names():
    assert TRANSFORMS == {"winograd": F2x2_3x3, "winograd4": F4x4_3x3}
    assert (F2x2_3x3.m, F2x2_3x3.r, F4x4_3x3.m, F4x4_3x3.r) == (2, 3, 4, 3)
    assert F2x2_3x3.multiply_reduction == pytest.approx(36 / 16)
    assert F4x4_3x3.multiply_reduction == pytest.approx(144 / 36)


@BOTH
def test_1d_correlation_is_exact(t, rng):
    for _ in range(50):
        d = rng.standard_normal(t.alpha)
        g = rng.standard_normal(t.r)
        y = t.AT @ ((t.G @ g) * (t.BT @ d))
        np.testing.assert_allclose(y, naive.correlate1d_valid(d, g), rtol=1e-12, atol=1e-12)


@BOTH
def test_2d_correlation_is_exact(t, rng):
    for _ in range(50):
        d = rng.standard_normal((t.alpha, t.alpha))
        g = rng.standard_normal((t.r, t.r))
        U = t.G @ g @ t.G.T
        V = t.BT @ d @ t.BT.T
        Y = t.AT @ (U * V) @ t.AT.T
        np.testing.assert_allclose(Y, naive.correlate2d_valid(d, g), rtol=1e-12, atol=1e-12)


@BOTH
def test_exact_on_integer_basis(t):
    """Every unit input tile against every unit filter: catches a wrong sign or entry that
    random tests might only blur."""
    for p in range(t.alpha * t.alpha):
        d = np.zeros(t.alpha * t.alpha)
        d[p] = 1
        d = d.reshape(t.alpha, t.alpha)
        for k in range(t.r * t.r):
            g = np.zeros(t.r * t.r)
            g[k] = 1
            g = g.reshape(t.r, t.r)
            Y = t.AT @ ((t.G @ g @ t.G.T) * (t.BT @ d @ t.BT.T)) @ t.AT.T
            np.testing.assert_allclose(Y, naive.correlate2d_valid(d, g), atol=1e-13)


@BOTH
def test_transform_filter(t, rng):
    w = rng.standard_normal((3, 3, 4, 5))
    U = winograd.transform_filter(w, t)
    assert U.shape == (t.alpha, t.alpha, 4, 5)
    for c in range(4):
        for o in range(5):
            np.testing.assert_allclose(U[:, :, c, o], t.G @ w[:, :, c, o] @ t.G.T, rtol=1e-13,
                                       atol=1e-14)
    assert winograd.transform_filter(w.astype(np.float32), t).dtype == np.float32


@pytest.mark.parametrize("oh, ow, m, tiles", [
    (1, 1, 2, (1, 1)), (2, 2, 2, (1, 1)), (3, 5, 2, (2, 3)), (4, 4, 4, (1, 1)),
    (5, 9, 4, (2, 3)), (8, 1, 4, (2, 1)),
])
def test_tile_counts(oh, ow, m, tiles):
    assert winograd.tile_counts(oh, ow, m) == tiles
