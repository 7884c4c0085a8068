"""Analysis of a study's results table: tables, statistics, figures, the score file.

The stages after ``python -m oodml.study collect``, one module per concern (figures import
tables, never the reverse)::

    results.py   load and validate a results table; resolve a study YAML to its table and splits
    labels.py    metric names and units, file-safe names, the fixed order of losses
    tables.py    the numbers: curves, relative view and slopes, AUC, ranks, few-shot, linear probe
    stats.py     bootstrap intervals, paired tests, Friedman + Nemenyi
    export.py    tables as CSV, Markdown and LaTeX
    style.py     the shared figure style: rcParams, colours and markers per loss, legends, saving
    figures.py   one function per figure (a matplotlib Figure each)
    tuning.py    figures and tables of hyperparameter searches
    report.py    make_all: the registry of sections that writes every figure and table + index.md
    score.py     the citable score JSON

The commands are ``python -m oodml.plot`` and ``python -m oodml.score``; ``oodml.plot``,
``oodml.stats``, ``oodml.score`` and ``oodml.tuning_plot`` keep re-exporting their names.
This package re-exports the table-side names (as the former module ``oodml.analysis`` did).

A results table (written by ``python -m oodml.study collect``) is long: one row per
(run, stage, metric) with the columns :data:`REQUIRED_COLUMNS`. Everything here takes that table
(a :class:`pandas.DataFrame` from :func:`load_results`) and returns tidy DataFrames; the figures
that draw them live in :mod:`oodml.plot`. Notebook use::

    from oodml.analysis import load_results, auc_table, ranking_stability, relative_slopes
    df = load_results("runs/my-study/results.csv")
    auc_table(df, "recall@1")                       # one row per (dataset, loss)
    ranks, tau = ranking_stability(df, "recall@1")
    from oodml.plot import generalization_curve, make_all
    generalization_curve(df, "glyphs", "recall@1")  # a matplotlib Figure

Conventions
-----------
* **Units.** Metrics that are fractions (``recall@k``, ``precision@k``, ``r_precision``,
  ``map@r``, ``nmi``, ``top1_*`` and their ``_gain`` / ``_zero_shot`` variants) are reported in
  **percent** (differences in percentage points) by every function below unless
  ``percent=False``; other metrics keep their units (:func:`is_percent_metric`).
* **What enters the FID analyses.** Zero-shot rows (``stage == "zero-shot"``) of the chosen metric
  whose ``fid`` is known. Rows of the standard split without an FID cannot be placed on the FID
  axis and are left out. Duplicate rows of one (loss, split, seed) are averaged.
* **Spread over seeds.** Means over seeds with a 95 % Student-t confidence interval of the mean
  (``ci95`` = half-width ``t(0.975, n-1) * sd / sqrt(n)``, ``sd`` with ``ddof=1``); with one seed
  ``ci95`` is the row's own ``ci95`` (the few-shot episodes' interval) when there is one, else NaN.
  The column ``ci_source`` says which (``"seeds"``, ``"episodes"`` or ``""``).
* **Higher is better** for every metric (ranks: 1 = best, ties share the average rank).
* **Loss order and style.** Losses are listed in the order of the objective registry
  (:func:`oodml.losses.list_objectives`), unknown names after them alphabetically
  (:func:`loss_order`); :func:`loss_style` gives each loss a fixed colour, marker and line style
  that never depends on which other losses are present.
"""

from __future__ import annotations

from oodml.analysis.export import latex_escape, to_csv, to_latex, to_markdown, write_table
from oodml.analysis.labels import (
    FID_LABEL,
    fid_label,
    is_percent_metric,
    loss_index,
    loss_order,
    metric_label,
    metric_name,
    registry_losses,
    sanitize,
    setting_label,
    setting_order,
)
from oodml.analysis.results import (
    FEW_SHOT_STAGE,
    PROBE_METRIC,
    REQUIRED_COLUMNS,
    datasets,
    load_results,
    metrics,
    resolve_input,
    study_results_path,
    validate_results,
)
from oodml.analysis.style import loss_palette, loss_style
from oodml.analysis.tables import (
    auc_per_seed,
    auc_table,
    control_table,
    curve_table,
    fewshot_table,
    normalized_auc,
    probe_table,
    ranking_stability,
    relative_slopes,
    relative_table,
    t_ci95,
    zero_shot,
)

__all__ = [
    "REQUIRED_COLUMNS",
    "load_results",
    "validate_results",
    "datasets",
    "metrics",
    "sanitize",
    "is_percent_metric",
    "metric_name",
    "metric_label",
    "fid_label",
    "registry_losses",
    "loss_order",
    "loss_index",
    "loss_style",
    "loss_palette",
    "t_ci95",
    "zero_shot",
    "curve_table",
    "control_table",
    "relative_table",
    "relative_slopes",
    "normalized_auc",
    "auc_per_seed",
    "auc_table",
    "ranking_stability",
    "fewshot_table",
    "probe_table",
    "setting_label",
    "to_markdown",
    "to_latex",
    "to_csv",
    "write_table",
    "FEW_SHOT_STAGE",
    "FID_LABEL",
    "PROBE_METRIC",
    "latex_escape",
    "resolve_input",
    "setting_order",
    "study_results_path",
]
