"""Where and how a run executes: loader processes, mixed precision, and the seeded generators.

Device names resolve through :func:`oodml.device.resolve_device` (one rule for every stage).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from oodml.errors import BadInputError

__all__ = ["rng_state", "resolve_amp", "resolve_workers", "seed_all", "set_rng_state"]


def resolve_workers(workers: Any, device: torch.device) -> int:
    """Loader processes: the configured count, or for ``auto`` a share of the visible CPUs."""
    if workers != "auto":
        return int(workers)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return max(1, min(8, cpus - 1))
    # On a CPU the model itself needs the cores; small decoded images are cheap to transform.
    return 0 if cpus <= 4 else min(4, cpus // 4)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device`` (None = full precision); AMP is CUDA only."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "auto":
            return None
        raise BadInputError(f"amp={amp} needs a CUDA device (running on {device}); use amp: auto or off")
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def seed_all(*key: int) -> None:
    """Re-seed the python, numpy and torch generators from ``key`` (e.g. ``(seed, epoch, tag)``)."""
    seq = np.random.SeedSequence([int(k) for k in key])
    a, b = (int(x) for x in seq.generate_state(2, dtype=np.uint32))
    random.seed(b)
    np.random.seed(a)
    torch.manual_seed((a << 32) | b)


def rng_state() -> dict[str, Any]:
    """The global generators' state as tensors and plain data (``torch.load(weights_only=True)``-safe)."""
    npst = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": npst["bit_generator"],
            "key": torch.from_numpy(np.asarray(npst["state"]["key"], dtype=np.int64)),
            "pos": int(npst["state"]["pos"]),
            "has_gauss": int(npst["has_gauss"]),
            "gauss": float(npst["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
