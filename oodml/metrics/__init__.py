"""Retrieval and clustering metrics of deep-metric-learning embeddings: exact and fast.

Library::

    from oodml.metrics import evaluate_embeddings
    evaluate_embeddings(emb, labels)                      # leave-one-out, Recall@1/2/4/8, ...
    evaluate_embeddings(emb, labels, ks="sop")            # Recall@1/10/100/1000
    evaluate_embeddings(emb, labels, query=q, gallery=g)  # query/gallery split of one set
    evaluate_embeddings(q_emb, q_lab, gallery_embeddings=g_emb, gallery_labels=g_lab)

Command line: ``python -m oodml.evaluate EMB.npz`` (:mod:`oodml.evaluate`).

Layout
------
``registry``       the metrics, one registered function each (**a new metric goes here**)
``context``        what the metrics read, computed once on first use (neighbours, clusters)
``evaluate``       :func:`evaluate_embeddings`: options, inputs, context, registered metrics
``options``        :class:`EvaluationOptions` (a :class:`~oodml.config.Config`), ``ks`` presets
``inputs``         input checks, query/gallery split
``knn``, ``loo``   exact chunked neighbour statistics (numpy/torch/faiss; half-matrix leave-one-out)
``cluster``        exact accelerated k-means, NMI
``retrieval``, ``study_metrics``  the formulas on plain arrays
``npz``            reading an ``EMB.npz`` file

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
    ``nmi_iters`` updates: see :mod:`oodml.metrics.cluster`), then the normalised mutual information
    between cluster ids and labels, arithmetic normalisation
    (``sklearn.metrics.normalized_mutual_info_score``). Labels are never used by the
    clustering.

The ooDML study's metrics (not computed unless asked for, e.g. ``metrics=STUDY_METRICS``;
exact definitions in :mod:`oodml.metrics.study_metrics`): ``map@1000`` (mean average precision over
the 1000 nearest neighbours, the study's denominator), ``f1`` (pairwise F1 of the same k-means
clusters NMI uses), ``rho_spectrum`` (ρ-spectrum decay of the query embeddings; ``rho_skip``
drops the first singular values) and ``intra_inter_ratio`` (mean intra-class over mean
inter-class-centre distance of the query embeddings).
"""

from oodml.metrics.cluster import ExactKMeans, KMeansResult, kmeans, nmi
from oodml.metrics.context import MetricContext
from oodml.metrics.evaluate import evaluate_embeddings
from oodml.metrics.knn import BACKENDS, NeighbourStats, neighbour_stats
from oodml.metrics.loo import LOO_MAX_CLASS, loo_neighbour_stats
from oodml.metrics.npz import load_embeddings_npz
from oodml.metrics.options import KS_PRESETS, EvaluationInputError, EvaluationOptions
from oodml.metrics.registry import (
    ALL_METRICS,
    DEFAULT_METRICS,
    METRICS,
    STUDY_METRICS,
    Metric,
    register_metric,
)

__all__ = [
    "ALL_METRICS",
    "BACKENDS",
    "DEFAULT_METRICS",
    "KS_PRESETS",
    "LOO_MAX_CLASS",
    "METRICS",
    "STUDY_METRICS",
    "EvaluationInputError",
    "EvaluationOptions",
    "ExactKMeans",
    "KMeansResult",
    "Metric",
    "MetricContext",
    "NeighbourStats",
    "evaluate_embeddings",
    "kmeans",
    "load_embeddings_npz",
    "loo_neighbour_stats",
    "neighbour_stats",
    "nmi",
    "register_metric",
]
