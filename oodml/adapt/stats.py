"""Statistics over episodes: the mean and the Student-t 95 % confidence interval half-width."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import t as student_t

__all__ = ["confidence_interval", "summarize"]


def confidence_interval(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the two-sided ``confidence`` interval of the mean of ``values``
    (Student t with ``n - 1`` degrees of freedom: ``t * s / sqrt(n)``, ``s`` the sample
    standard deviation). ``None`` for fewer than two values; NaN if any value is NaN."""
    x = np.asarray(list(values), dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    if not np.isfinite(x).all():
        return float("nan")
    s = float(np.std(x, ddof=1))
    return float(student_t.ppf(0.5 + confidence / 2.0, n - 1) * s / math.sqrt(n))


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean": mean, "ci95": half-width or None}`` of per-episode values."""
    x = np.asarray(list(values), dtype=np.float64)
    mean = float(x.mean()) if len(x) else float("nan")
    return {"mean": mean, "ci95": confidence_interval(x)}
