"""Where the project's shared reference files are: ``../shared`` beside the repository (as CI
clones it), or ``$FASTCONV_SHARED``."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path | None:
    """../shared beside the repository (as CI clones it), or $FASTCONV_SHARED."""
    default = Path(__file__).resolve().parents[2] / "shared"
    if default.is_dir():
        return default
    env = os.environ.get("FASTCONV_SHARED")
    return Path(env) if env and Path(env).is_dir() else None
