"""Inference precision: ``float32`` (the default) or the opt-in ``bfloat16``.

With ``bfloat16``, inference plans on ``numba-cpu`` run each im2col convolution whose
segments have an even length (every convolution but those with an odd KW x C, such as a 3x3
kernel on one channel) on bfloat16 copies of its input and its kernel: AVX512-BF16's
``vdpbf16ps`` multiplies two pairs per float32 lane, at twice the rate of float32 fused
multiply-adds, and sums in float32; bias, activation, pooling and outputs stay float32, as do
training and the other backends. Where the CPU lacks AVX512-BF16 (or the backend is another),
plans compute in float32. The accuracy against float32 is in the README ("bfloat16 inference").

Set it with ``FASTCONV_INFERENCE_PRECISION``, ``set_inference_precision`` or, for a block,
``use_inference_precision``; plans made under one precision are not reused under the other.
"""

from __future__ import annotations

from .. import config
from .setting import ContextSetting

PRECISIONS = ("float32", "bfloat16")


def _check(name) -> str:
    if not isinstance(name, str) or name not in PRECISIONS:
        raise ValueError(f"unknown inference precision {name!r}; valid precisions: "
                         f"{', '.join(PRECISIONS)}")
    return name


_setting = ContextSetting("fastconv_inference_precision", _check,
                          config.env_inference_precision())


def current_inference_precision() -> str:
    return _setting.current()


def set_inference_precision(name: str) -> None:
    """Make ``name`` (``float32`` or ``bfloat16``) the precision of new inference plans."""
    _setting.set(name)


def use_inference_precision(name: str):
    """``with use_inference_precision('bfloat16'): model.predict(x)``."""
    return _setting.use(name)
