"""Publication figures and tables of a study's results: how losses generalize under graded shift.

Command line::

    python -m oodml.plot RESULTS_OR_STUDY [--metric recall@1] [--out figures/] [--splits FILE ...] [--quiet]

``RESULTS_OR_STUDY`` is a results table (``.csv``/``.parquet``, see :mod:`oodml.analysis`) or a
study YAML (its table is ``<runs_dir>/results.csv``, ``runs_dir`` defaulting to
``runs/<name>``; its ``datasets: [{name, splits}]`` name the split files). ``--splits`` adds
split files (their dataset is read from the file's provenance).

Python (notebooks)::

    from oodml.plot import load_results, generalization_curve, relative_view, auc_figure, \
        ranking_figure, adaptation_figures, split_series_figure, make_all
    df = load_results("runs/my-study/results.csv")
    fig = generalization_curve(df, "glyphs", "recall@1")          # matplotlib Figure
    outputs = make_all(df, "figures", "recall@1", ["splits/glyphs.json"])   # {file name: path}

Every figure function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
global figure state; the CLI selects the Agg backend); the numbers it draws come from the
table functions of :mod:`oodml.analysis`, re-exported here.

Files (``<out>/<dataset>_<name>``, names passed through :func:`oodml.analysis.sanitize`, ``<m>``
= the metric, e.g. ``recall1``); figures as ``.png`` (300 dpi) and vector ``.pdf``, tables as
``.csv``, ``.md`` and ``.tex`` (booktabs):

=============================  ==============================================================
``curve_<m>``                  figure + table: metric vs FID per loss, mean and 95 % CI over seeds
``relative_<m>``               figure + table: difference from the mean of all losses per split,
                               with a least-squares line per loss
``slopes_<m>``                 table: slopes of those lines (and of the raw curves)
``auc_<m>``                    figure + table: normalized area under the metric-vs-FID curve,
                               mean, std, CI and per-seed values
``ranks_<m>``                  figure (bump chart + Kendall's τ) + table: rank of every loss per split
``kendall_<m>``                table: Kendall's τ between the easiest split's ranking and each other
``fewshot_gain_<m>``           figure + table: few-shot gain over zero-shot vs FID, one panel per k
``linear_probe``               figure + table: linear-probe top-1 accuracy vs FID
``split_series``               figure: the split search's FID trajectory and the selected splits
=============================  ==============================================================

plus ``<out>/index.md`` listing what was written and why anything was skipped.

**Checkpoint rule.** A results table with a ``selection`` column (:mod:`oodml.study`) says how
each run's checkpoint was chosen. Figures and tables of one table use one rule (a table mixing
rules is refused: filter it first). Numbers chosen on validation classes (``val``, oodml's
default, also a table without the column) are unmarked; ``last`` and ``test`` put the rule into
every figure title, LaTeX caption and ``index.md`` and add a ``selection`` column to every table
(``test``: *ORACLE* / ``test (oracle)``, the checkpoint was chosen on the test classes, as the
ooDML study did). Identical inputs
give byte-identical files (fixed styles, no timestamps in PNG/PDF metadata, atomic writes).

Style: seaborn ``whitegrid`` / ``paper``, single-column width (3.5 in), fonts 7–8 pt, one fixed
colour (seaborn ``colorblind``), marker and line style per loss (:func:`oodml.analysis.loss_style`,
registry order), legends below the axes naming the losses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oodml.analysis import (  # noqa: F401  (re-exported for notebooks)
    REQUIRED_COLUMNS,
    auc_per_seed,
    auc_table,
    control_table,
    curve_table,
    datasets,
    fewshot_table,
    fid_label,
    is_percent_metric,
    load_results,
    loss_order,
    loss_style,
    metric_label,
    metric_name,
    probe_table,
    ranking_stability,
    relative_slopes,
    relative_table,
    sanitize,
    setting_label,
    setting_order,
    validate_results,
    write_table,
)
from oodml.cli import add_quiet, progress_disabled, run_cli
from oodml.errors import BadInputError
from oodml.io import PathLike, atomic_write, load_yaml, read_json

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


def _loss_legend(fig, losses: Sequence[str]) -> None:
    """The losses' legend below the axes (outside, so it never covers data)."""
    ncol = 4 if max(len(name) for name in losses) <= 9 else 3
    fig.legend(
        _legend_handles(losses),
        list(losses),
        loc="outside lower center",
        ncol=min(ncol, len(losses)),
        frameon=False,
        handlelength=2.6,
        columnspacing=1.0,
        handletextpad=0.5,
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


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def generalization_curve(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, x_label: str | None = None, percent: bool | None = None
):
    """Metric vs the split's FID, one line per loss: mean over seeds and its 95 % percentile
    bootstrap band over seeds (no band with one seed; :func:`oodml.stats.curve_intervals`).
    Frozen-extractor references (``frozen:<name>``, :mod:`oodml.frozen`) are dashed grey lines;
    class-count controls (:mod:`oodml.controls`), when the table has them, are hollow markers of
    each loss's colour joined by a dotted line, at the mean FID of their draws (error bars: the
    spread over draws). Data: :func:`oodml.analysis.curve_table`, :func:`oodml.analysis.control_table`."""
    from oodml.analysis import control_table
    from oodml.stats import curve_intervals

    tab = curve_intervals(df, dataset, metric, percent=percent)
    _require(tab, f"generalization curve of {metric} on {dataset}")
    ctl = control_table(df, dataset, metric, percent)
    losses = loss_order(tab["loss"].unique())
    with paper_style():
        fig, axes = _figure(2.3 + _legend_height(losses) + (0.2 if not ctl.empty else 0.0))
        ax = axes[0, 0]
        _draw_lines(ax, tab, band=("boot_low", "boot_high"))
        for loss in loss_order(ctl["loss"].unique()) if not ctl.empty else []:
            g = ctl[ctl["loss"] == loss].sort_values("fid", kind="mergesort")
            st = loss_style(loss)
            ax.errorbar(
                g["fid"],
                g["mean"],
                yerr=g["std"].fillna(0.0),
                color=st["color"],
                marker=st["marker"],
                markerfacecolor="white",
                linestyle=":",
                linewidth=0.9,
                elinewidth=0.6,
                capsize=1.5,
                zorder=4,
            )
        _fid_axis(ax, x_label or fid_label())
        ax.set_ylabel(metric_label(metric, percent))
        ax.set_title(f"{dataset}: zero-shot {metric_name(metric)}")
        _loss_legend(fig, losses)
        if not ctl.empty:
            from matplotlib.lines import Line2D

            ax.legend(
                [Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle=":")],
                ["random-removal controls"],
                loc="best",
                frameon=False,
                fontsize="small",
            )
    return fig


