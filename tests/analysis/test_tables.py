"""Tests of :mod:`oodml.analysis.tables` (through the package API): curves, AUC, slopes, ranks,
few-shot and linear-probe tables against hand computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from oodml import analysis as A

COLS = list(A.REQUIRED_COLUMNS)


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


def test_fewshot_gain_given_or_computed_and_probe_table(synthetic):
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


def test_frozen_reference_is_not_part_of_the_field(synthetic):
    df = synthetic({"glyphs": [0.1, 0.2, 0.3]}, ["margin", "triplet"], [0])
    frozen = df[df["loss"] == "margin"].assign(loss="frozen:pixels", value=0.0, run_id="frozen:pixels")
    with_ref = A.relative_table(pd.concat([df, frozen], ignore_index=True), "glyphs", percent=False)
    without = A.relative_table(df, "glyphs", percent=False)
    assert np.allclose(with_ref.groupby("split")["field_mean"].first(), without.groupby("split")["field_mean"].first())
    assert (with_ref.loc[with_ref["loss"] == "frozen:pixels", "diff"] < 0).all()
    assert A.loss_style("frozen:pixels")["linestyle"] == "--"
