"""Where the project's shared reference files are: ``../shared`` beside the repository (as CI
clones it), or ``$FASTCONV_SHARED``.

The tests that read them (Keras's reference files in ``keras_ref``, the lesson script in
``lesson``) get them through :func:`require`: a missing one fails the test, so that a run
without them cannot pass as green. ``FASTCONV_ALLOW_MISSING_SHARED=1`` turns those failures
into skips that say what is missing, for a checkout without ``../shared``."""

from __future__ import annotations

import os
from pathlib import Path

#: Set to 1 to skip (instead of fail) the tests whose shared files are missing.
ALLOW_MISSING = "FASTCONV_ALLOW_MISSING_SHARED"


def shared_dir() -> Path | None:
    """../shared beside the repository (as CI clones it), or $FASTCONV_SHARED."""
    default = Path(__file__).resolve().parents[2] / "shared"
    if default.is_dir():
        return default
    env = os.environ.get("FASTCONV_SHARED")
    return Path(env) if env and Path(env).is_dir() else None


def missing_allowed() -> bool:
    return os.environ.get(ALLOW_MISSING, "") == "1"


def require(*parts: str) -> Path:
    """The shared file or folder ``shared/<parts...>``. When it is missing the calling test
    fails, saying where it looked, or skips where ``$FASTCONV_ALLOW_MISSING_SHARED=1``."""
    import pytest

    base = shared_dir()
    if base is not None and base.joinpath(*parts).exists():
        return base.joinpath(*parts)
    relative = "/".join(parts)
    where = (f"{base} has no {relative}" if base is not None else
             f"neither {Path(__file__).resolve().parents[2] / 'shared'} nor $FASTCONV_SHARED "
             f"({os.environ.get('FASTCONV_SHARED', 'unset')}) is a folder")
    message = f"the shared reference file {relative} is missing: {where}"
    if missing_allowed():
        pytest.skip(f"{message} ({ALLOW_MISSING}=1)")
    pytest.fail(f"{message}; clone the shared files beside the repository or set "
                f"FASTCONV_SHARED, or set {ALLOW_MISSING}=1 to skip the tests that need them",
                pytrace=False)
