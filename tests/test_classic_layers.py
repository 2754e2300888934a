"""The classic CNN layers: UpSampling2D (nearest and bilinear), Cropping2D and Cropping1D,
GlobalAveragePooling1D and GlobalMaxPooling1D, SpatialDropout2D and Conv2DTranspose. Each against
a float64 NumPy oracle, central finite differences (tests/test_gradients.py's
``check_backward``) and Keras 3 itself (``KERAS_BACKEND=torch``) on the same weights and data,
on every backend; their inference steps, configs, errors, and files (.fcm, .keras, .h5,
.weights.h5) both ways.

Their functions (``conv2d_transpose``, ``upsampling2d``, ``crop``, ``spatial_dropout``,
``global_avg_pool1d``, ``global_max_pool1d``) live in ``fastconv.ops`` outside the functional
API; their gradients are checked here."""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import pytest

from fastconv import Tensor, ops
from fastconv import layers as L
from fastconv.layers.base import layer_class
from fastconv.models import Model, load_model
from fastconv.utils import set_random_seed

from .test_gradients import check_backward

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402


def _np(t):
    """A Keras output (a torch tensor under KERAS_BACKEND=torch) as a NumPy array."""
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _on(backend, a):
    return backend.asarray(np.asarray(a))


def _step(layer, backend, x):
    """The layer's inference step on ``x`` (host in, host out)."""
    step = layer.inference_step((None, *x.shape[1:]), backend)
    return backend.to_host(step(_on(backend, x)))


