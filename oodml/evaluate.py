"""Retrieval and clustering metrics of deep-metric-learning embeddings: exact and fast.

Library::

    from oodml.evaluate import evaluate_embeddings
    evaluate_embeddings(emb, labels)                      # leave-one-out, Recall@1/2/4/8, ...
    evaluate_embeddings(emb, labels, ks="sop")            # Recall@1/10/100/1000
    evaluate_embeddings(emb, labels, query=q, gallery=g)  # query/gallery split of one set
    evaluate_embeddings(q_emb, q_lab, gallery_embeddings=g_emb, gallery_labels=g_lab)

Command line::

    python -m oodml.evaluate EMB.npz [--json] [--ks 1 2 4 8 | --ks sop] [--device cpu] [--quiet]

``EMB.npz`` holds ``embeddings`` (n x d floats) and ``labels`` (n class ids or names).

Definitions
-----------
Embeddings are L2-normalised internally; the **similarity** of two items is the inner product
of the normalised vectors (cosine similarity), which ranks exactly like Euclidean distance
between them. A zero vector stays zero (similarity 0 to everything).

Each **query** ranks the **gallery** by decreasing similarity. In *leave-one-out* mode (the
default) every item is a query and the gallery is every *other* item: a query is removed from
its own ranking by index, never by distance (an exact duplicate of it still counts). Ties are
broken by the lower gallery index first. A query's **positives** are the gallery items with
its label (itself excluded); ``R`` is their number. Queries with ``R = 0`` cannot be scored and
are left out of the retrieval metrics (as pytorch-metric-learning does); if no query has a
positive those metrics are NaN.

``recall@k``
    Fraction of queries with at least one positive among their ``k`` nearest neighbours (the
    DML "Recall@k" of Oh Song et al. 2016, *not* the information-retrieval recall).
    Computed without top-k lists: the rank of a query's first positive is the number of gallery
    items ranked before its most similar positive, and Recall@k = mean(rank < k).
``precision@1``
    Fraction of queries whose nearest neighbour is a positive (equals ``recall@1``).
``r_precision``
    Mean over queries of (positives among the ``R`` nearest neighbours) / ``R``.
``map@r``
    MAP@R of Musgrave et al. (2020): mean over queries of
    ``(1/R) * sum_{i=1..R} P(i) * rel(i)``, where ``rel(i)`` says whether the ``i``-th
    neighbour is a positive and ``P(i)`` is the precision of the first ``i`` neighbours.
``nmi``
    k-means on the (normalised) query embeddings with k = number of distinct query labels
    (exact Lloyd from ``k`` random distinct points drawn with ``nmi_seed``, at most
    ``nmi_iters`` updates: see :mod:`oodml.cluster`), then the normalised mutual information
    between cluster ids and labels, arithmetic normalisation
    (``sklearn.metrics.normalized_mutual_info_score``). Labels are never used by the
    clustering.

The ooDML study's metrics (not computed unless asked for, e.g. ``metrics=STUDY_METRICS``;
exact definitions in :mod:`oodml.study_metrics`): ``map@1000`` (mean average precision over
the 1000 nearest neighbours, the study's denominator), ``f1`` (pairwise F1 of the same k-means
clusters NMI uses), ``rho_spectrum`` (ρ-spectrum decay of the query embeddings; ``rho_skip``
drops the first singular values) and ``intra_inter_ratio`` (mean intra-class over mean
inter-class-centre distance of the query embeddings).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oodml.cli import add_quiet, progress_disabled, run_cli
from oodml.cluster import ExactKMeans, nmi
from oodml.errors import BadInputError
from oodml.io import dumps_json
from oodml.knn import BACKENDS, FAISS_INSTALL_HINT, LOO_MAX_CLASS, faiss_num_gpus, loo_neighbour_stats, neighbour_stats
from oodml.study_metrics import MAP_CUTOFF, average_precision_at_cutoff, intra_inter_ratio, pairwise_f1, rho_spectrum

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "STUDY_METRICS",
    "KS_PRESETS",
    "EvaluationInputError",
    "evaluate_embeddings",
    "load_embeddings_npz",
    "main",
]

#: What :func:`evaluate_embeddings` computes unless told otherwise.
DEFAULT_METRICS = ("recall", "precision@1", "r_precision", "map@r", "nmi")
#: The ooDML study's metrics and embedding diagnostics (see :mod:`oodml.study_metrics`).
STUDY_METRICS = DEFAULT_METRICS + ("map@1000", "f1", "rho_spectrum", "intra_inter_ratio")
#: Every metric name :func:`evaluate_embeddings` knows.
ALL_METRICS = STUDY_METRICS
KS_PRESETS: dict[str, tuple[int, ...]] = {
    "default": (1, 2, 4, 8),
    "cub": (1, 2, 4, 8),
    "cars": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
}


class EvaluationInputError(BadInputError, ValueError):
    """Embeddings, labels or options that cannot be evaluated (also a ``ValueError``)."""


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _as_numpy(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _embeddings(x: Any, what: str) -> np.ndarray:
    arr = _as_numpy(x, what)
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


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    arr = _as_numpy(y, what)
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
    arr = _as_numpy(sel, what)
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


def _parse_ks(ks: Any) -> tuple[int, ...]:
    if ks is None:
        return KS_PRESETS["default"]
    if isinstance(ks, str):
        key = ks.lower()
        if key not in KS_PRESETS:
            raise EvaluationInputError(
                f"unknown ks preset {ks!r}; use one of {sorted(KS_PRESETS)} or a list of integers"
            )
        return KS_PRESETS[key]
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    try:
        out = tuple(int(k) for k in ks)
    except (TypeError, ValueError):
        raise EvaluationInputError(f"ks must be integers or a preset name, got {ks!r}") from None
    if not out or any(k < 1 for k in out):
        raise EvaluationInputError(f"ks must be positive integers, got {ks!r}")
    return tuple(sorted(set(out)))


def _resolve_device(device: Any):
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise EvaluationInputError(f"unknown device {device!r} (use e.g. 'cpu' or 'cuda')") from None


def _resolve_backend(backend: str, device) -> str:
    if backend == "auto":
        # CPU: the numpy backend counts ranks instead of listing top-1000 neighbours (faiss
        # must), and for leave-one-out computes half the similarity matrix (benchmarks/README.md)
        return "torch" if device.type != "cpu" else "numpy"
    if backend not in BACKENDS:
        raise EvaluationInputError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise EvaluationInputError(f"backend 'faiss' needs faiss: {FAISS_INSTALL_HINT}") from None
    return backend


class _Progress:
    """A tqdm bar that appears only when the work takes more than a moment."""

    def __init__(self, total: int, desc: str, enabled: bool, unit: str = "query"):
        self.bar = None
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, delay=1.0, leave=False, file=sys.stderr)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------
# the library function
# ----------------------------------------------------------------------------------------------
def evaluate_embeddings(
    embeddings: Any,
    labels: Any,
    *,
    ks: Sequence[int] | str | None = None,
    query: Any = None,
    gallery: Any = None,
    gallery_embeddings: Any = None,
    gallery_labels: Any = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    device: Any = None,
    chunk_size: int | None = None,
    nmi_seed: int = 0,
    nmi_iters: int = 20,
    nmi_kmeans: str = "exact",
    backend: str = "auto",
    progress: bool = False,
    rho_skip: int = 0,
) -> dict[str, float]:
    """Recall@k, precision@1, R-precision, MAP@R and NMI of embeddings (see the module docstring
    for the exact definitions, ranking and tie rules).

    Args:
        embeddings: ``(n, d)`` float array or tensor (any float dtype; evaluated in float32 after
            L2 normalisation).
        labels: ``(n,)`` class ids (ints) or names (strings).
        ks: the k of Recall@k: integers, or a preset: ``"default"``/``"cub"``/``"cars"`` =
            (1, 2, 4, 8), ``"sop"`` = (1, 10, 100, 1000), ``"inshop"`` = (1, 10, ..., 50).
            Default (1, 2, 4, 8).
        query, gallery: which of the ``n`` items are queries and which form the gallery: integer
            index arrays or boolean masks; ``None`` = all items. Default: leave-one-out (every
            item queries all the others). An item that is both a query and in the gallery is
            never its own neighbour.
        gallery_embeddings, gallery_labels: a separate gallery ``(m, d)``, ``(m,)``; then
            ``embeddings``/``labels`` (or their ``query`` subset) are the queries and nothing is
            excluded. Not combinable with ``gallery``.
        metrics: any of ``"recall"``, ``"precision@1"``, ``"r_precision"``, ``"map@r"``,
            ``"nmi"`` (the default five) and the study's ``"map@1000"``, ``"f1"``,
            ``"rho_spectrum"``, ``"intra_inter_ratio"`` (:data:`STUDY_METRICS` = all).
        device: torch device for the ``torch`` backend (default: CUDA when available, else CPU).
        chunk_size: queries per similarity block (memory ``~ 4 * chunk_size * n_gallery`` bytes);
            default keeps a block near 256 MB. In the half-matrix leave-one-out path: items per
            block of whole classes (memory ``~ 10 * chunk_size**2`` bytes), default 4096.
            Results do not depend on it.
        nmi_seed: seed of the k-means initialisation.
        nmi_iters: maximum k-means iterations (centroid updates), 20 as pytorch-metric-learning.
        nmi_kmeans: ``"exact"`` (accelerated exact Lloyd of :mod:`oodml.cluster`) or ``"faiss"``
            (``faiss.Kmeans`` with ``niter=nmi_iters``, ``seed=nmi_seed``: what
            pytorch-metric-learning runs; on GPUs when faiss has any).
        backend: ``"auto"`` (torch on CUDA, else numpy), ``"numpy"``, ``"torch"`` or ``"faiss"``
            for the neighbour search; all give the same metrics. In leave-one-out (the gallery
            is the query set, classes of at most ``oodml.knn.LOO_MAX_CLASS`` items) ``numpy``
            computes only half of the similarity matrix (:func:`oodml.knn.loo_neighbour_stats`).
        progress: show a progress bar (stderr) when the evaluation takes more than a second.
        rho_skip: singular values dropped from the front before ``rho_spectrum``.

    Returns:
        ``{"recall@1": ..., "recall@2": ..., "precision@1": ..., "r_precision": ...,
        "map@r": ..., "nmi": ..., "map@1000": ..., "f1": ..., "rho_spectrum": ...,
        "intra_inter_ratio": ...}`` (the requested metrics, in this order); all in [0, 1]
        except ``rho_spectrum`` and ``intra_inter_ratio`` (>= 0).
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise EvaluationInputError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
    ks_t = _parse_ks(ks)
    if nmi_kmeans not in ("exact", "faiss"):
        raise EvaluationInputError(f"nmi_kmeans must be 'exact' or 'faiss', got {nmi_kmeans!r}")
    if int(rho_skip) < 0:
        raise EvaluationInputError(f"rho_skip must be >= 0, got {rho_skip}")
    if int(nmi_iters) < 0:
        raise EvaluationInputError(f"nmi_iters must be >= 0, got {nmi_iters}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise EvaluationInputError(f"chunk_size must be a positive integer, got {chunk_size}")
    dev = _resolve_device(device)
    backend = _resolve_backend(backend, dev)

    emb = _embeddings(embeddings, "embeddings")
    lab = _labels(labels, len(emb), "labels")
    n = len(emb)
    q_idx = np.arange(n) if query is None else _index(query, n, "query")
    if len(q_idx) == 0:
        raise EvaluationInputError("there are no queries")

    if gallery_embeddings is not None or gallery_labels is not None:
        if gallery is not None:
            raise EvaluationInputError("give either gallery (indices) or gallery_embeddings/gallery_labels, not both")
        if gallery_embeddings is None or gallery_labels is None:
            raise EvaluationInputError("gallery_embeddings and gallery_labels go together")
        g_emb = _embeddings(gallery_embeddings, "gallery_embeddings")
        if g_emb.shape[1] != emb.shape[1]:
            raise EvaluationInputError(f"gallery_embeddings have dimension {g_emb.shape[1]}, embeddings {emb.shape[1]}")
        g_lab_raw = _labels(gallery_labels, len(g_emb), "gallery_labels")
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
    q_lab, g_lab = codes[: len(q_idx)], codes[len(q_idx) :]

    out: dict[str, float] = {}
    need_knn = any(m in metrics for m in ("recall", "precision@1", "r_precision", "map@r"))
    km = None
    want_clusters = "nmi" in metrics or "f1" in metrics
    if want_clusters and nmi_kmeans == "exact":
        km = ExactKMeans(q_emb, len(np.unique(q_lab)), seed=int(nmi_seed))
    # leave-one-out (the gallery is the query set): half the similarity matrix suffices
    loo = len(g_emb) == len(q_emb) and np.array_equal(q_self, np.arange(len(q_emb)))
    use_loo = need_knn and backend == "numpy" and loo and int(np.bincount(q_lab).max()) <= LOO_MAX_CLASS
    if need_knn:
        want_depth = "r_precision" in metrics or "map@r" in metrics
        bar = _Progress(len(q_idx), "neighbours", progress)
        try:
            if use_loo:
                st = loo_neighbour_stats(
                    q_emb, q_lab, depth=None if want_depth else 0, chunk_size=chunk_size, progress=bar
                )
            else:
                st = neighbour_stats(
                    q_emb,
                    q_lab,
                    g_emb,
                    g_lab,
                    q_self,
                    depth=None if want_depth else 1,
                    max_k=max(ks_t),
                    backend=backend,
                    device=dev,
                    chunk_size=chunk_size,
                    progress=bar,
                )
        finally:
            bar.close()
        scored = st.n_pos > 0
        nan = float("nan")
        if "recall" in metrics:
            for k in ks_t:
                out[f"recall@{k}"] = float((st.first_rank[scored] < k).mean()) if scored.any() else nan
        if "precision@1" in metrics:
            out["precision@1"] = float((st.first_rank[scored] == 0).mean()) if scored.any() else nan
        if want_depth:
            rp, mapr = _r_metrics(st.hits[scored], st.n_pos[scored])
            if "r_precision" in metrics:
                out["r_precision"] = rp
            if "map@r" in metrics:
                out["map@r"] = mapr
    if "map@1000" in metrics:
        bar = _Progress(len(q_idx), "mAP@1000", progress)
        try:
            st = neighbour_stats(
                q_emb,
                q_lab,
                g_emb,
                g_lab,
                q_self,
                depth=MAP_CUTOFF,
                max_k=1,
                backend=backend,
                device=dev,
                chunk_size=chunk_size,
                progress=bar,
                clip_to_r=False,
            )
        finally:
            bar.close()
        scored = st.n_pos > 0
        size = st.n_pos + (q_self >= 0)  # the study divides by the class size, query included
        out["map@1000"] = average_precision_at_cutoff(st.hits[scored], size[scored])
    if want_clusters:
        if km is None:
            clusters = _faiss_kmeans(q_emb, len(np.unique(q_lab)), nmi_iters, nmi_seed)
        else:
            bar = _Progress(int(nmi_iters) + 1, "k-means", progress, unit="iteration")
            try:
                clusters = km.fit(int(nmi_iters), progress=bar).labels
            finally:
                bar.close()
        if "nmi" in metrics:
            out["nmi"] = nmi(q_lab, clusters)
        if "f1" in metrics:
            out["f1"] = pairwise_f1(q_lab, clusters)
    if "rho_spectrum" in metrics:
        out["rho_spectrum"] = rho_spectrum(q_emb, skip=int(rho_skip))
    if "intra_inter_ratio" in metrics:
        out["intra_inter_ratio"] = intra_inter_ratio(q_emb, q_lab)
    return {key: out[key] for key in _ordered_keys(metrics, ks_t) if key in out}


def _ordered_keys(metrics: Sequence[str], ks: Sequence[int]) -> list[str]:
    keys: list[str] = []
    if "recall" in metrics:
        keys += [f"recall@{k}" for k in ks]
    keys += [m for m in ALL_METRICS[1:] if m in metrics]
    return keys


def _r_metrics(hits: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """R-precision and MAP@R from ``hits`` (nq, depth) and ``r`` (nq,) (all ``r >= 1``)."""
    if len(r) == 0:
        return float("nan"), float("nan")
    depth = hits.shape[1]
    within = np.arange(depth)[None, :] < r[:, None]
    h = hits & within
    rp = h.sum(1) / r
    prec = np.cumsum(h, axis=1) / np.arange(1, depth + 1)[None, :]
    ap = (prec * h).sum(1) / r
    return float(rp.mean()), float(ap.mean())


def _faiss_kmeans(x: np.ndarray, k: int, n_iter: int, seed: int) -> np.ndarray:
    try:
        import faiss
    except ImportError:
        raise EvaluationInputError(f"nmi_kmeans='faiss' needs faiss: {FAISS_INSTALL_HINT}") from None
    km = faiss.Kmeans(x.shape[1], k, niter=max(int(n_iter), 1), seed=int(seed), gpu=faiss_num_gpus() > 0)
    km.train(np.ascontiguousarray(x, np.float32))
    _, assign = km.index.search(np.ascontiguousarray(x, np.float32), 1)
    return assign[:, 0].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def load_embeddings_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``embeddings`` (n x d floats) and ``labels`` (n ids or names) from an ``.npz``.

    Raises :class:`~oodml.errors.BadInputError` (one line: which file, what is wrong, the fix)
    for a missing or unreadable file, missing arrays, wrong shapes or dtypes, and NaNs.
    """
    path = Path(path)
    fix = "save it with numpy.savez(PATH, embeddings=E, labels=y), E an (n, d) float array and y n labels"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist; check the path") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path} ({exc.strerror or exc}); check the path and permissions") from None
    if magic == b"\x93NUMPY":
        raise BadInputError(f"{path} is a single .npy array, not an .npz archive; {fix}")
    if not magic.startswith(b"PK"):
        raise BadInputError(f"{path} is not a readable .npz archive (is it truncated?); {fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            missing = [k for k in ("embeddings", "labels") if k not in names]
            if missing:
                raise BadInputError(
                    f"{path} has no {' or '.join(repr(k) for k in missing)} array (it has {names}); {fix}"
                )
            emb, lab = data["embeddings"], data["labels"]
    except BadInputError:
        raise
    except ValueError as exc:  # object arrays need pickle
        raise BadInputError(
            f"{path} cannot be read without pickle ({exc}); {fix} "
            "(labels as numbers or fixed-width strings, not Python objects)"
        ) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{path} is not a readable .npz archive ({exc}); {fix}") from None
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise BadInputError(f"{path}: 'embeddings' must be an (n, d) array, got shape {emb.shape}; {fix}")
    if not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
        raise BadInputError(f"{path}: 'embeddings' must be numbers, got dtype {emb.dtype}; {fix}")
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1 or len(lab) != len(emb):
        raise BadInputError(
            f"{path}: 'labels' must be {len(emb)} labels (one per embedding row), got shape {lab.shape}; {fix}"
        )
    bad = ~np.isfinite(emb).all(1)
    if bad.any():
        raise BadInputError(
            f"{path}: 'embeddings' has {int(bad.sum())} row(s) with NaN or infinite values "
            f"(first: row {int(np.flatnonzero(bad)[0])}); recompute or drop them"
        )
    if np.issubdtype(lab.dtype, np.floating) and not np.isfinite(lab).all():
        raise BadInputError(f"{path}: 'labels' contains NaN or infinite values; {fix}")
    return emb, lab


def _format_table(results: dict[str, float], info: str) -> str:
    width = max(len(k) for k in results) if results else 6
    lines = [info, f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, val in results.items():
        if val is None or (isinstance(val, float) and math.isnan(val)):
            text = "nan"
        elif key in ("rho_spectrum", "intra_inter_ratio"):  # not fractions
            text = f"{val:7.4f}"
        else:
            text = f"{100 * val:6.2f}%"
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.evaluate",
        description=(
            "Recall@k, precision@1, R-precision, MAP@R and NMI of embeddings (leave-one-out, "
            "cosine similarity). EMB.npz holds 'embeddings' (n x d) and 'labels' (n)."
        ),
    )
    p.add_argument("npz", metavar="EMB.npz", help="file with arrays 'embeddings' and 'labels'")
    p.add_argument("--json", action="store_true", help="print one JSON object {metric: value}")
    p.add_argument(
        "--ks",
        nargs="+",
        default=None,
        metavar="K",
        help="k of Recall@k: integers, or a preset (sop = 1 10 100 1000; cub, cars = 1 2 4 8; inshop)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=list(ALL_METRICS),
        metavar="M",
        help=f"metrics to compute (default: {' '.join(DEFAULT_METRICS)}; also {' '.join(ALL_METRICS[5:])})",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS, help="neighbour search backend")
    p.add_argument("--chunk-size", type=int, default=None, help="queries per similarity block")
    p.add_argument("--nmi-seed", type=int, default=0, help="k-means seed (default 0)")
    p.add_argument("--nmi-iters", type=int, default=20, help="k-means iterations (default 20)")
    p.add_argument("--rho-skip", type=int, default=0, help="singular values dropped before rho_spectrum (default 0)")
    add_quiet(p)
    return p


def _cli_ks(values: list[str] | None) -> Any:
    if values is None:
        return None
    if len(values) == 1 and not values[0].lstrip("-").isdigit():
        return values[0]
    try:
        return [int(v) for v in values]
    except ValueError:
        raise BadInputError(
            f"--ks takes integers or one preset name ({', '.join(KS_PRESETS)}), got {' '.join(values)}"
        ) from None


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    emb, lab = load_embeddings_npz(args.npz)
    start = time.perf_counter()
    try:
        results = evaluate_embeddings(
            emb,
            lab,
            ks=_cli_ks(args.ks),
            metrics=args.metrics,
            device=args.device,
            backend=args.backend,
            chunk_size=args.chunk_size,
            nmi_seed=args.nmi_seed,
            nmi_iters=args.nmi_iters,
            rho_skip=args.rho_skip,
            progress=not progress_disabled(args.quiet),
        )
    except EvaluationInputError as exc:
        raise BadInputError(f"{args.npz}: {exc}") from None
    if args.json:
        sys.stdout.write(dumps_json(results, indent=None))
    else:
        info = (
            f"{args.npz}: {len(emb)} embeddings x {emb.shape[1]} dims, {len(np.unique(lab))} classes, "
            f"leave-one-out, {time.perf_counter() - start:.1f}s"
        )
        print(_format_table(results, info))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
