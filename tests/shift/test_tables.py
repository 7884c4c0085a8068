"""Tests of :mod:`oodml.shift.tables`: orderings (Kendall) and the predictive table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oodml import shift


def _table():
    rows = []
    for s in range(1, 6):
        for ext, meas, v in (("a", "fid_class", s), ("a", "kid", s * 2.0), ("b", "mmd", 6 - s)):
            rows.append(
                {"split": s, "fid": float(s), "extractor": ext, "measure": meas, "value": float(v), "se": np.nan}
            )
    return pd.DataFrame(rows)


def test_kendall_and_tau_matrix():
    tau = shift.kendall_table(_table())
    got = {(a, b): t for a, b, t in zip(tau["a"], tau["b"], tau["tau"])}
    assert got[("a/fid_class", "a/kid")] == pytest.approx(1.0)
    assert got[("a/fid_class", "b/mmd")] == pytest.approx(-1.0)
    m = shift.tau_matrix(tau)
    assert m.loc["b/mmd", "a/kid"] == pytest.approx(-1.0) and m.loc["a/kid", "a/kid"] == 1.0


def test_predictive_table_spearman_per_loss():
    res = []
    for s in range(1, 6):
        for loss, val in (("margin", 0.9 - 0.1 * s), ("multisimilarity", [0.5, 0.7, 0.6, 0.4, 0.3][s - 1])):
            for seed in (0, 1):
                res.append(
                    {
                        "study": "t",
                        "dataset": "syn",
                        "split": s,
                        "fid": float(s),
                        "loss": loss,
                        "seed": seed,
                        "stage": "zero-shot",
                        "metric": "recall@1",
                        "value": val,
                        "ci95": np.nan,
                        "run_id": f"{loss}{s}{seed}",
                    }
                )
    pred = shift.predictive_table(_table(), pd.DataFrame(res), dataset="syn")
    got = {(r.loss, r.extractor, r.measure): r.spearman for r in pred.itertuples()}
    assert got[("margin", "a", "fid_class")] == pytest.approx(-1.0)
    assert got[("margin", "b", "mmd")] == pytest.approx(1.0)
    from scipy.stats import spearmanr

    assert got[("multisimilarity", "a", "kid")] == pytest.approx(
        spearmanr([1, 2, 3, 4, 5], [0.5, 0.7, 0.6, 0.4, 0.3])[0]
    )
    assert set(pred["n_splits"]) == {5}
