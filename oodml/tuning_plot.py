"""Former home of the hyperparameter-search figures and tables, kept so that
``from oodml import tuning_plot`` keeps working: the code is in :mod:`oodml.analysis.tuning`."""

from __future__ import annotations

from oodml.analysis.tuning import (  # noqa: F401  (_tuned_losses: re-exported with the rest)
    TUNING_STYLE,
    _tuned_losses,
    chosen_settings_table,
    default_vs_tuned_figure,
    has_tuning,
    main_rows,
    transfer_gap_figure,
    transfer_gap_table,
    tuning_curve_table,
)

__all__ = [
    "TUNING_STYLE",
    "chosen_settings_table",
    "default_vs_tuned_figure",
    "has_tuning",
    "main_rows",
    "transfer_gap_figure",
    "transfer_gap_table",
    "tuning_curve_table",
]
