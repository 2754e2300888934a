"""Launch every primitive of a backend once, on odd shapes, in float32 and float64.

For the memory and race checkers: ``compute-sanitizer --tool memcheck python -m
tests.kernel_smoke numba-cuda`` on a GPU, and the sanitizer builds of the CUDA C emulation.
Each result is compared with the numpy backend's, so a kernel that reads or writes out of
bounds is also caught by its values. Exit status 0 when every primitive agreed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fastconv
from fastconv.geometry import conv_geometry, pool_geometry
from fastconv.ops.conv import grouped_geometry

#: (x shape, w shape, strides, padding, dilation): odd sizes, asymmetric 'same' padding
CONV_CASES = (
    ((2, 7, 5, 3), (3, 3, 3, 5), 1, "same", 1),  # also Winograd's
    ((1, 9, 6, 2), (3, 2, 2, 3), 2, "same", 1),
    ((2, 8, 7, 3), (2, 3, 3, 4), 1, ((1, 0), (2, 1)), 2),
)
POOL_CASES = (((2, 7, 5, 3), 3, 2, "same"), ((1, 6, 6, 2), 2, None, "valid"))
#: (x shape, grouped w shape (kh, kw, C / groups, O), groups, strides, padding, dilation):
#: depthwise with multiplier 2 and dilation 2, and groups of two channels with stride 2
GROUPED_CASES = (
    ((2, 7, 5, 4), (3, 3, 1, 8), 4, 1, "same", 2),
    ((1, 9, 6, 6), (3, 2, 2, 6), 3, 2, "same", 1),
)


def _pairs(name: str, dtype: str, rng):
    """Yield (label, run(backend) -> host arrays) for every primitive."""
    def arr(*shape):
        return rng.standard_normal(shape).astype(dtype)

    for xs, ws, strides, padding, dilation in CONV_CASES:
        g = conv_geometry(xs, ws, strides, padding, dilation)
        x, w, b, dy = arr(*xs), arr(*ws), arr(ws[3]), arr(*g.y_shape)
        for algo in fastconv.get_backend(name).conv_algorithms:
            if algo.startswith("winograd") and not g.is_3x3_unit:
                continue
            yield (f"conv {algo} forward {xs}x{ws}",
                   lambda be, x=x, w=w, b=b, g=g, a=algo:
                   be.conv2d_forward(be.asarray(x), be.asarray(w), be.asarray(b), g, a, "relu"))
            yield (f"conv {algo} backward-data {xs}x{ws}",
                   lambda be, dy=dy, w=w, g=g, a=algo:
                   be.conv2d_backward_data(be.asarray(dy), be.asarray(w), g, a))
            yield (f"conv {algo} backward-weight {xs}x{ws}",
                   lambda be, x=x, dy=dy, g=g, a=algo:
                   be.conv2d_backward_weight(be.asarray(x), be.asarray(dy), g, a))
    for xs, ws, groups, strides, padding, dilation in GROUPED_CASES:
        g = grouped_geometry(xs, ws, groups, strides, padding, dilation)
        x, w, b, dy = arr(*xs), arr(*ws), arr(ws[3]), arr(*g.y_shape)
        yield (f"grouped forward {xs}x{ws}/{groups}",
               lambda be, x=x, w=w, b=b, g=g, k=groups: be.grouped_conv2d_forward(
                   be.asarray(x), be.asarray(w), be.asarray(b), g, k, "relu"))
        yield (f"grouped backward-data {xs}x{ws}/{groups}",
               lambda be, dy=dy, w=w, g=g, k=groups: be.grouped_conv2d_backward_data(
                   be.asarray(dy), be.asarray(w), g, k))
        yield (f"grouped backward-weight {xs}x{ws}/{groups}",
               lambda be, x=x, dy=dy, g=g, k=groups: be.grouped_conv2d_backward_weight(
                   be.asarray(x), be.asarray(dy), g, k))
    for xs, size, strides, padding in POOL_CASES:
        g = pool_geometry(xs, size, strides, padding)
        x, dy = arr(*xs), arr(*g.y_shape)
        yield (f"max pool forward {xs}",
               lambda be, x=x, g=g: be.max_pool2d_forward(be.asarray(x), g))
        yield (f"max pool backward {xs}",
               lambda be, x=x, dy=dy, g=g: be.max_pool2d_backward(
                   be.asarray(dy), be.max_pool2d_forward(be.asarray(x), g)[1], g))
        yield (f"avg pool forward {xs}", lambda be, x=x, g=g: be.avg_pool2d_forward(
            be.asarray(x), g))
        yield (f"avg pool backward {xs}", lambda be, dy=dy, g=g: be.avg_pool2d_backward(
            be.asarray(dy), g))
    y, b = arr(5, 3, 7), arr(7)
    # in place: a copy each, or the numpy backend's run (asarray: no copy) would change y
    yield "bias + relu", lambda be: be.bias_activation(be.asarray(y.copy()), be.asarray(b),
                                                       "relu")
    yield "epilogue backward", lambda be: be.epilogue_backward(
        be.asarray(y), be.asarray(np.maximum(y, 0)), "relu", True)
    a, c = arr(7, 5), arr(5, 9)
    for ta in (False, True):
        for tb in (False, True):
            yield (f"matmul ta={ta} tb={tb}",
                   lambda be, ta=ta, tb=tb: be.matmul(
                       be.asarray(a.T.copy() if ta else a), be.asarray(c.T.copy() if tb else c),
                       ta, tb))

    state = [arr(13), arr(13), arr(13), abs(arr(13))]

    def adam(be):
        p, g, m, v = (be.asarray(a.copy()) for a in state)
        be.adam_update(p, g, m, v, 0.01, 0.9, 0.999, 1e-7)
        return p, m, v

    yield "adam", adam
    rows = arr(11, 5)
    gamma, beta = arr(5), arr(5)

    def bn(be):
        mean, var = be.batch_norm_statistics(be.asarray(rows))
        y = be.batch_norm_forward(be.asarray(rows), be.asarray(gamma), be.asarray(beta), mean,
                                  var, 1e-3)
        back = be.batch_norm_backward(be.asarray(rows), be.asarray(rows), be.asarray(gamma),
                                      mean, var, 1e-3, True)
        return (mean, var, y, *back)

    yield "batch norm", bn

    def lrn(be):
        y, scale = be.lrn_forward(be.asarray(rows), 2, 1.0, 1e-2, 0.75)
        dx = be.lrn_backward(be.asarray(rows), be.asarray(rows), y, scale, 2, 1e-2, 0.75)
        return y, scale, dx

    yield "lrn", lrn


def _host(be, out) -> list[np.ndarray]:
    outs = out if isinstance(out, tuple) else (out,)
    return [be.to_host(be.synchronize(o)) for o in outs if o is not None]


def run(name: str, dtypes=("float32", "float64")) -> list[str]:
    """Every primitive of backend ``name`` once; the list of disagreements with numpy."""
    failures = []
    reference, backend = fastconv.get_backend("numpy"), fastconv.get_backend(name)
    for dtype in dtypes:
        tol = 2e-4 if dtype == "float32" else 1e-10
        for label, fn in _pairs(name, dtype, np.random.default_rng(5)):
            want, got = _host(reference, fn(reference)), _host(backend, fn(backend))
            if len(want) != len(got):
                failures.append(f"{name} {dtype} {label}: {len(got)} outputs, not {len(want)}")
                continue
            for w, g in zip(want, got):
                w, g = np.asarray(w, dtype=np.float64), np.asarray(g, dtype=np.float64)
                scale = max(1.0, float(np.abs(w).max(initial=0.0)))
                if w.shape != g.shape or not np.allclose(g, w, rtol=tol, atol=tol * scale):
                    failures.append(f"{name} {dtype} {label}")
                    break
        (u,) = _host(backend, backend.random_uniform((1001,), dtype))
        if not (u.dtype == np.dtype(dtype) and u.min() >= 0 and u.max() < 1):
            failures.append(f"{name} {dtype} random_uniform")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kernel_smoke",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("backend")
    args = parser.parse_args(argv)
    failures = run(args.backend)
    for line in failures:
        print("MISMATCH", line)
    print(f"kernel smoke on {args.backend}: {'ok' if not failures else len(failures)}"
          f"{'' if not failures else ' mismatches'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
