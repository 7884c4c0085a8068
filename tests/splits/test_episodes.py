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


def test_the_grouped_order_is_lexsorts_order_with_and_without_the_uint64_shortcut():
    """make_episodes sorts every episode's keys at once through one exact uint64 key (fewer than
    2¹¹ classes) instead of np.lexsort: the same order, ties included, so the same episodes."""
    from oodml.splits.episodes import _grouped_order

    rng = np.random.default_rng(7)
    for n_owners in (1, 3, 150, 2047, 3000):  # 3000: past the shortcut, lexsort itself
        owner = np.sort(rng.integers(0, n_owners, size=4000))
        keys = rng.random((4, owner.size))
        keys[:, 10:20] = keys[:, 10:11]  # ties inside a class: broken by position, as lexsort does
        expected = np.stack([np.lexsort((row, owner)) for row in keys])
        np.testing.assert_array_equal(_grouped_order(keys, owner), expected)


def test_episodes_drawn_together_equal_episodes_drawn_one_at_a_time(names):
    """The (episodes, n) draw is the sequence of per-episode draws: the first episodes of a longer
    list are the episodes of a shorter one."""
    test = names(30)
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 40, size=30)
    start = np.concatenate(([0], np.cumsum(sizes)))
    ibc = {c: list(range(start[i], start[i + 1])) for i, c in enumerate(test)}
    ten = make_episodes(test, ibc, shots=(1, 5), episodes=10, seed=2)
    three = make_episodes(test, ibc, shots=(1, 5), episodes=3, seed=2)
    assert {k: v[:3] for k, v in ten.items()} == three
    assert all(type(i) is int for ep in ten[5] for sup in ep.values() for i in sup)
