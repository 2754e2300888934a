"""Running one function in many threads at once, for the concurrency tests."""

from __future__ import annotations

import contextvars
import threading


def run_in_threads(n, fn):
    """Run ``fn(i)`` in ``n`` threads started together, each in a copy of the caller's context
    (so ``use_backend`` applies); re-raise the first exception."""
    barrier = threading.Barrier(n)
    contexts = [contextvars.copy_context() for _ in range(n)]
    results, errors = [None] * n, []

    def body(i):
        try:
            barrier.wait()
            results[i] = contexts[i].run(fn, i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
