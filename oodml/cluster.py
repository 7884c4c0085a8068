"""Compatibility path: exact k-means and NMI live in :mod:`oodml.metrics.cluster`."""

from oodml.metrics.cluster import ExactKMeans, KMeansResult, kmeans, nmi, sgemm_nt

__all__ = ["ExactKMeans", "KMeansResult", "kmeans", "nmi", "sgemm_nt"]
