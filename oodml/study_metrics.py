"""Compatibility path: the study's extra metrics live in :mod:`oodml.metrics.study_metrics`."""

from oodml.metrics.study_metrics import (
    MAP_CUTOFF,
    average_precision_at_cutoff,
    intra_inter_ratio,
    pairwise_f1,
    rho_spectrum,
)

__all__ = ["MAP_CUTOFF", "average_precision_at_cutoff", "intra_inter_ratio", "pairwise_f1", "rho_spectrum"]
