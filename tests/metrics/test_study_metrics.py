"""oodml.metrics.study_metrics and the study metrics of oodml.metrics.evaluate_embeddings, each
against a brute-force computation written from its definition."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import entropy

import oodml.metrics.context as context
from oodml.evaluate import main
from oodml.metrics.cluster import kmeans
from oodml.metrics.evaluate import evaluate_embeddings
from oodml.metrics.options import EvaluationInputError
from oodml.metrics.registry import DEFAULT_METRICS, STUDY_METRICS
from oodml.metrics.study_metrics import intra_inter_ratio, pairwise_f1, rho_spectrum


def _data(n_classes=15, d=10, seed=0, max_size=8):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_classes)
    y = np.repeat(np.arange(n_classes), sizes)
    y = y[rng.permutation(len(y))]
    x = (1.5 * rng.standard_normal((n_classes, d))[y] + rng.standard_normal((len(y), d))).astype(np.float32)
    return x, y


def _norm(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_map(q, q_lab, g, g_lab, q_self, cutoff=1000):
    """The study's mAP@1000 by a full sort per query (ties: lower gallery index first)."""
    qn, gn = _norm(q), _norm(g)
    aps = []
    for i in range(len(q)):
        sims = gn @ qn[i]
        order = sorted((j for j in range(len(g)) if j != q_self[i]), key=lambda j: (-sims[j], j))[:cutoff]
        rel = [g_lab[j] == q_lab[i] for j in order]
        r = sum(g_lab[j] == q_lab[i] for j in range(len(g)) if j != q_self[i])
        if r == 0:
            continue
        size = r + (1 if q_self[i] >= 0 else 0)
        hits, s = 0, 0.0
        for pos, h in enumerate(rel, start=1):
            if h:
                hits += 1
                s += hits / pos
        aps.append(s / size)
    return float(np.mean(aps))


@pytest.mark.parametrize("backend", ["numpy", "torch", "faiss"])
def test_map_at_1000_matches_brute_force_leave_one_out(backend):
    x, y = _data()
    got = evaluate_embeddings(x, y, metrics=("map@1000",), backend=backend)
    assert list(got) == ["map@1000"]
    assert got["map@1000"] == pytest.approx(_brute_map(x, y, x, y, np.arange(len(x))), abs=1e-6)


def test_map_at_1000_cut_and_separate_gallery(monkeypatch):
    x, y = _data(n_classes=6, max_size=30, seed=3)
    monkeypatch.setattr(context, "MAP_CUTOFF", 7)  # a cut shorter than the classes: the cut matters
    got = evaluate_embeddings(x, y, metrics=("map@1000",))["map@1000"]
    assert got == pytest.approx(_brute_map(x, y, x, y, np.arange(len(x)), cutoff=7), abs=1e-6)
    monkeypatch.undo()
    q, g = x[:40], x[40:]
    got = evaluate_embeddings(q, y[:40], gallery_embeddings=g, gallery_labels=y[40:], metrics=("map@1000",))
    ref = _brute_map(q, y[:40], g, y[40:], np.full(40, -1))
    assert got["map@1000"] == pytest.approx(ref, abs=1e-6)


def test_map_at_1000_perfect_embedding_reaches_the_study_ceiling():
    # the study divides by the class size with the query: a perfect ranking scores (n_c - 1) / n_c
    y = np.repeat(np.arange(3), 4)
    x = np.eye(3, dtype=np.float32)[y]
    got = evaluate_embeddings(x, y, metrics=("map@1000", "map@r"))
    assert got["map@r"] == pytest.approx(1.0)
    assert got["map@1000"] == pytest.approx(3 / 4)


def _brute_f1(y, c):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(y)), 2):
        same_c, same_y = c[i] == c[j], y[i] == y[j]
        tp += same_c and same_y
        fp += same_c and not same_y
        fn += same_y and not same_c
    p, r = tp / (tp + fp), tp / (tp + fn)
    return 2 * p * r / (p + r)


