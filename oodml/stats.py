"""Former home of the statistics over seeds and splits, kept so that ``from oodml import stats``
and ``from oodml.stats import ...`` keep working: the code is in :mod:`oodml.analysis.stats`
(numbers) and :func:`oodml.analysis.figures.cd_diagram` (the critical-difference figure)."""

from __future__ import annotations

from oodml.analysis.figures import cd_diagram
from oodml.analysis.stats import (  # noqa: F401  (_cliques: the tests use it)
    N_BOOT,
    _cliques,
    auc_intervals,
    bootstrap_ci,
    curve_intervals,
    friedman_nemenyi,
    nemenyi_cd,
    paired_bootstrap,
    pairwise_auc_tests,
)

__all__ = [
    "auc_intervals",
    "bootstrap_ci",
    "cd_diagram",
    "curve_intervals",
    "friedman_nemenyi",
    "nemenyi_cd",
    "paired_bootstrap",
    "pairwise_auc_tests",
]
