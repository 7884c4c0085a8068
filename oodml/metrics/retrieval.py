"""Retrieval metrics from per-query neighbour statistics (:class:`oodml.metrics.knn.NeighbourStats`):
Recall@k, precision@1, R-precision and MAP@R (definitions in :mod:`oodml.metrics`).

Every function takes the statistics of the *scored* queries only (those with ``R >= 1``) and
returns NaN when there are none."""

from __future__ import annotations

import numpy as np

__all__ = ["map_at_r", "precision_at_1", "r_precision", "recall_at_k"]


def recall_at_k(first_rank: np.ndarray, k: int) -> float:
    """Fraction of queries whose first positive is among their ``k`` nearest neighbours."""
    return float((first_rank < k).mean()) if len(first_rank) else float("nan")


def precision_at_1(first_rank: np.ndarray) -> float:
    """Fraction of queries whose nearest neighbour is a positive."""
    return float((first_rank == 0).mean()) if len(first_rank) else float("nan")


def _within_r(hits: np.ndarray, r: np.ndarray) -> np.ndarray:
    return hits & (np.arange(hits.shape[1])[None, :] < r[:, None])


def r_precision(hits: np.ndarray, r: np.ndarray) -> float:
    """Mean of (positives among the ``R`` nearest) / ``R``, from ``hits`` (nq, depth) and ``r`` (nq,)."""
    if len(r) == 0:
        return float("nan")
    return float((_within_r(hits, r).sum(1) / r).mean())


def map_at_r(hits: np.ndarray, r: np.ndarray) -> float:
    """MAP@R (Musgrave et al. 2020) from ``hits`` (nq, depth) and ``r`` (nq,), all ``r >= 1``."""
    if len(r) == 0:
        return float("nan")
    depth = hits.shape[1]
    h = _within_r(hits, r)
    prec = np.cumsum(h, axis=1) / np.arange(1, depth + 1)[None, :]
    return float(((prec * h).sum(1) / r).mean())
