"""Thread control, once for the package: torch's intra-op threads and the BLAS/LAPACK pools.

Both contexts restore the previous setting on exit, also after an error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int = 1, enabled: bool = True) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (a no-op when ``enabled`` is false).

    One thread is the right choice for many tiny operations (no thread wake-ups per operation,
    a large gain on a busy machine, results independent of the core count) and for callers that
    run several products in parallel threads of their own.
    """
    if not enabled:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


_THREADPOOL_CONTROLLER = None


def blas_threads(n: int = 1):
    """A context that limits the BLAS/LAPACK thread pools (OpenBLAS, MKL, ...) to ``n`` threads.

    Built on threadpoolctl (a scikit-learn dependency; imported on first use); without it the
    context does nothing. Many small products, and any BLAS call on an oversubscribed machine, run
    faster on one thread (see :mod:`oodml.shift.dense` and :mod:`oodml.metrics.cluster`).
    """
    global _THREADPOOL_CONTROLLER
    if _THREADPOOL_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController  # lazy on purpose: ~0.1 s, few commands need it

            _THREADPOOL_CONTROLLER = ThreadpoolController()
        except Exception:  # pragma: no cover - threadpoolctl missing or broken
            _THREADPOOL_CONTROLLER = False
    if _THREADPOOL_CONTROLLER is False:  # pragma: no cover
        return contextlib.nullcontext()
    return _THREADPOOL_CONTROLLER.limit(limits=int(n), user_api="blas")
