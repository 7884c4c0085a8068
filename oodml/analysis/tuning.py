"""Figures and tables of hyperparameter searches (:mod:`oodml.search`): default against tuned
curves, the transfer gap of standard-split tuning, and the chosen settings (formerly
``oodml.tuning_plot``, which still re-exports them).

They read the results table's ``tuning`` column (``default``, ``tuned-standard``,
``tuned-per-split``) and ``hparams`` column (the settings a run trained with, compact JSON)::

    from oodml.analysis import load_results
    from oodml.analysis import tuning as tp
    df = load_results("runs/embedded_search/results.csv")
    fig = tp.default_vs_tuned_figure(df, "glyphs", "recall@1")   # one panel per tuned loss
    gap = tp.transfer_gap_table(df, "glyphs", "recall@1")          # per-split tuned - standard-tuned
    chosen = tp.chosen_settings_table(df, "glyphs")                # a table a paper can print

:func:`oodml.analysis.report.make_all` writes them (``<dataset>_tuning_<m>``, ``<dataset>_transfer_gap_<m>``,
``<dataset>_chosen_settings``) when the table holds tuned runs; its other figures then use the
``default`` rows only (or, without default runs, the ``tuned-standard`` ones).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from oodml.analysis.labels import fid_label, loss_order, metric_label, metric_name
from oodml.analysis.style import RC, _fid_axis, _figure, _legend_height, _loss_legend, loss_style, paper_style
from oodml.analysis.tables import curve_table
from oodml.errors import BadInputError

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

#: Line style per tuning (colour from seaborn's colorblind palette, fixed order).
TUNING_STYLE = {
    "default": {"color": "0.45", "marker": "o", "linestyle": ":"},
    "tuned-standard": {"color": "#0173b2", "marker": "s", "linestyle": "-"},
    "tuned-per-split": {"color": "#de8f05", "marker": "^", "linestyle": "--"},
}


def has_tuning(df: pd.DataFrame) -> bool:
    """Whether the table holds tuned runs (a ``tuning`` column with a value other than default)."""
    return "tuning" in df.columns and bool((df["tuning"].astype(str).str.startswith("tuned-")).any())


def main_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the ordinary figures should use: one tuning per (loss, split, seed) — ``default``
    where a loss has default runs, else ``tuned-standard``, else ``tuned-per-split``."""
    if "tuning" not in df.columns:
        return df
    t = df["tuning"].astype(str).replace("", "default")
    keep = pd.Series(False, index=df.index)
    for loss in df["loss"].unique():
        sel = df["loss"] == loss
        for label in ("default", "tuned-standard", "tuned-per-split"):
            if ((t == label) & sel).any():
                keep |= (t == label) & sel
                break
    return df[keep]


def tuning_curve_table(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None
) -> pd.DataFrame:
    """Per tuning, loss and split: mean over seeds of ``metric`` (zero-shot) with ``ci95``.
    Columns ``tuning, loss, split, fid, mean, std, ci95, n_seeds``."""
    cols = ["tuning", "loss", "split", "fid", "mean", "std", "ci95", "n_seeds"]
    if "tuning" not in df.columns:
        return pd.DataFrame(columns=cols)
    parts = []
    for label in TUNING_STYLE:
        part = df[df["tuning"] == label]
        if part.empty:
            continue
        cur = curve_table(part, dataset, metric, percent)
        if not cur.empty:
            parts.append(cur.assign(tuning=label))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def _tuned_losses(tab: pd.DataFrame) -> list[str]:
    return loss_order(tab.loc[tab["tuning"] != "default", "loss"].unique())