def relative_view(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, x_label: str | None = None, percent: bool | None = None
):
    """Each loss's difference from the mean of all losses on every split (markers) with its
    least-squares line vs FID: a line going down means the loss degrades faster than the field.
    Data: :func:`oodml.analysis.relative_table`, slopes :func:`oodml.analysis.relative_slopes`."""
    tab = relative_table(df, dataset, metric, percent)
    _require(tab, f"relative view of {metric} on {dataset}")
    slopes = relative_slopes(df, metric, dataset, percent).set_index("loss")
    losses = loss_order(tab["loss"].unique())
    unit = "pp" if is_percent_metric(metric) and percent is not False else "abs."
    with paper_style():
        fig, axes = _figure(2.3 + _legend_height(losses))
        ax = axes[0, 0]
        ax.axhline(0.0, color="0.25", linewidth=0.7, zorder=1)
        xs = np.linspace(tab["fid"].min(), tab["fid"].max(), 2)
        for loss in losses:
            g = tab[tab["loss"] == loss]
            st = loss_style(loss)
            ax.plot(
                g["fid"],
                g["diff"],
                linestyle="none",
                marker=st["marker"],
                color=st["color"],
                alpha=0.8,
                label="_nolegend_",
                zorder=3,
            )
            s, b = slopes.loc[loss, "slope_rel"], slopes.loc[loss, "intercept_rel"]
            if np.isfinite(s):
                ax.plot(xs, b + s * xs, color=st["color"], linestyle=st["linestyle"], label=loss, zorder=2)
        _fid_axis(ax, x_label or fid_label())
        ax.set_ylabel(f"{metric_name(metric)} − mean of losses ({unit})")
        ax.set_title(f"{dataset}: {metric_name(metric)} relative to the field")
        _loss_legend(fig, losses)
    return fig


