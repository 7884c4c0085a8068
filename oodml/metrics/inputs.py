"""Checking what :func:`~oodml.metrics.evaluate.evaluate_embeddings` is given, and splitting it into
queries and gallery (L2-normalised float32 rows, labels coded ``0 .. L-1``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oodml.metrics.options import EvaluationInputError

__all__ = ["QueryGallery", "as_embeddings", "as_labels", "query_gallery"]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_embeddings(x: Any, what: str) -> np.ndarray:
    """``(n, d)`` finite numbers → L2-normalised float32 rows (a zero row stays zero)."""
    arr = _as_numpy(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EvaluationInputError(f"{what} must be a non-empty (n, d) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise EvaluationInputError(f"{what} must hold numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, np.float32)
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        raise EvaluationInputError(
            f"{what} has {int(bad.sum())} row(s) with NaN or infinite values (first: row "
            f"{int(np.flatnonzero(bad)[0])}); fix or drop them before evaluating"
        )
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.ascontiguousarray(arr / np.maximum(norms, 1e-12), np.float32)


def as_labels(y: Any, n: int, what: str) -> np.ndarray:
    """``n`` labels (numbers or strings) as a 1-d array."""
    arr = _as_numpy(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) != n:
        raise EvaluationInputError(
            f"{what} must be a 1-d array of {n} labels (one per embedding), got shape {arr.shape}"
        )
    if arr.dtype == object:
        arr = arr.astype(str)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise EvaluationInputError(f"{what} contains NaN or infinite labels")
    return arr


def _index(sel: Any, n: int, what: str) -> np.ndarray:
    arr = _as_numpy(sel)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise EvaluationInputError(f"{what} as a mask must have shape ({n},), got {arr.shape}")
        return np.flatnonzero(arr)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise EvaluationInputError(f"{what} must be a 1-d array of integer indices or a boolean mask")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise EvaluationInputError(f"{what} has indices outside 0..{n - 1}")
    arr = np.where(arr < 0, arr + n, arr)
    if len(np.unique(arr)) != len(arr):
        raise EvaluationInputError(f"{what} has repeated indices")
    return arr


@dataclass
class QueryGallery:
    """Queries and gallery: normalised float32 rows, int64 label codes shared by both, and each
    query's own gallery index (``-1`` when it is not in the gallery)."""

    query: np.ndarray
    query_labels: np.ndarray
    gallery: np.ndarray
    gallery_labels: np.ndarray
    query_self: np.ndarray


def _separate_gallery(emb: np.ndarray, gallery_embeddings: Any, gallery_labels: Any):
    if gallery_embeddings is None or gallery_labels is None:
        raise EvaluationInputError("gallery_embeddings and gallery_labels go together")
    g_emb = as_embeddings(gallery_embeddings, "gallery_embeddings")
    if g_emb.shape[1] != emb.shape[1]:
        raise EvaluationInputError(f"gallery_embeddings have dimension {g_emb.shape[1]}, embeddings {emb.shape[1]}")
    return g_emb, as_labels(gallery_labels, len(g_emb), "gallery_labels")


def query_gallery(
    embeddings: Any,
    labels: Any,
    query: Any = None,
    gallery: Any = None,
    gallery_embeddings: Any = None,
    gallery_labels: Any = None,
) -> QueryGallery:
    """Check the inputs and split them (see :func:`~oodml.metrics.evaluate.evaluate_embeddings`)."""
    emb = as_embeddings(embeddings, "embeddings")
    lab = as_labels(labels, len(emb), "labels")
    n = len(emb)
    q_idx = np.arange(n) if query is None else _index(query, n, "query")
    if len(q_idx) == 0:
        raise EvaluationInputError("there are no queries")
    if gallery_embeddings is not None or gallery_labels is not None:
        if gallery is not None:
            raise EvaluationInputError("give either gallery (indices) or gallery_embeddings/gallery_labels, not both")
        g_emb, g_lab_raw = _separate_gallery(emb, gallery_embeddings, gallery_labels)
        q_self = np.full(len(q_idx), -1, np.int64)
    else:
        g_idx = np.arange(n) if gallery is None else _index(gallery, n, "gallery")
        g_emb, g_lab_raw = emb[g_idx], lab[g_idx]
        where = np.full(n, -1, np.int64)
        where[g_idx] = np.arange(len(g_idx))
        q_self = where[q_idx]
    if len(g_emb) == 0:
        raise EvaluationInputError("the gallery is empty")
    q_emb, q_lab_raw = emb[q_idx], lab[q_idx]
    try:
        _, codes = np.unique(np.concatenate([q_lab_raw, g_lab_raw]), return_inverse=True)
    except TypeError:
        raise EvaluationInputError(
            "query and gallery labels must be of one kind (all numbers or all strings)"
        ) from None
    codes = codes.reshape(-1).astype(np.int64)
    return QueryGallery(q_emb, codes[: len(q_idx)], g_emb, codes[len(q_idx) :], q_self)
