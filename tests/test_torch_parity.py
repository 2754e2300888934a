"""A second opinion from PyTorch (CPU build) in float64: forward values and gradients of the ops,
and one short SGD training run of a small Sequential against the same torch model.

Layouts are converted explicitly: activations NHWC <-> NCHW, conv kernels HWIO <-> OIHW, dense
kernels (in, out) <-> torch's (out, in). Asymmetric padding is applied with ``torch.nn.functional
.pad`` before an unpadded torch op.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastconv.functional as F
from fastconv import Tensor
from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Sequential
from fastconv.optimizers import SGD

from . import naive

tF = torch.nn.functional
# The problems here are tiny; torch's own thread pool would only spin and slow the BLAS threads
# of the tests that run after this module.
torch.set_num_threads(1)

RTOL = 1e-10


def nchw(a):
    return torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)), dtype=torch.float64,
                        requires_grad=True)


def to_nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def leaf(backend, a):
    return Tensor(backend.asarray(np.array(a, dtype=np.float64)), requires_grad=True)


def grad(backend, t):
    return backend.to_host(t.grad)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("x_shape, w_shape, strides, padding, dilation", [
    ((2, 7, 6, 3), (3, 3, 3, 4), 1, "same", 1),
    ((2, 8, 9, 2), (3, 2, 2, 3), (2, 3), "valid", 1),
    ((1, 9, 8, 2), (3, 3, 2, 2), 1, "same", 2),
    ((2, 6, 7, 2), (4, 4, 2, 2), 2, "same", 1),
    ((1, 5, 6, 2), (3, 3, 2, 3), 1, ((0, 3), (2, 1)), 1),
    ((2, 5, 5, 1), (5, 5, 1, 2), 1, "valid", 1),
    ((1, 6, 5, 3), (1, 1, 3, 2), 3, "valid", 1),
])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d(backend, rng, x_shape, w_shape, strides, padding, dilation, activation):
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[3])
    s = (strides,) * 2 if isinstance(strides, int) else strides
    d = (dilation,) * 2
    top, bottom, left, right = naive.conv_padding(padding, x_shape, w_shape, s, d)

    xt = nchw(x)
    wt = torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = tF.conv2d(tF.pad(xt, (left, right, top, bottom)), wt, bt, stride=s, dilation=d)
    if activation == "relu":
        yt = tF.relu(yt)

    xf, wf, bf = leaf(backend, x), leaf(backend, w), leaf(backend, b)
    yf = F.conv2d(xf, wf, bf, strides, padding, dilation, activation=activation)
    close(yf.numpy(), to_nhwc(yt))

    gy = rng.standard_normal(yf.shape)
    (yt * torch.tensor(gy.transpose(0, 3, 1, 2))).sum().backward()
    yf.backward(backend.asarray(gy))
    close(grad(backend, xf), xt.grad.numpy().transpose(0, 2, 3, 1))
    close(grad(backend, wf), wt.grad.numpy().transpose(2, 3, 1, 0))
    close(grad(backend, bf), bt.grad.numpy())


@pytest.mark.parametrize("x_shape, pool, strides, padding", [
    ((2, 6, 6, 3), (2, 2), None, "valid"),
    ((2, 7, 5, 2), (3, 2), (2, 1), "valid"),
    ((2, 7, 5, 2), (3, 3), (2, 2), "same"),
    ((1, 5, 8, 2), (2, 3), (3, 2), "same"),
])
def test_max_pool2d(backend, rng, x_shape, pool, strides, padding):
    x = rng.standard_normal(x_shape)
    s = pool if strides is None else strides
    top, bottom, left, right = naive.pool_padding(padding, x_shape, pool, s)
    xt = nchw(x)
    yt = tF.max_pool2d(tF.pad(xt, (left, right, top, bottom), value=-np.inf), pool, s)
    xf = leaf(backend, x)
    yf = F.max_pool2d(xf, pool, strides, padding)
    close(yf.numpy(), to_nhwc(yt))
    gy = rng.standard_normal(yf.shape)
    (yt * torch.tensor(gy.transpose(0, 3, 1, 2))).sum().backward()
    yf.backward(backend.asarray(gy))
    close(grad(backend, xf), xt.grad.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("x_shape, pool, strides, padding, torch_padding", [
    ((2, 6, 6, 3), (2, 2), None, "valid", 0),
    ((2, 7, 5, 2), (3, 2), (2, 1), "valid", 0),
    ((2, 5, 5, 2), (3, 3), (1, 1), "same", 1),  # symmetric 'same': torch can express it
    ((1, 7, 7, 2), (5, 5), (2, 2), "same", 2),
])
def test_avg_pool2d(backend, rng, x_shape, pool, strides, padding, torch_padding):
    x = rng.standard_normal(x_shape)
    s = pool if strides is None else strides
    assert naive.pool_padding(padding, x_shape, pool, s) == (torch_padding,) * 4
    xt = nchw(x)
    yt = tF.avg_pool2d(xt, pool, s, padding=torch_padding, count_include_pad=False)
    xf = leaf(backend, x)
    yf = F.avg_pool2d(xf, pool, strides, padding)
    close(yf.numpy(), to_nhwc(yt))
    gy = rng.standard_normal(yf.shape)
    (yt * torch.tensor(gy.transpose(0, 3, 1, 2))).sum().backward()
    yf.backward(backend.asarray(gy))
    close(grad(backend, xf), xt.grad.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("activation", [None, "relu"])
def test_dense(backend, rng, activation):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w.T.copy(), b))
    yt = tF.linear(xt, wt, bt)
    if activation:
        yt = tF.relu(yt)
    xf, wf, bf = leaf(backend, x), leaf(backend, w), leaf(backend, b)
    yf = F.dense(xf, wf, bf, activation=activation)
    close(yf.numpy(), yt.detach().numpy())
    gy = rng.standard_normal(yf.shape)
    (yt * torch.tensor(gy)).sum().backward()
    yf.backward(backend.asarray(gy))
    close(grad(backend, xf), xt.grad.numpy())
    close(grad(backend, wf), wt.grad.numpy().T)
    close(grad(backend, bf), bt.grad.numpy())


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "one-hot"])
def test_softmax_cross_entropy(backend, rng, sparse):
    z = rng.standard_normal((6, 5)) * 3
    ids = rng.integers(0, 5, size=6)
    labels = ids if sparse else np.eye(5)[ids]
    zt = torch.tensor(z, requires_grad=True)
    lt = tF.cross_entropy(zt, torch.tensor(labels))
    zf = leaf(backend, z)
    lf = F.softmax_cross_entropy(zf, labels, sparse=sparse)
    close(lf.numpy(), lt.detach().numpy())
    lt.backward()
    lf.backward()
    close(grad(backend, zf), zt.grad.numpy())


def test_softmax_and_activations(backend, rng):
    x = rng.standard_normal((4, 6)) * 2
    for ours, theirs in ((F.softmax, lambda t: torch.softmax(t, -1)), (F.sigmoid, torch.sigmoid),
                         (F.tanh, torch.tanh), (F.relu, torch.relu)):
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        xf = leaf(backend, x)
        yf = ours(xf)
        close(yf.numpy(), yt.detach().numpy())
        gy = rng.standard_normal(x.shape)
        (yt * torch.tensor(gy)).sum().backward()
        yf.backward(backend.asarray(gy))
        close(grad(backend, xf), xt.grad.numpy())


# -- a short training run -----------------------------------------------------------------------


class TorchTwin(torch.nn.Module):
    """conv(3x3, same, relu) -> maxpool 2 -> flatten in NHWC order -> dense (logits)."""

    def __init__(self, conv_w, conv_b, dense_w, dense_b):
        super().__init__()
        self.conv = torch.nn.Conv2d(conv_w.shape[2], conv_w.shape[3], 3, padding=1,
                                    dtype=torch.float64)
        self.dense = torch.nn.Linear(dense_w.shape[0], dense_w.shape[1], dtype=torch.float64)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(conv_w.transpose(3, 2, 0, 1).copy()))
            self.conv.bias.copy_(torch.tensor(conv_b))
            self.dense.weight.copy_(torch.tensor(dense_w.T.copy()))
            self.dense.bias.copy_(torch.tensor(dense_b))

    def forward(self, x_nhwc):
        h = tF.max_pool2d(tF.relu(self.conv(x_nhwc.permute(0, 3, 1, 2))), 2)
        return self.dense(h.permute(0, 2, 3, 1).flatten(1))


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_training_matches_torch(backend, rng, momentum, nesterov):
    f64 = {"dtype": "float64"}
    model = Sequential([Input((6, 6, 2), dtype="float64"),
                        Conv2D(3, 3, padding="same", activation="relu", **f64),
                        MaxPooling2D(**f64), Flatten(**f64),
                        Dense(4, activation="softmax", **f64)])
    model.compile(optimizer=SGD(learning_rate=0.1, momentum=momentum, nesterov=nesterov),
                  loss="categorical_crossentropy")
    # Non-zero biases, so that their updates are compared from a general starting point.
    start = [rng.standard_normal(w.shape) * 0.5 for w in model.get_weights()]
    model.set_weights(start)
    twin = TorchTwin(*start)
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov)

    x = rng.standard_normal((12, 6, 6, 2))
    y = np.eye(4)[rng.integers(0, 4, size=12)]
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)

    losses = []
    for _ in range(2):
        epoch = []
        for i in range(0, 12, 4):
            opt.zero_grad()
            loss = tF.cross_entropy(twin(torch.tensor(x[i:i + 4])), torch.tensor(y[i:i + 4]))
            loss.backward()
            opt.step()
            epoch.append(loss.item())
        losses.append(np.mean(epoch))

    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)
    got = model.get_weights()
    want = [twin.conv.weight.detach().numpy().transpose(2, 3, 1, 0),
            twin.conv.bias.detach().numpy(),
            twin.dense.weight.detach().numpy().T, twin.dense.bias.detach().numpy()]
    for g, w, s in zip(got, want, start):
        assert not np.allclose(g, s)  # the weights moved
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
