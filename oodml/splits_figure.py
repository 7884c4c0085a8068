"""Former home of the split-series figure, now :mod:`oodml.splits.figure`; this path keeps working."""

from oodml.splits.figure import PHASE_COLORS, plot_split_series, trajectory_positions

__all__ = ["PHASE_COLORS", "plot_split_series", "trajectory_positions"]
