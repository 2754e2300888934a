"""An obviously correct float64 oracle, kept apart from the code under test.

Everything here is written with explicit Python loops over output positions and window taps
(``np.dot`` over channels, vectorised over the batch). It imports nothing from fastconv, so a
mistake in fastconv's shape or padding arithmetic cannot leak into the expected values.

Layouts follow Keras: activations NHWC, convolution kernels HWIO ``(kh, kw, in, out)``.
Paddings are explicit ``(top, bottom, left, right)``; :func:`same_padding` computes
TensorFlow's ``same`` split independently of ``fastconv.geometry``.
"""

from __future__ import annotations

import math

import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``same``: ``ceil(size / stride)`` outputs; the total padding is split with
    the smaller half before and the larger half after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def conv_padding(padding, x_shape, w_shape, strides=(1, 1), dilation=(1, 1)):
    """``'valid'``, ``'same'``, an int or ``((top, bottom), (left, right))``, as the 4-tuple
    ``(top, bottom, left, right)``."""
    if isinstance(padding, int):
        return (padding,) * 4
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        assert padding == "same"
        keh = (w_shape[0] - 1) * dilation[0] + 1
        kew = (w_shape[1] - 1) * dilation[1] + 1
        return (*same_padding(x_shape[1], keh, strides[0]),
                *same_padding(x_shape[2], kew, strides[1]))
    (top, bottom), (left, right) = padding
    return (top, bottom, left, right)


def pool_padding(padding, x_shape, pool, strides):
    if padding == "valid":
        return (0, 0, 0, 0)
    assert padding == "same"
    return (*same_padding(x_shape[1], pool[0], strides[0]),
            *same_padding(x_shape[2], pool[1], strides[1]))


def _out_len(size, window, stride, before, after):
    return (size + before + after - window) // stride + 1


def conv_output_shape(x_shape, w_shape, strides=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1)):
    n, h, w, _ = x_shape
    kh, kw, _, o = w_shape
    pt, pb, pl, pr = padding
    oh = _out_len(h, (kh - 1) * dilation[0] + 1, strides[0], pt, pb)
    ow = _out_len(w, (kw - 1) * dilation[1] + 1, strides[1], pl, pr)
    return (n, oh, ow, o)


def _conv_taps(x_shape, w_shape, strides, padding, dilation):
    """Yield ``(r, q, i, j, hi, wj)``: output position (r, q) meets input pixel (hi, wj)
    through kernel tap (i, j); taps that land in the padding are left out."""
    _, h, w, _ = x_shape
    kh, kw = w_shape[:2]
    _, oh, ow, _ = conv_output_shape(x_shape, w_shape, strides, padding, dilation)
    for r in range(oh):
        for q in range(ow):
            for i in range(kh):
                for j in range(kw):
                    hi = r * strides[0] + i * dilation[0] - padding[0]
                    wj = q * strides[1] + j * dilation[1] - padding[2]
                    if 0 <= hi < h and 0 <= wj < w:
                        yield r, q, i, j, hi, wj


def conv2d_forward(x, w, b=None, strides=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                   activation="linear"):
    """``y[n, r, q, o] = act(b[o] + sum_{i, j, c} x[n, r*sh + i*dh - pt, q*sw + j*dw - pl, c]
    * w[i, j, c, o])`` with out-of-range input pixels counted as zero."""
    x, w = _f64(x), _f64(w)
    y = np.zeros(conv_output_shape(x.shape, w.shape, strides, padding, dilation))
    for r, q, i, j, hi, wj in _conv_taps(x.shape, w.shape, strides, padding, dilation):
        y[:, r, q, :] += np.dot(x[:, hi, wj, :], w[i, j])
    if b is not None:
        y += _f64(b)
    if activation == "relu":
        y = np.maximum(y, 0.0)
    else:
        assert activation == "linear"
    return y


def conv2d_backward_data(dy, w, x_shape, strides=(1, 1), padding=(0, 0, 0, 0),
                         dilation=(1, 1)):
    """dL/dx by scattering each output gradient back through the taps that produced it."""
    dy, w = _f64(dy), _f64(w)
    dx = np.zeros(x_shape)
    for r, q, i, j, hi, wj in _conv_taps(x_shape, w.shape, strides, padding, dilation):
        dx[:, hi, wj, :] += np.dot(dy[:, r, q, :], w[i, j].T)
    return dx


