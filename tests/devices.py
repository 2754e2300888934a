"""Which GPU backends this test process emulates on the CPU.

The main test process runs the CPU backends (and a GPU backend on a real GPU). A second process
runs the GPU backends' kernels on the CPU: ``NUMBA_ENABLE_CUDASIM=1`` (Numba's CUDA simulator)
enrols numba-cuda, ``FASTCONV_CUPY_EMULATE=1`` (their CUDA C compiled with g++) enrols cupy.
There the ``backend`` fixture yields only the emulated backends, tests that sweep many shapes
use :func:`emulated_subset` to keep the sweep small, and end-to-end tests (``EMULATED``) train
on fewer and smaller samples with the same assertions: the simulator starts a Python thread per
CUDA thread (0.1-0.2 ms each) and interprets every multiply-add (about 2 us; tests/conftest.py
shortens the GIL switch interval, which the simulator's thread barriers otherwise pay up to
5 ms for), the CUDA C emulation switches a fiber per CUDA thread.
"""

from __future__ import annotations

import os


def _emulated_device_backends() -> tuple[str, ...]:
    names = []
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() == "1":
        names.append("numba-cuda")
    if os.environ.get("FASTCONV_CUPY_EMULATE", "").strip() == "1":
        names.append("cupy")
    return tuple(names)


#: GPU backends run on the CPU in this process (empty in the main test process)
EMULATED_DEVICES = _emulated_device_backends()
EMULATED = bool(EMULATED_DEVICES)


def emulated_subset(cases, keep):
    """``cases`` in the main process; in an emulated device run only those at the positions
    (or with the ids) in ``keep``, chosen to cover every feature the sweep covers."""
    if not EMULATED:
        return list(cases)
    cases = list(cases)
    return [c for i, c in enumerate(cases) if i in keep or getattr(c, "id", None) in keep]
