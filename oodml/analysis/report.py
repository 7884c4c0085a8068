"""Everything at once: every figure and table of a results table, written into one folder.

:func:`make_all` resolves its input (a DataFrame, a results table or a study YAML), then runs
every **section** of :data:`SECTIONS` for every dataset, in order, and writes ``index.md``
listing what was written and why anything was skipped. A section is one function
``(report, dataset) -> None`` registered with :func:`section`; it draws its figures
(:mod:`oodml.analysis.figures`) and tables (:mod:`oodml.analysis.tables`) and hands them to
:meth:`Report.figure` / :meth:`Report.table` (which name, mark and write the files), or says
why it skipped with :meth:`Report.note`. **Adding a figure or table is one decorated function
here**; its place in this file is its place in ``index.md``.

Files are ``<out>/<dataset>_<name>`` (names through :func:`oodml.analysis.labels.sanitize`),
figures as ``.png`` + ``.pdf``, tables as ``.csv`` + ``.md`` + ``.tex``. A table with a
``selection`` column (the checkpoint rule) marks every title, caption and table with its rule
unless it is ``val`` (see :data:`SELECTION_MARKS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from oodml.analysis import tuning
from oodml.analysis.export import write_table
from oodml.analysis.figures import (
    _split_series_fn,
    auc_figure,
    cd_diagram,
    fewshot_figure,
    generalization_curve,
    probe_figure,
    ranking_figure,
    relative_view,
    split_series_figure,
)
from oodml.analysis.labels import fid_label, loss_order, metric_name, sanitize
from oodml.analysis.results import _split_file_info, datasets, resolve_input, split_files_by_dataset
from oodml.analysis.stats import auc_intervals, friedman_nemenyi, pairwise_auc_tests
from oodml.analysis.style import save_figure
from oodml.analysis.tables import (
    control_table,
    curve_table,
    fewshot_table,
    probe_table,
    ranking_stability,
    relative_slopes,
    relative_table,
)
from oodml.errors import BadInputError
from oodml.io import PathLike, atomic_write
from oodml.progress import progress_bar

#: How figures and tables mark a checkpoint rule (``val``, the default, is unmarked).
SELECTION_MARKS = {"val": "", "last": "checkpoint: last epoch", "test": "ORACLE: checkpoint chosen on the test classes"}


class Outputs(dict):
    """``{file name: path}`` of everything :func:`make_all` wrote, with ``.notes`` (skips)."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []


class Report:
    """What every section of one :func:`make_all` run shares: the table (``df``: the rows of the
    ordinary figures; ``tuned_df``: the whole table when it holds tuned runs, else None), the
    metric, the output folder, the split files, the checkpoint rule and mark, and what was written."""

    def __init__(
        self,
        df: pd.DataFrame,
        tuned_df: pd.DataFrame | None,
        metric: str,
        out_dir: Path,
        splits: dict[str, Path],
        source: str,
    ) -> None:
        self.df, self.tuned_df, self.metric, self.out_dir = df, tuned_df, metric, out_dir
        self.splits = splits
        self.extractors = {ds: _split_file_info(p)[1] for ds, p in splits.items()}
        self.rule = rule = _selection_rule(df, source)
        self.mark = SELECTION_MARKS.get(rule, f"checkpoint rule: {rule}")
        self.m, self.mname = sanitize(metric), metric_name(metric)
        self.out = Outputs()
        self.written: dict[str, list[str]] = {}
        self._datasets = set(df["dataset"])
        self._curves: dict[str, pd.DataFrame] = {}

    @property
    def notes(self) -> list[str]:
        return self.out.notes

    def note(self, text: str) -> None:
        """Record why something was skipped (listed in ``index.md`` and printed by the CLI)."""
        self.out.notes.append(text)

    def has(self, ds: str) -> bool:
        """Whether the (main) table has rows of ``ds`` (a dataset may come from a split file only)."""
        return ds in self._datasets

    def x_label(self, ds: str) -> str:
        return fid_label(self.extractors.get(ds))

    def curve(self, ds: str) -> pd.DataFrame:
        """:func:`oodml.analysis.tables.curve_table` of ``ds`` and the metric (computed once)."""
        if ds not in self._curves:
            self._curves[ds] = curve_table(self.df, ds, self.metric)
        return self._curves[ds]

    def figure(self, ds: str, name: str, fig, what: str) -> None:
        """Write ``fig`` as ``<ds>_<name>.png/.pdf`` (titles marked with the checkpoint rule)."""
        stem = self.out_dir / f"{sanitize(ds)}_{name}"
        if self.mark:
            for ax in fig.axes:
                if ax.get_title():
                    ax.set_title(f"{ax.get_title()}\n[{self.mark}]")
        for p in save_figure(fig, stem):
            self.out[p.name] = p
        self.written.setdefault(ds, []).append(f"`{stem.name}.png`, `.pdf`: {what}")

    def table(self, ds: str, name: str, tab: pd.DataFrame, what: str) -> None:
        """Write ``tab`` as ``<ds>_<name>.csv/.md/.tex`` (with the checkpoint rule when marked)."""
        stem = self.out_dir / f"{sanitize(ds)}_{name}"
        if self.mark:  # the numbers' checkpoint rule travels with the table (CSV, Markdown, LaTeX)
            tab = tab.assign(selection=f"{self.rule} (oracle)" if self.rule == "test" else self.rule)
        caption = f"{ds}: {what}" + (f" [{self.mark}]" if self.mark else "")
        for p in write_table(tab, stem, caption=caption):
            self.out[p.name] = p
        self.written.setdefault(ds, []).append(f"`{stem.name}.csv`, `.md`, `.tex`: {what}")


