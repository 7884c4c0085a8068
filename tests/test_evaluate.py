"""oodml.evaluate / oodml.knn / oodml.cluster: exact retrieval metrics, NMI, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from oodml.cluster import kmeans, nmi
from oodml.errors import BadInputError
from oodml.evaluate import EvaluationInputError, evaluate_embeddings, load_embeddings_npz, main

BACKENDS = ("numpy", "torch", "faiss")


# ---------------------------------------------------------------------------------------------
# data and the brute-force reference
# ---------------------------------------------------------------------------------------------
def _clustered(n_classes=40, d=12, seed=0, max_size=9, spread=1.2):
    """Unequal class sizes 1..max_size (singletons included), classes as noisy centres."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_classes)
    y = np.repeat(np.arange(n_classes), sizes)
    y = y[rng.permutation(len(y))]
    centres = spread * rng.standard_normal((n_classes, d))
    x = (centres[y] + rng.standard_normal((len(y), d))).astype(np.float32)
    return x, y


def _tied(n=150, d=8, n_classes=12, seed=0):
    """Embeddings whose similarities are exact in float32 whatever the summation order (4
    entries +-1 per row, norm 2, so normalised entries are +-0.5 and dot products multiples of
    0.25): many exact ties and duplicate rows, to test the tie rule."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d), np.float32)
    for i in range(n):
        cols = rng.choice(d, 4, replace=False)
        x[i, cols] = rng.choice([-1.0, 1.0], 4)
    return x, rng.integers(0, n_classes, n)


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
def test_matches_pytorch_metric_learning():
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, y = _clustered(n_classes=60, d=16, seed=3)
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
def test_leave_one_out_equals_brute_force(backend):
    x, y = _clustered(seed=1)
    want = _brute(x, y, x, y, np.arange(len(x)), KS)
    got = evaluate_embeddings(x, y, ks=KS, metrics=RETRIEVAL, backend=backend, chunk_size=17)
    assert list(got) == [f"recall@{k}" for k in KS] + ["precision@1", "r_precision", "map@r"]
    _assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [None, 1, 13])
def test_exact_ties_follow_lower_index_rule(backend, chunk):
    x, y = _tied()
    want = _brute(x, y, x, y, np.arange(len(x)), KS)
    got = evaluate_embeddings(x, y, ks=KS, metrics=RETRIEVAL, backend=backend, chunk_size=chunk)
    _assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("data", ["clustered", "tied"])
def test_query_gallery_indices_equal_brute_force(backend, data):
    x, y = _clustered(seed=2) if data == "clustered" else _tied(seed=2)
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
def test_separate_gallery_arrays_equal_brute_force(backend):
    x, y = _clustered(seed=4)
    xq, yq = x[:100], y[:100]
    xg, yg = x[100:], y[100:]
    want = _brute(xq, yq, xg, yg, np.full(len(xq), -1), KS)
    got = evaluate_embeddings(
        xq, yq, gallery_embeddings=xg, gallery_labels=yg, ks=KS, metrics=RETRIEVAL, backend=backend
    )
    _assert_close(got, want)


def test_chunk_size_and_backends_give_identical_results():
    x, y = _clustered(n_classes=80, seed=5)
    results = [
        evaluate_embeddings(x, y, ks="sop", backend=b, chunk_size=c, metrics=RETRIEVAL)
        for b in BACKENDS
        for c in (None, 1, 8, 1000)
    ]
    assert all(r == results[0] for r in results)


@pytest.mark.parametrize("data", ["clustered", "tied", "tied-small-classes"])
@pytest.mark.parametrize("chunk", [None, 1, 7, 40])
@pytest.mark.parametrize("depth", [None, 0])
def test_leave_one_out_half_matrix_equals_full_rows(data, chunk, depth):
    """The half-matrix leave-one-out path reports the same first-positive ranks and top-R hits
    as the full-row path, for any block size (blocks of whole classes, many block pairs).
    "tied-small-classes" has many queries whose positives are beaten (type B) and exact ties
    with their best positive in other blocks, on both sides of a block pair."""
    from oodml.knn import loo_neighbour_stats, neighbour_stats

    if data == "clustered":
        x, y = _clustered(seed=13)
    elif data == "tied":
        x, y = _tied(seed=13)
    else:
        x, y = _tied(n=240, n_classes=80, seed=13)
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    n = len(x)
    full = neighbour_stats(x, y, x, y, np.arange(n), depth=depth, backend="numpy")
    half = loo_neighbour_stats(x, y, depth=depth, chunk_size=chunk, workers=1 if chunk == 7 else None)
    np.testing.assert_array_equal(half.n_pos, full.n_pos)
    np.testing.assert_array_equal(half.first_rank, full.first_rank)
    np.testing.assert_array_equal(half.hits, full.hits)
    assert half.hits.shape == (n, full.hits.shape[1]) and full.hits.any() == (depth is None)


def test_leave_one_out_progress_follows_the_products_not_the_blocks():
    """Progress is reported after every block product in proportion to its area, summing to n:
    a steady rate for steady work (block k from the end meets k + 1 blocks)."""
    from oodml.knn import loo_neighbour_stats

    x, y = _clustered(seed=15)
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    ticks: list[int] = []
    loo_neighbour_stats(x, y, chunk_size=40, progress=ticks.append)
    n, nblk = len(x), -(-len(x) // 40)
    assert sum(ticks) == n and all(t > 0 for t in ticks)
    assert len(ticks) > nblk  # more often than once per block
    # the last block processed (the first in order) meets every block: its share is the largest,
    # not one block's worth of queries
    assert max(ticks) < n / 2


def test_classes_too_large_for_the_half_matrix_path_fall_back(monkeypatch):
    import oodml.evaluate as ev

    x, y = _clustered(n_classes=50, seed=14)
    want = evaluate_embeddings(x, y, ks="sop", chunk_size=9)
    monkeypatch.setattr(ev, "LOO_MAX_CLASS", 2)
    assert evaluate_embeddings(x, y, ks="sop", chunk_size=9) == want


def test_string_labels_tensors_and_scaling_do_not_matter():
    x, y = _clustered(seed=6)
    names = np.array([f"class-{v:03d}" for v in y])
    a = evaluate_embeddings(x, y)
    b = evaluate_embeddings(torch.from_numpy(3.0 * x).double(), names.tolist())
    assert a == b


def test_queries_without_positives_are_not_scored():
    x, y = _clustered(seed=7)
    y2 = np.concatenate([y, [10_000, 10_001]])  # two singleton classes
    x2 = np.concatenate([x, np.random.default_rng(0).standard_normal((2, x.shape[1])).astype(np.float32)])
    scored = np.flatnonzero(np.bincount(y2)[y2] > 1)
    assert len(scored) < len(y2)
    assert evaluate_embeddings(x2, y2, metrics=RETRIEVAL) == evaluate_embeddings(
        x2, y2, query=scored, metrics=RETRIEVAL
    )
    lone = evaluate_embeddings(x[:3], [1, 2, 3], metrics=RETRIEVAL)
    assert all(math.isnan(v) for v in lone.values())


def test_bad_inputs_raise_clear_errors():
    x, y = _clustered(seed=8)
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


# ---------------------------------------------------------------------------------------------
# k-means and NMI
# ---------------------------------------------------------------------------------------------
def _plain_lloyd(x, init, n_iter):
    """Textbook Lloyd: assign to the nearest centroid, move centroids to their means (empty
    clusters keep theirs), ``n_iter`` times, then assign once more."""
    c = x[init].astype(np.float64)
    x64 = x.astype(np.float64)
    for it in range(n_iter + 1):
        d = (c**2).sum(1)[None, :] - 2 * x64 @ c.T
        a = d.argmin(1)
        if it == n_iter:
            return a
        for j in range(len(c)):
            members = x64[a == j]
            if len(members):
                c[j] = members.mean(0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_iter", [0, 1, 4, 30])
def test_kmeans_equals_plain_lloyd(seed, n_iter):
    x, _ = _clustered(n_classes=30, d=10, seed=seed)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = 45
    init = np.random.default_rng(seed).choice(len(x), k, replace=False)
    want = _plain_lloyd(x, init, n_iter)
    got = kmeans(x, k, n_iter=n_iter, seed=seed, group_size=4)
    np.testing.assert_array_equal(got.labels, want)
    assert got.n_iter <= n_iter
    if n_iter == 30:
        assert got.converged and got.distance_fraction < 0.5  # the bounds skip most distances


def test_kmeans_parallel_pruned_step_and_reused_products(monkeypatch):
    import oodml.cluster as cluster

    x, _ = _clustered(n_classes=30, d=10, seed=2)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = 40
    want = _plain_lloyd(x, np.random.default_rng(3).choice(len(x), k, replace=False), 25)
    monkeypatch.setattr(cluster, "_PARALLEL_MIN_PAIRS", 0)
    monkeypatch.setattr(cluster, "_n_cpus", lambda: 3)
    np.testing.assert_array_equal(kmeans(x, k, n_iter=25, seed=3, group_size=4).labels, want)
    # dense rows in many small chunks, run by parallel threads (one-thread GEMMs)
    for chunk in (7, 64):
        got = kmeans(x, k, n_iter=25, seed=3, group_size=4, chunk_size=chunk)
        np.testing.assert_array_equal(got.labels, want)
    # initial assignment from products computed elsewhere, for some of the points only
    km = cluster.ExactKMeans(x, k, seed=3, group_size=4)
    rows = np.arange(0, len(x), 2)
    km.absorb_initial_products(rows, x[rows] @ x[km.init_points].T)
    np.testing.assert_array_equal(km.fit(25).labels, want)


def test_nmi_equals_sklearn():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 30, 500), rng.integers(0, 25, 500)
        assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
        assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(np.zeros(5), np.zeros(5)) == normalized_mutual_info_score(np.zeros(5), np.zeros(5))
    assert nmi([0, 0, 1, 1], [0, 0, 0, 0]) == normalized_mutual_info_score([0, 0, 1, 1], [0, 0, 0, 0])


def test_evaluate_nmi_is_sklearn_nmi_of_the_seeded_kmeans():
    from sklearn.metrics import normalized_mutual_info_score

    x, y = _clustered(seed=9)
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


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _write(tmp_path, name="emb.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_cli_json_prints_one_object(tmp_path, capsys):
    x, y = _clustered(seed=10)
    path = _write(tmp_path, embeddings=x, labels=np.array([f"c{v}" for v in y]))
    assert main([str(path), "--json", "--ks", "sop", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    got = json.loads(out)
    assert list(got) == [
        "recall@1",
        "recall@10",
        "recall@100",
        "recall@1000",
        "precision@1",
        "r_precision",
        "map@r",
        "nmi",
    ]
    assert got == pytest.approx(evaluate_embeddings(x, y, ks="sop"))
    assert main([str(path), "--ks", "1", "2", "4", "8", "-q"]) == 0
    table = capsys.readouterr().out
    assert "recall@8" in table and "map@r" in table and "nmi" in table


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("no_labels", "no 'labels'"),
        ("wrong_shape", "must be an (n, d)"),
        ("label_count", "one per embedding"),
        ("nan", "NaN"),
        ("pickled", "without pickle"),
        ("not_npz", "not a readable"),
        ("bad_ks", "--ks"),
    ],
)
def test_cli_bad_files_give_one_line_errors(tmp_path, capsys, case, expected):
    x, y = _clustered(seed=11)
    args = []
    if case == "missing":
        path = tmp_path / "nope.npz"
    elif case == "no_labels":
        path = _write(tmp_path, embeddings=x, targets=y)
    elif case == "wrong_shape":
        path = _write(tmp_path, embeddings=x[:, 0], labels=y)
    elif case == "label_count":
        path = _write(tmp_path, embeddings=x, labels=y[:-3])
    elif case == "nan":
        x[3, 1] = np.nan
        path = _write(tmp_path, embeddings=x, labels=y)
    elif case == "pickled":
        path = _write(tmp_path, embeddings=x, labels=np.array([{"c": v} for v in y], dtype=object))
    elif case == "not_npz":
        path = tmp_path / "emb.npz"
        path.write_text("not an archive")
    else:
        path = _write(tmp_path, embeddings=x, labels=y)
        args = ["--ks", "1", "two"]
    assert main([str(path), "--json", "-q", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    if case != "bad_ks":
        assert str(path) in lines[0]


def test_load_embeddings_npz_roundtrip(tmp_path):
    x, y = _clustered(seed=12)
    emb, lab = load_embeddings_npz(_write(tmp_path, embeddings=x, labels=y))
    np.testing.assert_array_equal(emb, x)
    np.testing.assert_array_equal(lab, y)
