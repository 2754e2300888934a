"""ONNX import and export (needs the ``onnx`` package: ``pip install fastconv[onnx]``).

* ``fastconv.onnx.load(path)``: a trainable functional model from an ONNX file.
* ``fastconv.onnx.export(model, path, opset=17)``: a Sequential or functional model to ONNX.

``OP_TABLE`` lists the ONNX operators ``load`` reads and the layers each becomes;
``fastconv.onnx.backend`` is an ``onnx.backend.base.Backend`` over ``load`` (for ONNX's node
tests). See ``_import`` and ``_export`` for the layout conversions (ONNX's NCHW, fastconv's
NHWC) and the design choices.
"""

from ._export import export
from ._import import OP_TABLE, SUPPORTED_OPS, UnsupportedOnnxError, import_model, load

__all__ = ["load", "export", "import_model", "OP_TABLE", "SUPPORTED_OPS",
           "UnsupportedOnnxError"]
