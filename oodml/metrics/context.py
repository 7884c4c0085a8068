"""What the metrics read: the queries and gallery, and the expensive pieces (neighbour
statistics, k-means clusters), each computed once, on first use, as deep as the requested
metrics need (their ``needs``, see :mod:`oodml.metrics.registry`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from oodml.metrics.cluster import ExactKMeans
from oodml.metrics.inputs import QueryGallery
from oodml.metrics.knn import FAISS_INSTALL_HINT, NeighbourStats, faiss_num_gpus, neighbour_stats
from oodml.metrics.loo import LOO_MAX_CLASS, loo_neighbour_stats
from oodml.metrics.options import EvaluationInputError, EvaluationOptions
from oodml.metrics.study_metrics import MAP_CUTOFF
from oodml.progress import progress_bar

__all__ = ["MetricContext"]


@dataclass
class MetricContext:
    """Queries and gallery (:class:`~oodml.metrics.inputs.QueryGallery`), the options, the
    resolved torch ``device`` and neighbour ``backend``, and ``needs``: the union of the
    requested metrics' needs."""

    data: QueryGallery
    options: EvaluationOptions
    device: Any
    backend: str
    needs: frozenset[str]
    progress: bool = False

    # -- the arrays every metric may read ------------------------------------------------------
    @property
    def query(self) -> np.ndarray:
        return self.data.query

    @property
    def query_labels(self) -> np.ndarray:
        return self.data.query_labels

    @property
    def query_self(self) -> np.ndarray:
        return self.data.query_self

    def _bar(self, desc: str, total: int, unit: str = "query"):
        return progress_bar(total=total, desc=desc, unit=unit, enabled=self.progress and total > 0)

    def _neighbour_stats(self, depth: int | None, max_k: int, desc: str, clip_to_r: bool = True) -> NeighbourStats:
        d = self.data
        with self._bar(desc, len(d.query)) as bar:
            return neighbour_stats(
                d.query,
                d.query_labels,
                d.gallery,
                d.gallery_labels,
                d.query_self,
                depth=depth,
                max_k=max_k,
                backend=self.backend,
                device=self.device,
                chunk_size=self.options.chunk_size,
                progress=bar.update,
                clip_to_r=clip_to_r,
            )

    # -- computed once, on first use -----------------------------------------------------------
    @cached_property
    def neighbours(self) -> NeighbourStats:
        """Rank of each query's first positive and, with ``"top_r"`` needed, the hits among its
        ``R`` nearest neighbours. Leave-one-out on the numpy backend computes half the
        similarity matrix (:func:`~oodml.metrics.loo.loo_neighbour_stats`)."""
        d = self.data
        deep = "top_r" in self.needs
        loo = len(d.gallery) == len(d.query) and np.array_equal(d.query_self, np.arange(len(d.query)))
        if self.backend == "numpy" and loo and int(np.bincount(d.query_labels).max()) <= LOO_MAX_CLASS:
            with self._bar("neighbours", len(d.query)) as bar:
                return loo_neighbour_stats(
                    d.query,
                    d.query_labels,
                    depth=None if deep else 0,
                    chunk_size=self.options.chunk_size,
                    progress=bar.update,
                )
        return self._neighbour_stats(None if deep else 1, max(self.options.ks), "neighbours")

    @cached_property
    def scored(self) -> np.ndarray:
        """Queries with at least one positive (the others are not scored)."""
        return self.neighbours.n_pos > 0

    @cached_property
    def top_cutoff(self) -> NeighbourStats:
        """Hits over the ``MAP_CUTOFF`` nearest neighbours, every place (not clipped to ``R``)."""
        return self._neighbour_stats(MAP_CUTOFF, 1, "mAP@1000", clip_to_r=False)

    @cached_property
    def clusters(self) -> np.ndarray:
        """k-means cluster ids of the queries, k = number of distinct query labels."""
        k = len(np.unique(self.query_labels))
        opts = self.options
        if opts.nmi_kmeans == "faiss":
            return _faiss_kmeans(self.query, k, opts.nmi_iters, opts.nmi_seed)
        km = ExactKMeans(self.query, k, seed=opts.nmi_seed)
        with self._bar("k-means", opts.nmi_iters + 1, unit="iteration") as bar:
            return km.fit(opts.nmi_iters, progress=bar.update).labels


def _faiss_kmeans(x: np.ndarray, k: int, n_iter: int, seed: int) -> np.ndarray:
    try:
        import faiss  # lazy on purpose: optional, and only this k-means needs it
    except ImportError:
        raise EvaluationInputError(f"nmi_kmeans='faiss' needs faiss: {FAISS_INSTALL_HINT}") from None
    km = faiss.Kmeans(x.shape[1], k, niter=max(int(n_iter), 1), seed=int(seed), gpu=faiss_num_gpus() > 0)
    km.train(np.ascontiguousarray(x, np.float32))
    _, assign = km.index.search(np.ascontiguousarray(x, np.float32), 1)
    return assign[:, 0].astype(np.int64)
