"""Tests of oodml.splits.selection: the evenly spaced series."""

from __future__ import annotations

import numpy as np

from oodml.splits import (
    select_series,
)


# ------------------------------------------------------------------------------- selection
def test_selection_even_spacing_and_standard_included():
    rng = np.random.default_rng(0)
    fids = rng.uniform(0, 100, 200).tolist()
    fids[0] = 37.3  # the standard split
    picks = select_series(fids, 9, required=0)
    vals = [fids[i] for i in picks]
    assert len(picks) == 9 and 0 in picks
    assert vals == sorted(vals)
    assert vals[0] == min(fids) and vals[-1] == max(fids)
    gaps = np.diff(vals)
    ideal = (max(fids) - min(fids)) / 8
    assert np.all(np.abs(gaps - ideal) < 0.6 * ideal)  # dense candidates: close to even
    # exact optimum against brute force on a small instance
    small = [5.0, 0.0, 1.0, 9.0, 3.5, 6.0, 10.0, 7.9]
    got = select_series(small, 4, required=0)
    import itertools

    order = sorted(range(len(small)), key=lambda i: small[i])
    best = min(
        (c for c in itertools.combinations(order, 4) if 0 in c and 1 in c and 6 in c),
        key=lambda c: float(np.sum(np.diff(sorted(small[i] for i in c)) ** 2)),
    )
    assert sorted(got) == sorted(best)


def test_selection_spreads_the_rest_when_the_standard_split_is_near_an_end():
    # easiest 0.1, standard 0.2, then a dense run up to 6.0: the other picks spread evenly over
    # 0.2 .. 6.0 instead of leaving a hole where the standard split "used up" a target
    fids = [0.2, 0.1] + list(np.linspace(0.25, 6.0, 120))
    picks = select_series(fids, 6, required=0)
    vals = sorted(fids[i] for i in picks)
    assert vals[:2] == [0.1, 0.2] and vals[-1] == 6.0
    gaps = np.diff(vals[1:])
    assert np.all(np.abs(gaps - 5.8 / 4) < 0.06)


def test_selection_small_cases():
    assert select_series([3.0, 1.0], 9, required=0) == [1, 0]  # fewer states than asked: all
    assert select_series([3.0, 1.0, 2.0], 1, required=0) == [0]
    two = select_series([5.0, 0.0, 1.0, 10.0], 2, required=0)
    assert 0 in two and len(two) == 2
