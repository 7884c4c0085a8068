"""Tests of :mod:`oodml.shift`: kernel measures against dense formulas, attribution against
from-scratch FIDs, orderings, the predictive table and the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist, pdist

from oodml import shift
from oodml.fid import FIDComputer, frechet_distance_from_features
from oodml.shift import cli


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")


def _dense_mmd2(x, y, k):
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def _poly(x, y):
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _sets(seed=0, m=37, n=29, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, d)), rng.normal(loc=0.4, size=(n, d)) * 1.3


@pytest.mark.parametrize("block", [4, 7, 1024])
def test_kid_equals_dense_unbiased_mmd(block):
    x, y = _sets()
    value, se = shift.kid(x, y, subset_size=1000, block=block)
    assert value == pytest.approx(_dense_mmd2(x, y, _poly), rel=1e-12, abs=1e-14)
    assert np.isnan(se)  # one exact draw: no standard error


def test_kid_subsets_are_the_mean_of_dense_draws():
    x, y = _sets(1, m=50, n=40)
    value, se = shift.kid(x, y, subsets=6, subset_size=15, seed=3, block=4)
    rng = np.random.default_rng(3)
    vals = []
    for _ in range(6):
        ix = np.sort(rng.choice(50, 15, replace=False))
        iy = np.sort(rng.choice(40, 15, replace=False))
        vals.append(_dense_mmd2(x[ix], y[iy], _poly))
    assert value == pytest.approx(np.mean(vals), rel=1e-12)
    assert se == pytest.approx(np.std(vals, ddof=1) / np.sqrt(6), rel=1e-10)
    assert shift.kid(x, y, subsets=6, subset_size=15, seed=3, block=4) == (value, se)  # seeded


@pytest.mark.parametrize("block", [5, 1024])
def test_mmd_rbf_equals_dense_at_median_bandwidth(block):
    x, y = _sets(2)
    sigma = float(np.median(pdist(np.concatenate([x, y]))))
    assert shift.median_bandwidth(x, y, block=block) == pytest.approx(sigma, rel=1e-12)
    value, s = shift.mmd_rbf(x, y, block=block)
    dense = _dense_mmd2(x, y, lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2)))
    assert s == pytest.approx(sigma, rel=1e-12)
    assert value == pytest.approx(dense, rel=1e-10, abs=1e-14)
    # identical distributions give an unbiased estimate near 0; a shift gives a clearly positive one
    assert shift.mmd_rbf(x, x[::-1].copy())[0] < value
    # a subsampled bandwidth is seeded and close to the exact one
    sub = shift.median_bandwidth(x, y, max_points=40, seed=1)
    assert sub == shift.median_bandwidth(x, y, max_points=40, seed=1) and abs(sub / sigma - 1) < 0.2


def test_mean_distance():
    x, y = _sets(3)
    assert shift.mean_distance(x, y) == pytest.approx(np.linalg.norm(x.mean(0) - y.mean(0)), rel=1e-14)


def test_bad_shapes():
    x, y = _sets()
    with pytest.raises(ValueError, match="dimensions"):
        shift.kid(x, y[:, :3])
    with pytest.raises(ValueError, match="at least 2 points"):
        shift.mmd_rbf(x[:1], y, sigma=1.0)


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


@pytest.mark.slow
def test_cli_on_a_features_file(tmp_path, capsys):
    from test_make_splits import synthetic_npz

    from oodml.make_splits import cli as make_cli

    npz = synthetic_npz(tmp_path / "feats.npz", C=24, per=5, d=8)
    sp = tmp_path / "syn.json"
    assert (
        make_cli(
            [
                "--features-file",
                str(npz),
                "--dataset",
                "syn",
                "--out",
                str(sp),
                "--figure",
                "none",
                "--num-splits",
                "4",
                "--episodes",
                "1",
                "--min-classes",
                "4",
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    stem = tmp_path / "out" / "shift"
    args = [
        str(sp),
        "--features-file",
        str(npz),
        "--out",
        str(stem),
        "--attribution",
        "--kid-subset-size",
        "10",
        "--kid-subsets",
        "4",
        "-q",
    ]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "Kendall" in out and "feats/kid" in out
    table = pd.read_csv(f"{stem}.csv")
    assert set(table["measure"]) == set(shift.MEASURES) and len(table) == 4 * len(shift.MEASURES)
    assert table.loc[table["measure"] == "kid", "se"].notna().all()
    # the features file's class-level FID is the split file's own FID
    fc = table[table["measure"] == "fid_class"].sort_values("split")
    assert np.allclose(fc["value"], fc["fid"], rtol=1e-9)
    for name in ("shift.png", "shift.pdf", "shift_kendall.csv", "shift_attribution.csv", "shift_attribution.png"):
        assert (tmp_path / "out" / name).exists()
    first = [(tmp_path / "out" / n).read_bytes() for n in ("shift.csv", "shift.png")]
    assert cli(args) == 0
    assert [(tmp_path / "out" / n).read_bytes() for n in ("shift.csv", "shift.png")] == first
    res = pd.DataFrame(
        [
            {
                "study": "t",
                "dataset": "syn",
                "split": s,
                "fid": float(s),
                "loss": "margin",
                "seed": 0,
                "stage": "zero-shot",
                "metric": "recall@1",
                "value": 1.0 - s / 10,
                "ci95": np.nan,
                "run_id": f"r{s}",
            }
            for s in range(1, 5)
        ]
    )
    res.to_csv(tmp_path / "res.csv", index=False)
    assert (
        cli(
            args[:3]
            + ["--measures", "fid_class", "mean_dist", "--results", str(tmp_path / "res.csv"), "--out", str(stem), "-q"]
        )
        == 0
    )
    assert "Spearman" in capsys.readouterr().out
    pred = pd.read_csv(f"{stem}_predicts_recall1.csv")
    assert len(pred) == 2 and set(pred["measure"]) == {"fid_class", "mean_dist"}
    assert pred.loc[pred["measure"] == "fid_class", "spearman"].item() == -1.0  # recall falls in the FID order
    assert cli([str(sp), "--features-file", str(tmp_path / "missing.npz"), "-q"]) == 2
    assert "error:" in capsys.readouterr().err
