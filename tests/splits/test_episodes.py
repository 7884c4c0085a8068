"""Tests of oodml.splits.episodes: validation classes and few-shot episodes."""

from __future__ import annotations

import numpy as np

from oodml.splits import (
    make_episodes,
    validation_classes,
)


# ------------------------------------------------------------------ validation and episodes
def test_validation_classes(names):
    train = names(40)
    v = validation_classes(train, seed=0, fraction=0.15)
    assert len(v) == 6 and set(v) <= set(train) and v == [c for c in train if c in v]
    assert v == validation_classes(list(reversed(train))[::-1], seed=0)
    assert v != validation_classes(train, seed=1)
    assert len(validation_classes(names(6), seed=0, fraction=0.15)) == 2  # at least 2
    assert validation_classes(names(3), seed=0) == []


def test_episodes(names):
    test = names(12)
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 15, size=12)
    sizes[0] = 1  # too few for any k
    sizes[1] = 5  # enough for k <= 4
    start = np.concatenate(([100], 100 + np.cumsum(sizes)))
    ibc = {c: list(range(start[i], start[i + 1])) for i, c in enumerate(test)}
    eps = make_episodes(test, ibc, shots=(1, 2, 5, 10), episodes=7, seed=3)
    assert sorted(eps) == [1, 2, 5, 10]
    for k, lst in eps.items():
        assert len(lst) == 7
        for ep in lst:
            expect = [c for c in test if len(ibc[c]) >= k + 1]
            assert list(ep) == expect  # classes with <= k images are skipped
            for c, sup in ep.items():
                assert len(sup) == k and len(set(sup)) == k and set(sup) <= set(ibc[c])
                query = set(ibc[c]) - set(sup)
                assert query and not query & set(sup)
                assert sup == sorted(sup)
        assert len({tuple(map(tuple, ep.values())) for ep in lst}) > 1  # episodes differ
    assert eps == make_episodes(test, ibc, shots=(1, 2, 5, 10), episodes=7, seed=3)
    other = make_episodes(test, ibc, shots=(1, 2, 5, 10), episodes=7, seed=4)
    assert other != eps
