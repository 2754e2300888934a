"""Max and average pooling, forward and backward, every backend and PyTorch.

Max pooling runs three passes: forward as inference calls it (no argmax), forward with the argmax
(fastconv) or indices (PyTorch) as training calls it, and backward, which takes the argmax or
indices computed outside the timed region.
"""

from __future__ import annotations

import pytest

from . import references, subjects


def pool_info(case, op: str, pool_pass: str) -> dict:
    return {"section": "pool", "workload": case.name, "source": case.source,
            "shape": case.shape_text, "op": op, "pass": pool_pass, "tags": list(case.tags),
            "batch": case.n, "images": case.n, "bytes": subjects.pool_bytes(case),
            "dtype": "float32"}


@pytest.mark.parametrize(("op", "pool_pass"), subjects.POOL_CASES,
                         ids=[f"{op}-{p}" for op, p in subjects.POOL_CASES])
def test_pool_fastconv(measure, pool_case, fc_backend, op, pool_pass):
    fn = subjects.pool_fn(fc_backend, pool_case, op, pool_pass, subjects.pool_arrays(pool_case))
    measure(fn, {**pool_info(pool_case, op, pool_pass), **subjects.backend_info(fc_backend)})


@pytest.mark.parametrize(("op", "pool_pass"), subjects.POOL_CASES,
                         ids=[f"{op}-{p}" for op, p in subjects.POOL_CASES])
def test_pool_torch(measure, pool_case, torch_dev, op, pool_pass):
    torch, device = torch_dev
    x, dy = subjects.pool_arrays(pool_case)
    fn = references.pool_fn(torch, pool_case, op, pool_pass, device, x, dy)
    measure(fn, {**pool_info(pool_case, op, pool_pass), "library": "torch",
                 "impl": f"torch-{device}", "device": device, "threads": torch.get_num_threads()})
