"""The ooDML study's extra metrics, exact: mAP@1000, clustering F1, ρ-spectrum decay and the
intra/inter-class distance ratio.

:func:`oodml.metrics.evaluate_embeddings` computes them under the names ``"map@1000"``,
``"f1"``, ``"rho_spectrum"`` and ``"intra_inter_ratio"``; the functions here are the formulas,
on plain arrays, so a notebook (or a test) can call them directly.

Definitions (embeddings L2-normalised as in :mod:`oodml.metrics`)
------------------------------------------------------------------
``map@1000``
    Mean average precision over the 1000 nearest neighbours, as the study's code
    (``metrics/mAP_1000.py`` of the ooDML reference) defines it: for a query with class size
    ``n_c`` (the items of its class in the searched set, *the query included* when it is part
    of that set) ``AP = (1 / n_c) * sum_{i=1..min(1000, m)} P(i) * rel(i)``, ``P(i)`` the
    precision of the first ``i`` neighbours; the mean over queries with at least one positive.
    Unlike MAP@R the denominator does not shrink with the cut: a class of more than 1000 items
    can never reach 1.
``f1``
    Pairwise clustering F1 (Oh Song et al. 2016, as in DML papers): over all unordered pairs
    of queries, a pair is *predicted* together when k-means (the clustering NMI uses) puts
    both in one cluster and *truly* together when they share a label; precision
    ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, ``F1 = 2PR / (P + R)``. Computed exactly
    from the contingency table (``TP = sum C(n_ij, 2)``).
``rho_spectrum``
    Spectral decay ρ of Roth et al. (2020): the singular values ``s_1 >= ... >= s_r``
    (``r = min(n, d)``, exact SVD of the ``(n, d)`` matrix of normalised embeddings, not
    centred, as the study's code) after dropping the first ``skip`` (default 0), normalised to
    sum 1, and ``KL(U || s) = sum_i (1/r') log((1/r') / s_i)`` with ``U`` uniform over the
    ``r'`` values kept. 0 = a perfectly flat spectrum; larger = fewer directions carry the
    embedding. A zero singular value gives ``inf`` (written as null in JSON).
``intra_inter_ratio``
    Embedding-space density of Roth et al. (2020): ``pi_intra / pi_inter`` with ``pi_intra``
    the mean over classes with at least two items of the mean Euclidean distance over
    distinct pairs of that class, and ``pi_inter`` the mean Euclidean distance over distinct
    pairs of class means (means of the normalised embeddings). NaN with fewer than two
    classes or no class of two items.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAP_CUTOFF", "average_precision_at_cutoff", "intra_inter_ratio", "pairwise_f1", "rho_spectrum"]

#: Neighbours read by ``map@1000``.
MAP_CUTOFF = 1000


def average_precision_at_cutoff(hits: np.ndarray, class_size: np.ndarray) -> float:
    """Mean of ``(1 / class_size) * sum_i P(i) rel(i)`` over rows (see ``map@1000``).

    Args:
        hits: ``(nq, depth)`` bool, ``hits[q, i]``: the ``i``-th neighbour of query ``q`` is a
            positive (every place of the cut, not only the first ``R``).
        class_size: ``(nq,)`` ints >= 1, the denominators.

    Returns:
        the mean (NaN for no rows).
    """
    hits = np.asarray(hits, bool)
    if hits.shape[0] == 0:
        return float("nan")
    depth = hits.shape[1]
    prec = np.cumsum(hits, axis=1, dtype=np.float64) / np.arange(1, depth + 1, dtype=np.float64)[None, :]
    ap = (prec * hits).sum(1) / np.asarray(class_size, np.float64)
    return float(ap.mean())


def pairwise_f1(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Pairwise F1 of a clustering against labels (``labels``, ``clusters``: ``(n,)`` ints).

    0 when no pair is predicted together or none truly is (P or R undefined).
    """
    labels = np.asarray(labels).reshape(-1)
    clusters = np.asarray(clusters).reshape(-1)
    _, li = np.unique(labels, return_inverse=True)
    _, ci = np.unique(clusters, return_inverse=True)
    table = np.zeros((int(li.max(initial=-1)) + 1, int(ci.max(initial=-1)) + 1), np.int64)
    np.add.at(table, (li.reshape(-1), ci.reshape(-1)), 1)

    def pairs(x: np.ndarray) -> int:
        x = x.astype(np.int64)
        return int((x * (x - 1) // 2).sum())

    tp = pairs(table)
    pred = pairs(table.sum(0))
    true = pairs(table.sum(1))
    if tp == 0 or pred == 0 or true == 0:
        return 0.0
    p, r = tp / pred, tp / true
    return float(2 * p * r / (p + r))


def rho_spectrum(embeddings: np.ndarray, skip: int = 0) -> float:
    """ρ-spectrum decay ``KL(U || s / sum(s))`` of an ``(n, d)`` embedding matrix (see above)."""
    x = np.asarray(embeddings, np.float64)
    s = np.linalg.svd(x, compute_uv=False)[int(skip) :]
    if len(s) == 0 or s.sum() <= 0:
        return float("nan")
    s = s / s.sum()
    if (s <= 0).any():
        return math.inf
    u = 1.0 / len(s)
    return float(np.sum(u * (np.log(u) - np.log(s))))


def _mean_pair_distance(a: np.ndarray, block: int = 2048) -> tuple[float, int]:
    """Sum of Euclidean distances over distinct pairs of rows of ``a`` and the pair count."""
    n = len(a)
    if n < 2:
        return 0.0, 0
    sq = np.einsum("ij,ij->i", a, a)
    total = 0.0
    for s0 in range(0, n, block):
        sl = slice(s0, min(s0 + block, n))
        d2 = sq[sl, None] + sq[None, :] - 2.0 * (a[sl] @ a.T)
        rows = np.arange(sl.start, sl.stop)
        upper = np.arange(n)[None, :] > rows[:, None]  # each pair once
        total += float(np.sqrt(np.maximum(d2, 0.0))[upper].sum())
    return total, n * (n - 1) // 2


def intra_inter_ratio(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """``pi_intra / pi_inter`` of ``(n, d)`` embeddings with ``(n,)`` labels (see above)."""
    x = np.asarray(embeddings, np.float64)
    _, lab = np.unique(np.asarray(labels).reshape(-1), return_inverse=True)
    lab = lab.reshape(-1)
    order = np.argsort(lab, kind="stable")
    bounds = np.flatnonzero(np.diff(lab[order])) + 1
    groups = np.split(order, bounds)
    if len(groups) < 2:
        return float("nan")
    intra = []
    for g in groups:
        total, count = _mean_pair_distance(x[g])
        if count:
            intra.append(total / count)
    if not intra:
        return float("nan")
    means = np.stack([x[g].mean(0) for g in groups])
    total, count = _mean_pair_distance(means)
    inter = total / count
    if inter <= 0:
        return math.inf
    return float(np.mean(intra) / inter)
