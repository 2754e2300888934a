"""The opt-in bfloat16 inference on numba-cpu: rounding to bfloat16, the AVX512-BF16 micro-kernel
against a float64 oracle on the rounded operands, and the precision setting of inference
plans."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry, pool_geometry
from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Sequential

from . import naive

numba_cpu_reason = fastconv.available_backends()["numba-cpu"]
if numba_cpu_reason is None:
    from fastconv.backends.numba_cpu import bfloat16
    BF16_REASON = None if bfloat16.supported() else "this CPU has no AVX512-BF16"
else:
    BF16_REASON = f"numba-cpu unavailable: {numba_cpu_reason}"

pytestmark = pytest.mark.skipif(numba_cpu_reason is not None,
                                reason=f"numba-cpu unavailable: {numba_cpu_reason}")
needs_bf16 = pytest.mark.skipif(BF16_REASON is not None, reason=str(BF16_REASON))


def _nearest_bf16(x: np.ndarray) -> np.ndarray:
    """The oracle: of the two bfloat16 values around each float32 (its top 16 bits, and one
    bfloat16 step away from zero), the nearer in float64; on a tie the one with an even last
    bit. Infinities stay, values past the largest bfloat16 by half a step or more become
    infinite, NaN stays NaN."""
    bits = x.astype(np.float32).view(np.uint32)
    low = (bits >> 16).astype(np.uint32)
    high = low + 1

    def value(b):  # infinity counts as 2**128 for rounding, as IEEE's overflow does
        v = (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return np.where(np.isinf(v), np.sign(v) * 2.0 ** 128, v)

    exact = np.where(np.isfinite(x), x, 0).astype(np.float64)
    with np.errstate(invalid="ignore"):  # the step past an infinity is a NaN: not picked
        d_low, d_high = np.abs(exact - value(low)), np.abs(value(high) - exact)
    pick_high = (d_high < d_low) | ((d_high == d_low) & (low & 1 == 1))
    out = np.where(pick_high, high, low).astype(np.uint16)
    return np.where(np.isfinite(x), out, (bits >> 16).astype(np.uint16) | np.where(
        np.isnan(x), 0x40, 0).astype(np.uint16))


def _as_float(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def test_rounding_to_bfloat16_is_to_nearest_even(rng):
    from fastconv.backends.numba_cpu import bfloat16 as bf

    special = np.array([0.0, -0.0, 1.0, 1.00390625, 1.01171875, 1.0 + 2.0 ** -8 + 2.0 ** -20,
                        -2.5, 1e-40, -1e-42, 3.3895e38, 3.4e38, np.inf, -np.inf], np.float32)
    x = np.concatenate([special, rng.standard_normal(5000).astype(np.float32) * 100,
                        rng.standard_normal(1000).astype(np.float32) * 1e-39])
    got = bf.converted(x, 2)
    np.testing.assert_array_equal(got, _nearest_bf16(x))
    nan = bf.converted(np.array([np.nan, -np.nan], np.float32), 2)
    assert np.isnan(_as_float(nan)).all()
    assert (np.signbit(_as_float(nan)) == [False, True]).all()


# (x shape, kernel (KH, KW, O), strides, padding, dilation): even segments in each layout
CASES = [
    ((2, 13, 13, 32), (3, 3, 40), 1, "valid", 1),    # row segments (KW*C = 96), two panels
    ((3, 9, 11, 6), (5, 3, 7), 2, "same", 1),        # padded, strided, O < one panel
    ((2, 12, 12, 2), (3, 3, 16), 1, "valid", 2),     # dilated, few channels: packed rows (k=18)
    ((1, 12, 14, 18), (2, 3, 33), 1, "same", (2, 1)),  # dilated: tap segments (C = 18)
]


@needs_bf16
@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv+pool"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-k{c[1]}-s{c[2]}-{c[3]}-d{c[4]}")
def test_bfloat16_convolution_is_exact_on_the_rounded_operands(case, pooled, kernel_mode, rng):
    """The products of bfloat16 values are exact in float32, so against a float64 oracle on
    the rounded input and kernel only the float32 sums differ."""
    be = fastconv.get_backend("numba-cpu")
    xs, (kh, kw, o), s, pad, d = case
    x = rng.standard_normal(xs).astype("float32")
    w = rng.standard_normal((kh, kw, xs[3], o)).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    g = conv_geometry(x.shape, w.shape, s, pad, d)
    dil = (d, d) if isinstance(d, int) else d
    ref = naive.conv2d_forward(_as_float(_nearest_bf16(x)), _as_float(_nearest_bf16(w)), b,
                               (s, s), naive.conv_padding(pad, xs, w.shape, (s, s), dil), dil,
                               "relu")
    with fastconv.use_inference_precision("bfloat16"):
        if pooled:
            pg = pool_geometry(g.y_shape, 2)
            y = be.prepare_conv2d_pool_forward(g, "im2col", "relu", pg, "max")(x, w, b, 1)
            ref = naive.max_pool2d_forward(ref, (2, 2), (2, 2))[0]
        else:
            y = be.prepare_conv2d_forward(g, "im2col", "relu")(x, w, b, 1)
    assert y.dtype == np.float32
    scale = np.sqrt(kh * kw * xs[3])  # the size of a sum of that many unit products
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-6 * scale * 4)
    # and it is not the float32 result: the operands were rounded
    y32 = be.prepare_conv2d_forward(g, "im2col", "relu")(x, w, b, 1)
    if not pooled:
        assert np.abs(y - y32).max() > 1e-4


@needs_bf16
def test_odd_segments_stay_float32(rng):
    """A 3x3 kernel on one channel has segments of 3 values: bfloat16 leaves it in float32."""
    be = fastconv.get_backend("numba-cpu")
    x = rng.standard_normal((2, 12, 12, 1)).astype("float32")
    w = rng.standard_normal((3, 3, 1, 8)).astype("float32")
    g = conv_geometry(x.shape, w.shape)
    y32 = be.prepare_conv2d_forward(g, "im2col", "relu")(x, w, None, 1)
    with fastconv.use_inference_precision("bfloat16"):
        y16 = be.prepare_conv2d_forward(g, "im2col", "relu")(x, w, None, 1)
    np.testing.assert_array_equal(y16, y32)


def _small_net():
    return Sequential([Input((12, 12, 4)), Conv2D(16, 3, activation="relu"), MaxPooling2D(),
                       Conv2D(8, 3, activation="relu"), Flatten(), Dense(3)])


def test_the_precision_setting_selects_the_plan(rng):
    model = _small_net()
    x = rng.standard_normal((6, 12, 12, 4)).astype("float32")
    with fastconv.use_backend("numba-cpu"):
        y32 = model.predict(x, verbose=0)
        with fastconv.use_inference_precision("bfloat16"):
            assert fastconv.current_inference_precision() == "bfloat16"
            y16 = model.predict(x, verbose=0)
        np.testing.assert_array_equal(model.predict(x, verbose=0), y32)  # its own plan again
    np.testing.assert_allclose(y16, y32, rtol=0.05, atol=0.05 * np.abs(y32).max())
    if BF16_REASON is None:
        assert not np.array_equal(y16, y32)
    else:  # float32 where the CPU cannot
        np.testing.assert_array_equal(y16, y32)
    assert fastconv.current_inference_precision() == "float32"
    with pytest.raises(ValueError, match="unknown inference precision 'float16'.*bfloat16"):
        fastconv.set_inference_precision("float16")


def test_the_background_compile_makes_the_same_precision(rng):
    from fastconv import warmup

    model = _small_net()
    be = fastconv.get_backend("numba-cpu")
    with fastconv.use_inference_precision("bfloat16"):
        spec = warmup.plan_spec(model, (2, 12, 12, 4), be)
    assert spec["precision"] == "bfloat16"
    assert warmup.spec_key(spec) != warmup.spec_key(warmup.plan_spec(model, (2, 12, 12, 4), be))
