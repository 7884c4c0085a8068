"""Shared test data of the metrics tests, as fixtures that return the generator functions."""

from __future__ import annotations

import numpy as np
import pytest


def _clustered(n_classes=40, d=12, seed=0, max_size=9, spread=1.2):
    """Unequal class sizes 1..max_size (singletons included), classes as noisy centres."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_classes)
    y = np.repeat(np.arange(n_classes), sizes)
    y = y[rng.permutation(len(y))]
    centres = spread * rng.standard_normal((n_classes, d))
    x = (centres[y] + rng.standard_normal((len(y), d))).astype(np.float32)
    return x, y


def _tied(n=150, d=8, n_classes=12, seed=0):
    """Embeddings whose similarities are exact in float32 whatever the summation order (4
    entries +-1 per row, norm 2, so normalised entries are +-0.5 and dot products multiples of
    0.25): many exact ties and duplicate rows, to test the tie rule."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d), np.float32)
    for i in range(n):
        cols = rng.choice(d, 4, replace=False)
        x[i, cols] = rng.choice([-1.0, 1.0], 4)
    return x, rng.integers(0, n_classes, n)


@pytest.fixture
def clustered():
    """``clustered(n_classes=40, d=12, seed=0, max_size=9, spread=1.2) -> (x, y)``."""
    return _clustered


@pytest.fixture
def tied():
    """``tied(n=150, d=8, n_classes=12, seed=0) -> (x, y)`` with exact float32 ties."""
    return _tied
