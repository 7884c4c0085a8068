"""Tests of oodml.splits.params: SearchParams is an oodml.config.Config (type hints are the
schema), validated on direct construction too, with the messages the command line shows."""

from __future__ import annotations

import pytest

from oodml.errors import BadInputError, OodmlError
from oodml.splits import SearchParams


def test_from_dict_coerces_flag_and_yaml_text():
    p = SearchParams.from_dict(
        {"num_splits": "5", "patience": "null", "min_fraction": "0.25", "phases": ["harder"], "shots": ["1", 5]},
        source="test",
    )
    assert p.num_splits == 5 and p.patience is None and p.min_fraction == 0.25
    assert p.phases == ("harder",) and p.shots == (1, 5)
    assert SearchParams.from_dict(p.to_dict(), "again") == p


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(BadInputError, match="did you mean 'num_splits'"):
        SearchParams.from_dict({"num_split": 3}, source="test")


def test_direct_construction_is_validated_with_the_flag_names():
    with pytest.raises(OodmlError, match="swaps-per-iter must be at least 1"):
        SearchParams(swaps_per_iter=0)
    with pytest.raises(OodmlError, match="level must be 'class' or 'image'"):
        SearchParams(level="pixel")
    with pytest.raises(OodmlError, match="unknown phase 'sideways'"):
        SearchParams(phases=("sideways",))
    with pytest.raises(OodmlError, match="min-fraction must be in"):
        SearchParams.from_dict({"min_fraction": 0}, source="test")


def test_to_dict_is_what_the_split_file_records():
    d = SearchParams().to_dict()
    assert d["phases"] == ["easier", "harder", "removal"] and d["shots"] == [1, 2, 5, 10]
    assert "trajectory_stride" not in d  # the default: files stay as they were before the option
    assert SearchParams(trajectory_stride=2).to_dict()["trajectory_stride"] == 2
