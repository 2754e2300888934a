"""The one place that reads fastconv's environment variables.

Everything else asks these functions. The exceptions read other programs' variables or pass the
environment on: ``backends.jit_cache`` honours Numba's ``NUMBA_CACHE_DIR``, ``backends.background``
hands the environment to the compiling process, and ``fastconv info`` shows
``FASTCONV_BACKEND`` as it was set.

==========================  ===================================================================
``FASTCONV_BACKEND``        kernel backend at import: ``numba-cpu`` (default), ``numpy``; a GPU
                            backend may name its device, ``name:index`` (``parse_backend_spec``)
``FASTCONV_CONV_ALGO``      convolution algorithm: ``auto`` (default), ``direct``, ``im2col``,
                            ``winograd`` (F(2x2,3x3)), ``winograd4`` (F(4x4,3x3))
``FASTCONV_INFERENCE_PRECISION``  ``float32`` (default) or ``bfloat16``: inference plans on
                            ``numba-cpu`` run their im2col convolutions on bfloat16 inputs and
                            weights (float32 sums) where the CPU has AVX512-BF16
``FASTCONV_DATA``           folder holding datasets (the four MNIST ``*-ubyte.gz`` files)
``FASTCONV_CACHE_DIR``      cache folder (downloads, autotuning results); default
                            ``$XDG_CACHE_HOME/fastconv`` or ``~/.cache/fastconv``
``FASTCONV_AUTOTUNE``       ``1`` (default): ``auto`` runs the heuristic's choice, then measures a
                            shape's candidates on its third use and caches a clear winner (see
                            ``fastconv.backends.autotune``); ``0``: ``auto`` uses the heuristic only
``FASTCONV_TUNE_COMPILE``   seconds that compiling one candidate algorithm is assumed to cost
                            (default 3): a shape is tuned only once the heuristic's runs of it
                            have taken that long per candidate not yet run in this process;
                            ``0``: tune on the third use whatever compiling costs (benchmarks)
``FASTCONV_BACKGROUND_COMPILE``  ``1`` (default): plans and training steps never compiled here
                            compile in a separate process (``fastconv.warmup``); ``0``: in the
                            foreground
``FASTCONV_ADAPTIVE_THREADS``  ``1`` (default): numba-cpu's parallel kernels run serially while
                            other programs leave too little CPU for their threads; ``0``: never
``FASTCONV_CUPY_EMULATE``   ``1``: the ``cupy`` backend compiles its CUDA C kernels with g++ and
                            runs them on the CPU on NumPy memory (no GPU needed); read at import
``FASTCONV_CUPY_SANITIZE``  with ``FASTCONV_CUPY_EMULATE=1``: ``address`` or ``thread`` builds the
                            emulated kernels with that sanitizer (its runtime must be preloaded)
==========================  ===================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BACKEND = "numba-cpu"
DEFAULT_CONV_ALGO = "auto"


def env_backend() -> str:
    """The backend named by ``FASTCONV_BACKEND`` (default ``numba-cpu``)."""
    return os.environ.get("FASTCONV_BACKEND", "").strip() or DEFAULT_BACKEND


def parse_backend_spec(spec) -> tuple[str, int | None]:
    """``'name'`` -> (name, None); ``'name:index'`` -> (name, index), the device a GPU backend
    runs on (``'cupy:1'``: the second GPU). The name is not checked here (the registry does)."""
    if not isinstance(spec, str):
        return spec, None
    name, sep, device = spec.strip().partition(":")
    if not sep:
        return name, None
    device = device.strip()
    if not device.isdecimal() or not device.isascii():
        raise ValueError(f"backend {spec!r}: the device after ':' must be a GPU index "
                         f"(0, 1, ...), got {device!r}")
    return name.strip(), int(device)


def env_inference_precision() -> str:
    """The inference precision named by ``FASTCONV_INFERENCE_PRECISION`` (default
    ``float32``)."""
    return os.environ.get("FASTCONV_INFERENCE_PRECISION", "").strip() or "float32"


def env_conv_algo() -> str:
    """The convolution algorithm named by ``FASTCONV_CONV_ALGO`` (default ``auto``)."""
    return os.environ.get("FASTCONV_CONV_ALGO", "").strip() or DEFAULT_CONV_ALGO


def env_autotune() -> bool:
    """Whether ``auto`` may time the candidate algorithms (``FASTCONV_AUTOTUNE``, default on)."""
    return _flag("FASTCONV_AUTOTUNE", default=True)


#: seconds a candidate's first compile is assumed to cost (AMD EPYC, numba-cpu: 1.5-8 s per
#: algorithm and pass, 3 s typical)
DEFAULT_TUNE_COMPILE_SECONDS = 3.0


def env_tune_compile_seconds() -> float:
    """The compile time autotuning weighs against the heuristic's run time
    (``FASTCONV_TUNE_COMPILE``, seconds, default 3; see fastconv.backends.autotune)."""
    value = os.environ.get("FASTCONV_TUNE_COMPILE", "").strip()
    if value == "":
        return DEFAULT_TUNE_COMPILE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"FASTCONV_TUNE_COMPILE must be a number of seconds >= 0, got {value!r}")
    return seconds


def env_background_compile() -> bool:
    """Whether a plan whose kernels were never compiled here compiles them in a background
    process while a backend that compiles nothing predicts, and a training step never compiled
    here shares its compiling with a background process (``FASTCONV_BACKGROUND_COMPILE``,
    default on; see fastconv.warmup)."""
    return _flag("FASTCONV_BACKGROUND_COMPILE", default=True)


def env_adaptive_threads() -> bool:
    """Whether numba-cpu's parallel kernels give way to serial ones while other programs leave
    this process less than the cores its threads need (``FASTCONV_ADAPTIVE_THREADS``, default
    on; see fastconv.backends.numba_cpu.contention)."""
    return _flag("FASTCONV_ADAPTIVE_THREADS", default=True)


def env_data_dir() -> Path | None:
    """The dataset folder named by ``FASTCONV_DATA``, or None."""
    value = os.environ.get("FASTCONV_DATA", "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """fastconv's cache folder (not created here)."""
    explicit = os.environ.get("FASTCONV_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastconv"


def _flag(name: str, default: bool = False) -> bool:
    """A 0/1 switch; unset or empty: ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 0 or 1, got {value!r}")


def env_cupy_emulate() -> bool:
    """Whether the ``cupy`` backend runs its CUDA C on the CPU (``FASTCONV_CUPY_EMULATE=1``)."""
    return _flag("FASTCONV_CUPY_EMULATE")


def env_cupy_sanitizer() -> str | None:
    """The sanitizer of emulated CUDA C kernels (``FASTCONV_CUPY_SANITIZE``: ``address``,
    ``thread``), or None."""
    value = os.environ.get("FASTCONV_CUPY_SANITIZE", "").strip().lower()
    if value in ("", "0", "none"):
        return None
    if value not in ("address", "thread"):
        raise ValueError(f"FASTCONV_CUPY_SANITIZE must be 'address' or 'thread', got {value!r}")
    return value
