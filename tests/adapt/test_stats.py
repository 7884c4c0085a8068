"""Statistics over episodes (oodml.adapt.stats)."""

from __future__ import annotations

import math

import pytest

from oodml import adapt as A


def test_confidence_interval_is_the_student_t_half_width():
    x = [0.2, 0.5, 0.4, 0.9]
    n, mean = 4, sum(x) / 4
    s = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    t_975_3 = 3.182446305284263  # Student t quantile, 3 degrees of freedom
    assert A.confidence_interval(x) == pytest.approx(t_975_3 * s / math.sqrt(n), rel=1e-9)
    assert A.confidence_interval([0.3]) is None and A.confidence_interval([]) is None
    assert A.confidence_interval([0.5, 0.5, 0.5]) == 0.0
    assert A.confidence_interval([1.0, 2.0], confidence=0.9) == pytest.approx(
        6.313751514675 * math.sqrt(0.5) / math.sqrt(2)
    )
    assert A.summarize([0.25]) == {"mean": 0.25, "ci95": None}