def auc_figure(df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, percent: bool | None = None):
    """Bar chart of the normalized AUC of the metric-vs-FID curve per loss (best on top), with
    the 95 % CI over seeds (error bars) and the per-seed values (dots).
    Data: :func:`oodml.analysis.auc_table`."""
    from matplotlib.lines import Line2D

    tab = auc_table(df, metric, dataset, percent)
    _require(tab, f"AUC of {metric} on {dataset} (needs at least 2 splits with an FID)")
    per = auc_per_seed(df, dataset, metric, percent)
    losses = list(tab["loss"])
    n = len(losses)
    with paper_style():
        fig, axes = _figure(0.75 + 0.2 * n + 0.25)
        ax = axes[0, 0]
        y = np.arange(n)
        colors = [loss_style(loss)["color"] for loss in losses]
        bars = ax.barh(y, tab["auc"], height=0.7, color=colors, edgecolor="0.2", linewidth=0.4, zorder=2)
        for bar, loss in zip(bars, losses):
            bar.set_hatch(loss_style(loss)["hatch"])
        ci = tab["ci95"].to_numpy(np.float64)
        if np.isfinite(ci).any():
            ax.errorbar(
                tab["auc"],
                y,
                xerr=np.where(np.isfinite(ci), ci, 0.0),
                fmt="none",
                ecolor="0.1",
                elinewidth=0.8,
                capsize=2,
                zorder=4,
            )
        for i, loss in enumerate(losses):
            v = per.loc[(per["loss"] == loss) & np.isfinite(per["auc"]), "auc"].to_numpy(np.float64)
            if len(v) > 1:
                offs = np.linspace(-0.22, 0.22, len(v))
                ax.plot(
                    v,
                    i + offs,
                    linestyle="none",
                    marker="o",
                    markersize=2.2,
                    color="0.1",
                    markerfacecolor="white",
                    markeredgewidth=0.5,
                    zorder=5,
                )
        ax.set_yticks(y, losses)
        ax.set_ylim(n - 0.5, -0.5)
        ax.grid(False, axis="y")
        ax.set_xlim(left=0)
        ax.set_xlabel(f"Normalized AUC of {metric_label(metric, percent)} vs FID")
        ax.set_title(f"{dataset}: area under the {metric_name(metric)}–FID curve")
        if per.groupby("loss")["seed"].nunique().max() > 1:
            handles = [
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="o",
                    markersize=2.5,
                    color="0.1",
                    markerfacecolor="white",
                    markeredgewidth=0.5,
                ),
                Line2D([], [], color="0.1", linewidth=0.8, marker="|", markersize=5),
            ]
            fig.legend(handles, ["one seed", "95 % CI over seeds"], loc="outside lower center", ncol=2, frameon=False)
    return fig


def ranking_figure(df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, percent: bool | None = None):
    """Bump chart of every loss's rank per split (splits ordered by FID, 1 = best) above Kendall's
    τ between the easiest split's ranking and each split's.
    Data: :func:`oodml.analysis.ranking_stability`."""
    ranks, tau = ranking_stability(df, metric, dataset, percent)
    _require(ranks, f"ranking of {metric} on {dataset}")
    keys = ranks[["split", "fid"]].drop_duplicates().reset_index(drop=True)
    pos = {(_key(s), f): i for i, (s, f) in enumerate(zip(keys["split"], keys["fid"]))}
    losses = loss_order(ranks["loss"].unique())
    n = len(losses)
    with paper_style():
        fig, axes = _figure(
            1.2 + 0.13 * n + 0.9 + _legend_height(losses),
            nrows=2,
            ncols=1,
            sharex=True,
            gridspec_kw={"height_ratios": [max(2.0, 0.13 * n + 0.9), 0.9]},
        )
        ax, axt = axes[0, 0], axes[1, 0]
        for loss in losses:
            g = ranks[ranks["loss"] == loss]
            xs = [pos[(_key(s), f)] for s, f in zip(g["split"], g["fid"])]
            st = loss_style(loss)
            ax.plot(xs, g["rank"], color=st["color"], marker=st["marker"], linestyle=st["linestyle"], label=loss)
        ax.set_ylim(n + 0.5, 0.5)
        ax.set_yticks(np.arange(1, n + 1))
        ax.set_ylabel("Rank (1 = best)")
        ax.set_title(f"{dataset}: ranking by {metric_name(metric)}")
        ax.grid(False, axis="x")
        tx = [0] + [pos[(_key(s), f)] for s, f in zip(tau["split"], tau["fid"])]
        ty = [1.0] + list(tau["tau"])
        axt.axhline(0.0, color="0.25", linewidth=0.6)
        axt.plot(tx, ty, color="0.15", marker="o", linestyle="-")
        axt.set_ylim(-1.1, 1.1)
        axt.set_yticks([-1, 0, 1])
        axt.set_ylabel("Kendall's τ\nvs easiest")
        labels = [f"{f:.3g}" for f in keys["fid"]]
        axt.set_xticks(
            np.arange(len(keys)), labels, rotation=45 if len(keys) > 5 else 0, ha="right" if len(keys) > 5 else "center"
        )
        axt.set_xlabel("FID of the split (splits in order of FID)")
        axt.set_xlim(-0.3, len(keys) - 0.7)
        _loss_legend(fig, losses)
    return fig