def conv2d_backward_weight(x, dy, w_shape, strides=(1, 1), padding=(0, 0, 0, 0),
                           dilation=(1, 1)):
    """dL/dw: for each tap, the input pixels it met times the output gradients."""
    x, dy = _f64(x), _f64(dy)
    dw = np.zeros(w_shape)
    for r, q, i, j, hi, wj in _conv_taps(x.shape, w_shape, strides, padding, dilation):
        dw[i, j] += np.dot(x[:, hi, wj, :].T, dy[:, r, q, :])
    return dw


def _pool_windows(x_shape, pool, strides, padding):
    """Yield ``(r, q, taps)`` with ``taps`` the in-bounds ``(tap_index, hi, wj)`` of window
    (r, q) in row-major tap order; padding is never part of a window."""
    _, h, w, _ = x_shape
    ph, pw = pool
    oh = _out_len(h, ph, strides[0], padding[0], padding[1])
    ow = _out_len(w, pw, strides[1], padding[2], padding[3])
    for r in range(oh):
        for q in range(ow):
            taps = []
            for i in range(ph):
                for j in range(pw):
                    hi = r * strides[0] + i - padding[0]
                    wj = q * strides[1] + j - padding[2]
                    if 0 <= hi < h and 0 <= wj < w:
                        taps.append((i * pw + j, hi, wj))
            yield r, q, taps


def pool_output_shape(x_shape, pool, strides, padding):
    n, h, w, c = x_shape
    return (n, _out_len(h, pool[0], strides[0], padding[0], padding[1]),
            _out_len(w, pool[1], strides[1], padding[2], padding[3]), c)


def max_pool2d_forward(x, pool, strides, padding=(0, 0, 0, 0)):
    """-> (y, argmax): the maximum of each window's in-bounds elements and the tap index
    ``i * pw + j`` where it is; the first maximum (in row-major tap order) wins ties."""
    x = _f64(x)
    shape = pool_output_shape(x.shape, pool, strides, padding)
    y = np.empty(shape)
    argmax = np.empty(shape, dtype=np.int64)
    for r, q, taps in _pool_windows(x.shape, pool, strides, padding):
        assert taps, "a window made only of padding"
        for n in range(x.shape[0]):
            for c in range(x.shape[3]):
                best, best_tap = -np.inf, None
                for tap, hi, wj in taps:
                    if best_tap is None or x[n, hi, wj, c] > best:
                        best, best_tap = x[n, hi, wj, c], tap
                y[n, r, q, c], argmax[n, r, q, c] = best, best_tap
    return y, argmax


def max_pool2d_backward(x, dy, pool, strides, padding=(0, 0, 0, 0)):
    """Each output gradient goes to the (first) maximum of its window."""
    x, dy = _f64(x), _f64(dy)
    _, argmax = max_pool2d_forward(x, pool, strides, padding)
    dx = np.zeros(x.shape)
    for r, q, taps in _pool_windows(x.shape, pool, strides, padding):
        where = {tap: (hi, wj) for tap, hi, wj in taps}
        for n in range(x.shape[0]):
            for c in range(x.shape[3]):
                hi, wj = where[int(argmax[n, r, q, c])]
                dx[n, hi, wj, c] += dy[n, r, q, c]
    return dx


def avg_pool2d_forward(x, pool, strides, padding=(0, 0, 0, 0)):
    """Mean of each window's in-bounds elements (padding is not counted, as in Keras/TF)."""
    x = _f64(x)
    y = np.empty(pool_output_shape(x.shape, pool, strides, padding))
    for r, q, taps in _pool_windows(x.shape, pool, strides, padding):
        total = np.zeros((x.shape[0], x.shape[3]))
        for _, hi, wj in taps:
            total += x[:, hi, wj, :]
        y[:, r, q, :] = total / len(taps)
    return y


def avg_pool2d_backward(dy, x_shape, pool, strides, padding=(0, 0, 0, 0)):
    """Each output gradient is shared equally among its window's in-bounds elements."""
    dy = _f64(dy)
    dx = np.zeros(x_shape)
    for r, q, taps in _pool_windows(x_shape, pool, strides, padding):
        for _, hi, wj in taps:
            dx[:, hi, wj, :] += dy[:, r, q, :] / len(taps)
    return dx


def correlate2d_valid(d, g):
    """Single-channel 'valid' cross-correlation: ``y[i, j] = sum_{u, v} d[i+u, j+v] g[u, v]``."""
    d, g = _f64(d), _f64(g)
    oh, ow = d.shape[0] - g.shape[0] + 1, d.shape[1] - g.shape[1] + 1
    y = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            for u in range(g.shape[0]):
                for v in range(g.shape[1]):
                    y[i, j] += d[i + u, j + v] * g[u, v]
    return y


