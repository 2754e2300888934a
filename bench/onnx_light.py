"""The real architectures shipped inside the onnx wheel (onnx/backend/test/data/light), with
random weights in place of their ConstantOfShape placeholders, imported by fastconv.onnx and
compared with onnxruntime: max |fastconv - onnxruntime| / max |onnxruntime| per model.

    python bench/onnx_light.py [name ...]     # default: all six

CI runs the fast ones (tests/test_onnx_import.py); this measures them all.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

MODELS = ("bvlc_alexnet", "zfnet512", "vgg19", "resnet50", "inception_v1", "inception_v2")


def main(names=MODELS) -> None:
    warnings.simplefilter("ignore")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.test_onnx_import import compare_light

    for name in names:
        start = time.perf_counter()
        err = compare_light(name)  # the original AlexNet's grouped convolutions run as such
        print(f"{name}: max relative difference {err:.1e} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)
