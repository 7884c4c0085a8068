"""Compatibility path: the exact neighbour statistics live in :mod:`oodml.metrics.knn` and, for
leave-one-out from half the similarity matrix, :mod:`oodml.metrics.loo`."""

from oodml.metrics.knn import (
    BACKENDS,
    FAISS_INSTALL_HINT,
    NeighbourStats,
    default_chunk_size,
    faiss_num_gpus,
    neighbour_stats,
)
from oodml.metrics.loo import LOO_MAX_CLASS, _class_blocks, loo_neighbour_stats

__all__ = [
    "BACKENDS",
    "FAISS_INSTALL_HINT",
    "LOO_MAX_CLASS",
    "NeighbourStats",
    "_class_blocks",
    "default_chunk_size",
    "faiss_num_gpus",
    "loo_neighbour_stats",
    "neighbour_stats",
]
