"""Tests of oodml.analysis (tables, scores) and oodml.plot (figures, files, CLI) on synthetic results."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from oodml import analysis as A
from oodml import plot as P
from oodml.errors import BadInputError

COLS = list(A.REQUIRED_COLUMNS)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")


# --------------------------------------------------------------------------------------------
# Synthetic results tables
# --------------------------------------------------------------------------------------------
def synthetic(datasets, losses, seeds, adaptation=(), rng_seed=0) -> pd.DataFrame:
    """Long results table: zero-shot recall@1/map@r per (dataset, split, loss, seed); for the
    datasets in ``adaptation`` also few-shot (k=2 with gain rows, k=5 without: gain computed)
    and linear-probe rows."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for ds, fids in datasets.items():
        for li, loss in enumerate(losses):
            for seed in seeds:
                for sid, fid in enumerate(fids, 1):
                    run = f"{ds}-{loss}-{sid}-{seed}"
                    base = dict(study="synthetic", dataset=ds, split=sid, fid=fid, loss=loss, seed=seed, run_id=run)
                    r1 = 0.8 - 0.05 * li - (0.3 + 0.05 * li) * sid / len(fids) + rng.normal(0, 0.01)
                    rows.append({**base, "stage": "zero-shot", "metric": "recall@1", "value": r1, "ci95": None})
                    rows.append({**base, "stage": "zero-shot", "metric": "map@r", "value": r1 / 2, "ci95": None})
                    if ds in adaptation:
                        gain = 0.02 * sid + rng.normal(0, 0.005)
                        rows.append(
                            {**base, "stage": "few-shot-2", "metric": "recall@1", "value": r1 + gain, "ci95": 0.01}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-2", "metric": "recall@1_zero_shot", "value": r1, "ci95": 0.01}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-2", "metric": "recall@1_gain", "value": gain, "ci95": 0.004}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-5", "metric": "recall@1", "value": r1 + 2 * gain, "ci95": 0.01}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-5", "metric": "recall@1_zero_shot", "value": r1, "ci95": 0.01}
                        )
                        for feat, setting in itertools.product(("embedding", "backbone"), ("2shot", "half")):
                            rows.append(
                                {
                                    **base,
                                    "stage": "linear-probe",
                                    "metric": f"top1_{feat}_{setting}",
                                    "value": 0.5 - 0.1 * sid + rng.normal(0, 0.01),
                                    "ci95": None,
                                }
                            )
    return pd.DataFrame(rows, columns=COLS)


def exact_table() -> pd.DataFrame:
    """A small exact case: 3 losses, splits with FID 0, 1, 3, two seeds (values as fractions)."""
    fids = {1: 0.0, 2: 1.0, 3: 3.0}
    vals = {  # loss -> seed -> values on splits 1, 2, 3
        "margin": {0: [0.9, 0.7, 0.3], 1: [0.8, 0.7, 0.5]},
        "triplet": {0: [0.6, 0.6, 0.6], 1: [0.6, 0.6, 0.6]},
        "arcface": {0: [0.5, 0.65, 0.7], 1: [0.5, 0.65, 0.7]},
    }
    rows = []
    for loss, per_seed in vals.items():
        for seed, values in per_seed.items():
            for (sid, fid), v in zip(fids.items(), values):
                rows.append(
                    dict(
                        study="x",
                        dataset="toy",
                        split=sid,
                        fid=fid,
                        loss=loss,
                        seed=seed,
                        stage="zero-shot",
                        metric="recall@1",
                        value=v,
                        ci95=None,
                        run_id=f"{loss}{sid}{seed}",
                    )
                )
    return pd.DataFrame(rows, columns=COLS), fids, vals


