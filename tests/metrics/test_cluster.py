"""oodml.metrics.cluster: exact k-means against textbook Lloyd, NMI against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

import oodml.metrics.cluster as cluster
from oodml.metrics.cluster import kmeans, nmi


# ---------------------------------------------------------------------------------------------
# k-means and NMI
# ---------------------------------------------------------------------------------------------
def _plain_lloyd(x, init, n_iter):
    """Textbook Lloyd: assign to the nearest centroid, move centroids to their means (empty
    clusters keep theirs), ``n_iter`` times, then assign once more."""
    c = x[init].astype(np.float64)
    x64 = x.astype(np.float64)
    for it in range(n_iter + 1):
        d = (c**2).sum(1)[None, :] - 2 * x64 @ c.T
        a = d.argmin(1)
        if it == n_iter:
            return a
        for j in range(len(c)):
            members = x64[a == j]
            if len(members):
                c[j] = members.mean(0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_iter", [0, 1, 4, 30])
def test_kmeans_equals_plain_lloyd(seed, n_iter, clustered):
    x, _ = clustered(n_classes=30, d=10, seed=seed)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = 45
    init = np.random.default_rng(seed).choice(len(x), k, replace=False)
    want = _plain_lloyd(x, init, n_iter)
    got = kmeans(x, k, n_iter=n_iter, seed=seed, group_size=4)
    np.testing.assert_array_equal(got.labels, want)
    assert got.n_iter <= n_iter
    if n_iter == 30:
        assert got.converged and got.distance_fraction < 0.5  # the bounds skip most distances


def test_kmeans_parallel_pruned_step_and_reused_products(monkeypatch, clustered):
    x, _ = clustered(n_classes=30, d=10, seed=2)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = 40
    want = _plain_lloyd(x, np.random.default_rng(3).choice(len(x), k, replace=False), 25)
    monkeypatch.setattr(cluster, "_PARALLEL_MIN_PAIRS", 0)
    monkeypatch.setattr(cluster, "_n_cpus", lambda: 3)
    np.testing.assert_array_equal(kmeans(x, k, n_iter=25, seed=3, group_size=4).labels, want)
    # dense rows in many small chunks, run by parallel threads (one-thread GEMMs)
    for chunk in (7, 64):
        got = kmeans(x, k, n_iter=25, seed=3, group_size=4, chunk_size=chunk)
        np.testing.assert_array_equal(got.labels, want)
    # initial assignment from products computed elsewhere, for some of the points only
    km = cluster.ExactKMeans(x, k, seed=3, group_size=4)
    rows = np.arange(0, len(x), 2)
    km.absorb_initial_products(rows, x[rows] @ x[km.init_points].T)
    np.testing.assert_array_equal(km.fit(25).labels, want)


def test_nmi_equals_sklearn():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 30, 500), rng.integers(0, 25, 500)
        assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
        assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(np.zeros(5), np.zeros(5)) == normalized_mutual_info_score(np.zeros(5), np.zeros(5))
    assert nmi([0, 0, 1, 1], [0, 0, 0, 0]) == normalized_mutual_info_score([0, 0, 1, 1], [0, 0, 0, 0])