def _key(split: Any) -> Any:
    return None if pd.isna(split) else int(split)


def fewshot_figure(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, x_label: str | None = None, percent: bool | None = None
):
    """Few-shot gain over zero-shot vs FID, one panel per k (bands: 95 % CI over seeds, or over
    episodes with a single seed). Data: :func:`oodml.analysis.fewshot_table`."""
    tab = fewshot_table(df, dataset, metric, percent)
    _require(tab, f"few-shot gain of {metric} on {dataset}")
    ks = sorted(tab["k"].unique())
    losses = loss_order(tab["loss"].unique())
    with paper_style():
        fig, axes = _figure(0.5 + 1.45 * len(ks) + _legend_height(losses), nrows=len(ks), ncols=1, sharex=True)
        for ax, k in zip(axes[:, 0], ks):
            ax.axhline(0.0, color="0.25", linewidth=0.7, zorder=1)
            _draw_lines(ax, tab[tab["k"] == k])
            ax.set_title(f"{dataset}: {k}-shot adaptation", pad=3)
            ax.set_ylabel(metric_label(f"{metric}_gain", percent))
        _fid_axis(axes[-1, 0], x_label or fid_label())
        _loss_legend(fig, losses)
    return fig


def probe_figure(df: pd.DataFrame, dataset: str, *, x_label: str | None = None, percent: bool | None = None):
    """Linear-probe top-1 accuracy vs FID: rows = training-set sizes (k-shot, half), columns =
    features (embedding, backbone). Data: :func:`oodml.analysis.probe_table`."""
    tab = probe_table(df, dataset, percent)
    _require(tab, f"linear probe on {dataset}")
    settings = sorted(tab["setting"].unique(), key=setting_order)
    feats = [f for f in ("embedding", "backbone") if f in set(tab["features"])]
    losses = loss_order(tab["loss"].unique())
    with paper_style():
        fig, axes = _figure(
            0.75 + 1.25 * len(settings) + _legend_height(losses),
            nrows=len(settings),
            ncols=len(feats),
            sharex=True,
            sharey="row",
        )
        for i, setting in enumerate(settings):
            for j, feat in enumerate(feats):
                ax = axes[i, j]
                sub = tab[(tab["setting"] == setting) & (tab["features"] == feat)]
                if not sub.empty:
                    _draw_lines(ax, sub)
                name = "Embedding" if feat == "embedding" else "Backbone"
                ax.set_title(f"{name}, {setting_label(setting, short=True)}", pad=3)
                _fid_axis(ax, None)
        fig.supxlabel(x_label or fid_label())
        fig.supylabel(f"Top-1 accuracy{' (%)' if percent is not False else ''}")
        # supxlabel takes the bottom edge: the legend goes on top here, titled like the other figures
        ncol = 4 if max(len(name) for name in losses) <= 9 else 3
        fig.legend(
            _legend_handles(losses),
            list(losses),
            loc="outside upper center",
            ncol=min(ncol, len(losses)),
            frameon=False,
            handlelength=2.6,
            columnspacing=1.0,
            handletextpad=0.5,
            title=f"{dataset}: linear probe",
            title_fontsize=RC["axes.titlesize"],
        )
    return fig


def adaptation_figures(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, x_label: str | None = None, percent: bool | None = None
) -> dict[str, Any]:
    """The adaptation figures present in the table: ``{"fewshot_gain_<m>": Figure,
    "linear_probe": Figure}`` (a key is missing when the table has no such rows)."""
    out: dict[str, Any] = {}
    if not fewshot_table(df, dataset, metric, percent).empty:
        out[f"fewshot_gain_{sanitize(metric)}"] = fewshot_figure(df, dataset, metric, x_label=x_label, percent=percent)
    if not probe_table(df, dataset, percent).empty:
        out["linear_probe"] = probe_figure(df, dataset, x_label=x_label, percent=percent)
    return out


def _split_series_fn() -> Callable | None:
    try:
        from oodml.splits_figure import plot_split_series
    except ModuleNotFoundError as exc:
        if exc.name in ("oodml.splits_figure", "oodml.splits"):
            return None
        raise
    return plot_split_series


def split_series_figure(split_file: PathLike):
    """The split series of a split file (FID trajectory of the search, its phases and the selected
    splits), drawn by :func:`oodml.splits_figure.plot_split_series` in the paper style."""
    fn = _split_series_fn()
    if fn is None:
        raise BadInputError("the split-series figure needs oodml.splits_figure, which is not installed")
    with paper_style():
        return fn(split_file)


