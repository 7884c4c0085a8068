"""The figure style every oodml figure shares: one module the figures import, none it imports.

Seaborn ``whitegrid`` / ``paper``, single-column width (:data:`WIDTH` = 3.5 in), fonts 7–8 pt
(:data:`RC`), one fixed colour (seaborn ``colorblind``), marker, line style and hatch per loss
(:func:`loss_style`, registry order), legends below the axes naming the losses, and
:func:`save_figure` writing PNG (300 dpi) and PDF without timestamps (byte-identical files).

matplotlib and seaborn are imported inside the functions, on purpose: together they cost several
seconds at startup, and importing :mod:`oodml.analysis` for its tables must stay cheap.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oodml.analysis.labels import loss_index, loss_order
from oodml.errors import BadInputError
from oodml.io import PathLike, atomic_write

WIDTH = 3.5
"""Figure width in inches (one column of a two-column paper)."""

DPI = 300
RC: dict[str, Any] = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 8,
    "figure.labelsize": 8,
    "lines.linewidth": 1.1,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "patch.linewidth": 0.5,
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF
    "ps.fonttype": 42,
    "svg.hashsalt": "oodml",
    "savefig.dpi": DPI,
    "figure.dpi": 100,
}
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": "oodml", "Producer": None, "CreationDate": None}


# Fixed style per loss. The i-th loss of the registry gets colour i mod 10 of seaborn's
# "colorblind" palette, marker i of _MARKERS and line style i div 10 of _LINESTYLES, so the pair
# (colour, line style) and the marker are unique for the first 10 * len(_LINESTYLES) losses and
# every line stays distinguishable in greyscale. Names outside the registry get an index from a
# CRC32 of the name (stable across runs and independent of the other losses).
_MARKERS = (
    "o",
    "s",
    "^",
    "D",
    "v",
    "P",
    "X",
    "<",
    ">",
    "*",
    "h",
    "p",
    "d",
    "H",
    "8",
    "x",
    "+",
    "1",
    "2",
    "3",
)  # 14 for pml's objectives, then the study's 4 (+ 2 spare)
_LINESTYLES = ("-", "--", ":", "-.")
_DASHES = {"-": "", "--": (4.0, 1.5), ":": (1.0, 1.2), "-.": (4.0, 1.2, 1.0, 1.2)}
_HATCHES = {"-": "", "--": "////", ":": "....", "-.": "xxxx"}


@functools.cache
def loss_style(loss: str) -> dict[str, Any]:
    """``{"color": "#rrggbb", "marker": str, "linestyle": str, "dashes": seaborn dash spec,
    "hatch": bar hatch}`` (the hatch follows the line style, so bars too stay distinct in greyscale)."""
    import seaborn as sns
    from matplotlib.colors import to_hex

    palette = sns.color_palette("colorblind", 10)
    i = loss_index(loss)
    linestyle = _LINESTYLES[(i // len(palette)) % len(_LINESTYLES)]
    if loss.startswith("frozen:"):  # a frozen-extractor reference (oodml.frozen): dashed and grey
        grey = ("#1a1a1a", "#4d4d4d", "#737373")[zlib.crc32(loss.encode("utf-8")) % 3]
        return {"color": grey, "marker": "x", "linestyle": "--", "dashes": _DASHES["--"], "hatch": _HATCHES["--"]}
    return {
        "color": to_hex(palette[i % len(palette)]),
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": linestyle,
        "dashes": _DASHES[linestyle],
        "hatch": _HATCHES[linestyle],
    }


def loss_palette(losses: Iterable[str]) -> dict[str, str]:
    """``{loss: colour}`` for seaborn's ``palette=`` argument."""
    return {loss: loss_style(loss)["color"] for loss in losses}


# --------------------------------------------------------------------------------------------
# Style and saving
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Temporarily apply the project's figure style (rcParams restored on exit)."""
    import matplotlib as mpl
    import seaborn as sns

    with mpl.rc_context():
        sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc=RC)
        yield


def _figure(height: float, nrows: int = 1, ncols: int = 1, **subplot_kw: Any):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save_figure(fig, stem: PathLike) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` (300 dpi) and ``<stem>.pdf`` atomically, without
    timestamps (byte-identical for identical figures); return the two paths."""
    stem = Path(stem)
    paths = []
    with paper_style():
        for ext, metadata in (("png", PNG_METADATA), ("pdf", PDF_METADATA)):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=DPI, metadata=metadata)
            path = stem.with_name(f"{stem.name}.{ext}")
            atomic_write(path, buf.getvalue())
            paths.append(path)
    return paths


def _legend_handles(losses: Sequence[str]):
    from matplotlib.lines import Line2D

    return [
        Line2D(
            [],
            [],
            color=loss_style(loss)["color"],
            marker=loss_style(loss)["marker"],
            linestyle=loss_style(loss)["linestyle"],
            markersize=4,
            linewidth=1.1,
        )
        for loss in losses
    ]


def _loss_legend(fig, losses: Sequence[str], *, loc: str = "outside lower center", title: str | None = None) -> None:
    """The losses' legend below the axes (outside, so it never covers data); ``loc="outside upper
    center"`` with a ``title`` when a shared x label takes the bottom edge."""
    ncol = 4 if max(len(name) for name in losses) <= 9 else 3
    titled = {} if title is None else {"title": title, "title_fontsize": RC["axes.titlesize"]}
    fig.legend(
        _legend_handles(losses),
        list(losses),
        loc=loc,
        ncol=min(ncol, len(losses)),
        frameon=False,
        handlelength=2.6,
        columnspacing=1.0,
        handletextpad=0.5,
        **titled,
    )


def _legend_height(losses: Sequence[str]) -> float:
    ncol = 4 if max(len(name) for name in losses) <= 9 else 3
    return 0.16 * math.ceil(len(losses) / min(ncol, len(losses))) + 0.08


def _draw_lines(
    ax,
    table: pd.DataFrame,
    y: str = "mean",
    ci: str | None = "ci95",
    band_alpha: float = 0.15,
    band: tuple[str, str] | None = None,
) -> list[str]:
    """One line per loss (x = FID) with its CI band (``y ± ci``, or between the two columns of
    ``band``); returns the losses drawn, in order."""
    drawn = []
    for loss in loss_order(table["loss"].unique()):
        g = table[table["loss"] == loss].sort_values("fid", kind="mergesort")
        st = loss_style(loss)
        x = g["fid"].to_numpy(np.float64)
        m = g[y].to_numpy(np.float64)
        ax.plot(x, m, color=st["color"], marker=st["marker"], linestyle=st["linestyle"], label=loss, zorder=3)
        if band is not None:
            lo, hi = g[band[0]].to_numpy(np.float64), g[band[1]].to_numpy(np.float64)
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=st["color"], alpha=band_alpha, linewidth=0, zorder=2)
        elif ci is not None:
            c = g[ci].to_numpy(np.float64)
            if np.isfinite(c).any():
                ax.fill_between(x, m - c, m + c, color=st["color"], alpha=band_alpha, linewidth=0, zorder=2)
        drawn.append(loss)
    return drawn


def _fid_axis(ax, label: str | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(5))
    if label is not None:
        ax.set_xlabel(label)


def _require(table: pd.DataFrame, what: str) -> None:
    if table.empty:
        raise BadInputError(f"no rows for the {what} in the results table (wrong dataset, metric or stage?)")
