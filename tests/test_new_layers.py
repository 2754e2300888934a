"""BatchNormalization, LocalResponseNormalization, Add, Concatenate, ZeroPadding2D, Rescaling,
Conv1D and GlobalMaxPooling2D: their backend primitives against the float64 oracle of
tests/naive.py on every backend, the layers' training and inference behaviour, configs, shape
checks and errors, inference plans, and second opinions from Keras (``KERAS_BACKEND=torch``)
and PyTorch. fold_batch_norm and the Tensor operators are checked here too; the ops' gradients
are in tests/test_gradients.py."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv import Tensor
from fastconv import layers as L
from fastconv.models import Sequential
from fastconv.ops.normalization import fold_batch_norm

from . import naive
from .devices import emulated_subset

#: rows x channels of the primitive tests: one row, one channel, odd sizes, and one large
#: enough for the parallel variants of the numba-cpu kernels (left out in an emulated device
#: run, where (64, 33) already spans several blocks of every kernel)
ROWS_CHANNELS = emulated_subset([(1, 3), (7, 1), (5, 13), (64, 33), (300, 257)], {0, 1, 2, 3})


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


def _np(t):
    """A Keras output (a torch tensor under KERAS_BACKEND=torch) as a NumPy array."""
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _keras_weights(layer):
    return [_np(v.value) for v in layer.weights]


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


# -- primitives against the oracle --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", ROWS_CHANNELS, ids=str)
def test_batch_norm_primitives(backend, rng, shape, dtype):
    rows, channels = shape
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)  # an offset mean: stable variance
    gamma, beta = (rng.standard_normal(channels).astype(dtype) for _ in range(2))
    dy = rng.standard_normal(shape).astype(dtype)
    mean, var = backend.batch_norm_statistics(backend.asarray(x))
    want_mean, want_var = naive.batch_norm_statistics(x)
    assert mean.dtype == var.dtype == dtype and mean.shape == var.shape == (channels,)
    np.testing.assert_allclose(backend.to_host(mean), want_mean, **_tol(dtype))
    np.testing.assert_allclose(backend.to_host(var), want_var, **_tol(dtype))
    eps = 1e-3
    mean, var = want_mean.astype(dtype), want_var.astype(dtype)
    y = backend.batch_norm_forward(x, gamma, beta, mean, var, eps)
    assert y.dtype == dtype
    np.testing.assert_allclose(backend.to_host(y), naive.batch_norm(x, mean, var, gamma, beta,
                                                                    eps), **_tol(dtype))
    for training in (True, False):
        got = backend.batch_norm_backward(dy, x, gamma, mean, var, eps, training)
        want = naive.batch_norm_backward(dy, x, gamma, mean, var, eps, training)
        for g, w in zip(got, want):
            assert g.dtype == dtype
            scale = max(1.0, np.abs(w).max())
            np.testing.assert_allclose(backend.to_host(g), w, rtol=_tol(dtype)["rtol"],
                                       atol=_tol(dtype)["atol"] * scale * rows)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", ROWS_CHANNELS, ids=str)
@pytest.mark.parametrize("params", [(5, 1.0, 1.0, 0.5), (2, 2.0, 1e-4, 0.75), (0, 0.5, 0.3, 1.0),
                                    (40, 1.0, 0.1, 0.25)],
                         ids=["tf-defaults", "alexnet", "radius-0", "radius-over-channels"])
def test_lrn_primitives(backend, rng, shape, dtype, params):
    radius, bias, alpha, beta = params
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y, scale = backend.lrn_forward(backend.asarray(x), radius, bias, alpha, beta)
    assert y.dtype == scale.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(backend.to_host(y), naive.local_response_normalization(
        x, radius, bias, alpha, beta), **_tol(dtype))
    dx = backend.lrn_backward(backend.asarray(dy), x, y, scale, radius, alpha, beta)
    assert dx.dtype == dtype
    np.testing.assert_allclose(backend.to_host(dx), naive.local_response_normalization_backward(
        dy, x, radius, bias, alpha, beta), **_tol(dtype))


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_numba_cpu_normalization_kernels_in_both_variants(rng, mode):
    """Small problems run serially and large ones in parallel: force each variant on a small
    problem and compare with the reference backend."""
    from fastconv.backends.numba_cpu.jit import SizedKernel

    be, ref = fastconv.get_backend("numba-cpu"), fastconv.get_backend("numpy")
    x, dy = rng.standard_normal((37, 11)) + 2, rng.standard_normal((37, 11))
    gamma, beta = rng.standard_normal(11), rng.standard_normal(11)
    SizedKernel.mode = mode
    try:
        for a, b in zip(be.batch_norm_statistics(x), ref.batch_norm_statistics(x)):
            np.testing.assert_allclose(a, b, rtol=1e-13)
        mean, var = ref.batch_norm_statistics(x)
        np.testing.assert_allclose(be.batch_norm_forward(x, gamma, beta, mean, var, 1e-3),
                                   ref.batch_norm_forward(x, gamma, beta, mean, var, 1e-3),
                                   rtol=1e-13, atol=1e-14)
        for a, b in zip(be.batch_norm_backward(dy, x, gamma, mean, var, 1e-3, True),
                        ref.batch_norm_backward(dy, x, gamma, mean, var, 1e-3, True)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        (y, s), (y2, s2) = be.lrn_forward(x, 2, 1.0, 0.2, 0.75), ref.lrn_forward(x, 2, 1.0, 0.2,
                                                                                   0.75)
        np.testing.assert_allclose(y, y2, rtol=1e-13)
        np.testing.assert_allclose(be.lrn_backward(dy, x, y, s, 2, 0.2, 0.75),
                                   ref.lrn_backward(dy, x, y2, s2, 2, 0.2, 0.75), rtol=1e-12,
                                   atol=1e-14)
    finally:
        SizedKernel.mode = "auto"


# -- BatchNormalization ---------------------------------------------------------------------------


def _bn_with_weights(rng, channels, **kwargs):
    layer = L.BatchNormalization(dtype="float64", **kwargs)
    layer.ensure_built((None, 4, 3, channels))
    values = [rng.standard_normal(channels), rng.standard_normal(channels),
              rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)]
    layer.set_weights(values[:len(layer.weights) - 2] + values[2:])
    return layer, values


def test_batch_normalization_training_step_and_moving_statistics(backend, rng):
    layer, (gamma, beta, mm, mv) = _bn_with_weights(rng, 5, momentum=0.9)
    x = rng.standard_normal((6, 4, 3, 5)) * 2 + 1
    versions = [w.version for w in layer.weights]
    y = layer(x, training=True)
    mean, var = naive.batch_norm_statistics(x)
    np.testing.assert_allclose(y.numpy(), naive.batch_norm(x, mean, var, gamma, beta, 1e-3),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.9 * mm + 0.1 * mean, rtol=1e-14)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 * mv + 0.1 * var, rtol=1e-14)
    assert [w.version for w in layer.weights] == [versions[0], versions[1], versions[2] + 1,
                                                  versions[3] + 1]
    # inference: the moving statistics, nothing updated
    moving = [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
    y = layer(x, training=False)
    np.testing.assert_allclose(y.numpy(), naive.batch_norm(x, *moving, gamma, beta, 1e-3),
                               rtol=1e-12, atol=1e-12)
    assert layer.moving_mean.version == versions[2] + 1


def test_batch_normalization_weights_and_freezing(backend):
    layer = L.BatchNormalization()
    layer.ensure_built((None, 3, 3, 4))
    assert [w.name.split("/")[-1] for w in layer.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.trainable for w in layer.weights] == [True, True, False, False]
    np.testing.assert_array_equal(layer.get_weights()[0], np.ones(4))
    np.testing.assert_array_equal(layer.get_weights()[3], np.ones(4))
    layer.trainable = False
    assert not any(w.trainable for w in layer.weights)
    layer.trainable = True  # unfreezing never makes the moving statistics trainable
    assert [w.trainable for w in layer.weights] == [True, True, False, False]
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 2
    no_affine = L.BatchNormalization(center=False, scale=False)
    no_affine.ensure_built((None, 4))
    assert [w.name.split("/")[-1] for w in no_affine.weights] == ["moving_mean", "moving_variance"]
    only_beta = L.BatchNormalization(scale=False)
    only_beta.ensure_built((None, 4))
    assert [w.name.split("/")[-1] for w in only_beta.weights] == [
        "beta", "moving_mean", "moving_variance"]


def test_frozen_batch_normalization_runs_in_inference_mode(backend, rng):
    """As in Keras: a non-trainable BatchNormalization uses its moving statistics even with
    training=True, and leaves them alone."""
    layer, (gamma, beta, mm, mv) = _bn_with_weights(rng, 3)
    layer.trainable = False
    x = rng.standard_normal((4, 4, 3, 3))
    y = layer(x, training=True)
    np.testing.assert_allclose(y.numpy(), naive.batch_norm(x, mm, mv, gamma, beta, 1e-3),
                               rtol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), mm)
    assert layer.moving_mean.version == 1  # set_weights only


def test_batch_normalization_on_another_axis_and_without_affine(backend, rng):
    layer = L.BatchNormalization(axis=1, center=False, scale=False, epsilon=1e-2,
                                 dtype="float64")
    x = rng.standard_normal((5, 3, 4))
    y = layer(x, training=True).numpy()
    mean, var = naive.batch_norm_statistics(x, axis=1)
    np.testing.assert_allclose(y, naive.batch_norm(x, mean, var, np.ones(3), np.zeros(3), 1e-2,
                                                   axis=1), rtol=1e-12, atol=1e-12)
    assert layer.moving_mean.shape == (3,)


def test_batch_normalization_trains_in_a_model(backend, rng):
    """fit updates gamma and beta through the optimizer and the moving statistics through
    the layer; predict (an inference plan) then matches the layer in inference mode."""
    fastconv.utils.set_random_seed(3)
    model = Sequential([L.Input((6, 6, 2)), L.Conv2D(4, 3), L.BatchNormalization(),
                        L.Activation("relu"), L.GlobalAveragePooling2D(), L.Dense(2)])
    model.compile("adam", "mse")
    bn = model.layers[1]
    x, y = rng.standard_normal((16, 6, 6, 2)).astype("float32"), rng.standard_normal((16, 2))
    before = bn.get_weights()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = bn.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
    assert bn.moving_mean.version >= 4
    want = model(x, training=False).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"axis": 0}, "axis 0 is not a feature axis"),
    ({"axis": 4}, "axis 4 is not a feature axis"),
    ({"axis": [1, 2]}, "axis must be an int"),
    ({"momentum": 1.5}, r"momentum must be in \[0, 1\]"),
    ({"epsilon": 0}, "epsilon must be > 0"),
    ({"renorm": True}, "renorm"),
    ({"synchronized": True}, "synchronized"),
    ({"gamma_regularizer": "l2"}, "gamma_regularizer is not supported"),
    ({"beta_initializer": "nope"}, "unknown initializer"),
])
def test_batch_normalization_errors(backend, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        layer = L.BatchNormalization(name="bn", **kwargs)
        layer(np.ones((2, 3, 3, 2)))
    assert "'bn'" in str(info.value)


def test_batch_normalization_matches_keras(backend, rng):
    """Keras 3's BatchNormalization with the same weights: training output, moving statistics
    after one step, and inference output."""
    keras = _keras()
    x = (rng.standard_normal((4, 5, 3, 6)) * 2 + 0.5).astype("float32")
    values = [rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(6),
              rng.uniform(0.5, 2.0, 6)]
    ours = L.BatchNormalization(momentum=0.8, epsilon=1e-2)
    ours.ensure_built((None, 5, 3, 6))
    ours.set_weights(values)
    theirs = keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-2)
    theirs.build((None, 5, 3, 6))
    theirs.set_weights([v.astype("float32") for v in values])
    got = ours(x, training=True).numpy()
    want = _np(theirs(x, training=True))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.get_weights(), _keras_weights(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours(x).numpy(), _np(theirs(x)),
                               rtol=1e-5, atol=1e-5)
    keras_config = theirs.get_config()
    config = ours.get_config()
    for key in ("axis", "momentum", "epsilon", "center", "scale"):
        assert config[key] == keras_config[key]



@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients_match_pytorch(backend, rng, training):
    """dx, dgamma and dbeta of batch normalisation against PyTorch's autograd, with the batch's
    statistics (training) and with given ones."""
    import torch

    x = rng.standard_normal((4, 3, 5, 6)) * 2 + 1
    gamma, beta, gy = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(x.shape)
    mean, var = rng.standard_normal(6), rng.uniform(0.5, 2.0, 6)
    xt, gt, bt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, gamma, beta))
    yt = torch.nn.functional.batch_norm(
        xt.permute(0, 3, 1, 2), None if training else torch.from_numpy(mean),
        None if training else torch.from_numpy(var), gt, bt, training=training, eps=1e-3)
    (yt.permute(0, 2, 3, 1) * torch.from_numpy(gy)).sum().backward()
    xf, gf, bf = (Tensor(backend.asarray(a), requires_grad=True) for a in (x, gamma, beta))
    yf = (F.batch_norm_training(xf, gf, bf)[0] if training
          else F.batch_norm(xf, mean, var, gf, bf))
    np.testing.assert_allclose(yf.numpy(), yt.permute(0, 2, 3, 1).detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    F.sum(yf * gy).backward()
    for ours, theirs in ((xf, xt), (gf, gt), (bf, bt)):
        np.testing.assert_allclose(backend.to_host(ours.grad), theirs.grad.numpy(), rtol=1e-9,
                                   atol=1e-11)

def test_fold_batch_norm_into_conv_and_dense(backend, rng):
    x = rng.standard_normal((2, 6, 5, 3))
    k, b = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    gamma, beta, mean = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4)
    var = rng.uniform(0.2, 3.0, 4)
    want = naive.batch_norm(naive.conv2d_forward(x, k, b), mean, var, gamma, beta, 1e-3)
    k2, b2 = fold_batch_norm(k, b, gamma, beta, mean, var, 1e-3)
    np.testing.assert_allclose(naive.conv2d_forward(x, k2, b2), want, rtol=1e-12, atol=1e-12)
    # no conv bias, no gamma, no beta (use_bias=False, scale=False, center=False)
    want = naive.batch_norm(naive.conv2d_forward(x, k), mean, var, np.ones(4), np.zeros(4), 1e-2)
    k2, b2 = fold_batch_norm(k, None, None, None, mean, var, 1e-2)
    np.testing.assert_allclose(naive.conv2d_forward(x, k2, b2), want, rtol=1e-12, atol=1e-12)
    # dense (in, out) kernels, float32 stays float32
    xd, kd = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)).astype(np.float32)
    kd2, bd2 = fold_batch_norm(kd, b, gamma, beta, mean, var)
    assert kd2.dtype == bd2.dtype == np.float32
    want = naive.batch_norm(xd @ kd.astype(np.float64) + b, mean, var, gamma, beta, 1e-3)
    np.testing.assert_allclose(xd @ kd2 + bd2, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        fold_batch_norm(k, b, np.ones(3), beta, mean, var)


# -- LocalResponseNormalization ------------------------------------------------------------------


def test_lrn_layer_matches_oracle_and_keras_names(backend, rng):
    assert L.LRN is L.LocalResponseNormalization
    layer = L.LRN(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, dtype="float64")
    x = rng.standard_normal((2, 4, 3, 9)) * 10
    np.testing.assert_allclose(layer(x).numpy(), naive.local_response_normalization(
        x, 2, 2.0, 1e-4, 0.75), rtol=1e-12)
    assert layer.name == "local_response_normalization"
    config = layer.get_config()
    assert {k: config[k] for k in ("depth_radius", "bias", "alpha", "beta")} == {
        "depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}
    assert L.LocalResponseNormalization.from_config(config).get_config() == config
    defaults = L.LocalResponseNormalization()
    assert (defaults.depth_radius, defaults.bias, defaults.alpha, defaults.beta) == (5, 1, 1, 0.5)
    with pytest.raises(ValueError, match="'lrn'.*depth_radius must be an int >= 0"):
        L.LRN(depth_radius=-1, name="lrn")
    with pytest.raises(TypeError, match="alpha must be a number"):
        L.LRN(alpha="big")


@pytest.mark.parametrize("radius, bias, alpha, beta", [(5, 1.0, 1.0, 0.5), (2, 2.0, 1e-4, 0.75),
                                                       (1, 1.0, 0.5, 1.0)])
def test_lrn_matches_pytorch_with_the_onnx_mapping(backend, rng, radius, bias, alpha, beta):
    """PyTorch's LocalResponseNorm (like ONNX's LRN) divides alpha by the window size: size =
    2 * depth_radius + 1 and alpha_torch = alpha * size give the same function."""
    import torch

    x = rng.standard_normal((2, 5, 4, 11))
    size = 2 * radius + 1
    ref = torch.nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=bias)
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    got = L.LRN(radius, bias, alpha, beta, dtype="float64")(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # and the gradients, through autograd on both sides
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_(True)
    gy = rng.standard_normal(x.shape)
    (ref(xt) * torch.from_numpy(gy.transpose(0, 3, 1, 2))).sum().backward()
    xf = Tensor(backend.asarray(x), requires_grad=True)
    F.sum(F.multiply(F.local_response_normalization(xf, radius, bias, alpha, beta), gy)).backward()
    np.testing.assert_allclose(backend.to_host(xf.grad), xt.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-9, atol=1e-12)


# -- Add and Concatenate -------------------------------------------------------------------------


def test_add_and_concatenate_layers(backend, rng):
    a, b, c = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    np.testing.assert_allclose(L.Add(dtype="float64")([a, b, c]).numpy(), a + b + c, rtol=1e-15)
    np.testing.assert_allclose(L.Add(dtype="float64")([a, b[:, :1]]).numpy(), a + b[:, :1])
    d = rng.standard_normal((2, 3, 2))
    np.testing.assert_array_equal(L.Concatenate(dtype="float64")([a, d]).numpy(),
                                  np.concatenate([a, d], axis=-1))
    np.testing.assert_array_equal(L.Concatenate(axis=1, dtype="float64")([a, b]).numpy(),
                                  np.concatenate([a, b], axis=1))
    assert L.Add().compute_output_shape([(None, 3, 4), (None, 1, 4)]) == (None, 3, 4)
    assert L.Add().compute_output_shape([(None, None, 4), (None, 1, 4)]) == (None, None, 4)
    assert L.Concatenate().compute_output_shape([(None, 3, 4), (None, 3, 2)]) == (None, 3, 6)
    assert L.Concatenate(axis=1).compute_output_shape([(None, None, 4), (None, 3, 4)]) == (
        None, None, 4)
    assert L.Concatenate(axis=1).get_config()["axis"] == 1


def test_merge_layers_gradients(backend, rng):
    a, b = (Tensor(backend.asarray(rng.standard_normal((2, 3))), requires_grad=True)
            for _ in range(2))
    F.sum(F.multiply(L.Concatenate(dtype="float64")([a, b]), np.arange(6.0))).backward()
    np.testing.assert_array_equal(backend.to_host(a.grad), np.tile(np.arange(3.0), (2, 1)))
    np.testing.assert_array_equal(backend.to_host(b.grad), np.tile(np.arange(3.0, 6.0), (2, 1)))
    F.sum(L.Add(dtype="float64")([a, b, a])).backward()
    np.testing.assert_array_equal(backend.to_host(b.grad),
                                  np.tile(np.arange(3.0, 6.0), (2, 1)) + 1)


@pytest.mark.parametrize("layer, shapes, message", [
    (L.Add, [(2, 3, 4), (2, 5, 4)], r"\(None, 3, 4\), \(None, 5, 4\) are incompatible: sizes "
                                    r"\[3, 5\] on axis 1"),
    (L.Add, [(2, 3, 4), (2, 3)], "different ranks"),
    (L.Concatenate, [(2, 3, 4), (2, 5, 2), (2, 3, 1)],
     r"\(None, 3, 4\), \(None, 5, 2\), \(None, 3, 1\) are incompatible: sizes \[3, 5\] on axis 1"),
])
def test_merge_layers_name_every_shape_when_incompatible(backend, layer, shapes, message):
    with pytest.raises(ValueError, match=message) as info:
        layer(name="merge")([np.ones(s, np.float32) for s in shapes])
    assert f"{layer.__name__} layer 'merge'" in str(info.value)


def test_merge_layers_take_lists(backend):
    with pytest.raises(TypeError, match="takes a list of tensors"):
        L.Add()(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="axis 0 is not a non-batch axis"):
        L.Concatenate(axis=0)([np.ones((2, 3)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="axis must be an int"):
        L.Concatenate(axis="last")


def test_merge_layers_in_a_functional_model(backend, rng):
    from fastconv.models import Model

    inp = L.Input((4, 4, 3))
    h = L.Conv2D(3, 3, padding="same")(inp)
    out = L.Concatenate()([L.Add()([inp, h]), h])
    model = Model(inp, out)
    x = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    want = model(x).numpy()
    assert want.shape == (2, 4, 4, 6)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)


# -- ZeroPadding2D, Rescaling, GlobalMaxPooling2D, Conv1D ----------------------------------------


@pytest.mark.parametrize("padding, pads", [
    (1, (1, 1, 1, 1)), ((2, 1), (2, 2, 1, 1)), (((0, 2), (3, 1)), (0, 2, 3, 1)),
    ([[1, 0], [0, 2]], (1, 0, 0, 2)),
])
def test_zero_padding2d(backend, rng, padding, pads):
    x = rng.standard_normal((2, 3, 4, 2))
    layer = L.ZeroPadding2D(padding, dtype="float64")
    np.testing.assert_array_equal(layer(x).numpy(), naive.zero_pad2d(x, *pads))
    assert layer.compute_output_shape((None, None, 4, 2)) == (None, None, 4 + pads[2] + pads[3],
                                                             2)
    config = layer.get_config()
    assert config["padding"] == [[pads[0], pads[1]], [pads[2], pads[3]]]
    assert L.ZeroPadding2D.from_config(config).padding == layer.padding


def test_zero_padding2d_errors(backend):
    for bad in ("same", (1, 2, 3), -1, ((1, 2), (3,))):
        with pytest.raises((ValueError, TypeError), match="'zp'.*padding"):
            L.ZeroPadding2D(bad, name="zp")
    with pytest.raises(ValueError, match="expected ndim=4"):
        L.ZeroPadding2D()(np.ones((2, 3, 4), np.float32))


def test_zero_padding2d_and_conv1d_match_keras(backend, rng):
    keras = _keras()
    x = rng.standard_normal((2, 5, 4, 3)).astype("float32")
    for padding in (1, (2, 1), ((0, 2), (3, 1))):
        want = _np(keras.layers.ZeroPadding2D(padding)(x))
        np.testing.assert_array_equal(L.ZeroPadding2D(padding)(x).numpy(), want)
    x1 = rng.standard_normal((2, 11, 3)).astype("float32")
    for kwargs in ({"padding": "valid"}, {"padding": "same", "strides": 2},
                   {"padding": "causal", "dilation_rate": 2}, {"padding": "same",
                                                               "dilation_rate": 3},
                   {"padding": "causal", "strides": 3}):
        theirs = keras.layers.Conv1D(4, 3, activation="relu", **kwargs)
        want = _np(theirs(x1))
        ours = L.Conv1D(4, 3, activation="relu", **kwargs)
        ours.ensure_built((None, 11, 3))
        ours.set_weights(_keras_weights(theirs))
        np.testing.assert_allclose(ours(x1).numpy(), want, rtol=1e-5, atol=1e-5)
        assert ours.compute_output_shape((None, 11, 3)) == tuple(theirs.compute_output_shape(
            (None, 11, 3)))
        config, keras_config = ours.get_config(), theirs.get_config()
        for key in ("filters", "kernel_size", "strides", "padding", "dilation_rate"):
            assert tuple(np.atleast_1d(config[key])) == tuple(np.atleast_1d(keras_config[key]))


@pytest.mark.parametrize("kwargs", [
    {}, {"padding": "same", "strides": 2}, {"padding": "causal", "dilation_rate": 2},
    {"padding": "valid", "activation": "tanh", "use_bias": False},
])
def test_conv1d_layer_matches_oracle_on_every_algorithm(backend, conv_algo, rng, kwargs):
    x = rng.standard_normal((2, 9, 3))
    layer = L.Conv1D(4, 3, dtype="float64", **kwargs)
    try:
        y = layer(x).numpy()
    except ValueError as exc:  # Winograd serves only stride-1 3x3 (here 1x3) convolutions
        assert conv_algo.startswith("winograd") and "winograd" in str(exc).lower()
        return
    w = layer.kernel.numpy()
    b = layer.bias.numpy() if layer.use_bias else None
    s, d = layer.strides[0], layer.dilation_rate[0]
    pads = {"valid": (0, 0), "same": naive.same_padding(9, (3 - 1) * d + 1, s),
            "causal": ((3 - 1) * d, 0)}[layer.padding]
    want = naive.conv1d_forward(x, w, b, s, pads, d)
    want = {"linear": want, "tanh": np.tanh(want)}.get(layer.activation, want)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def test_conv1d_shapes_config_and_errors(backend):
    layer = L.Conv1D(5, 4, strides=2, padding="causal")
    assert layer.compute_output_shape((None, 10, 3)) == (None, 5, 5)
    layer.ensure_built((None, 10, 3))
    assert layer.kernel.shape == (4, 3, 5) and layer.count_params() == 4 * 3 * 5 + 5
    config = layer.get_config()
    assert config["kernel_size"] == [4] and config["padding"] == "causal"
    assert L.Conv1D.from_config({**config, "name": "other"}).get_config() == {
        **config, "name": "other"}
    with pytest.raises(ValueError, match="'c'.*padding must be 'valid', 'same' or 'causal'"):
        L.Conv1D(2, 3, padding="full", name="c")
    with pytest.raises(ValueError, match="strides > 1 together with dilation_rate > 1"):
        L.Conv1D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="does not fit 2 steps"):
        L.Conv1D(2, 3)(np.ones((1, 2, 1), np.float32))
    with pytest.raises(ValueError, match="expected ndim=3"):
        L.Conv1D(2, 3)(np.ones((1, 5, 5, 1), np.float32))


def test_global_max_pooling2d(backend, rng):
    x = rng.standard_normal((2, 4, 3, 5))
    np.testing.assert_array_equal(L.GlobalMaxPooling2D(dtype="float64")(x).numpy(),
                                  x.max(axis=(1, 2)))
    layer = L.GlobalMaxPooling2D(keepdims=True, dtype="float64")
    np.testing.assert_array_equal(layer(x).numpy(), x.max(axis=(1, 2), keepdims=True))
    assert layer.compute_output_shape((None, 4, 3, 5)) == (None, 1, 1, 5)
    assert layer.get_config()["keepdims"] is True
    assert L.GlobalMaxPool2D is L.GlobalMaxPooling2D


def test_rescaling(backend, rng):
    x = rng.integers(0, 256, (2, 3, 3, 3)).astype(np.uint8)
    layer = L.Rescaling(1 / 127.5, offset=-1)
    np.testing.assert_allclose(layer(x).numpy(), x / 127.5 - 1, rtol=1e-6, atol=1e-6)
    per_channel = L.Rescaling([1.0, 2.0, 3.0], offset=[0.0, 0.5, 1.0], dtype="float64")
    np.testing.assert_allclose(per_channel(x).numpy(), x * [1, 2, 3] + [0, 0.5, 1], rtol=1e-15)
    config = per_channel.get_config()
    assert config["scale"] == [1.0, 2.0, 3.0] and config["offset"] == [0.0, 0.5, 1.0]
    assert layer.get_config()["scale"] == 1 / 127.5
    with pytest.raises(TypeError, match="'r'.*scale must be a number"):
        L.Rescaling("big", name="r")
    with pytest.raises(ValueError, match="does not broadcast"):
        L.Rescaling([1.0, 2.0])(x)


@pytest.mark.parametrize("layer_cls, kwargs", [
    (L.BatchNormalization, {"momentum": 0.5, "epsilon": 0.01, "center": False}),
    (L.LocalResponseNormalization, {"depth_radius": 3}),
    (L.Add, {}), (L.Concatenate, {"axis": 1}), (L.ZeroPadding2D, {"padding": (1, 2)}),
    (L.Rescaling, {"scale": 0.5, "offset": 1.0}), (L.Conv1D, {"filters": 3, "kernel_size": 2}),
    (L.GlobalMaxPooling2D, {"keepdims": True}),
])
def test_configs_round_trip_through_the_registry(layer_cls, kwargs):
    from fastconv.layers.base import layer_class

    layer = layer_cls(**kwargs)
    config = layer.get_config()
    clone = layer_class(layer_cls.__name__).from_config(config)
    assert type(clone) is layer_cls and clone.get_config() == config


def test_inference_plan_runs_the_new_layers(backend, rng):
    """predict (an inference plan, each layer's inference_step) equals calling the model."""
    fastconv.utils.set_random_seed(5)
    seq = Sequential([L.Input((9, 8, 3)), L.Rescaling(0.5, 0.25),
                      L.ZeroPadding2D(((1, 0), (0, 2))),
                      L.Conv2D(6, 3, activation="relu"), L.BatchNormalization(),
                      L.LRN(2, alpha=0.1, beta=0.75), L.Reshape((8 * 8, 6)),
                      L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"),
                      L.Reshape((8, 8, 4)), L.GlobalMaxPooling2D()])
    bn = seq.layers[3]
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.standard_normal(6), rng.standard_normal(6),
                    rng.uniform(0.5, 2, 6)])
    x = rng.standard_normal((5, 9, 8, 3)).astype("float32")
    np.testing.assert_allclose(seq.predict(x, verbose=0), seq(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


# -- Tensor arithmetic ---------------------------------------------------------------------------


def test_tensor_operators(backend, rng):
    a = Tensor(backend.asarray(rng.standard_normal((2, 3))), requires_grad=True)
    b = rng.standard_normal(3)
    ah = a.numpy()
    cases = [(a * b, ah * b), (b * a, b * ah), (a - b, ah - b), (b - a, b - ah), (a / 2, ah / 2),
             (2 / (a * a + 1), 2 / (ah ** 2 + 1)), (-a, -ah), (+a, ah), (1 + a, 1 + ah),
             (a @ b.reshape(3, 1), ah @ b.reshape(3, 1)),
             (np.ones((4, 2)) @ a, np.ones((4, 2)) @ ah)]
    for result, want in cases:
        assert isinstance(result, Tensor)
        np.testing.assert_allclose(result.numpy(), want, rtol=1e-15)
    F.sum(a * a).backward()
    np.testing.assert_allclose(backend.to_host(a.grad), 2 * a.numpy(), rtol=1e-15)
    f32 = Tensor(backend.asarray(np.ones(3, np.float32)))
    assert (f32 * 2).dtype == np.float32 and (2.5 - f32).dtype == np.float32
    assert (f32 * np.arange(3)).dtype == np.float32  # integer arrays take the float dtype
    np.testing.assert_array_equal((np.arange(3) - f32).numpy(), [-1, 0, 1])
    with pytest.raises(ValueError, match=r"multiply: shapes \(2, 3\) and \(4,\) do not broadcast"):
        a * np.ones(4)
    with pytest.raises(TypeError, match="subtract: dtypes differ"):
        a - f32
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\) do not match"):
        a @ a
    with pytest.raises(ValueError, match="at least 2 axes"):
        a @ b
    with pytest.raises(TypeError, match="must be an array of numbers"):
        a * "x"



# -- the ops package and its facade -------------------------------------------------------------


def test_functional_facade_and_op_names():
    """fastconv.functional re-exports the ops of fastconv.ops; every Function subclass there is
    named <Name>Op, and none shares its name with a layer."""
    import importlib
    import inspect
    import pkgutil

    import fastconv.ops as ops
    from fastconv.tensor import Function

    for name in F.__all__:
        assert getattr(F, name) is getattr(ops, name), name
    functions = set()
    for info in pkgutil.iter_modules(ops.__path__):
        module = importlib.import_module(f"fastconv.ops.{info.name}")
        functions |= {name for name, obj in vars(module).items() if inspect.isclass(obj)
                      and issubclass(obj, Function) and obj.__module__ == module.__name__}
    assert functions and all(name.endswith("Op") for name in functions), sorted(functions)
    assert set(functions) <= set(ops.__all__)
    assert not functions & set(L.__all__)
    for name in ("Conv2D", "Dense", "Add", "Concatenate", "Reshape", "Dropout"):
        assert not hasattr(F, name), name