def correlate1d_valid(d, g):
    d, g = _f64(d), _f64(g)
    return np.array([sum(d[i + u] * g[u] for u in range(len(g)))
                     for i in range(len(d) - len(g) + 1)])


# -- layers added with the normalisation family -------------------------------------------------


def conv1d_forward(x, w, b=None, stride=1, padding=(0, 0), dilation=1):
    """(N, steps, C) x (k, C, O) -> (N, out, O): ``y[t] = sum_u x[t*s + u*d - before] w[u]``;
    ``padding`` is ``(before, after)`` (zeros)."""
    x, w = _f64(x), _f64(w)
    n, steps, _ = x.shape
    k, _, o = w.shape
    before, after = padding
    out = (steps + before + after - (k - 1) * dilation - 1) // stride + 1
    y = np.zeros((n, out, o))
    for t in range(out):
        for u in range(k):
            i = t * stride + u * dilation - before
            if 0 <= i < steps:
                y[:, t, :] += x[:, i, :] @ w[u]
    return y if b is None else y + _f64(b)


def zero_pad2d(x, top, bottom, left, right):
    x = _f64(x)
    n, h, w, c = x.shape
    y = np.zeros((n, h + top + bottom, w + left + right, c))
    for i in range(h):
        for j in range(w):
            y[:, top + i, left + j, :] = x[:, i, j, :]
    return y


def batch_norm_statistics(x, axis=-1):
    """Per-channel mean and biased variance over every axis but ``axis``, by explicit sums."""
    x = np.moveaxis(_f64(x), axis, -1).reshape(-1, np.shape(x)[axis])
    rows, channels = x.shape
    mean, var = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        mean[c] = math.fsum(x[:, c]) / rows
        var[c] = math.fsum((v - mean[c]) ** 2 for v in x[:, c]) / rows
    return mean, var


