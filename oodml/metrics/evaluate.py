"""The evaluation driver: check the options and inputs, build the shared
:class:`~oodml.metrics.context.MetricContext` once, and call the requested registered metrics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from oodml.device import resolve_device
from oodml.metrics.context import MetricContext
from oodml.metrics.inputs import query_gallery
from oodml.metrics.knn import BACKENDS, FAISS_INSTALL_HINT
from oodml.metrics.options import EvaluationInputError, EvaluationOptions
from oodml.metrics.registry import DEFAULT_METRICS, compute_metrics, needs_of

__all__ = ["evaluate_embeddings", "resolve_backend"]


def resolve_backend(backend: str, device) -> str:
    """``"auto"`` → torch on a GPU, numpy on the CPU; ``"faiss"`` checks that faiss imports."""
    if backend == "auto":
        # CPU: the numpy backend counts ranks instead of listing top-1000 neighbours (faiss
        # must), and for leave-one-out computes half the similarity matrix (benchmarks/README.md)
        return "torch" if device.type != "cpu" else "numpy"
    if backend not in BACKENDS:
        raise EvaluationInputError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend == "faiss":
        try:
            import faiss  # noqa: F401  (lazy on purpose: optional, and only this backend needs it)
        except ImportError:
            raise EvaluationInputError(f"backend 'faiss' needs faiss: {FAISS_INSTALL_HINT}") from None
    return backend


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
    """Recall@k, precision@1, R-precision, MAP@R and NMI of embeddings, and any other registered
    metric (definitions, ranking and tie rules: :mod:`oodml.metrics`).

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
        metrics: names registered in :data:`oodml.metrics.registry.METRICS`: ``"recall"``,
            ``"precision@1"``, ``"r_precision"``, ``"map@r"``, ``"nmi"`` (the default five) and
            the study's ``"map@1000"``, ``"f1"``, ``"rho_spectrum"``, ``"intra_inter_ratio"``
            (:data:`STUDY_METRICS` = all).
        device: torch device for the ``torch`` backend (default: CUDA when available, else CPU).
        chunk_size: queries per similarity block (memory ``~ 4 * chunk_size * n_gallery`` bytes);
            default keeps a block near 256 MB. In the half-matrix leave-one-out path: items per
            block of whole classes (memory ``~ 10 * chunk_size**2`` bytes), default 4096.
            Results do not depend on it.
        nmi_seed, nmi_iters: seed of the k-means initialisation; maximum k-means iterations
            (centroid updates), 20 as pytorch-metric-learning.
        nmi_kmeans: ``"exact"`` (accelerated exact Lloyd of :mod:`oodml.metrics.cluster`) or
            ``"faiss"`` (``faiss.Kmeans`` with ``niter=nmi_iters``, ``seed=nmi_seed``: what
            pytorch-metric-learning runs; on GPUs when faiss has any).
        backend: ``"auto"`` (torch on CUDA, else numpy), ``"numpy"``, ``"torch"`` or ``"faiss"``
            for the neighbour search; all give the same metrics. In leave-one-out (classes of at
            most ``LOO_MAX_CLASS`` items) ``numpy`` computes only half of the similarity matrix.
        progress: show a progress bar (stderr) when the evaluation takes more than a moment.
        rho_skip: singular values dropped from the front before ``rho_spectrum``.

    Returns:
        ``{"recall@1": ..., "recall@2": ..., "precision@1": ..., "r_precision": ...,
        "map@r": ..., "nmi": ..., "map@1000": ..., "f1": ..., "rho_spectrum": ...,
        "intra_inter_ratio": ...}`` (the requested metrics, in registration order); all in
        [0, 1] except ``rho_spectrum`` and ``intra_inter_ratio`` (>= 0).
    """
    opts = EvaluationOptions(
        metrics=tuple(metrics),
        ks=ks,
        chunk_size=chunk_size,
        nmi_seed=nmi_seed,
        nmi_iters=nmi_iters,
        nmi_kmeans=nmi_kmeans,
        backend=backend,
        rho_skip=rho_skip,
    )
    dev = resolve_device(device)
    neighbour_backend = resolve_backend(opts.backend, dev)
    data = query_gallery(embeddings, labels, query, gallery, gallery_embeddings, gallery_labels)
    ctx = MetricContext(data, opts, dev, neighbour_backend, needs_of(opts.metrics), progress)
    return compute_metrics(ctx, opts.metrics)