# --------------------------------------------------------------------------------------------
# Inputs: results table or study YAML
# --------------------------------------------------------------------------------------------
def _study_base(study_path: Path) -> Path:
    """The folder a study's relative paths are resolved against (the rule of :mod:`oodml.study`)."""
    try:
        from oodml.paths import find_base_dir
    except ImportError:  # pragma: no cover - oodml.study is part of the package
        return study_path.resolve().parent
    return find_base_dir(study_path)


def _study_path(base: Path, value: Any) -> list[Path]:
    """Where a relative path of a study may be: the study's base folder, then the current one."""
    p = Path(str(value)).expanduser()
    if p.is_absolute():
        return [p]
    return list(dict.fromkeys([base / p, Path.cwd() / p]))


def resolve_input(results: PathLike | pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Path], list[str], str]:
    """Load ``results`` (DataFrame, results table or study YAML).

    Returns ``(table, split_files, notes, source_name)`` where ``split_files`` maps dataset names
    to the split files a study names. Relative paths in a study (``runs_dir``, ``splits``) are
    resolved like :mod:`oodml.study` does (against the repository holding the study file), then
    against the current folder."""
    if isinstance(results, pd.DataFrame):
        return validate_results(results), {}, [], "<DataFrame>"
    path = Path(results)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return load_results(path), {}, [], path.name
    study = load_yaml(path, "study file")
    if not isinstance(study, dict) or not study.get("name"):
        raise BadInputError(f"study file {path} has no `name:`; a study YAML needs name, datasets and losses")
    name = str(study["name"])
    base = _study_base(path)
    cands = _study_path(base, study.get("runs_dir") or f"runs/{name}")
    found = None
    for c in cands:
        for fname in ("results.csv", "results.parquet"):
            if found is None and (c / fname).is_file():
                found = c / fname
    if found is None:
        raise BadInputError(
            f"study {path}: no results table at {cands[0] / 'results.csv'}; run the study and "
            f"`python -m oodml.study collect {path}` first"
        )
    df = load_results(found)
    splits: dict[str, Path] = {}
    notes: list[str] = []
    entries = study.get("datasets") or []
    if not isinstance(entries, list):
        raise BadInputError(f"study file {path}: `datasets:` must be a list of names or {{name, splits}} entries")
    for entry in entries:
        if isinstance(entry, str) or entry is None:
            continue
        if not isinstance(entry, dict) or not entry.get("name"):
            raise BadInputError(f"study file {path}: every `datasets:` entry needs a `name:` (got {entry!r})")
        if not entry.get("splits"):
            continue
        hit = next((c for c in _study_path(base, entry["splits"]) if c.is_file()), None)
        if hit is None:
            notes.append(
                f"{entry['name']}: split file {entry['splits']} named by {path.name} not found; "
                "split-series figure skipped"
            )
        else:
            splits[_split_file_info(hit, default=str(entry["name"]))[0]] = hit
    return df, splits, notes, path.name


