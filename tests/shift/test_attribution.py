"""Tests of :mod:`oodml.shift.attribution`: per-class attribution against from-scratch FIDs."""

from __future__ import annotations

import numpy as np
import pytest

from oodml import shift
from oodml.fid import FIDComputer, frechet_distance_from_features


@pytest.mark.parametrize("level", ["class", "image"])
def test_attribution_matches_from_scratch(level):
    rng = np.random.default_rng(0)
    C, per, d = 14, 6, 4
    lab = np.repeat(np.arange(C), per)
    x = rng.normal(size=(C, d))[lab] * 2 + rng.normal(size=(lab.size, d))
    fc = FIDComputer(x, lab, level=level)
    train, test = list(range(7)), list(range(7, 14))
    names = [f"c{i}" for i in range(C)]
    attr = shift.fid_attribution(fc, train, test, names)
    assert len(attr) == C and set(attr["side"]) == {"train", "test"}
    assert list(attr["delta"]) == sorted(attr["delta"])

    def points(classes):
        if level == "class":
            return np.stack([x[lab == c].mean(0) for c in classes])
        return x[np.isin(lab, classes)]

    base = frechet_distance_from_features(points(train), points(test))
    for row in attr.itertuples():
        c = names.index(row._1)
        tr = [k for k in train if k != c]
        te = [k for k in test if k != c]
        scratch = frechet_distance_from_features(points(tr), points(te))
        assert row.fid == pytest.approx(base, rel=1e-9)
        assert row.fid_without == pytest.approx(scratch, rel=1e-9, abs=1e-10)
        assert row.delta == pytest.approx(scratch - base, rel=1e-7, abs=1e-9)
