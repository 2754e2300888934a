"""Every torchvision convolutional classification model (the transformer families vit, swin and
maxvit aside) exported to ONNX and loaded with ``fastconv.onnx.load``, against onnxruntime: the
full sweep behind ``tests/test_torchvision_models.py``, which runs the families in CI.

``python bench/torchvision_models.py [NAME ...]`` prints one row per model: the input size (224
for alexnet and vgg, whose adaptive pooling exports only there; 75 for inception_v3; else 64),
``max |fastconv - onnxruntime| / max |onnxruntime|`` on a batch of 3 (1 at 224), and the time the
row took (building, exporting, loading and both predictions). Same weights, statistics and
export options as the test module.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

SKIPPED_FAMILIES = ("vit", "swin", "maxvit")


def _size(name: str) -> int:
    if name.startswith(("alexnet", "vgg")):
        return 224
    return 75 if name.startswith("inception") else 64


def main(names=None) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.test_torchvision_models import build, export, relative_error, torchvision

    names = names or [n for n in torchvision.models.list_models(module=torchvision.models)
                      if not n.startswith(SKIPPED_FAMILIES)]
    print("| model | input | error vs onnxruntime | time |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            start, size = time.perf_counter(), _size(name)
            path = pathlib.Path(folder) / f"{name}.onnx"
            export(build(name), path, size)
            err = relative_error(path, size)
            path.unlink()
            print(f"| {name} | {size} | {err:.1e} | {time.perf_counter() - start:.0f} s |",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
