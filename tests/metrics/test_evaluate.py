"""oodml.metrics.evaluate: the driver's metrics against a brute-force sort and
pytorch-metric-learning, for every backend, query/gallery mode and chunk size; input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import oodml.metrics.context as context
from oodml.errors import BadInputError
from oodml.metrics.cluster import kmeans
from oodml.metrics.evaluate import evaluate_embeddings
from oodml.metrics.options import EvaluationInputError

BACKENDS = ("numpy", "torch", "faiss")


# ---------------------------------------------------------------------------------------------
# the brute-force reference
# ---------------------------------------------------------------------------------------------
def _brute(q, q_lab, g, g_lab, q_self, ks):
    """Metrics by a full sort per query: similarity desc, then gallery index asc."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    recall = {k: [] for k in ks}
    p1, rp, ap = [], [], []
    for i in range(len(q)):
        sims = (gn.astype(np.float64) @ qn[i].astype(np.float64)).tolist()
        order = sorted((j for j in range(len(g)) if j != q_self[i]), key=lambda j: (-sims[j], j))
        rel = [g_lab[j] == q_lab[i] for j in order]
        r = sum(rel)
        if r == 0:
            continue
        for k in ks:
            recall[k].append(any(rel[:k]))
        p1.append(rel[0])
        rp.append(sum(rel[:r]) / r)
        hits, total = 0, 0.0
        for pos in range(r):
            if rel[pos]:
                hits += 1
                total += hits / (pos + 1)
        ap.append(total / r)
    out = {f"recall@{k}": float(np.mean(recall[k])) for k in ks}
    out.update({"precision@1": float(np.mean(p1)), "r_precision": float(np.mean(rp)), "map@r": float(np.mean(ap))})
    return out


def _assert_close(got, want, tol=1e-9):
    for key, val in want.items():
        assert got[key] == pytest.approx(val, abs=tol), key


RETRIEVAL = ("recall", "precision@1", "r_precision", "map@r")