def batch_norm(x, mean, var, gamma, beta, eps, axis=-1):
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` channel by channel."""
    x = _f64(x)
    moved = np.moveaxis(x, axis, -1)
    y = np.empty_like(moved)
    for c in range(moved.shape[-1]):
        y[..., c] = (moved[..., c] - mean[c]) / math.sqrt(var[c] + eps) * gamma[c] + beta[c]
    return np.moveaxis(y, -1, axis)


def local_response_normalization(x, depth_radius, bias, alpha, beta):
    """TensorFlow's LRN over the last axis, channel by channel with an explicit window."""
    x = _f64(x)
    channels = x.shape[-1]
    y = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - depth_radius), min(channels, c + depth_radius + 1)
        sqr_sum = np.zeros(x.shape[:-1])
        for j in range(lo, hi):
            sqr_sum += x[..., j] ** 2
        y[..., c] = x[..., c] / (bias + alpha * sqr_sum) ** beta
    return y


def batch_norm_backward(dy, x, gamma, mean, var, eps, training):
    """(dx, dgamma, dbeta) for (rows, channels) arrays from each channel's explicit Jacobian:
    ``dy_i/dx_j = gamma * inv * (delta_ij - 1/N - xhat_i xhat_j / N)`` when mean and var are
    the batch's (``training``), ``gamma * inv * delta_ij`` when they are constants."""
    dy, x = _f64(dy), _f64(x)
    rows, channels = x.shape
    dx, dgamma, dbeta = np.empty_like(x), np.empty(channels), np.empty(channels)
    for c in range(channels):
        inv = 1 / math.sqrt(var[c] + eps)
        xhat = (x[:, c] - mean[c]) * inv
        jac = np.eye(rows)
        if training:
            jac = jac - 1 / rows - np.outer(xhat, xhat) / rows
        dx[:, c] = (gamma[c] * inv * jac).T @ dy[:, c]
        dgamma[c] = math.fsum(dy[:, c] * xhat)
        dbeta[c] = math.fsum(dy[:, c])
    return dx, dgamma, dbeta


def local_response_normalization_backward(dy, x, depth_radius, bias, alpha, beta):
    """dx of :func:`local_response_normalization` over (rows, channels) from the explicit
    Jacobian ``dy_j/dx_c = [j == c] S_j^-beta - 2 alpha beta x_j x_c S_j^(-beta-1)`` for
    ``|j - c| <= depth_radius``, ``S_j = bias + alpha * (window sum of x^2 at j)``."""
    dy, x = _f64(dy), _f64(x)
    channels = x.shape[-1]
    s = np.empty_like(x)
    for j in range(channels):
        lo, hi = max(0, j - depth_radius), min(channels, j + depth_radius + 1)
        s[:, j] = bias + alpha * (x[:, lo:hi] ** 2).sum(axis=1)
    dx = np.zeros_like(x)
    for c in range(channels):
        for j in range(max(0, c - depth_radius), min(channels, c + depth_radius + 1)):
            d = -2 * alpha * beta * x[:, j] * x[:, c] * s[:, j] ** (-beta - 1)
            if j == c:
                d = d + s[:, j] ** -beta
            dx[:, c] += dy[:, j] * d
    return dx


def _group_slices(channels, groups):
    size = channels // groups
    assert size * groups == channels, f"{channels} channels do not split into {groups} groups"
    return [slice(k * size, (k + 1) * size) for k in range(groups)]


def grouped_conv2d_forward(x, w, b=None, groups=1, strides=(1, 1), padding=(0, 0, 0, 0),
                           dilation=(1, 1), activation="linear"):
    """Grouped convolution (Keras's ``Conv2D(groups=G)``, PyTorch's ``groups``): ``w`` is
    ``(kh, kw, C/G, O)``; group k convolves input channels ``k*C/G ... (k+1)*C/G - 1`` with
    ``w[..., k*O/G ... (k+1)*O/G - 1]`` into those output channels (one dense convolution per
    group, side by side)."""
    x, w = _f64(x), _f64(w)
    ins, outs = _group_slices(x.shape[3], groups), _group_slices(w.shape[3], groups)
    assert w.shape[2] == x.shape[3] // groups
    y = np.concatenate([conv2d_forward(x[..., i], w[..., o], None, strides, padding, dilation)
                        for i, o in zip(ins, outs)], axis=-1)
    if b is not None:
        y += _f64(b)
    return np.maximum(y, 0.0) if activation == "relu" else y


def grouped_conv2d_backward_data(dy, w, x_shape, groups=1, strides=(1, 1),
                                 padding=(0, 0, 0, 0), dilation=(1, 1)):
    """dL/dx of :func:`grouped_conv2d_forward`: each group's own input gradient."""
    dy, w = _f64(dy), _f64(w)
    assert w.shape[2] * groups == x_shape[3]
    part_shape = (*x_shape[:3], x_shape[3] // groups)
    return np.concatenate([conv2d_backward_data(dy[..., o], w[..., o], part_shape, strides,
                                                padding, dilation)
                           for o in _group_slices(w.shape[3], groups)], axis=-1)


def grouped_conv2d_backward_weight(x, dy, w_shape, groups=1, strides=(1, 1),
                                   padding=(0, 0, 0, 0), dilation=(1, 1)):
    """dL/dw of :func:`grouped_conv2d_forward`: the group kernels side by side along O."""
    x, dy = _f64(x), _f64(dy)
    ins, outs = _group_slices(x.shape[3], groups), _group_slices(w_shape[3], groups)
    part = (*w_shape[:3], w_shape[3] // groups)
    return np.concatenate([conv2d_backward_weight(x[..., i], dy[..., o], part, strides, padding,
                                                  dilation) for i, o in zip(ins, outs)], axis=-1)


def depthwise_conv2d_forward(x, depthwise_kernel, b=None, strides=(1, 1),
                             padding=(0, 0, 0, 0), dilation=(1, 1), activation="linear"):
    """Keras's ``DepthwiseConv2D``, from its definition: ``depthwise_kernel`` is
    ``(kh, kw, C, M)`` and ``y[n, r, q, c*M + m] = sum_{i, j} x[n, hi, wj, c] *
    depthwise_kernel[i, j, c, m]``."""
    x, k = _f64(x), _f64(depthwise_kernel)
    n, _, _, c = x.shape
    m = k.shape[3]
    shape = conv_output_shape(x.shape, (k.shape[0], k.shape[1], c, c * m), strides, padding,
                              dilation)
    y = np.zeros(shape)
    for r, q, i, j, hi, wj in _conv_taps(x.shape, k.shape, strides, padding, dilation):
        y[:, r, q, :] += (x[:, hi, wj, :, None] * k[i, j]).reshape(n, c * m)
    if b is not None:
        y += _f64(b)
    return np.maximum(y, 0.0) if activation == "relu" else y
