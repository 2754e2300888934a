"""The error every unreadable, damaged or hostile model file raises."""

from __future__ import annotations


class InvalidModelFileError(ValueError):
    """The file is not a readable model or weights file; the message names the file and why."""
