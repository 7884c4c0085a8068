"""Tests of :mod:`oodml.analysis.report` and the command ``python -m oodml.plot``: every figure and
table written with stable names, byte-identical files, the CLI on a table and on a study YAML."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from oodml import plot as P


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("plot")
    df = synthetic(
        {"glyphs": [0.12, 0.2, 0.31, 0.45], "cub200": [20.0, 35.0, 60.0]},
        ["margin", "multisimilarity", "arcface"],
        [0, 1],
        adaptation={"glyphs"},
    )
    csv = root / "results.csv"
    df.to_csv(csv, index=False)
    out = P.make_all(csv, root / "figures", "recall@1")
    return root, csv, out


def test_make_all_writes_every_figure_and_table_with_stable_names(full_run):
    root, _, out = full_run
    figs = {
        f"{d}_{n}"
        for d in ("glyphs", "cub200")
        for n in ("curve_recall1", "relative_recall1", "auc_recall1", "ranks_recall1", "cd_recall1")
    }
    figs |= {"glyphs_fewshot_gain_recall1", "glyphs_linear_probe"}
    tables = {
        f"{d}_{n}"
        for d in ("glyphs", "cub200")
        for n in (
            "curve_recall1",
            "relative_recall1",
            "slopes_recall1",
            "auc_recall1",
            "ranks_recall1",
            "kendall_recall1",
            "auc_tests_recall1",
            "friedman_recall1",
        )
    }
    tables |= {"glyphs_fewshot_gain_recall1", "glyphs_linear_probe"}
    expected = {f"{s}.{e}" for s in figs for e in ("png", "pdf")} | {
        f"{s}.{e}" for s in tables for e in ("csv", "md", "tex")
    }
    expected.add("index.md")
    on_disk = {p.name for p in (root / "figures").iterdir()}
    assert set(out) == expected == on_disk
    for name in expected:
        assert (root / "figures" / name).stat().st_size > 0
    assert (root / "figures" / "glyphs_curve_recall1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = (root / "figures" / "glyphs_curve_recall1.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and b"CreationDate" not in pdf
    assert any("cub200: no few-shot rows" in n for n in out.notes)
    assert any("cub200: no linear-probe rows" in n for n in out.notes)
    assert any("glyphs: no split file given" in n for n in out.notes)
    index = (root / "figures" / "index.md").read_text()
    assert "glyphs_auc_recall1.png" in index and "no linear-probe rows" in index
    auc = pd.read_csv(root / "figures" / "glyphs_auc_recall1.csv")
    assert list(auc["loss"]) == ["margin", "multisimilarity", "arcface"]  # best first
    assert {"auc_seed0", "auc_seed1", "ci95", "std", "auc_low", "auc_high"} <= set(auc.columns)
    tests = pd.read_csv(root / "figures" / "glyphs_auc_tests_recall1.csv")
    assert len(tests) == 3 and {"diff", "low", "high", "p_value"} <= set(tests.columns)
    fr = pd.read_csv(root / "figures" / "glyphs_friedman_recall1.csv")
    assert len(fr) == 3 and fr["cd"].nunique() == 1 and fr["avg_rank"].is_monotonic_increasing
    assert len(pd.read_csv(root / "figures" / "glyphs_kendall_recall1.csv")) == 3


def test_cli_on_csv_gives_byte_identical_files(full_run, capsys):
    root, csv, out = full_run
    assert P.main([str(csv), "--out", str(root / "again"), "--metric", "recall@1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 12 figures" in printed and "note: cub200: no few-shot rows" in printed
    again = {p.name: p for p in (root / "again").iterdir()}
    assert set(again) == set(out)
    for name, path in out.items():
        assert again[name].read_bytes() == Path(path).read_bytes(), name


def test_cli_on_study_yaml_with_split_series(tmp_path, capsys, synthetic, split_file):
    pytest.importorskip("oodml.splits.figure")
    (tmp_path / "studies").mkdir()
    (tmp_path / "splits").mkdir()
    _, fids = split_file(tmp_path / "splits" / "glyphs.json")
    df = synthetic({"glyphs": fids}, ["margin", "triplet"], [0])
    (tmp_path / "runs" / "toy").mkdir(parents=True)
    df.to_csv(tmp_path / "runs" / "toy" / "results.csv", index=False)
    study = tmp_path / "studies" / "toy.yaml"
    study.write_text(
        "name: toy\ndatasets:\n  - {name: glyphs, splits: splits/glyphs.json}\nlosses: [margin, triplet]\n"
    )
    out = tmp_path / "figs"
    assert P.main([str(study), "--out", str(out), "-q"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "glyphs_split_series.png",
        "glyphs_split_series.pdf",
        "glyphs_curve_recall1.png",
        "glyphs_ranks_recall1.pdf",
        "glyphs_auc_recall1.tex",
    } <= names
    assert "split file" not in capsys.readouterr().out
    # a study whose results were not collected yet: one clear line, exit status 2
    other = tmp_path / "studies" / "empty.yaml"
    other.write_text("name: empty\ndatasets: [glyphs]\nlosses: [margin]\n")
    assert P.main([str(other), "--out", str(out)]) == 2
    assert "study collect" in capsys.readouterr().err
