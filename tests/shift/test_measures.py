"""Tests of :mod:`oodml.shift.measures`: the kernel measures against dense formulas, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from oodml import shift


def _dense_mmd2(x, y, k):
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def _poly(x, y):
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _sets(seed=0, m=37, n=29, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, d)), rng.normal(loc=0.4, size=(n, d)) * 1.3


@pytest.mark.parametrize("block", [4, 7, 1024])
def test_kid_equals_dense_unbiased_mmd(block):
    x, y = _sets()
    value, se = shift.kid(x, y, subset_size=1000, block=block)
    assert value == pytest.approx(_dense_mmd2(x, y, _poly), rel=1e-12, abs=1e-14)
    assert np.isnan(se)  # one exact draw: no standard error


def test_kid_subsets_are_the_mean_of_dense_draws():
    x, y = _sets(1, m=50, n=40)
    value, se = shift.kid(x, y, subsets=6, subset_size=15, seed=3, block=4)
    rng = np.random.default_rng(3)
    vals = []
    for _ in range(6):
        ix = np.sort(rng.choice(50, 15, replace=False))
        iy = np.sort(rng.choice(40, 15, replace=False))
        vals.append(_dense_mmd2(x[ix], y[iy], _poly))
    assert value == pytest.approx(np.mean(vals), rel=1e-12)
    assert se == pytest.approx(np.std(vals, ddof=1) / np.sqrt(6), rel=1e-10)
    assert shift.kid(x, y, subsets=6, subset_size=15, seed=3, block=4) == (value, se)  # seeded


@pytest.mark.parametrize("block", [5, 1024])
def test_mmd_rbf_equals_dense_at_median_bandwidth(block):
    x, y = _sets(2)
    sigma = float(np.median(pdist(np.concatenate([x, y]))))
    assert shift.median_bandwidth(x, y, block=block) == pytest.approx(sigma, rel=1e-12)
    value, s = shift.mmd_rbf(x, y, block=block)
    dense = _dense_mmd2(x, y, lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2)))
    assert s == pytest.approx(sigma, rel=1e-12)
    assert value == pytest.approx(dense, rel=1e-10, abs=1e-14)
    # identical distributions give an unbiased estimate near 0; a shift gives a clearly positive one
    assert shift.mmd_rbf(x, x[::-1].copy())[0] < value
    # a subsampled bandwidth is seeded and close to the exact one
    sub = shift.median_bandwidth(x, y, max_points=40, seed=1)
    assert sub == shift.median_bandwidth(x, y, max_points=40, seed=1) and abs(sub / sigma - 1) < 0.2


def test_mean_distance():
    x, y = _sets(3)
    assert shift.mean_distance(x, y) == pytest.approx(np.linalg.norm(x.mean(0) - y.mean(0)), rel=1e-14)


def test_bad_shapes():
    x, y = _sets()
    with pytest.raises(ValueError, match="dimensions"):
        shift.kid(x, y[:, :3])
    with pytest.raises(ValueError, match="at least 2 points"):
        shift.mmd_rbf(x[:1], y, sigma=1.0)


def test_every_measure_is_registered_once_in_report_order():
    assert shift.MEASURES == ("fid_class", "fid_image", "kid", "mmd", "mean_dist")
    assert tuple(shift.MEASURE_FUNCTIONS) == shift.MEASURES
    assert [m for m in shift.MEASURES if shift.MEASURE_FUNCTIONS[m].points] == ["kid", "mmd", "mean_dist"]
