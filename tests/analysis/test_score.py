"""Tests of :mod:`oodml.analysis.score` and the command ``python -m oodml.score``: the citable score JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oodml import score
from oodml.io import file_digest


def test_score_json_from_a_study(tmp_path, capsys, synthetic, split_file):
    (tmp_path / "studies").mkdir()
    (tmp_path / "splits").mkdir()
    sp, fids = split_file(tmp_path / "splits" / "glyphs.json")
    df = synthetic({"glyphs": fids}, ["margin", "triplet", "arcface"], [0, 1, 2])
    (tmp_path / "runs" / "toy").mkdir(parents=True)
    csv = tmp_path / "runs" / "toy" / "results.csv"
    df.to_csv(csv, index=False)
    study = tmp_path / "studies" / "toy.yaml"
    study.write_text(
        "name: toy\ndatasets:\n  - {name: glyphs, splits: splits/glyphs.json}\n"
        "losses: [margin, triplet, arcface]\nseeds: [0, 1, 2]\ntrain: {epochs: 3}\n"
    )
    out = tmp_path / "score.json"
    assert score.cli([str(study), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "1. margin: AUC" in printed
    doc = json.loads(out.read_text())
    assert doc["schema"] == score.SCHEMA and doc["metric"] == "recall@1"
    assert doc["results"] == {"name": "results.csv", "sha256": file_digest(csv, "sha256")}
    assert doc["protocol"]["train"] == {"epochs": 3} and doc["protocol"]["seeds"] == [0, 1, 2]
    g = doc["datasets"]["glyphs"]
    assert g["split_file"]["sha256"] == file_digest(sp, "sha256") and g["split_file"]["extractor"] == "pixels"
    assert [s["fid"] for s in g["split_file"]["splits"]] == pytest.approx(fids)
    from oodml import analysis
    from oodml.analysis import stats

    auc = stats.auc_intervals(analysis.load_results(csv), dataset="glyphs").set_index("loss")
    assert [s["loss"] for s in g["scores"]] == list(auc.index)
    for s in g["scores"]:
        assert s["auc"] == pytest.approx(auc.loc[s["loss"], "auc"]) and s["auc_low"] <= s["auc"] <= s["auc_high"]
        assert s["n_seeds"] == 3
    assert len(g["pairwise"]) == 3
    first = out.read_bytes()
    assert score.cli([str(study), "--out", str(out), "-q"]) == 0 and out.read_bytes() == first  # byte-identical
    # a results table alone: no protocol, no split file unless given
    assert score.cli([str(csv), "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["protocol"] is None and doc["datasets"]["glyphs"]["split_file"] is None
    capsys.readouterr()
    assert score.cli([str(csv), "--metric", "nope", "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


def test_plot_score_flag(tmp_path, capsys, synthetic):
    from oodml import plot

    df = synthetic({"glyphs": [0.1, 0.2, 0.3]}, ["margin", "triplet"], [0])
    csv = tmp_path / "r.csv"
    df.to_csv(csv, index=False)
    assert plot.main([str(csv), "--out", str(tmp_path / "f"), "--score", str(tmp_path / "s.json"), "-q"]) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [s["loss"] for s in doc["datasets"]["glyphs"]["scores"]] == ["margin", "triplet"]
    assert all(s["auc_low"] is None for s in doc["datasets"]["glyphs"]["scores"])  # one seed: no interval
    assert np.isfinite(doc["datasets"]["glyphs"]["scores"][0]["auc"])