def _split_file_info(path: Path, default: str | None = None) -> tuple[str, str | None]:
    """(dataset name, extractor) from a split file's provenance (``default`` or the file stem
    when the provenance does not say)."""
    data = read_json(path, "split file")
    prov = data.get("provenance", {}) if isinstance(data, dict) else {}
    prov = prov if isinstance(prov, dict) else {}
    name = str(prov.get("dataset") or default or path.stem)
    return name, (str(prov["extractor"]) if prov.get("extractor") not in (None, "", "none") else None)


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------
class Outputs(dict):
    """``{file name: path}`` of everything :func:`make_all` wrote, with ``.notes`` (skips)."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []


def _file_table(tab: pd.DataFrame) -> pd.DataFrame:
    """Per-dataset table for files: no dataset column, standard split spelled out."""
    tab = tab.drop(columns=[c for c in ("dataset",) if c in tab.columns]).copy()
    for col in ("split", "reference_split"):
        if col in tab.columns:
            tab[col] = ["standard" if pd.isna(v) else str(int(v)) for v in tab[col]]
    return tab


def _wide_ranks(ranks: pd.DataFrame) -> pd.DataFrame:
    keys = ranks[["split", "fid"]].drop_duplicates()
    cols = {}
    for s, f in zip(keys["split"], keys["fid"]):
        name = f"split {'standard' if pd.isna(s) else int(s)} (FID {f:.3g})"
        sel = ranks[
            (ranks["fid"] == f) & (ranks["split"].isna() if pd.isna(s) else (ranks["split"] == s).fillna(False))
        ]
        cols[name] = sel.set_index("loss")["rank"]
    wide = pd.DataFrame(cols)
    wide = wide.loc[loss_order(wide.index)]
    wide.index.name = "loss"
    return wide.reset_index()


def make_all(
    results: PathLike | pd.DataFrame,
    out_dir: PathLike = "figures",
    metric: str = "recall@1",
    split_files: Iterable[PathLike] | Mapping[str, PathLike] | None = None,
    *,
    progress: bool = False,
) -> Outputs:
    """Write every figure and table for every dataset of ``results`` into ``out_dir``.

    ``results``: a DataFrame, a results table path or a study YAML. ``split_files``: split files
    (dataset from their provenance) or ``{dataset: path}``; those named by a study are added.
    Returns :class:`Outputs` (``{file name: path}``, ``.notes`` says what was skipped and why).
    Raises :class:`~oodml.errors.BadInputError` when ``metric`` has no zero-shot rows at all.
    """
    from tqdm.auto import tqdm

    df, study_splits, notes, source = resolve_input(results)
    out_dir = Path(out_dir)
    out = Outputs()
    out.notes.extend(notes)
    from oodml import tuning_plot

    tuned_df = df if tuning_plot.has_tuning(df) else None
    if tuned_df is not None:  # hyperparameter search: the ordinary figures show one tuning per loss
        df = tuning_plot.main_rows(df)
    splits: dict[str, Path] = dict(study_splits)
    if isinstance(split_files, Mapping):
        splits.update({str(k): Path(v) for k, v in split_files.items()})
    elif split_files is not None:
        for p in split_files:
            p = Path(p)
            if not p.is_file():
                raise BadInputError(f"split file {p} does not exist; check the path")
            splits[_split_file_info(p)[0]] = p
    extractors = {ds: _split_file_info(p)[1] for ds, p in splits.items()}

    rule = _selection_rule(df, source)
    mark = SELECTION_MARKS.get(rule, f"checkpoint rule: {rule}")
    zs = df[df["stage"] == "zero-shot"]
    if metric not in set(zs["metric"]):
        available = ", ".join(dict.fromkeys(zs["metric"])) or "none"
        raise BadInputError(
            f"results table {source} has no zero-shot rows of metric {metric!r} "
            f"(available: {available}); pick one with --metric"
        )
    m = sanitize(metric)
    written: dict[str, list[str]] = {}

    def fig_out(ds: str, name: str, fig, what: str) -> None:
        stem = out_dir / f"{sanitize(ds)}_{name}"
        if mark:
            for ax in fig.axes:
                if ax.get_title():
                    ax.set_title(f"{ax.get_title()}\n[{mark}]")
        for p in save_figure(fig, stem):
            out[p.name] = p
        written.setdefault(ds, []).append(f"`{stem.name}.png`, `.pdf`: {what}")

    def tab_out(ds: str, name: str, tab: pd.DataFrame, what: str) -> None:
        stem = out_dir / f"{sanitize(ds)}_{name}"
        if mark:  # the numbers' checkpoint rule travels with the table (CSV, Markdown, LaTeX)
            tab = tab.assign(selection=f"{rule} (oracle)" if rule == "test" else rule)
        for p in write_table(tab, stem, caption=f"{ds}: {what}" + (f" [{mark}]" if mark else "")):
            out[p.name] = p
        written.setdefault(ds, []).append(f"`{stem.name}.csv`, `.md`, `.tex`: {what}")

    all_ds = datasets(df) + [d for d in splits if d not in set(df["dataset"])]
    split_fn = _split_series_fn()
    mname = metric_name(metric)
    for ds in tqdm(all_ds, desc="figures", unit="dataset", disable=not progress):
        xl = fid_label(extractors.get(ds))
        if ds in set(df["dataset"]):
            no_fid = int(
                (
                    (df["dataset"] == ds)
                    & (df["stage"] == "zero-shot")
                    & (df["metric"] == metric)
                    & ~np.isfinite(df["fid"])
                ).sum()
            )
            if no_fid:
                out.notes.append(
                    f"{ds}: {no_fid} zero-shot {metric} row(s) without an FID (standard split without "
                    "a split file?) left out of the FID figures"
                )
            cur = curve_table(df, ds, metric)
            if cur.empty:
                out.notes.append(f"{ds}: no zero-shot {metric} rows with an FID; generalization figures skipped")
            else:
                fig_out(
                    ds,
                    f"curve_{m}",
                    generalization_curve(df, ds, metric, x_label=xl),
                    f"{mname} vs FID, mean and 95 % CI over seeds",
                )
                tab_out(ds, f"curve_{m}", _file_table(cur), f"{mname} per loss and split (mean over seeds)")
                ctl = control_table(df, ds, metric)
                if not ctl.empty:
                    tab_out(
                        ds,
                        f"controls_{m}",
                        _file_table(ctl.rename(columns={"control_of": "split"})),
                        f"{mname} on the random-removal controls of each split (mean over draws and seeds)",
                    )
                n_fid = cur["fid"].nunique()
                if n_fid < 2:
                    out.notes.append(f"{ds}: only one FID value; relative view, slopes and AUC skipped")
                else:
                    fig_out(
                        ds,
                        f"relative_{m}",
                        relative_view(df, ds, metric, x_label=xl),
                        f"{mname} minus the mean of all losses, with linear fits",
                    )
                    tab_out(
                        ds,
                        f"relative_{m}",
                        _file_table(relative_table(df, ds, metric)),
                        f"{mname} minus the mean of all losses per split",
                    )
                    tab_out(
                        ds,
                        f"slopes_{m}",
                        _file_table(relative_slopes(df, metric, ds)),
                        f"slopes vs FID of {mname} relative to the field (slope_rel) and absolute (slope_abs)",
                    )
                    fig_out(ds, f"auc_{m}", auc_figure(df, ds, metric), f"normalized AUC of {mname} vs FID")
                    from oodml import stats as _stats

                    tab_out(
                        ds,
                        f"auc_{m}",
                        _file_table(_stats.auc_intervals(df, metric, ds)),
                        f"normalized AUC of {mname} vs FID (mean, std, 95 % t and bootstrap intervals over "
                        "seeds, per-seed values)",
                    )
                    tab_out(
                        ds,
                        f"auc_tests_{m}",
                        _file_table(_stats.pairwise_auc_tests(df, metric, ds)),
                        "paired bootstrap tests of the AUC difference between every two losses",
                    )
                    if cur["loss"].nunique() < 2:
                        out.notes.append(f"{ds}: a single loss; no Friedman test or critical-difference diagram")
                    else:
                        fr = _stats.friedman_nemenyi(df, metric, ds)
                        fig_out(
                            ds,
                            f"cd_{m}",
                            _stats.cd_diagram(fr, ds),
                            "critical-difference diagram (Friedman test, Nemenyi CD) of the losses' ranks",
                        )
                        tab_out(
                            ds,
                            f"friedman_{m}",
                            fr["ranks"].assign(
                                cd=fr["cd"],
                                friedman_chi2=fr["statistic"],
                                p_value=fr["p_value"],
                                n_splits=fr["n_blocks"],
                            ),
                            f"average rank by {mname} over splits, Friedman test and Nemenyi CD",
                        )
                ranks, tau = ranking_stability(df, metric, ds)
                fig_out(
                    ds,
                    f"ranks_{m}",
                    ranking_figure(df, ds, metric),
                    "rank of each loss per split and Kendall's tau vs the easiest split",
                )
                tab_out(ds, f"ranks_{m}", _wide_ranks(ranks), f"rank by {mname} per split (1 = best)")
                if tau.empty:
                    out.notes.append(f"{ds}: a single split; no Kendall's tau table")
                else:
                    tab_out(
                        ds,
                        f"kendall_{m}",
                        _file_table(tau),
                        "Kendall's tau between the ranking on the easiest split and each harder split",
                    )
            few = fewshot_table(df, ds, metric)
            if few.empty:
                out.notes.append(f"{ds}: no few-shot rows (stage few-shot-<k>) for {metric}; few-shot figure skipped")
            else:
                fig_out(
                    ds,
                    f"fewshot_gain_{m}",
                    fewshot_figure(df, ds, metric, x_label=xl),
                    f"few-shot gain in {mname} over zero-shot vs FID",
                )
                tab_out(ds, f"fewshot_gain_{m}", _file_table(few), f"few-shot gain in {mname} over zero-shot")
            probe = probe_table(df, ds)
            if probe.empty:
                out.notes.append(f"{ds}: no linear-probe rows; linear-probe figure skipped")
            else:
                fig_out(ds, "linear_probe", probe_figure(df, ds, x_label=xl), "linear-probe top-1 accuracy vs FID")
                tab_out(ds, "linear_probe", _file_table(probe), "linear-probe top-1 accuracy")
        if tuned_df is not None and ds in set(tuned_df["dataset"]):
            _tuning_outputs(tuned_df, ds, metric, xl, fig_out, tab_out, out.notes)
        if ds not in splits:
            out.notes.append(f"{ds}: no split file given (--splits); split-series figure skipped")
        elif split_fn is None:
            out.notes.append(f"{ds}: oodml.splits_figure is not available; split-series figure skipped")
        else:
            fig_out(
                ds,
                "split_series",
                split_series_figure(splits[ds]),
                f"FID trajectory of the split search and the selected splits ({splits[ds].name})",
            )

    lines = ["# oodml figures and tables", "", f"Results: `{source}`; metric: `{metric}`.", ""]
    if mark:
        lines[-1:-1] = [f"Checkpoint selection: `{rule}` ({mark}).", ""]
    for ds in all_ds:
        lines += [f"## {ds}", ""] + [f"- {w}" for w in written.get(ds, [])] + [""]
    if out.notes:
        lines += ["## Skipped", ""] + [f"- {n}" for n in out.notes] + [""]
    index = out_dir / "index.md"
    atomic_write(index, "\n".join(lines))
    out[index.name] = index
    return out


#: How figures and tables mark a checkpoint rule (``val``, the default, is unmarked).
SELECTION_MARKS = {"val": "", "last": "checkpoint: last epoch", "test": "ORACLE: checkpoint chosen on the test classes"}


def _selection_rule(df: pd.DataFrame, source: str) -> str:
    """The one checkpoint rule of a results table (``val`` without a ``selection`` column)."""
    if "selection" not in df.columns:
        return "val"
    rules = sorted({str(v) if str(v) else "val" for v in df["selection"]})
    if len(rules) > 1:
        raise BadInputError(
            f"results table {source} mixes checkpoint rules ({', '.join(rules)} in column selection); their "
            "numbers are not comparable: plot each rule on its own (filter the selection column)"
        )
    return rules[0] if rules else "val"


def _tuning_outputs(df: pd.DataFrame, ds: str, metric: str, xl: str, fig_out, tab_out, notes: list[str]) -> None:
    """Default-vs-tuned curves, the transfer gap and the chosen settings (see oodml.tuning_plot)."""
    from oodml import tuning_plot as tp

    m, mname = sanitize(metric), metric_name(metric)
    cur = tp.tuning_curve_table(df, ds, metric)
    if cur.empty or not (cur["tuning"] != "default").any():
        notes.append(f"{ds}: no tuned zero-shot {metric} rows with an FID; default-vs-tuned figure skipped")
    else:
        fig_out(
            ds,
            f"tuning_{m}",
            tp.default_vs_tuned_figure(df, ds, metric, x_label=xl),
            f"{mname} vs FID per loss: default settings vs settings tuned on the standard split / on each split",
        )
        tab_out(ds, f"tuning_{m}", _file_table(cur), f"{mname} per tuning, loss and split (mean over seeds)")
    gap = tp.transfer_gap_table(df, ds, metric)
    if gap.empty:
        notes.append(f"{ds}: no split with both tuned-per-split and tuned-standard runs; transfer-gap figure skipped")
    else:
        fig_out(
            ds,
            f"transfer_gap_{m}",
            tp.transfer_gap_figure(df, ds, metric, x_label=xl),
            f"per-split tuned minus standard-tuned {mname} vs FID",
        )
        tab_out(ds, f"transfer_gap_{m}", _file_table(gap), f"transfer gap of tuned settings ({mname})")
    chosen = tp.chosen_settings_table(df, ds)
    if not chosen.empty:
        tab_out(ds, "chosen_settings", chosen, "hyperparameters chosen by the searches on validation classes")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.plot",
        description="Figures (PNG + PDF) and tables (CSV, Markdown, LaTeX) of a study's results.",
    )
    p.add_argument(
        "results",
        metavar="RESULTS_OR_STUDY",
        help="results table (.csv/.parquet) or study YAML (its runs_dir/results.csv)",
    )
    p.add_argument("--metric", default="recall@1", help="zero-shot metric to analyse (default: recall@1)")
    p.add_argument("--out", default="figures", help="output folder (default: figures/)")
    p.add_argument(
        "--splits",
        nargs="+",
        default=None,
        metavar="FILE",
        help="split files for the split-series figure (dataset read from each file)",
    )
    p.add_argument(
        "--score",
        metavar="FILE",
        default=None,
        help="also write the citable score JSON (oodml.score: AUCs, intervals, protocol, digests)",
    )
    add_quiet(p)
    return p


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    out = make_all(args.results, args.out, args.metric, args.splits, progress=not progress_disabled(args.quiet))
    n_fig = sum(1 for k in out if k.endswith(".pdf"))
    n_tab = sum(1 for k in out if k.endswith(".csv"))
    print(f"wrote {n_fig} figures (.png + .pdf) and {n_tab} tables (.csv + .md + .tex) to {args.out}")
    for note in out.notes:
        print(f"note: {note}")
    if args.score:
        from oodml.score import write_score

        print(f"wrote {write_score(args.score, args.results, args.metric, args.splits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
