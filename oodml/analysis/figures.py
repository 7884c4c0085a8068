"""The figures of a study's results: one function per figure, each returning a matplotlib Figure.

Every function takes a results table (:func:`oodml.analysis.results.load_results`), draws numbers
from :mod:`oodml.analysis.tables` / :mod:`oodml.analysis.stats` in the shared style of
:mod:`oodml.analysis.style`, and returns a :class:`matplotlib.figure.Figure` built without pyplot
(no global figure state). Which figures a run writes, and under which file names, is the
registry of :mod:`oodml.analysis.report`.

matplotlib is imported inside the functions, on purpose (a startup cost of seconds that
importing the tables must not pay).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from oodml.analysis.labels import (
    fid_label,
    is_percent_metric,
    loss_order,
    metric_label,
    metric_name,
    sanitize,
    setting_label,
    setting_order,
)
from oodml.analysis.stats import _cliques, curve_intervals
from oodml.analysis.style import (
    _draw_lines,
    _fid_axis,
    _figure,
    _legend_height,
    _loss_legend,
    _require,
    loss_style,
    paper_style,
)
from oodml.analysis.tables import (
    auc_per_seed,
    auc_table,
    control_table,
    fewshot_table,
    probe_table,
    ranking_stability,
    relative_slopes,
    relative_table,
)
from oodml.errors import BadInputError
from oodml.io import PathLike


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
        _loss_legend(fig, losses, loc="outside upper center", title=f"{dataset}: linear probe")
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
    # lazy on purpose: the split figure belongs to the split stage and is optional here (a
    # package without it still writes every other figure; make_all notes the skip)
    try:
        from oodml.splits.figure import plot_split_series
    except ModuleNotFoundError as exc:
        if exc.name in ("oodml.splits.figure", "oodml.splits"):
            return None
        raise
    return plot_split_series


def split_series_figure(split_file: PathLike):
    """The split series of a split file (FID trajectory of the search, its phases and the selected
    splits), drawn by :func:`oodml.splits_figure.plot_split_series` in the paper style."""
    fn = _split_series_fn()
    if fn is None:
        raise BadInputError("the split-series figure needs oodml.splits.figure, which is not installed")
    with paper_style():
        return fn(split_file)


def cd_diagram(result: dict, title: str | None = None):
    """Critical-difference diagram of :func:`friedman_nemenyi`: losses on an axis of average rank
    (best on the left), the CD as a bar, and thick lines joining losses not told apart."""
    tab = result["ranks"]
    k, cd = result["k"], result["cd"]
    names, ranks = list(tab["loss"]), tab["avg_rank"].to_numpy(np.float64)
    cliques = _cliques(ranks, cd) if np.isfinite(cd) else []
    half = math.ceil(k / 2)
    height = 0.9 + 0.18 * half + 0.1 * len(cliques)
    with paper_style():
        fig, axes = _figure(height)
        ax = axes[0, 0]
        pad = 0.6 + 0.3 * max(k, 2)
        ax.set_xlim(1 - pad, max(k, 2) + pad)
        drop = 0.25 * len(cliques)
        ax.set_ylim(-(half + 0.5 + drop), 1.6)
        ax.axis("off")
        ax.hlines(0, 1, max(k, 2), color="0.1", lw=0.8)
        for t in range(1, max(k, 2) + 1):
            ax.vlines(t, 0, 0.15, color="0.1", lw=0.8)
            ax.text(t, 0.25, str(t), ha="center", va="bottom", fontsize=6)
        if np.isfinite(cd):
            ax.hlines(1.2, 1, 1 + cd, color="0.1", lw=1)
            ax.vlines([1, 1 + cd], 1.1, 1.3, color="0.1", lw=1)
            ax.text(1 + cd / 2, 1.35, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=6)
        for i, (name, r) in enumerate(zip(names, ranks)):
            left = i < half
            level = (-(i + 1) if left else -(k - i)) - drop
            x_text = 1 - 0.2 if left else max(k, 2) + 0.2
            ax.plot([r, r, x_text], [0, level, level], color="0.3", lw=0.7)
            ax.text(x_text, level, f"{name} ({r:.2f})", ha="right" if left else "left", va="center", fontsize=6)
        for c, (i, j) in enumerate(cliques):
            y = -0.3 - 0.25 * c
            ax.hlines(y, ranks[i] - 0.03, ranks[j] + 0.03, color="black", lw=2.2)
        p = result.get("p_value", float("nan"))
        sub = f"Friedman p = {p:.3g}, {result['n_blocks']} splits" if np.isfinite(p) else f"{result['n_blocks']} splits"
        ax.set_title((title + "\n" if title else "") + sub, fontsize=7)
    return fig