Section = Callable[[Report, str], None]

SECTIONS: list[Section] = []
"""The sections :func:`make_all` runs for every dataset, in order (the order of ``index.md``)."""


def section(fn: Section) -> Section:
    """Register ``fn(report, dataset)`` as the next section of :func:`make_all`."""
    SECTIONS.append(fn)
    return fn


# --------------------------------------------------------------------------------------------
# Helpers of the sections
# --------------------------------------------------------------------------------------------
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


def _has_curve(r: Report, ds: str) -> bool:
    return r.has(ds) and not r.curve(ds).empty


def _has_fid_series(r: Report, ds: str) -> bool:
    return _has_curve(r, ds) and r.curve(ds)["fid"].nunique() >= 2


# --------------------------------------------------------------------------------------------
# Sections (in the order of index.md)
# --------------------------------------------------------------------------------------------
@section
def _curve(r: Report, ds: str) -> None:
    """Metric vs FID (figure + table) and the class-count controls' table."""
    if not r.has(ds):
        return
    df, metric = r.df, r.metric
    rows = (df["dataset"] == ds) & (df["stage"] == "zero-shot") & (df["metric"] == metric)
    no_fid = int((rows & ~np.isfinite(df["fid"])).sum())
    if no_fid:
        r.note(
            f"{ds}: {no_fid} zero-shot {metric} row(s) without an FID (standard split without "
            "a split file?) left out of the FID figures"
        )
    cur = r.curve(ds)
    if cur.empty:
        r.note(f"{ds}: no zero-shot {metric} rows with an FID; generalization figures skipped")
        return
    r.figure(
        ds,
        f"curve_{r.m}",
        generalization_curve(df, ds, metric, x_label=r.x_label(ds)),
        f"{r.mname} vs FID, mean and 95 % CI over seeds",
    )
    r.table(ds, f"curve_{r.m}", _file_table(cur), f"{r.mname} per loss and split (mean over seeds)")
    ctl = control_table(df, ds, metric)
    if not ctl.empty:
        r.table(
            ds,
            f"controls_{r.m}",
            _file_table(ctl.rename(columns={"control_of": "split"})),
            f"{r.mname} on the random-removal controls of each split (mean over draws and seeds)",
        )


@section
def _relative(r: Report, ds: str) -> None:
    """Each loss relative to the field (figure + table) and the slopes of its lines."""
    if not _has_curve(r, ds):
        return
    if not _has_fid_series(r, ds):
        r.note(f"{ds}: only one FID value; relative view, slopes and AUC skipped")
        return
    df, metric = r.df, r.metric
    r.figure(
        ds,
        f"relative_{r.m}",
        relative_view(df, ds, metric, x_label=r.x_label(ds)),
        f"{r.mname} minus the mean of all losses, with linear fits",
    )
    r.table(
        ds,
        f"relative_{r.m}",
        _file_table(relative_table(df, ds, metric)),
        f"{r.mname} minus the mean of all losses per split",
    )
    r.table(
        ds,
        f"slopes_{r.m}",
        _file_table(relative_slopes(df, metric, ds)),
        f"slopes vs FID of {r.mname} relative to the field (slope_rel) and absolute (slope_abs)",
    )