# ---------------------------------------------------------------------------------------------
# agreement with pytorch-metric-learning
# ---------------------------------------------------------------------------------------------
def test_matches_pytorch_metric_learning(clustered):
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, y = clustered(n_classes=60, d=16, seed=3)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    ref = calc.get_accuracy(xn, y, xn, y, ref_includes_query=True)
    got = evaluate_embeddings(x, y, metrics=RETRIEVAL)
    assert got["precision@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert got["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert got["map@r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


# ---------------------------------------------------------------------------------------------
# brute force: leave-one-out, query/gallery, ties, backends, chunks
# ---------------------------------------------------------------------------------------------
KS = (1, 2, 3, 5, 10, 40)  # 5 and more exceed the smaller classes


@pytest.mark.parametrize("backend", BACKENDS)
def test_leave_one_out_equals_brute_force(backend, clustered):
    x, y = clustered(seed=1)
    want = _brute(x, y, x, y, np.arange(len(x)), KS)
    got = evaluate_embeddings(x, y, ks=KS, metrics=RETRIEVAL, backend=backend, chunk_size=17)
    assert list(got) == [f"recall@{k}" for k in KS] + ["precision@1", "r_precision", "map@r"]
    _assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [None, 1, 13])
def test_exact_ties_follow_lower_index_rule(backend, chunk, tied):
    x, y = tied()
    want = _brute(x, y, x, y, np.arange(len(x)), KS)
    got = evaluate_embeddings(x, y, ks=KS, metrics=RETRIEVAL, backend=backend, chunk_size=chunk)
    _assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("data", ["clustered", "tied"])
def test_query_gallery_indices_equal_brute_force(backend, data, clustered, tied):
    x, y = clustered(seed=2) if data == "clustered" else tied(seed=2)
    rng = np.random.default_rng(0)
    n = len(x)
    q_idx = np.sort(rng.choice(n, n // 2, replace=False))
    g_mask = rng.random(n) < 0.7  # overlaps the queries: those are excluded by index
    g_idx = np.flatnonzero(g_mask)
    pos = {int(g): j for j, g in enumerate(g_idx)}
    q_self = np.array([pos.get(int(i), -1) for i in q_idx])
    want = _brute(x[q_idx], y[q_idx], x[g_idx], y[g_idx], q_self, KS)
    got = evaluate_embeddings(
        x, y, query=q_idx, gallery=g_mask, ks=KS, metrics=RETRIEVAL, backend=backend, chunk_size=11
    )
    _assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_separate_gallery_arrays_equal_brute_force(backend, clustered):
    x, y = clustered(seed=4)
    xq, yq = x[:100], y[:100]
    xg, yg = x[100:], y[100:]
    want = _brute(xq, yq, xg, yg, np.full(len(xq), -1), KS)
    got = evaluate_embeddings(
        xq, yq, gallery_embeddings=xg, gallery_labels=yg, ks=KS, metrics=RETRIEVAL, backend=backend
    )
    _assert_close(got, want)


def test_chunk_size_and_backends_give_identical_results(clustered):
    x, y = clustered(n_classes=80, seed=5)
    results = [
        evaluate_embeddings(x, y, ks="sop", backend=b, chunk_size=c, metrics=RETRIEVAL)
        for b in BACKENDS
        for c in (None, 1, 8, 1000)
    ]
    assert all(r == results[0] for r in results)


def test_classes_too_large_for_the_half_matrix_path_fall_back(monkeypatch, clustered):
    x, y = clustered(n_classes=50, seed=14)
    want = evaluate_embeddings(x, y, ks="sop", chunk_size=9)
    monkeypatch.setattr(context, "LOO_MAX_CLASS", 2)
    assert evaluate_embeddings(x, y, ks="sop", chunk_size=9) == want


def test_string_labels_tensors_and_scaling_do_not_matter(clustered):
    x, y = clustered(seed=6)
    names = np.array([f"class-{v:03d}" for v in y])
    a = evaluate_embeddings(x, y)
    b = evaluate_embeddings(torch.from_numpy(3.0 * x).double(), names.tolist())
    assert a == b


def test_queries_without_positives_are_not_scored(clustered):
    x, y = clustered(seed=7)
    y2 = np.concatenate([y, [10_000, 10_001]])  # two singleton classes
    x2 = np.concatenate([x, np.random.default_rng(0).standard_normal((2, x.shape[1])).astype(np.float32)])
    scored = np.flatnonzero(np.bincount(y2)[y2] > 1)
    assert len(scored) < len(y2)
    assert evaluate_embeddings(x2, y2, metrics=RETRIEVAL) == evaluate_embeddings(
        x2, y2, query=scored, metrics=RETRIEVAL
    )
    lone = evaluate_embeddings(x[:3], [1, 2, 3], metrics=RETRIEVAL)
    assert all(math.isnan(v) for v in lone.values())


def test_bad_inputs_raise_clear_errors(clustered):
    x, y = clustered(seed=8)
    x_nan = x.copy()
    x_nan[5, 2] = np.nan
    with pytest.raises(EvaluationInputError, match="NaN"):
        evaluate_embeddings(x_nan, y)
    with pytest.raises(ValueError, match="labels"):
        evaluate_embeddings(x, y[:-1])
    with pytest.raises(BadInputError, match="preset"):
        evaluate_embeddings(x, y, ks="imagenet")
    with pytest.raises(EvaluationInputError, match="metric"):
        evaluate_embeddings(x, y, metrics=("recall@1",))


def test_evaluate_nmi_is_sklearn_nmi_of_the_seeded_kmeans(clustered):
    from sklearn.metrics import normalized_mutual_info_score

    x, y = clustered(seed=9)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    clusters = kmeans(xn, len(np.unique(y)), n_iter=20, seed=5).labels
    got = evaluate_embeddings(x, y, metrics=("nmi",), nmi_seed=5)
    assert list(got) == ["nmi"]
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(y, clusters), abs=1e-12)
    assert got == evaluate_embeddings(x, y, metrics=("nmi",), nmi_seed=5)  # deterministic
    # with the neighbour search, leave-one-out reuses its similarities for the first assignment
    assert evaluate_embeddings(x, y, nmi_seed=5)["nmi"] == pytest.approx(got["nmi"], abs=1e-12)
    faiss_nmi = evaluate_embeddings(x, y, metrics=("nmi",), nmi_kmeans="faiss")["nmi"]
    assert abs(faiss_nmi - got["nmi"]) < 0.1
