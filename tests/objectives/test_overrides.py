"""key=value overrides of an objective (oodml.objectives.overrides)."""

from __future__ import annotations

import pytest

from oodml.errors import BadInputError
from oodml.losses import (
    parse_overrides,
    parse_value,
)


def test_parse_overrides():
    got = parse_overrides(
        ["margin=0.1", "miner.type_of_triplets=hard", "beta_lr=5e-4", "learn_beta=false", "miner=none", "margin=0.15"]
    )
    assert got == {
        "margin": 0.15,
        "miner.type_of_triplets": "hard",
        "beta_lr": 5e-4,
        "learn_beta": False,
        "miner": "none",
    }
    assert parse_value("1E3") == 1000.0 and parse_value("[1, 2]") == [1, 2] and parse_value("null") is None
    for bad in (["margin"], ["=0.1"]):
        with pytest.raises(BadInputError, match="key=value"):
            parse_overrides(bad)
    assert parse_overrides(None) == {}
