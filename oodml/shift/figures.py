"""The figures of ``python -m oodml.shift``: the measures along the series, and the classes
carrying a split's shift.  Imports matplotlib (through :mod:`oodml.plot`); the measures do not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from oodml import plot

__all__ = ["attribution_figure", "shift_figure"]


def shift_figure(table: pd.DataFrame):
    """One panel per measure: every extractor's value on every split (split ids in FID order
    along x), each line scaled to its maximum so that orderings compare at a glance."""
    measures = list(dict.fromkeys(table["measure"]))
    exts = list(dict.fromkeys(table["extractor"]))
    ncols = min(3, len(measures))
    nrows = math.ceil(len(measures) / ncols)
    with plot.paper_style():
        fig, axes = plot._figure(1.6 * nrows + 0.5, nrows=nrows, ncols=ncols)
        for ax, m in zip(axes.ravel(), measures):
            for i, e in enumerate(exts):
                g = table[(table["measure"] == m) & (table["extractor"] == e)].sort_values("split")
                v = g["value"].to_numpy(np.float64)
                top = np.nanmax(np.abs(v)) if len(v) and np.any(np.isfinite(v)) else 1.0
                ax.plot(g["split"], v / (top or 1.0), marker="os^Dv"[i % 5], ms=3, lw=1, label=e)
            ax.set_title(m, fontsize=7)
            ax.set_xlabel("split (by FID)", fontsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes.ravel()[len(measures) :]:
            ax.set_visible(False)
        axes.ravel()[0].set_ylabel("value / max", fontsize=6)
        axes.ravel()[0].legend(fontsize=5, frameon=False)
    return fig


def attribution_figure(attr: pd.DataFrame, split: int, top: int = 10):
    """Horizontal bars of the ``top`` classes whose removal lowers the FID of ``split`` most."""
    g = attr[attr["split"] == split].sort_values("delta", kind="mergesort").head(top)
    with plot.paper_style():
        fig, axes = plot._figure(0.25 * max(len(g), 1) + 0.8)
        ax = axes[0, 0]
        labels = [f"{c} ({s})" for c, s in zip(g["class"], g["side"])]
        ax.barh(np.arange(len(g))[::-1], -g["delta"].to_numpy(np.float64), color="#4477AA")
        ax.set_yticks(np.arange(len(g))[::-1], labels, fontsize=5)
        ax.set_xlabel("FID drop when the class is left out", fontsize=6)
        ax.set_title(f"split {split}: classes carrying the shift", fontsize=7)
    return fig
