"""Errors of the ``cupy`` backend's runtime: a kernel source that does not compile, a launch
that CUDA would refuse."""

from __future__ import annotations


class KernelCompileError(RuntimeError):
    """A ``.cu`` source failed to compile; names the file, the line and the compiler's message
    (the whole log is in ``log``)."""

    def __init__(self, file: str, line: int | None, message: str, log: str,
                 compiler: str = "NVRTC"):
        self.file, self.line, self.message, self.log = file, line, message, log
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message} (compiled by {compiler}; full log in .log)")


class KernelLaunchError(RuntimeError):
    """A launch CUDA would refuse (invalid grid or block) under emulation."""


class KernelNotFoundError(KeyError):
    """A source has no ``extern "C" __global__`` kernel of that name."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""
