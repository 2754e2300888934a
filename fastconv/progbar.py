"""Keras's per-epoch progress bar (the Keras 3 look):

``1875/1875 ━━━━━━━━━━━━━━━━━━━━ 9s 5ms/step - accuracy: 0.9552 - loss: 0.1480``

On a terminal the line redraws in place (at most every ``interval`` seconds) with the ETA and
the running means of loss and metrics; elsewhere (logs, CI) only the finished line is written.
``verbose=2`` writes one line per epoch without the bar: ``1875/1875 - 9s - 5ms/step - ...``.
"""

from __future__ import annotations

import sys
import time

_GREEN, _GREY, _BOLD, _RESET = "\x1b[32m", "\x1b[37m", "\x1b[1m", "\x1b[0m"


def write_line(text: str) -> None:
    """Write one line to standard output (the progress bar's stream)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def format_value(v: float) -> str:
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def format_eta(seconds: float) -> str:
    s = int(seconds)
    if seconds > 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if seconds > 60:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s}s"


def format_step_time(seconds: float, unit: str = "step") -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


class Progbar:
    def __init__(self, target: int, verbose: int = 1, width: int = 20, stream=None,
                 interval: float = 0.05):
        self.target, self.verbose, self.width, self.interval = target, verbose, width, interval
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty())
        self.start = time.perf_counter()
        self._first_step_end = None
        self._last_draw = 0.0
        self._last_width = 0

    def _step_time(self, current: int, now: float) -> float:
        """Seconds per step, leaving out the first step (compilation, warm-up) once possible."""
        if current <= 1 or self._first_step_end is None:
            return (now - self.start) / max(current, 1)
        return (now - self._first_step_end) / (current - 1)

    def _counter(self, current: int) -> str:
        return f"{current:{len(str(self.target))}d}/{self.target}"

    def _bar(self, current: int, color: bool) -> str:
        done = int(self.width * current / self.target) if self.target else self.width
        if not color:
            return "━" * self.width
        return f"{_GREEN}{'━' * done}{_RESET}{_GREY}{'━' * (self.width - done)}{_RESET}"

    @staticmethod
    def _values(values: dict) -> str:
        return "".join(f" - {k}: {format_value(v)}" for k, v in values.items())

    def _write(self, line: str, visible: int, final: bool) -> None:
        pad = " " * max(self._last_width - visible, 0)
        self.stream.write(("\r" if self.dynamic else "") + line + pad + ("\n" if final else ""))
        self.stream.flush()
        self._last_width = visible

    def update(self, current: int, values: dict) -> None:
        """Redraw after ``current`` steps (terminal and verbose=1 only)."""
        now = time.perf_counter()
        if current == 1 and self._first_step_end is None:
            self._first_step_end = now
        if self.verbose != 1 or not self.dynamic or current >= self.target:
            return
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        step = self._step_time(current, now)
        eta = format_eta(step * (self.target - current))
        tail = f" {eta} {format_step_time(step)}{self._values(values)}"
        counter = self._counter(current)
        line = f"{_BOLD}{counter}{_RESET} {self._bar(current, True)}{tail}"
        self._write(line, len(counter) + 1 + self.width + len(tail), final=False)

    def finish(self, values: dict) -> None:
        """Write the epoch's final line (verbose 1 and 2)."""
        if self.verbose not in (1, 2):
            return
        now = time.perf_counter()
        elapsed = f"{now - self.start:.0f}s"
        step = format_step_time(self._step_time(self.target, now))
        counter = self._counter(self.target)
        if self.verbose == 2:
            line = f"{counter} - {elapsed} - {step}{self._values(values)}"
            self._write(line, len(line), final=True)
            return
        tail = f" {elapsed} {step}{self._values(values)}"
        bar = self._bar(self.target, self.dynamic)
        counter_text = f"{_BOLD}{counter}{_RESET}" if self.dynamic else counter
        self._write(f"{counter_text} {bar}{tail}", len(counter) + 1 + self.width + len(tail),
                    final=True)
