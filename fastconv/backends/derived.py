"""One value derived from weights (a packed or transformed kernel), kept until the weights
change, safe when several threads predict at once.

The entry is one tuple ``(key, value)`` swapped in by a single assignment, so a reader sees a key
together with the value made from that key's weights, never a new key beside an old value. The
value holds references to the arrays it was made from, so their ``id`` (part of the key) cannot be
reused by another array while the entry lives. Building happens under a lock: threads that
arrive while another builds the same key wait for it instead of building it again.
"""

from __future__ import annotations

import threading


class DerivedCache:
    """``get(key, make)``: ``make()``'s value for ``key``, made once per key change."""

    __slots__ = ("_entry", "_lock")

    def __init__(self):
        self._entry = None
        self._lock = threading.Lock()

    def get(self, key, make):
        entry = self._entry
        if entry is not None and entry[0] == key:
            return entry[1]
        with self._lock:
            entry = self._entry
            if entry is None or entry[0] != key:
                entry = (key, make())
                self._entry = entry
        return entry[1]