def test_pairwise_f1_against_all_pairs():
    rng = np.random.default_rng(1)
    for _ in range(5):
        y = rng.integers(0, 6, 60)
        c = rng.integers(0, 5, 60)
        assert pairwise_f1(y, c) == pytest.approx(_brute_f1(y, c), abs=1e-12)
    assert pairwise_f1([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert pairwise_f1([0, 1, 2], [0, 0, 0]) == 0.0  # no true pair


def test_f1_uses_the_nmi_clustering():
    x, y = _data(seed=2)
    got = evaluate_embeddings(x, y, metrics=("nmi", "f1"), nmi_seed=4)
    clusters = kmeans(_norm(x).astype(np.float32), len(np.unique(y)), n_iter=20, seed=4).labels
    assert got["f1"] == pytest.approx(_brute_f1(y, clusters), abs=1e-12)
    assert evaluate_embeddings(x, y, metrics=("f1",), nmi_seed=4)["f1"] == got["f1"]


def test_rho_spectrum_is_kl_from_uniform():
    x, y = _data(seed=5)
    xn = _norm(x)
    s = np.linalg.svd(xn, compute_uv=False)
    ref = entropy(np.full(len(s), 1 / len(s)), s / s.sum())  # KL(U || S)
    assert rho_spectrum(xn) == pytest.approx(ref, rel=1e-10)
    ref2 = entropy(np.full(len(s) - 2, 1 / (len(s) - 2)), s[2:] / s[2:].sum())
    assert rho_spectrum(xn, skip=2) == pytest.approx(ref2, rel=1e-10)
    got = evaluate_embeddings(x, y, metrics=("rho_spectrum",), rho_skip=2)["rho_spectrum"]
    assert got == pytest.approx(ref2, rel=1e-5)
    assert rho_spectrum(np.eye(4) * 3) == pytest.approx(0.0, abs=1e-12)  # flat spectrum
    assert rho_spectrum(np.ones((5, 3))) == math.inf  # rank one: zero singular values


def test_intra_inter_ratio_against_pdist():
    x, y = _data(seed=6)
    xn = _norm(x)
    intra = [pdist(xn[y == c]).mean() for c in np.unique(y) if (y == c).sum() >= 2]
    means = np.stack([xn[y == c].mean(0) for c in np.unique(y)])
    ref = np.mean(intra) / pdist(means).mean()
    assert intra_inter_ratio(xn, y) == pytest.approx(ref, rel=1e-10)
    got = evaluate_embeddings(x, y, metrics=("intra_inter_ratio",))["intra_inter_ratio"]
    assert got == pytest.approx(ref, rel=1e-5)
    assert math.isnan(intra_inter_ratio(xn, np.zeros(len(xn))))  # one class


def test_default_metrics_unchanged_and_study_metrics_in_order():
    x, y = _data(seed=7)
    default = evaluate_embeddings(x, y)
    assert list(default) == [
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
        "precision@1",
        "r_precision",
        "map@r",
        "nmi",
    ]
    full = evaluate_embeddings(x, y, metrics=STUDY_METRICS)
    assert list(full)[: len(default)] == list(default)
    assert list(full)[len(default) :] == ["map@1000", "f1", "rho_spectrum", "intra_inter_ratio"]
    assert {k: full[k] for k in default} == default  # the old metrics do not move
    assert DEFAULT_METRICS == ("recall", "precision@1", "r_precision", "map@r", "nmi")
    with pytest.raises(EvaluationInputError, match="rho_skip"):
        evaluate_embeddings(x, y, metrics=("rho_spectrum",), rho_skip=-1)


def test_cli_study_metrics(tmp_path, capsys):
    x, y = _data(seed=8)
    np.savez(tmp_path / "e.npz", embeddings=x, labels=y)
    assert (
        main(
            [
                str(tmp_path / "e.npz"),
                "--json",
                "--metrics",
                "map@1000",
                "f1",
                "rho_spectrum",
                "intra_inter_ratio",
                "--quiet",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["map@1000", "f1", "rho_spectrum", "intra_inter_ratio"]
    assert main([str(tmp_path / "e.npz"), "--metrics", "rho_spectrum", "--quiet"]) == 0
    assert "%" not in capsys.readouterr().out.splitlines()[-1]
    assert main([str(tmp_path / "e.npz"), "--json", "--metrics", "rho_spectrum", "--rho-skip", "2", "--quiet"]) == 0
    skipped = json.loads(capsys.readouterr().out)["rho_spectrum"]
    assert skipped == pytest.approx(evaluate_embeddings(x, y, metrics=("rho_spectrum",), rho_skip=2)["rho_spectrum"])
    assert skipped != out["rho_spectrum"]


def test_plot_labels_of_the_study_metrics():
    from oodml.analysis import is_percent_metric, metric_label

    assert metric_label("map@1000") == "mAP@1000 (%)" and metric_label("f1") == "F1 (clustering) (%)"
    assert metric_label("rho_spectrum") == "ρ-spectrum decay" and not is_percent_metric("intra_inter_ratio")
