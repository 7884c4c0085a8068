"""Temporarily change torch's intra-op thread count (restored on exit, also after an error)."""

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
