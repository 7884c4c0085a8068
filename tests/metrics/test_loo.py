"""oodml.metrics.loo: the half-matrix leave-one-out statistics equal the full rows; progress."""

from __future__ import annotations

import numpy as np
import pytest

from oodml.metrics.knn import neighbour_stats
from oodml.metrics.loo import loo_neighbour_stats


@pytest.mark.parametrize("data", ["clustered", "tied", "tied-small-classes"])
@pytest.mark.parametrize("chunk", [None, 1, 7, 40])
@pytest.mark.parametrize("depth", [None, 0])
def test_leave_one_out_half_matrix_equals_full_rows(data, chunk, depth, clustered, tied):
    """The half-matrix leave-one-out path reports the same first-positive ranks and top-R hits
    as the full-row path, for any block size (blocks of whole classes, many block pairs).
    "tied-small-classes" has many queries whose positives are beaten (type B) and exact ties
    with their best positive in other blocks, on both sides of a block pair."""
    if data == "clustered":
        x, y = clustered(seed=13)
    elif data == "tied":
        x, y = tied(seed=13)
    else:
        x, y = tied(n=240, n_classes=80, seed=13)
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    n = len(x)
    full = neighbour_stats(x, y, x, y, np.arange(n), depth=depth, backend="numpy")
    half = loo_neighbour_stats(x, y, depth=depth, chunk_size=chunk, workers=1 if chunk == 7 else None)
    np.testing.assert_array_equal(half.n_pos, full.n_pos)
    np.testing.assert_array_equal(half.first_rank, full.first_rank)
    np.testing.assert_array_equal(half.hits, full.hits)
    assert half.hits.shape == (n, full.hits.shape[1]) and full.hits.any() == (depth is None)


def test_leave_one_out_progress_follows_the_products_not_the_blocks(clustered):
    """Progress is reported after every block product in proportion to its area, summing to n:
    a steady rate for steady work (block k from the end meets k + 1 blocks)."""
    x, y = clustered(seed=15)
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    ticks: list[int] = []
    loo_neighbour_stats(x, y, chunk_size=40, progress=ticks.append)
    n, nblk = len(x), -(-len(x) // 40)
    assert sum(ticks) == n and all(t > 0 for t in ticks)
    assert len(ticks) > nblk  # more often than once per block
    # the last block processed (the first in order) meets every block: its share is the largest,
    # not one block's worth of queries
    assert max(ticks) < n / 2


@pytest.mark.parametrize("n", [5, 4000, 1 << 16, (1 << 16) + 1])
def test_the_candidates_order_is_lexsorts_order(n):
    """Below 2¹⁶ items the candidates are sorted through one uint64 key; the order is lexsort's
    (query, similarity descending, item), with ±0.0 equal and infinities in place."""
    from oodml.metrics.loo import _candidate_order

    rng = np.random.default_rng(n)
    pairs = np.unique(rng.integers(0, n, size=(30000, 2)), axis=0)  # one candidate per (query, item)
    pairs = pairs[rng.permutation(len(pairs))]
    q, it = pairs[:, 0], pairs[:, 1]
    special = np.array([0.0, -0.0, 1e-38, -1e-38, 0.5, -0.5, np.inf, -np.inf], np.float32)
    v = np.where(rng.random(len(q)) < 0.5, rng.choice(special, len(q)), rng.standard_normal(len(q))).astype(np.float32)
    np.testing.assert_array_equal(_candidate_order(q, v, it, n), np.lexsort((it, -v, q)))
