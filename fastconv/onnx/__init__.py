"""ONNX import and export (needs the ``onnx`` package: ``pip install fastconv[onnx]``).

* ``fastconv.onnx.load(path)``: a trainable functional model from an ONNX file.
* ``fastconv.onnx.export(model, path, opset=17)``: a Sequential or functional model to ONNX.

See ``_import`` and ``_export`` for the layout conversions (ONNX's NCHW, fastconv's NHWC).
"""

from ._export import export
from ._import import SUPPORTED_OPS, UnsupportedOnnxError, import_model, load

__all__ = ["load", "export", "import_model", "SUPPORTED_OPS", "UnsupportedOnnxError"]