@section
def _auc(r: Report, ds: str) -> None:
    """Normalized AUC of the metric-vs-FID curve (figure + table) and paired tests between losses."""
    if not _has_fid_series(r, ds):
        return
    df, metric = r.df, r.metric
    r.figure(ds, f"auc_{r.m}", auc_figure(df, ds, metric), f"normalized AUC of {r.mname} vs FID")
    r.table(
        ds,
        f"auc_{r.m}",
        _file_table(auc_intervals(df, metric, ds)),
        f"normalized AUC of {r.mname} vs FID (mean, std, 95 % t and bootstrap intervals over seeds, per-seed values)",
    )
    r.table(
        ds,
        f"auc_tests_{r.m}",
        _file_table(pairwise_auc_tests(df, metric, ds)),
        "paired bootstrap tests of the AUC difference between every two losses",
    )


@section
def _friedman(r: Report, ds: str) -> None:
    """Critical-difference diagram and the Friedman / Nemenyi table."""
    if not _has_fid_series(r, ds):
        return
    if r.curve(ds)["loss"].nunique() < 2:
        r.note(f"{ds}: a single loss; no Friedman test or critical-difference diagram")
        return
    fr = friedman_nemenyi(r.df, r.metric, ds)
    r.figure(
        ds,
        f"cd_{r.m}",
        cd_diagram(fr, ds),
        "critical-difference diagram (Friedman test, Nemenyi CD) of the losses' ranks",
    )
    r.table(
        ds,
        f"friedman_{r.m}",
        fr["ranks"].assign(cd=fr["cd"], friedman_chi2=fr["statistic"], p_value=fr["p_value"], n_splits=fr["n_blocks"]),
        f"average rank by {r.mname} over splits, Friedman test and Nemenyi CD",
    )


@section
def _ranks(r: Report, ds: str) -> None:
    """Rank of every loss per split (bump chart + table) and Kendall's tau vs the easiest split."""
    if not _has_curve(r, ds):
        return
    ranks, tau = ranking_stability(r.df, r.metric, ds)
    r.figure(
        ds,
        f"ranks_{r.m}",
        ranking_figure(r.df, ds, r.metric),
        "rank of each loss per split and Kendall's tau vs the easiest split",
    )
    r.table(ds, f"ranks_{r.m}", _wide_ranks(ranks), f"rank by {r.mname} per split (1 = best)")
    if tau.empty:
        r.note(f"{ds}: a single split; no Kendall's tau table")
    else:
        r.table(
            ds,
            f"kendall_{r.m}",
            _file_table(tau),
            "Kendall's tau between the ranking on the easiest split and each harder split",
        )


@section
def _fewshot(r: Report, ds: str) -> None:
    """Few-shot gain over zero-shot vs FID (figure + table)."""
    if not r.has(ds):
        return
    few = fewshot_table(r.df, ds, r.metric)
    if few.empty:
        r.note(f"{ds}: no few-shot rows (stage few-shot-<k>) for {r.metric}; few-shot figure skipped")
        return
    r.figure(
        ds,
        f"fewshot_gain_{r.m}",
        fewshot_figure(r.df, ds, r.metric, x_label=r.x_label(ds)),
        f"few-shot gain in {r.mname} over zero-shot vs FID",
    )
    r.table(ds, f"fewshot_gain_{r.m}", _file_table(few), f"few-shot gain in {r.mname} over zero-shot")


@section
def _linear_probe(r: Report, ds: str) -> None:
    """Linear-probe top-1 accuracy vs FID (figure + table)."""
    if not r.has(ds):
        return
    probe = probe_table(r.df, ds)
    if probe.empty:
        r.note(f"{ds}: no linear-probe rows; linear-probe figure skipped")
        return
    r.figure(ds, "linear_probe", probe_figure(r.df, ds, x_label=r.x_label(ds)), "linear-probe top-1 accuracy vs FID")
    r.table(ds, "linear_probe", _file_table(probe), "linear-probe top-1 accuracy")


def _tuned(r: Report, ds: str) -> bool:
    return r.tuned_df is not None and ds in set(r.tuned_df["dataset"])