@contextlib.contextmanager
def _keras_quiet():
    """Keras under torch warns about NumPy 2's copy keyword, its legacy .h5 format and its
    conv-transpose padding across backends."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


# -- oracles ----------------------------------------------------------------------------------


def upsample_nearest_np(x, sh, sw):
    n, h, w, c = x.shape
    y = np.empty((n, h * sh, w * sw, c))
    for i in range(h * sh):
        for j in range(w * sw):
            y[:, i, j, :] = x[:, i // sh, j // sw, :]
    return y


def _bilinear_taps(i, scale, size):
    """(low, high, weight of high) of output ``i``: half-pixel centres, clamped at the edges."""
    src = max((i + 0.5) / scale - 0.5, 0.0)
    low = min(int(np.floor(src)), size - 1)
    return low, min(low + 1, size - 1), src - low


def upsample_bilinear_np(x, sh, sw):
    n, h, w, c = x.shape
    y = np.zeros((n, h * sh, w * sw, c))
    for i in range(h * sh):
        r0, r1, fr = _bilinear_taps(i, sh, h)
        for j in range(w * sw):
            c0, c1, fc = _bilinear_taps(j, sw, w)
            y[:, i, j, :] = ((1 - fr) * ((1 - fc) * x[:, r0, c0] + fc * x[:, r0, c1])
                             + fr * ((1 - fc) * x[:, r1, c0] + fc * x[:, r1, c1]))
    return y


def conv_transpose_np(x, w, strides, padding, output_padding=None, dilation=(1, 1)):
    """Keras's (and JAX's) definition: the input dilated by the strides, padded, correlated with
    the flipped kernel (kh, kw, filters, in) dilated by ``dilation``."""
    n, h, wd, c = x.shape
    kh, kw, f, _ = w.shape
    pads = []
    for k, s, d, op in zip((kh, kw), strides, dilation, output_padding or (None, None)):
        ke = (k - 1) * d + 1
        if padding == "valid":
            op = max(ke, s) - ke if op is None else op
            pads.append((ke - 1, ke - 1 + op))
        else:
            total = s + ke - 2 if op is None else ke + ke % 2 - 2 + op
            left = min((total + 1) // 2, ke - 1)
            pads.append((left, total - left))
    xd = np.zeros((n, (h - 1) * strides[0] + 1, (wd - 1) * strides[1] + 1, c))
    xd[:, ::strides[0], ::strides[1]] = x
    xp = np.pad(xd, ((0, 0), pads[0], pads[1], (0, 0)))
    flipped = w[::-1, ::-1]
    oh = xp.shape[1] - (kh - 1) * dilation[0]
    ow = xp.shape[2] - (kw - 1) * dilation[1]
    y = np.zeros((n, oh, ow, f))
    for a in range(kh):
        for b in range(kw):
            top, left = a * dilation[0], b * dilation[1]
            patch = xp[:, top:top + oh, left:left + ow]
            y += np.einsum("nijc,fc->nijf", patch, flipped[a, b])
    return y


# -- UpSampling2D -----------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation, size", [("nearest", (2, 3)), ("nearest", 2),
                                                 ("bilinear", (2, 3)), ("bilinear", (3, 1))])
def test_upsampling2d(backend, rng, interpolation, size):
    x = rng.standard_normal((2, 3, 2, 3))
    sh, sw = (size, size) if isinstance(size, int) else size
    oracle = upsample_nearest_np if interpolation == "nearest" else upsample_bilinear_np
    want = oracle(x, sh, sw)
    layer = L.UpSampling2D(size, interpolation=interpolation, dtype="float64")
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-14, atol=1e-15)
    assert layer.compute_output_shape((None, 3, 2, 3)) == (None, 3 * sh, 2 * sw, 3)
    np.testing.assert_allclose(_step(layer, backend, x), want, rtol=1e-14, atol=1e-15)
    check_backward(backend, lambda t: ops.upsampling2d(t, size, interpolation), [x])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling2d_matches_keras(backend, rng, interpolation):
    x = rng.standard_normal((2, 4, 3, 2)).astype("float32")
    for size in ((2, 2), (3, 2)):
        want = _np(keras.layers.UpSampling2D(size, interpolation=interpolation)(x))
        got = L.UpSampling2D(size, interpolation=interpolation)(x).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# -- Cropping2D and Cropping1D ----------------------------------------------------------------


@pytest.mark.parametrize("cropping, window", [
    (((1, 0), (2, 1)), (slice(1, 4), slice(2, 4))), ((1, 2), (slice(1, 3), slice(2, 3))),
    (1, (slice(1, 3), slice(1, 4))), (((0, 0), (0, 0)), (slice(0, 4), slice(0, 5)))], ids=str)
def test_cropping2d(backend, rng, cropping, window):
    x = rng.standard_normal((2, 4, 5, 3))
    want = x[:, window[0], window[1], :]
    layer = L.Cropping2D(cropping, dtype="float64")
    np.testing.assert_array_equal(layer(x).numpy(), want)
    assert layer.compute_output_shape((None, 4, 5, 3)) == (None, *want.shape[1:])
    assert layer.compute_output_shape((None, None, 5, 3)) == (None, None, want.shape[2], 3)
    np.testing.assert_array_equal(_step(layer, backend, x), want)
    check_backward(backend, lambda t: L.Cropping2D(cropping, dtype="float64")(t), [x])
    assert _np(keras.layers.Cropping2D(cropping)(x.astype("float32"))).shape == want.shape


@pytest.mark.parametrize("cropping, window", [((1, 2), slice(1, 4)), (2, slice(2, 4)),
                                              ((0, 1), slice(0, 5))], ids=str)
def test_cropping1d(backend, rng, cropping, window):
    x = rng.standard_normal((2, 6, 3))
    want = x[:, window, :]
    layer = L.Cropping1D(cropping, dtype="float64")
    np.testing.assert_array_equal(layer(x).numpy(), want)
    assert layer.compute_output_shape((None, 6, 3)) == (None, want.shape[1], 3)
    np.testing.assert_array_equal(_step(layer, backend, x), want)
    check_backward(backend, lambda t: ops.crop(t, cropping, 1), [x])
    x32 = x.astype("float32")
    np.testing.assert_array_equal(layer.__class__(cropping)(x32).numpy(),
                                  _np(keras.layers.Cropping1D(cropping)(x32)))


def test_cropping_matches_keras(backend, rng):
    x = rng.standard_normal((2, 5, 6, 3)).astype("float32")
    for cropping in (((1, 2), (0, 3)), (2, 1), 1):
        np.testing.assert_array_equal(L.Cropping2D(cropping)(x).numpy(),
                                      _np(keras.layers.Cropping2D(cropping)(x)))


@pytest.mark.parametrize("make, shape, message", [
    (lambda: L.Cropping2D(((2, 2), (0, 0)), name="c"), (1, 4, 3, 2),
     r"Cropping2D layer 'c': cropping 2 \+ 2 off an axis of length 4 leaves nothing"),
    (lambda: L.Cropping1D((3, 3), name="c"), (1, 5, 2),
     r"Cropping1D layer 'c': cropping 3 \+ 3 off an axis of length 5"),
])
def test_cropping_that_leaves_nothing(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make()(np.ones(shape, np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda: L.Cropping2D(((1, 2, 3), (0, 0)), name="c"),
     r"Cropping2D layer 'c': cropping must be an int, \(h, w\) or \(\(top, bottom\)"),
    (lambda: L.Cropping2D(-1, name="c"), "Cropping2D layer 'c': cropping must not be negative"),
    (lambda: L.Cropping1D("1", name="c"), r"Cropping1D layer 'c': cropping must be an int or"),
    (lambda: L.Cropping2D(1, data_format="channels_first", name="c"),
     "'c'.*only data_format='channels_last'"),
])
def test_cropping_argument_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- GlobalAveragePooling1D and GlobalMaxPooling1D --------------------------------------------


@pytest.mark.parametrize("cls_name, reduce", [("GlobalAveragePooling1D", np.mean),
                                              ("GlobalMaxPooling1D", np.max)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling1d(backend, rng, cls_name, reduce, keepdims):
    x = rng.permutation(2 * 5 * 3).reshape(2, 5, 3) * 0.1 + rng.uniform(0, 0.01, (2, 5, 3))
    want = reduce(x, axis=1, keepdims=keepdims)
    layer = getattr(L, cls_name)(keepdims=keepdims, dtype="float64")
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-14)
    assert layer.compute_output_shape((None, 5, 3)) == (None, *want.shape[1:])
    np.testing.assert_allclose(_step(layer, backend, x), want, rtol=1e-14)
    check_backward(backend, lambda t: getattr(L, cls_name)(keepdims=keepdims,
                                                           dtype="float64")(t), [x])
    x32 = x.astype("float32")
    theirs = getattr(keras.layers, cls_name)(keepdims=keepdims)
    np.testing.assert_allclose(getattr(L, cls_name)(keepdims=keepdims)(x32).numpy(),
                               _np(theirs(x32)), rtol=1e-6, atol=1e-6)


def test_global_pooling1d_wants_three_axes():
    with pytest.raises(ValueError, match=r"'g' \(GlobalMaxPooling1D\).*expected ndim=3"):
        L.GlobalMaxPooling1D(name="g")(np.ones((2, 3, 4, 5), np.float32))


# -- SpatialDropout2D -------------------------------------------------------------------------


def _channel_pattern(x, y, rate):
    """Per (sample, channel): True where kept (y == x / (1 - rate) there), False where dropped
    (y == 0); an AssertionError when a channel is neither."""
    kept = np.all(np.isclose(y, x / (1 - rate), rtol=1e-6), axis=(1, 2))
    dropped = np.all(y == 0, axis=(1, 2))
    assert np.all(kept ^ dropped), "a channel was neither kept whole nor dropped whole"
    return kept


def test_spatial_dropout2d_drops_whole_channels(backend):
    rate = 0.3
    x = np.random.default_rng(0).uniform(1, 2, (200, 2, 3, 20))
    layer = L.SpatialDropout2D(rate, dtype="float64")
    set_random_seed(7)
    y = layer(x, training=True).numpy()
    kept = _channel_pattern(x, y, rate)
    # 4000 draws: the dropped fraction is within 4 standard deviations (0.029) of the rate
    assert abs((1 - kept.mean()) - rate) < 0.03
    assert 0 < kept[0].sum() < 20  # the draws differ between channels of one sample
    set_random_seed(7)
    np.testing.assert_array_equal(layer(x, training=True).numpy(), y)  # the seed fixes it
    set_random_seed(8)
    assert not np.array_equal(layer(x, training=True).numpy(), y)
    np.testing.assert_array_equal(layer(x).numpy(), x)  # inference: the identity
    np.testing.assert_array_equal(_step(layer, backend, x), x)
    x32 = x.astype("float32")
    theirs = _np(keras.layers.SpatialDropout2D(rate)(x32, training=True))
    keras_kept = _channel_pattern(x32.astype(np.float64), theirs.astype(np.float64), rate)
    assert abs((1 - keras_kept.mean()) - rate) < 0.03
    np.testing.assert_array_equal(_np(keras.layers.SpatialDropout2D(rate)(x32)), x32)


def test_spatial_dropout2d_gradient(backend, rng):
    x = rng.standard_normal((3, 2, 2, 4))
    check_backward(backend, lambda t: ops.spatial_dropout(t, 0.4, training=True), [x],
                   before_call=lambda: set_random_seed(3))
    t = Tensor(_on(backend, x), requires_grad=True)
    assert ops.spatial_dropout(t, 0.4, training=False) is t


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 1.0}, r"rate must be in \[0, 1\)"), ({"rate": True}, "rate must be in"),
    ({"rate": 0.5, "seed": 3}, "seed is not supported"),
    ({"rate": 0.5, "data_format": "channels_first"}, "only data_format='channels_last'"),
])
def test_spatial_dropout2d_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        L.SpatialDropout2D(name="sd", **kwargs)
    assert "SpatialDropout2D layer 'sd'" in str(info.value)


# -- Conv2DTranspose --------------------------------------------------------------------------

#: (kernel_size, strides, padding, output_padding, dilation_rate, input (h, w))
TRANSPOSE_CASES = [
    ((3, 3), (2, 2), "same", None, (1, 1), (3, 4)),
    ((3, 2), (2, 1), "valid", None, (1, 1), (3, 3)),
    ((2, 2), (3, 3), "valid", None, (1, 1), (2, 3)),  # stride > kernel: zeros between blocks
    ((3, 3), (2, 3), "valid", (1, 2), (1, 1), (2, 2)),  # output_padding: zero rows at the end
    ((1, 2), (3, 2), "same", None, (1, 1), (2, 3)),  # 'same' past a 1-wide kernel
    ((4, 3), (2, 2), "same", (1, 0), (1, 1), (3, 2)),
    ((4, 3), (1, 1), "same", None, (1, 1), (3, 3)),
    ((3, 2), (1, 1), "same", None, (2, 2), (4, 3)),  # dilated
]


@pytest.mark.parametrize("kernel_size, strides, padding, output_padding, dilation, hw",
                         TRANSPOSE_CASES, ids=str)
def test_conv2d_transpose(backend, rng, kernel_size, strides, padding, output_padding,
                          dilation, hw):
    x = rng.standard_normal((2, *hw, 3))
    w = rng.standard_normal((*kernel_size, 2, 3))
    b = rng.standard_normal(2)
    want = conv_transpose_np(x, w, strides, padding, output_padding, dilation) + b
    layer = L.Conv2DTranspose(2, kernel_size, strides, padding, output_padding,
                              dilation_rate=dilation, dtype="float64")
    assert layer.compute_output_shape((None, *hw, 3)) == (None, *want.shape[1:])
    layer.ensure_built((None, *hw, 3))
    layer.set_weights([w, b])
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_step(layer, backend, x), want, rtol=1e-12, atol=1e-12)

    def fn(xt, wt, bt):
        return ops.conv2d_transpose(xt, wt, bt, strides, padding, output_padding, dilation)

    check_backward(backend, fn, [x, w, b])


def test_conv2d_transpose_activations(backend, rng):
    """A fused activation (relu) and a separate one (tanh), in the call, the inference step
    and their gradients."""
    x = rng.standard_normal((2, 3, 3, 2))
    w = rng.standard_normal((3, 3, 4, 2))
    b = rng.standard_normal(4)
    z = conv_transpose_np(x, w, (2, 2), "same") + b
    for name, fn in (("relu", lambda v: np.maximum(v, 0)), ("tanh", np.tanh)):
        layer = L.Conv2DTranspose(4, 3, 2, "same", activation=name, dtype="float64")
        layer.ensure_built((None, 3, 3, 2))
        layer.set_weights([w, b])
        np.testing.assert_allclose(layer(x).numpy(), fn(z), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_step(layer, backend, x), fn(z), rtol=1e-12, atol=1e-12)
    check_backward(backend, lambda xt, wt, bt: ops.conv2d_transpose(
        xt, wt, bt, 2, "same", activation="relu"), [x, w, b])
    nobias = L.Conv2DTranspose(4, 3, 2, "same", use_bias=False, dtype="float64")
    nobias.ensure_built((None, 3, 3, 2))
    assert len(nobias.weights) == 1
    nobias.set_weights([w])
    np.testing.assert_allclose(nobias(x).numpy(), z - b, rtol=1e-12, atol=1e-12)


def test_conv2d_transpose_is_the_gradient_of_conv2d(backend, rng):
    """conv2d_transpose(dy, w) is conv2d's input gradient for the output gradient dy, with
    ``output_padding`` choosing among the input sizes a strided convolution maps alike."""
    x = Tensor(_on(backend, rng.standard_normal((2, 5, 6, 3))), requires_grad=True)
    w = rng.standard_normal((3, 3, 3, 4))
    y = ops.conv2d(x, w, strides=2, padding="same")
    dy = rng.standard_normal(y.shape)
    y.backward(_on(backend, dy))
    got = ops.conv2d_transpose(dy, w, strides=2, padding="same", output_padding=(0, 1)).numpy()
    np.testing.assert_allclose(got, backend.to_host(x.grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_size, strides, padding, output_padding, dilation, hw",
                         TRANSPOSE_CASES, ids=str)
def test_conv2d_transpose_matches_keras(backend, rng, kernel_size, strides, padding,
                                        output_padding, dilation, hw):
    x = rng.standard_normal((2, *hw, 3)).astype("float32")
    theirs = keras.layers.Conv2DTranspose(4, kernel_size, strides, padding, output_padding,
                                          dilation_rate=dilation, activation="relu")
    theirs.build((None, *hw, 3))
    values = [rng.standard_normal(tuple(v.shape)).astype("float32") for v in theirs.weights]
    theirs.set_weights(values)
    ours = L.Conv2DTranspose(4, kernel_size, strides, padding, output_padding,
                             dilation_rate=dilation, activation="relu")
    ours.ensure_built((None, *hw, 3))
    ours.set_weights(values)  # the same layout: kernel (kh, kw, filters, in), bias
    with _keras_quiet():
        want = _np(theirs(x))
    assert ours.compute_output_shape((None, *hw, 3)) == (None, *want.shape[1:])
    np.testing.assert_allclose(ours(x).numpy(), want, rtol=1e-5, atol=1e-5)
    keras_config, config = theirs.get_config(), ours.get_config()
    for key in ("filters", "kernel_size", "strides", "padding", "output_padding",
                "dilation_rate", "activation", "use_bias"):
        want_value = keras_config[key]
        assert config[key] == (list(want_value) if isinstance(want_value, tuple)
                               else want_value), key


@pytest.mark.parametrize("kwargs, message", [
    ({"strides": 2, "output_padding": 2}, r"output_padding \(2, 2\) must be smaller than the "
                                          r"strides \(2, 2\)"),
    ({"strides": 2, "dilation_rate": 2}, "strides > 1 together with dilation_rate > 1"),
    ({"padding": "causal"}, "padding must be 'valid' or 'same'"),
    ({"kernel_regularizer": "l2"}, "kernel_regularizer is not supported"),
    ({"data_format": "channels_first"}, "only data_format='channels_last'"),
    ({"activation": "mish"}, "unknown activation 'mish'"),
])
def test_conv2d_transpose_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        L.Conv2DTranspose(2, 3, name="ct", **kwargs)
    assert "'ct'" in str(info.value)


def test_conv2d_transpose_empty_output_and_bad_inputs(backend):
    layer = L.Conv2DTranspose(2, 2, padding="same", output_padding=0, name="ct")
    with pytest.raises(ValueError, match=r"Conv2DTranspose layer 'ct'.*empty output"):
        layer(np.ones((1, 1, 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"input has 3 channels but the kernel"):
        ops.conv2d_transpose(np.ones((1, 2, 2, 3)), np.ones((2, 2, 4, 5)))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        ops.conv2d_transpose(np.ones((1, 2, 2, 3)), np.ones((2, 2, 4, 3)), np.ones(3))


def test_upsampling2d_errors():
    with pytest.raises(ValueError, match=r"UpSampling2D layer 'u': interpolation must be one of "
                                         r"'nearest', 'bilinear'.*got 'bicubic'"):
        L.UpSampling2D(interpolation="bicubic", name="u")
    with pytest.raises(ValueError, match=r"UpSampling2D layer 'u': size must be >= 1"):
        L.UpSampling2D(0, name="u")


# -- configs, models and files ----------------------------------------------------------------


@pytest.mark.parametrize("cls_name, kwargs", [
    ("UpSampling2D", {"size": (2, 3), "interpolation": "bilinear"}),
    ("Cropping2D", {"cropping": ((1, 2), (3, 0))}), ("Cropping1D", {"cropping": 2}),
    ("GlobalAveragePooling1D", {"keepdims": True}), ("GlobalMaxPooling1D", {}),
    ("SpatialDropout2D", {"rate": 0.25}),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": (3, 2), "strides": 2, "padding": "same",
                         "output_padding": 1, "activation": "gelu", "use_bias": False}),
])
def test_configs_round_trip_through_the_registry(cls_name, kwargs):
    layer = getattr(L, cls_name)(**kwargs)
    config = layer.get_config()
    clone = layer_class(cls_name).from_config(config)
    assert type(clone) is type(layer) and clone.get_config() == config
    theirs = getattr(keras.layers, cls_name).from_config(
        {k: v for k, v in config.items() if k != "batch_input_shape"})
    assert type(theirs).__name__ == cls_name


def classic_model(rng):
    """Every new layer in one functional graph: a decoder-like image branch, then a sequence
    head with 1D cropping and both global poolings."""
    inp = L.Input((3, 3, 2), name="image")
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="up_conv")(inp)
    h = L.SpatialDropout2D(0.3, name="drop")(h)
    h = L.UpSampling2D(2, name="up_nearest")(h)
    h = L.Cropping2D(((1, 2), (0, 3)), name="crop")(h)
    h = L.UpSampling2D((1, 2), interpolation="bilinear", name="up_bilinear")(h)
    h = L.Conv2DTranspose(3, (2, 3), strides=(1, 2), output_padding=(0, 1), name="ct2")(h)
    seq = L.Cropping1D((2, 1), name="crop1d")(L.Reshape((-1, 3))(h))
    avg = L.GlobalAveragePooling1D(name="avg")(seq)
    top = L.Flatten()(L.GlobalMaxPooling1D(keepdims=True, name="max")(seq))
    out = L.Dense(2, name="out")(L.Concatenate()([avg, top]))
    model = Model(inp, out, name="classic")
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _relative_error(got, want) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want)))


def test_files_both_ways(backend, rng, tmp_path):
    """.fcm round trip; fastconv's .keras and .weights.h5 load in Keras and predict the same;
    Keras's own .keras, legacy .h5 and .weights.h5 of the model load back in fastconv."""
    model = classic_model(rng)
    x = rng.random((2, 3, 3, 2)).astype("float32")
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(want, model(x).numpy(), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.fcm")
    np.testing.assert_array_equal(load_model(tmp_path / "m.fcm").predict(x, verbose=0), want)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    with _keras_quiet():
        theirs = keras.saving.load_model(tmp_path / "m.keras")
        assert _relative_error(_np(theirs(x)), want) < 1e-5
        theirs.set_weights([np.zeros(tuple(v.shape), "float32") for v in theirs.weights])
        theirs.load_weights(tmp_path / "m.weights.h5")
        assert _relative_error(_np(theirs(x)), want) < 1e-5
        theirs.save(tmp_path / "k.keras")
        theirs.save(tmp_path / "k.h5")
        theirs.save_weights(tmp_path / "k.weights.h5")
    for path in ("k.keras", "k.h5"):
        again = load_model(tmp_path / path)
        assert _relative_error(again.predict(x, verbose=0), want) < 1e-5, path
    other = classic_model(np.random.default_rng(1))
    other.load_weights(tmp_path / "k.weights.h5")
    assert _relative_error(other.predict(x, verbose=0), want) < 1e-5
