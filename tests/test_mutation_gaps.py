"""Tests added for the survivors of the mutation campaign (``tests/campaign/mutants``): each
kills a mutant that the rest of the suite let through.

* numba-cpu's reductions combine per-thread partial sums; the suite's shapes gave the bias
  gradient and batch norm one parallel task only (the task is 16,384 elements / channels
  rows), and gave backward-weight of one input channel no parallel case, so keeping only thread
  0's partial passed (``nbcpu-bias-grad-partial``, ``nbcpu-bn-stats-partial``,
  ``nbcpu-bn-grad-partial``, ``nbcpu-im2col-bw1-partial``). Here the rows span several tasks.
* legacy Keras weights whose ``layer_names`` list the layers in another order than the model's
  must be matched by name (``keras-legacy-by-position``).
* an ONNX Transpose that is not a layout change (``onnx-transpose-skipped``).
* max pooling of windows holding only -inf where the window starts in the top padding: the
  argmax must be the first in-bounds tap, not a padding row (``nbcpu-pool-max-first-tap``;
  the parity campaign draws such windows only by chance).
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

import fastconv
from fastconv.geometry import conv_geometry, pool_geometry

#: rows enough for three parallel tasks of the numba-cpu (rows, channels) kernels at 4 channels
ROWS, CHANNELS = 3 * (1 << 14) // 4 + 7, 4


def _backends():
    return fastconv.get_backend("numba-cpu"), fastconv.get_backend("numpy")


def test_bias_gradient_sums_every_thread(kernel_mode, rng):
    be, ref = _backends()
    dy = rng.standard_normal((ROWS, CHANNELS))
    y = np.maximum(rng.standard_normal((ROWS, CHANNELS)), 0)
    dz, db = be.epilogue_backward(dy, y, "relu", True)
    rz, rb = ref.epilogue_backward(dy, y, "relu", True)
    np.testing.assert_array_equal(dz, rz)
    np.testing.assert_allclose(db, rb, rtol=1e-12)


def test_batch_norm_sums_every_thread(kernel_mode, rng):
    be, ref = _backends()
    x = rng.standard_normal((ROWS, CHANNELS)) * 3 + 1
    dy = rng.standard_normal((ROWS, CHANNELS))
    mean, var = be.batch_norm_statistics(x)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-12)
    gamma = rng.uniform(0.5, 1.5, CHANNELS)
    got = be.batch_norm_backward(dy, x, gamma, mean, var, 1e-3, True)
    want = ref.batch_norm_backward(dy, x, gamma, mean, var, 1e-3, True)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_single_channel_backward_weight_sums_every_thread(kernel_mode, rng):
    """im2col's backward-weight of one input channel (stride 1) runs one image per task."""
    be, ref = _backends()
    x = rng.standard_normal((6, 9, 8, 1))
    g = conv_geometry(x.shape, (3, 3, 1, 5), 1, "same", 1)
    dy = rng.standard_normal(g.y_shape)
    np.testing.assert_allclose(be.conv2d_backward_weight(x, dy, g, "im2col"),
                               ref.conv2d_backward_weight(x, dy, g, "im2col"), rtol=1e-12)


def test_legacy_weights_listed_in_another_order_are_matched_by_name(tmp_path, rng):
    from fastconv.layers import Dense, Input
    from fastconv.models import Sequential

    model = Sequential([Input((4,)), Dense(4, name="first"), Dense(4, name="second")])
    arrays = {name: [rng.standard_normal((4, 4)).astype("float32"),
                     rng.standard_normal(4).astype("float32")] for name in ("first", "second")}
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"second", b"first"])
        for name in ("second", "first"):
            group = f.create_group(name)
            names = [f"{name}_W_{j}:0" for j in range(2)]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, a in zip(names, arrays[name]):
                group.create_dataset(n, data=a)
    model.load_weights(path)
    for layer in model.layers:
        for got, want in zip(layer.get_weights(), arrays[layer.name]):
            np.testing.assert_array_equal(got, want)


def test_onnx_transpose_of_image_axes_is_imported(tmp_path):
    """PyTorch's ``x.transpose(2, 3)`` on an NCHW image: a Transpose that swaps H and W, not
    a layout change."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import fastconv.onnx as fo

    class SwapHW(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x).transpose(2, 3))

    torch.manual_seed(0)
    net = SwapHW().eval()
    x = torch.randn(2, 2, 5, 7)
    path = tmp_path / "swap.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    want = net(x).detach().numpy()
    model = fo.load(path)
    got = model.predict(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), verbose=0)
    # after a Transpose that is not a layout change the output is held in ONNX's own layout
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_windows_of_minus_inf_in_the_top_padding(backend, rng):
    ref = fastconv.get_backend("numpy")
    x = np.full((2, 4, 5, 3), -np.inf)
    x[1, 2:, :, 1] = rng.standard_normal((2, 5))
    g = pool_geometry(x.shape, (3, 3), (1, 1), "same")
    assert g.pt > 0 and g.pl > 0
    y, argmax = backend.max_pool2d_forward(backend.asarray(x), g)
    ry, rargmax = ref.max_pool2d_forward(x, g)
    np.testing.assert_array_equal(backend.to_host(y), ry)
    np.testing.assert_array_equal(backend.to_host(argmax), rargmax)
    dy = rng.standard_normal(ry.shape)
    dx = backend.max_pool2d_backward(backend.asarray(dy), argmax, g)
    np.testing.assert_allclose(backend.to_host(dx), ref.max_pool2d_backward(dy, rargmax, g),
                               rtol=1e-12)