def default_vs_tuned_figure(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, x_label: str | None = None, percent: bool | None = None
):
    """One panel per tuned loss: ``metric`` vs FID with default settings, settings tuned on the
    standard split and settings tuned on each split (mean over seeds, 95 % CI band)."""
    tab = tuning_curve_table(df, dataset, metric, percent)
    losses = _tuned_losses(tab) if not tab.empty else []
    if not losses:
        raise BadInputError(f"no tuned runs of {metric} on {dataset} in the results table (study without search:?)")
    ncols = min(3, len(losses))
    nrows = math.ceil(len(losses) / ncols)
    labels = [t for t in TUNING_STYLE if (tab["tuning"] == t).any()]
    with paper_style():
        fig, axes = _figure(1.7 * nrows + 0.45, nrows, ncols, sharey=True)
        for i, loss in enumerate(losses):
            ax = axes[i // ncols, i % ncols]
            for label in labels:
                g = tab[(tab["loss"] == loss) & (tab["tuning"] == label)].sort_values("fid", kind="mergesort")
                if g.empty:
                    continue
                st = TUNING_STYLE[label]
                x, m, c = (g[k].to_numpy(np.float64) for k in ("fid", "mean", "ci95"))
                ax.plot(x, m, label=label, zorder=3, **st)
                if np.isfinite(c).any():
                    ax.fill_between(x, m - c, m + c, color=st["color"], alpha=0.15, linewidth=0, zorder=2)
            ax.set_title(loss)
            # one panel: its own x label; several: one label under the row (the panels' own
            # labels ran into each other at the paper width)
            _fid_axis(ax, (x_label or fid_label()) if ncols == 1 and i // ncols == nrows - 1 else None)
            if i % ncols == 0:
                ax.set_ylabel(metric_label(metric, percent))
        for j in range(len(losses), nrows * ncols):
            axes[j // ncols, j % ncols].set_visible(False)
        if ncols > 1:
            fig.supxlabel(x_label or fid_label())
        handles = [axes[0, 0].plot([], [], **TUNING_STYLE[t])[0] for t in labels]
        # the x label takes the bottom edge: the legend goes on top, carrying the title (as the
        # linear-probe figure does; a suptitle would sit on top of it)
        fig.legend(
            handles,
            labels,
            loc="outside upper center",
            ncol=len(labels),
            frameon=False,
            title=f"{dataset}: zero-shot {metric_name(metric)}, default vs tuned settings",
            title_fontsize=RC["axes.titlesize"],
        )
    return fig


def transfer_gap_table(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None
) -> pd.DataFrame:
    """Per loss and split: ``gap`` = mean of the run tuned on that split minus mean of the run tuned
    on the standard split (positive: standard-split settings leave that much on the table).
    Columns ``loss, split, fid, per_split, standard, gap``."""
    tab = tuning_curve_table(df, dataset, metric, percent)
    cols = ["loss", "split", "fid", "per_split", "standard", "gap"]
    if tab.empty:
        return pd.DataFrame(columns=cols)
    per = tab[tab["tuning"] == "tuned-per-split"][["loss", "split", "fid", "mean"]].rename(
        columns={"mean": "per_split"}
    )
    std = tab[tab["tuning"] == "tuned-standard"][["loss", "split", "fid", "mean"]].rename(columns={"mean": "standard"})
    out = per.merge(std, on=["loss", "split", "fid"], how="inner")
    out["gap"] = out["per_split"] - out["standard"]
    order = {loss: i for i, loss in enumerate(loss_order(out["loss"].unique()))}
    out = out.assign(_o=out["loss"].map(order)).sort_values(["_o", "fid"], kind="mergesort").drop(columns="_o")
    return out[cols].reset_index(drop=True)


def transfer_gap_figure(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", *, x_label: str | None = None, percent: bool | None = None
):
    """The transfer gap (per-split tuned minus standard-tuned) against FID, one line per loss."""
    tab = transfer_gap_table(df, dataset, metric, percent)
    if tab.empty:
        raise BadInputError(
            f"no split with both tuned-per-split and tuned-standard runs of {metric} on {dataset}; "
            "use search.scope: [standard, per-split]"
        )
    losses = loss_order(tab["loss"].unique())
    with paper_style():
        fig, axes = _figure(2.3 + _legend_height(losses))
        ax = axes[0, 0]
        ax.axhline(0.0, color="0.25", linewidth=0.7, zorder=1)
        for loss in losses:
            g = tab[tab["loss"] == loss]
            st = loss_style(loss)
            ax.plot(
                g["fid"],
                g["gap"],
                label=loss,
                zorder=3,
                color=st["color"],
                marker=st["marker"],
                linestyle=st["linestyle"],
            )
        _fid_axis(ax, x_label or fid_label())
        ax.set_ylabel(f"per-split − standard tuning ({metric_name(metric)})")
        ax.set_title(f"{dataset}: transfer gap of tuned settings")
        _loss_legend(fig, losses)
    return fig


def chosen_settings_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The settings the searches chose, one row per loss (``tuned-standard``: split ``all``) or per
    loss and split (``tuned-per-split``), one column per hyperparameter (blank where a loss has no
    such key). Columns ``loss, tuning, split, <hyperparameters...>``."""
    if "hparams" not in df.columns or "tuning" not in df.columns:
        return pd.DataFrame(columns=["loss", "tuning", "split"])
    sel = df[(df["dataset"] == dataset) & df["tuning"].astype(str).str.startswith("tuned-")]
    rows, keys = [], []
    seen = set()
    for r in sel.itertuples(index=False):
        split = "all" if r.tuning == "tuned-standard" else ("standard" if pd.isna(r.split) else str(int(r.split)))
        key = (r.loss, r.tuning, split)
        if key in seen:
            continue
        seen.add(key)
        try:
            params = json.loads(r.hparams) if isinstance(r.hparams, str) and r.hparams else {}
        except json.JSONDecodeError:
            params = {}
        for k in params:
            if k not in keys:
                keys.append(k)
        rows.append({"loss": r.loss, "tuning": r.tuning, "split": split, **params})
    out = pd.DataFrame(rows, columns=["loss", "tuning", "split", *sorted(keys)])
    if out.empty:
        return out
    order = {loss: i for i, loss in enumerate(loss_order(out["loss"].unique()))}
    tun = {t: i for i, t in enumerate(TUNING_STYLE)}
    out = out.assign(
        _o=out["loss"].map(order), _t=out["tuning"].map(tun), _s=pd.to_numeric(out["split"], errors="coerce").fillna(-1)
    )
    return out.sort_values(["_o", "_t", "_s"], kind="mergesort").drop(columns=["_o", "_t", "_s"]).reset_index(drop=True)