@section
def _tuning_curves(r: Report, ds: str) -> None:
    """Default-vs-tuned curves per loss (figure + table; :mod:`oodml.analysis.tuning`)."""
    if not _tuned(r, ds):
        return
    cur = tuning.tuning_curve_table(r.tuned_df, ds, r.metric)
    if cur.empty or not (cur["tuning"] != "default").any():
        r.note(f"{ds}: no tuned zero-shot {r.metric} rows with an FID; default-vs-tuned figure skipped")
        return
    r.figure(
        ds,
        f"tuning_{r.m}",
        tuning.default_vs_tuned_figure(r.tuned_df, ds, r.metric, x_label=r.x_label(ds)),
        f"{r.mname} vs FID per loss: default settings vs settings tuned on the standard split / on each split",
    )
    r.table(ds, f"tuning_{r.m}", _file_table(cur), f"{r.mname} per tuning, loss and split (mean over seeds)")


@section
def _transfer_gap(r: Report, ds: str) -> None:
    """Per-split tuned minus standard-tuned (figure + table)."""
    if not _tuned(r, ds):
        return
    gap = tuning.transfer_gap_table(r.tuned_df, ds, r.metric)
    if gap.empty:
        r.note(f"{ds}: no split with both tuned-per-split and tuned-standard runs; transfer-gap figure skipped")
        return
    r.figure(
        ds,
        f"transfer_gap_{r.m}",
        tuning.transfer_gap_figure(r.tuned_df, ds, r.metric, x_label=r.x_label(ds)),
        f"per-split tuned minus standard-tuned {r.mname} vs FID",
    )
    r.table(ds, f"transfer_gap_{r.m}", _file_table(gap), f"transfer gap of tuned settings ({r.mname})")


@section
def _chosen_settings(r: Report, ds: str) -> None:
    """The hyperparameters the searches chose (table)."""
    if not _tuned(r, ds):
        return
    chosen = tuning.chosen_settings_table(r.tuned_df, ds)
    if not chosen.empty:
        r.table(ds, "chosen_settings", chosen, "hyperparameters chosen by the searches on validation classes")


@section
def _split_series(r: Report, ds: str) -> None:
    """The split search's FID trajectory and the selected splits (from the split file)."""
    if ds not in r.splits:
        r.note(f"{ds}: no split file given (--splits); split-series figure skipped")
    elif _split_series_fn() is None:
        r.note(f"{ds}: oodml.splits.figure is not available; split-series figure skipped")
    else:
        r.figure(
            ds,
            "split_series",
            split_series_figure(r.splits[ds]),
            f"FID trajectory of the split search and the selected splits ({r.splits[ds].name})",
        )


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------
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


def _check_metric(df: pd.DataFrame, metric: str, source: str) -> None:
    zs = df[df["stage"] == "zero-shot"]
    if metric not in set(zs["metric"]):
        available = ", ".join(dict.fromkeys(zs["metric"])) or "none"
        raise BadInputError(
            f"results table {source} has no zero-shot rows of metric {metric!r} "
            f"(available: {available}); pick one with --metric"
        )


def _write_index(r: Report, all_ds: list[str], source: str) -> None:
    lines = ["# oodml figures and tables", "", f"Results: `{source}`; metric: `{r.metric}`.", ""]
    if r.mark:
        lines[-1:-1] = [f"Checkpoint selection: `{r.rule}` ({r.mark}).", ""]
    for ds in all_ds:
        lines += [f"## {ds}", ""] + [f"- {w}" for w in r.written.get(ds, [])] + [""]
    if r.notes:
        lines += ["## Skipped", ""] + [f"- {n}" for n in r.notes] + [""]
    index = r.out_dir / "index.md"
    atomic_write(index, "\n".join(lines))
    r.out[index.name] = index


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
    df, study_splits, notes, source = resolve_input(results)
    tuned_df = df if tuning.has_tuning(df) else None
    if tuned_df is not None:  # hyperparameter search: the ordinary figures show one tuning per loss
        df = tuning.main_rows(df)
    splits = split_files_by_dataset(split_files, study_splits)
    r = Report(df, tuned_df, metric, Path(out_dir), splits, source)
    _check_metric(df, metric, source)
    r.notes.extend(notes)
    all_ds = datasets(df) + [d for d in splits if d not in set(df["dataset"])]
    for ds in progress_bar(all_ds, enabled=progress, desc="figures", unit="dataset"):
        for fn in SECTIONS:
            fn(r, ds)
    _write_index(r, all_ds, source)
    return r.out
