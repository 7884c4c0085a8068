"""The registry listing (oodml.objectives.listing): --list-losses."""

from __future__ import annotations

import pytest

from oodml.losses import (
    OBJECTIVES,
    STUDY_METHODS,
    format_objectives_table,
    list_objectives,
    valid_keys,
)

NAMES = list(OBJECTIVES)


def test_listing_and_table():
    rows = list_objectives()
    assert [r["name"] for r in rows] == NAMES
    by_name = {r["name"]: r for r in rows}
    assert by_name["margin"]["loss"] == "MarginLoss" and by_name["margin"]["miner"] == "distance_weighted"
    assert by_name["margin"]["defaults"]["beta_lr"] == pytest.approx(5e-4)
    assert by_name["arcface"]["defaults"]["margin"] == pytest.approx(0.5)
    assert "radians" in by_name["arcface"]["notes"]
    assert by_name["proxyanchor"]["defaults"]["lr_mult"] == 100
    for r in rows:
        takes_miner = r["kind"] == "pair" and not r["composite"]
        assert set(valid_keys(r["name"])) == set(r["defaults"]) | ({"miner"} if takes_miner else set())
    table = format_objectives_table()
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "pml", "loss"]
    for r in rows:
        assert any(line.startswith(r["name"] + " ") and r["loss"] in line for line in lines)
    assert "ProxyAnchorLoss" in table and "x100" in table and "semihard" in table


def test_listing_shows_study_methods_pml_names_and_plugins():
    names = [r["name"] for r in list_objectives()]
    assert set(STUDY_METHODS) <= set(names) and len(STUDY_METHODS) == 8
    table = format_objectives_table()
    for name in STUDY_METHODS:
        assert any(line.startswith(name + " ") for line in table.splitlines())
    assert "pml:SubCenterArcFaceLoss" in table and "pml:BatchHardMiner" in table and "rho_distance" in table
    assert "--plugin" in table and "oodml.objectives" in table
