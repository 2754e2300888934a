"""onnxruntime latency of fastconv's ONNX export (NCHW inside, one Transpose at each end) against
the same graph kept NHWC between layers (Transposes around every Conv/Pool), the design choice
documented in fastconv/onnx/_export.py.

    python bench/onnx_layout.py [ORT_ENABLE_ALL|ORT_ENABLE_BASIC|ORT_DISABLE_ALL]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

import fastconv.onnx._export as E
from fastconv import applications

_layer = E._Exporter.layer


def _nhwc_between(self, layer, xs, shape, multi=False):
    """The exporter's layer, with every channels-first result transposed back at once."""
    outs = _layer(self, layer, xs, shape, multi)
    for v in outs:
        if "cf" in v.names and v.rank in (3, 4):
            v.names = {"cl": self.get(v, "cl")}
    return outs


def median_ms(path, x, level, reps=20):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = level
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main(level_name: str = "ORT_ENABLE_ALL") -> None:
    level = getattr(ort.GraphOptimizationLevel, level_name)
    tmp = tempfile.mkdtemp()
    a_path, b_path = os.path.join(tmp, "nchw.onnx"), os.path.join(tmp, "nhwc.onnx")
    for name, shape in [("ResNet50", (64, 64, 3)), ("VGG16", (64, 64, 3)),
                        ("InceptionV3", (75, 75, 3))]:
        model = getattr(applications, name)(weights=None, input_shape=shape, classes=10)
        x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
        E.export(model, a_path)
        E._Exporter.layer = _nhwc_between
        try:
            E.export(model, b_path)
        finally:
            E._Exporter.layer = _layer
        a, b = median_ms(a_path, x, level), median_ms(b_path, x, level)
        print(f"{name} {shape} batch 4, 1 thread, {level_name}: NCHW inside {a:.1f} ms, "
              f"NHWC between layers {b:.1f} ms ({b / a:.2f}x)", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
