"""Episodes, query sets and support batches (oodml.adapt.episodes)."""

from __future__ import annotations

import numpy as np
import pytest

from oodml import adapt as A
from oodml.errors import BadInputError

N_IMAGES = 12  # per class


def test_drawn_episodes_are_deterministic_and_split_support_from_query(dataset):
    classes = list(dataset.test_classes)
    eps, source = A.resolve_episodes(dataset, classes, (2, 5), None, 4, seed=3)
    again, _ = A.resolve_episodes(dataset, classes, (2, 5), None, 4, seed=3)
    other, _ = A.resolve_episodes(dataset, classes, (2, 5), None, 4, seed=4)
    assert eps == again and eps != other and source == {2: "drawn", 5: "drawn"}
    test_ids = dataset.indices_of(classes)
    labels = np.array([classes.index(dataset.items[i].label) for i in test_ids])
    by_class = dataset.indices_by_class()
    for k in (2, 5):
        assert len(eps[k]) == 4
        for ep in eps[k]:
            assert list(ep) == classes
            s_rows, s_lab, q_rows, q_lab = A.episode_sets(ep, test_ids, labels, classes)
            support, query = set(test_ids[s_rows].tolist()), set(test_ids[q_rows].tolist())
            assert not support & query  # disjoint
            assert support | query == set(test_ids.tolist())  # query = every other test image
            assert len(support) == k * len(classes) and len(query) == (N_IMAGES - k) * len(classes)
            for c, ids in ep.items():
                assert len(ids) == k and set(ids) <= set(by_class[c].tolist())
            assert np.bincount(s_lab).tolist() == [k] * len(classes)
            assert np.bincount(q_lab).tolist() == [N_IMAGES - k] * len(classes)


def test_split_episodes_are_used_validated_and_may_leave_classes_out(dataset):
    classes = list(dataset.test_classes)
    by_class = dataset.indices_by_class()
    given = [{c: sorted(by_class[c][e : e + 2].tolist()) for c in classes[1:]} for e in range(3)]
    eps, source = A.resolve_episodes(dataset, classes, [2], {2: given}, 2)
    assert source == {2: "split"} and eps[2] == given[:2]
    test_ids = dataset.indices_of(classes)
    labels = np.array([classes.index(dataset.items[i].label) for i in test_ids])
    _, _, q_rows, q_lab = A.episode_sets(eps[2][0], test_ids, labels, classes)
    assert 0 not in q_lab and len(q_rows) == (N_IMAGES - 2) * (len(classes) - 1)  # class left out of the query set
    with pytest.raises(BadInputError, match="has 3 episodes for 2 shots, 5 were asked"):
        A.resolve_episodes(dataset, classes, [2], {2: given}, 5)
    wrong = [{**given[0], classes[1]: [int(by_class[classes[2]][0]), int(by_class[classes[1]][0])]}]
    with pytest.raises(BadInputError, match="is not an image of class"):
        A.resolve_episodes(dataset, classes, [2], {2: wrong})
    short = [{c: v[:1] for c, v in given[0].items()}]
    with pytest.raises(BadInputError, match="not 2"):
        A.resolve_episodes(dataset, classes, [2], {2: short})
    stranger = [{**given[0], "a_colour0": by_class["a_colour0"][:2].tolist()}]
    with pytest.raises(BadInputError, match="not a test class"):
        A.resolve_episodes(dataset, classes, [2], {2: stranger})


def test_too_many_shots_is_a_clear_error(dataset):
    with pytest.raises(
        BadInputError, match=rf"{N_IMAGES} shots need at least {N_IMAGES + 1} images per test class.*has {N_IMAGES}"
    ):
        A.resolve_episodes(dataset, list(dataset.test_classes), [2, N_IMAGES], None, 2)


def test_support_batches_fit_or_are_class_balanced():
    labels = np.repeat(np.arange(6), 5)  # 6 classes x 5 shots
    whole = A.support_batches(labels, batch_size=64, m_per_class=2, iterations=3, seed=0)
    assert len(whole) == 3 and all(sorted(i for i, _ in b) == list(range(30)) for b in whole)
    batches = A.support_batches(labels, batch_size=8, m_per_class=2, iterations=20, seed=0)
    assert batches == A.support_batches(labels, batch_size=8, m_per_class=2, iterations=20, seed=0)
    for b in batches:
        counts = np.bincount(labels[[i for i, _ in b]], minlength=6)
        assert len(b) == 8 and sorted(counts[counts > 0].tolist()) == [2, 2, 2, 2]
    seen = np.bincount(labels[[i for b in batches for i, _ in b]], minlength=6)
    assert seen.min() > 0  # every class is visited