# --------------------------------------------------------------------------------------------
# Scores against hand computation
# --------------------------------------------------------------------------------------------
def test_auc_slopes_tau_equal_hand_computed_values():
    df, fids, vals = exact_table()
    df = A.validate_results(df)
    x = list(fids.values())

    def trapezoid_mean(ys):
        area = sum((x[i + 1] - x[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(x) - 1))
        return area / (x[-1] - x[0])

    auc = A.auc_table(df, "recall@1", percent=False).set_index("loss")
    for loss, per_seed in vals.items():
        per = [trapezoid_mean(v) for v in per_seed.values()]
        assert auc.loc[loss, "auc"] == pytest.approx(sum(per) / len(per), abs=1e-12)
        assert auc.loc[loss, "auc_seed0"] == pytest.approx(per[0], abs=1e-12)
        assert auc.loc[loss, "auc_seed1"] == pytest.approx(per[1], abs=1e-12)
        sd = math.sqrt(sum((p - sum(per) / 2) ** 2 for p in per) / (len(per) - 1))
        assert auc.loc[loss, "std"] == pytest.approx(sd, abs=1e-12)
        assert auc.loc[loss, "ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * sd / math.sqrt(2), abs=1e-9)
    assert auc.loc["margin", "auc"] == pytest.approx((0.6 + 0.65) / 2)  # (0.8 + 1.0) / 3 and (0.75 + 1.2) / 3
    assert auc.loc["arcface", "auc"] == pytest.approx((0.575 + 1.35) / 3)
    assert list(auc["rank"]) == [1, 2, 3] and list(auc.index) == ["arcface", "margin", "triplet"]  # best first
    # in percent (the default for recall@k) everything scales by 100
    assert A.auc_table(df, "recall@1").set_index("loss").loc["margin", "auc"] == pytest.approx(62.5)

    # relative view: difference from the mean of the losses' seed means, then a least-squares line
    means = {loss: [sum(s[i] for s in ps.values()) / len(ps) for i in range(3)] for loss, ps in vals.items()}
    field = [sum(m[i] for m in means.values()) / len(means) for i in range(3)]
    slopes = A.relative_slopes(df, "recall@1", percent=False).set_index("loss")
    for loss, m in means.items():
        d = [m[i] - field[i] for i in range(3)]
        xm, dm = sum(x) / 3, sum(d) / 3
        slope = sum((xi - xm) * (di - dm) for xi, di in zip(x, d)) / sum((xi - xm) ** 2 for xi in x)
        assert slopes.loc[loss, "slope_rel"] == pytest.approx(slope, abs=1e-12)
        assert slopes.loc[loss, "intercept_rel"] == pytest.approx(dm - slope * xm, abs=1e-12)
        assert slopes.loc[loss, "n_splits"] == 3
    assert list(slopes.index) == sorted(slopes.index, key=lambda loss: slopes.loc[loss, "slope_rel"])
    rel = A.relative_table(df, "toy", "recall@1", percent=False)
    assert rel.groupby("split")["diff"].sum().abs().max() < 1e-12

    # ranking: margin > triplet > arcface on the easiest split, reversed on the hardest
    ranks, tau = A.ranking_stability(df, "recall@1")
    r = ranks.pivot(index="loss", columns="split", values="rank")
    assert list(r.loc[["margin", "triplet", "arcface"], 1]) == [1, 2, 3]
    assert list(r.loc[["margin", "arcface", "triplet"], 2]) == [1, 2, 3]
    assert list(r.loc[["arcface", "triplet", "margin"], 3]) == [1, 2, 3]

    def kendall(a, b):  # no ties: (concordant - discordant) / pairs
        pairs = list(itertools.combinations(range(len(a)), 2))
        s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
        return s / len(pairs)

    t = tau.set_index("split")
    assert list(t.index) == [2, 3] and set(t["reference_split"]) == {1}
    for sid in (2, 3):
        assert t.loc[sid, "tau"] == pytest.approx(kendall(list(r[1]), list(r[sid])))
    assert t.loc[2, "tau"] == pytest.approx(1 / 3) and t.loc[3, "tau"] == pytest.approx(-1.0)


def test_fewshot_gain_given_or_computed_and_probe_table():
    df = A.validate_results(synthetic({"g": [0.1, 0.2, 0.4]}, ["margin", "arcface"], [0, 1], adaptation={"g"}))
    few = A.fewshot_table(df, "g", "recall@1")
    assert sorted(few["k"].unique()) == [2, 5]
    raw = df[df["dataset"] == "g"]

    def val(stage, metric, loss, split, seed):
        sel = raw[
            (raw.stage == stage)
            & (raw.metric == metric)
            & (raw.loss == loss)
            & (raw.split == split)
            & (raw.seed == seed)
        ]
        return float(sel["value"].iloc[0])

    row2 = few[(few.k == 2) & (few.loss == "arcface") & (few.split == 3)].iloc[0]
    gains = [100 * val("few-shot-2", "recall@1_gain", "arcface", 3, s) for s in (0, 1)]
    assert row2["mean"] == pytest.approx(np.mean(gains)) and row2["ci_source"] == "seeds"
    assert row2["ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * np.std(gains, ddof=1) / math.sqrt(2))
    row5 = few[(few.k == 5) & (few.loss == "margin") & (few.split == 1)].iloc[0]  # no gain rows: adapted - zero-shot
    computed = [
        100 * (val("few-shot-5", "recall@1", "margin", 1, s) - val("few-shot-5", "recall@1_zero_shot", "margin", 1, s))
        for s in (0, 1)
    ]
    assert row5["mean"] == pytest.approx(np.mean(computed))
    # one seed: the band is the episodes' ci95 of the gain row
    one = A.fewshot_table(df[df["seed"] == 0], "g", "recall@1")
    assert set(one.loc[one.k == 2, "ci_source"]) == {"episodes"}
    assert one.loc[one.k == 2, "ci95"].to_numpy() == pytest.approx(0.4)
    probe = A.probe_table(df, "g")
    assert set(probe["features"]) == {"embedding", "backbone"} and list(dict.fromkeys(probe["setting"])) == [
        "2shot",
        "half",
    ]
    assert A.fewshot_table(df, "g", "map@r").empty


# --------------------------------------------------------------------------------------------
# Validation and styles
# --------------------------------------------------------------------------------------------
def test_table_missing_column_or_bad_value_is_a_clear_error(tmp_path):
    df = synthetic({"g": [0.1, 0.2]}, ["margin"], [0])
    bad = tmp_path / "results.csv"
    df.drop(columns=["fid"]).to_csv(bad, index=False)
    with pytest.raises(BadInputError, match=r"results\.csv lacks column\(s\) fid"):
        A.load_results(bad)
    df2 = df.astype({"value": object})
    df2.loc[1, "value"] = "oops"
    df2.to_csv(bad, index=False)
    with pytest.raises(BadInputError, match=r"results\.csv, row 2 .*'value' has 'oops'"):
        A.load_results(bad)
    with pytest.raises(BadInputError, match="does not exist"):
        A.load_results(tmp_path / "missing.csv")
    assert P.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    df.to_csv(bad, index=False)
    with pytest.raises(BadInputError, match="no zero-shot rows of metric 'nmi'"):
        P.make_all(bad, tmp_path / "o", "nmi")
    # round trip: types normalised, the standard split (empty) kept as <NA>
    df.loc[0, "split"] = None
    df.to_csv(bad, index=False)
    back = A.load_results(bad)
    assert list(back.columns) == COLS and str(back["split"].dtype) == "Int64" and back["split"].isna().sum() == 1


def test_colour_marker_per_loss_fixed_regardless_of_present_losses():
    reg = A.registry_losses()
    styles = [A.loss_style(loss) for loss in reg]
    assert len({(s["color"], s["linestyle"]) for s in styles}) == len(reg)  # unique, greyscale-safe pairs
    assert len({s["marker"] for s in styles}) == len(reg)
    assert A.loss_style("margin")["color"] == matplotlib.colors.to_hex(
        __import__("seaborn").color_palette("colorblind")[0]
    )
    assert A.loss_order(["supcon", "zzz", "margin", "aaa"]) == ["margin", "supcon", "aaa", "zzz"]

    def colours(losses):
        df = synthetic({"g": [0.1, 0.3]}, losses, [0])
        fig = P.generalization_curve(df, "g")
        return {ln.get_label(): ln.get_color() for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}

    few, many = colours(["triplet", "arcface"]), colours(list(reg[:6]) + ["arcface", "myloss"])
    assert few["triplet"] == many["triplet"] == A.loss_style("triplet")["color"]
    assert few["arcface"] == many["arcface"] == A.loss_style("arcface")["color"]
    assert many["myloss"] == A.loss_style("myloss")["color"]
    assert A.sanitize("glyphs_curve_recall@1") == "glyphs_curve_recall1" and A.sanitize("a/b c") == "a-b-c"


def test_markdown_and_booktabs_writers():
    df = pd.DataFrame({"loss": ["a_b", "c&d"], "auc": [61.23456, float("nan")], "n": [3, 2]})
    md = A.to_markdown(df)
    assert md.splitlines()[1] == "| :--- | ---: | ---: |" and "| a_b | 61.23 | 3 |" in md and "| c&d |  | 2 |" in md
    tex = A.to_latex(df, caption="cap")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "{lrr}" in tex
    assert "a\\_b & 61.23 & 3 \\\\" in tex and "c\\&d &  & 2 \\\\" in tex


# --------------------------------------------------------------------------------------------
# Files: every figure and table, stable names, byte-identical, CLI
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
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


def _split_file(path: Path) -> Path:
    from oodml.splits import SearchParams, build_split_document, write_split_document

    rng = np.random.default_rng(0)
    C, per = 16, 4
    centres = rng.normal(size=(C, 6)) * np.linspace(0.2, 2.0, C)[:, None]
    x = np.repeat(centres, per, 0) + rng.normal(size=(C * per, 6)) * 0.5
    cls = [f"c{i:02d}" for i in range(C)]
    doc = build_split_document(
        x,
        np.repeat(np.arange(C), per),
        cls,
        cls[: C // 2],
        cls[C // 2 :],
        SearchParams(num_splits=3, patience=2, min_classes=4, episodes=1, shots=(1,)),
        dataset="glyphs",
        extractor="pixels",
    )
    return write_split_document(path, doc), [s["fid"] for s in doc["series"]]


def test_cli_on_study_yaml_with_split_series(tmp_path, capsys):
    pytest.importorskip("oodml.splits_figure")
    (tmp_path / "studies").mkdir()
    (tmp_path / "splits").mkdir()
    _, fids = _split_file(tmp_path / "splits" / "glyphs.json")
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


def test_curve_draws_bootstrap_band_frozen_dashed_and_controls():
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    from oodml import stats as ST

    df = synthetic({"glyphs": [0.1, 0.2, 0.3]}, ["margin", "triplet"], [0, 1, 2])
    frozen = df[df["loss"] == "margin"].assign(loss="frozen:pixels", value=0.3, run_id="frozen:pixels")
    ctrl = df[df["split"] == 3].assign(split=9, fid=0.12, control_of=3)
    full = pd.concat([df.assign(control_of=pd.NA), frozen.assign(control_of=pd.NA), ctrl], ignore_index=True)
    fig = P.generalization_curve(full, "glyphs", "recall@1")
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 3]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), 30.0)  # the frozen reference, percent
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2  # one control series per loss
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # bootstrap bands of the two losses and the (zero-width) frozen line
    cur = ST.curve_intervals(full, "glyphs")
    assert set(cur["split"]) == {1, 2, 3}  # controls stay off the curve itself
    assert len(ST.auc_intervals(full, dataset="glyphs")) == 3


def test_frozen_reference_is_not_part_of_the_field():
    df = synthetic({"glyphs": [0.1, 0.2, 0.3]}, ["margin", "triplet"], [0])
    frozen = df[df["loss"] == "margin"].assign(loss="frozen:pixels", value=0.0, run_id="frozen:pixels")
    with_ref = A.relative_table(pd.concat([df, frozen], ignore_index=True), "glyphs", percent=False)
    without = A.relative_table(df, "glyphs", percent=False)
    assert np.allclose(with_ref.groupby("split")["field_mean"].first(), without.groupby("split")["field_mean"].first())
    assert (with_ref.loc[with_ref["loss"] == "frozen:pixels", "diff"] < 0).all()
    assert A.loss_style("frozen:pixels")["linestyle"] == "--"
