"""Tests of :mod:`oodml.analysis.stats`: bootstrap intervals, paired tests, Friedman + Nemenyi, CD diagram."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import friedmanchisquare

from oodml.analysis import stats
from oodml.analysis.figures import cd_diagram
from oodml.analysis.style import save_figure


def _results(seeds=(0, 1, 2), noise=0.01):
    rng = np.random.default_rng(0)
    rows = []
    base = {"margin": 0.8, "multisimilarity": 0.7, "proxyanchor": 0.6, "frozen:pixels": 0.3}
    for s in range(1, 6):
        for loss, b in base.items():
            for seed in seeds:
                v = b - 0.05 * s + noise * rng.normal()
                rows.append(
                    {
                        "study": "t",
                        "dataset": "syn",
                        "split": s,
                        "fid": float(s),
                        "loss": loss,
                        "seed": seed,
                        "stage": "zero-shot",
                        "metric": "recall@1",
                        "value": v,
                        "ci95": np.nan,
                        "run_id": f"{loss}-{s}-{seed}",
                    }
                )
    return pd.DataFrame(rows)


def test_bootstrap_ci():
    v = [0.1, 0.4, 0.35, 0.2, 0.3]
    lo, hi = stats.bootstrap_ci(v, seed=1)
    assert min(v) <= lo < np.mean(v) < hi <= max(v)
    assert stats.bootstrap_ci(v, seed=1) == (lo, hi)  # seeded
    assert all(np.isnan(stats.bootstrap_ci([0.3])))
    # the interval of a constant sample is that constant
    assert stats.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_paired_bootstrap():
    a = np.array([0.80, 0.82, 0.81, 0.79])
    far = stats.paired_bootstrap(a, a - 0.1)
    assert far["diff"] == pytest.approx(0.1) and far["p_value"] < 0.01 and far["low"] == pytest.approx(0.1)
    same = stats.paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    # pairing matters: a shared seed effect cancels in the differences
    shared = np.array([0.5, 0.9, 0.6, 0.8])
    paired = stats.paired_bootstrap(shared + 0.01, shared)
    assert paired["p_value"] < 0.01
    one = stats.paired_bootstrap([0.5], [0.4])
    assert one["diff"] == pytest.approx(0.1) and np.isnan(one["p_value"]) and one["n"] == 1
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1, 2], [1, 2, 3])


def test_curve_and_auc_intervals():
    df = _results()
    cur = stats.curve_intervals(df, "syn")
    assert len(cur) == 20 and (cur["boot_low"] <= cur["mean"]).all() and (cur["mean"] <= cur["boot_high"]).all()
    auc = stats.auc_intervals(df, dataset="syn")
    assert list(auc["loss"][:3]) == ["margin", "multisimilarity", "proxyanchor"]
    assert (auc["auc_low"] <= auc["auc"]).all() and (auc["auc"] <= auc["auc_high"]).all()
    one = stats.curve_intervals(_results(seeds=(0,)), "syn")
    assert one["boot_low"].isna().all()


def test_pairwise_auc_tests():
    tests = stats.pairwise_auc_tests(_results(), dataset="syn")
    assert len(tests) == 6  # 4 losses, every pair once
    row = tests[(tests["loss_a"] == "margin") & (tests["loss_b"] == "multisimilarity")].iloc[0]
    assert row["diff"] == pytest.approx(
        10.0, abs=2.0
    )  # percent points and row["p_value"] < 0.01 and row["n_seeds"] == 3
    noisy = stats.pairwise_auc_tests(_results(noise=0.0), dataset="syn")
    assert (noisy["p_value"] <= 0.01).all()


def test_nemenyi_cd_matches_demsar_table():
    # Demšar (2006), Table 5: q_0.05 = 2.343, 2.569, 2.728 for k = 3, 4, 5
    for k, q in ((3, 2.343), (4, 2.569), (5, 2.728)):
        assert stats.nemenyi_cd(k, 10) == pytest.approx(q * np.sqrt(k * (k + 1) / 60), abs=2e-3)


def test_friedman_nemenyi_and_cd_diagram(tmp_path):
    df = _results()
    res = stats.friedman_nemenyi(df, dataset="syn")
    assert list(res["ranks"]["loss"]) == ["margin", "multisimilarity", "proxyanchor", "frozen:pixels"]
    assert list(res["ranks"]["avg_rank"]) == [1.0, 2.0, 3.0, 4.0]
    cur = df.groupby(["loss", "split"])["value"].mean().unstack()
    ref = friedmanchisquare(
        *[cur.loc[loss].to_numpy() for loss in ["margin", "multisimilarity", "proxyanchor", "frozen:pixels"]]
    )
    assert res["statistic"] == pytest.approx(ref.statistic) and res["p_value"] == pytest.approx(ref.pvalue)
    assert res["n_blocks"] == 5 and res["cd"] == pytest.approx(stats.nemenyi_cd(4, 5))
    assert stats._cliques([1.0, 1.5, 3.0, 3.2], 1.0) == [(0, 1), (2, 3)]
    assert stats._cliques([1.0, 2.0, 3.0], 5.0) == [(0, 2)]
    paths = save_figure(cd_diagram(res, "syn"), tmp_path / "cd")
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
