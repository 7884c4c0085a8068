"""Tables and scores of a study's results table: the numbers behind :mod:`oodml.plot`.

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

import functools
import math
import re
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oodml.errors import BadInputError
from oodml.io import PathLike, atomic_write

REQUIRED_COLUMNS: tuple[str, ...] = (
    "study",
    "dataset",
    "split",
    "fid",
    "loss",
    "seed",
    "stage",
    "metric",
    "value",
    "ci95",
    "run_id",
)
"""Columns of a results table, in order (see the project contract)."""

_TEXT_COLUMNS = ("study", "dataset", "loss", "stage", "metric", "run_id")
_FLOAT_COLUMNS = ("fid", "value", "ci95")
_NA_TEXT = {"", "nan", "NaN", "NAN", "None", "none", "null", "NA", "<NA>"}

FEW_SHOT_STAGE = re.compile(r"^few-shot-(\d+)$")
PROBE_METRIC = re.compile(r"^top1_(embedding|backbone)_(\d+shot|half)$")


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------
def load_results(path: PathLike) -> pd.DataFrame:
    """Read a results table (``.csv`` or ``.parquet``) and validate it (:func:`validate_results`).

    Returns a DataFrame with the columns :data:`REQUIRED_COLUMNS` first (extra columns kept):
    text columns as ``str`` (``""`` when empty), ``split`` as nullable ``Int64`` (``<NA>`` = the
    dataset's standard split), ``seed`` as ``int64``, ``fid``/``value``/``ci95`` as ``float64``.
    Raises :class:`~oodml.errors.BadInputError` naming the file for a missing file, an unknown
    format, a missing column or an unreadable value.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"results table {path} does not exist; check the path (or run `python -m oodml.study collect`)"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise BadInputError(
                f"results table {path} has an unknown format {suffix or '(no suffix)'!r}; "
                "give a .csv or .parquet file (or a study .yaml)"
            )
    except BadInputError:
        raise
    except ImportError as exc:
        raise BadInputError(f"cannot read {path}: {exc}; install pyarrow or use the .csv table") from None
    except Exception as exc:  # parser errors of either format
        raise BadInputError(f"cannot read results table {path} ({type(exc).__name__}: {exc}); regenerate it") from None
    return validate_results(df, source=str(path))


def validate_results(df: pd.DataFrame, source: str = "<DataFrame>") -> pd.DataFrame:
    """Check that ``df`` is a results table and return a normalised copy (see :func:`load_results`).

    ``source`` names the table in error messages (a file path, or ``<DataFrame>``).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise BadInputError(
            f"results table {source} lacks column(s) {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_COLUMNS)}); regenerate it with `python -m oodml.study collect`"
        )
    if len(df) == 0:
        raise BadInputError(f"results table {source} has no rows; run the study and collect its results first")
    out = df.copy()
    extra = [c for c in out.columns if c not in REQUIRED_COLUMNS]
    out = out[list(REQUIRED_COLUMNS) + extra].reset_index(drop=True)

    def bad(col: str, i: int, raw: Any, what: str) -> BadInputError:
        return BadInputError(
            f"results table {source}, row {i + 1} (data row, after the header): column {col!r} "
            f"has {raw!r}, expected {what}; fix or regenerate the table"
        )

    for col in _TEXT_COLUMNS:
        out[col] = [("" if _is_missing(v) else str(v)) for v in out[col]]
        out[col] = out[col].astype(object)
    for col in _FLOAT_COLUMNS:
        vals = []
        for i, raw in enumerate(out[col]):
            if _is_missing(raw):
                vals.append(np.nan)
                continue
            try:
                vals.append(float(raw))
            except (TypeError, ValueError):
                raise bad(col, i, raw, "a number (or empty)") from None
        out[col] = np.asarray(vals, dtype=np.float64)
    splits = []
    for i, raw in enumerate(out["split"]):
        if _is_missing(raw) or (isinstance(raw, str) and raw.strip().lower() == "standard"):
            splits.append(pd.NA)
            continue
        try:
            f = float(raw)
        except (TypeError, ValueError):
            raise bad("split", i, raw, "an integer split id (or empty for the standard split)") from None
        if not f.is_integer():
            raise bad("split", i, raw, "an integer split id (or empty for the standard split)")
        splits.append(int(f))
    out["split"] = pd.array(splits, dtype="Int64")
    seeds = []
    for i, raw in enumerate(out["seed"]):
        try:
            f = float(raw)
            if not f.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise bad("seed", i, raw, "an integer seed") from None
        seeds.append(int(f))
    out["seed"] = np.asarray(seeds, dtype=np.int64)
    if "control_of" in out.columns:  # optional: class-count controls (oodml.controls)
        ctrl = []
        for i, raw in enumerate(out["control_of"]):
            if _is_missing(raw):
                ctrl.append(pd.NA)
                continue
            try:
                f = float(raw)
                if not f.is_integer():
                    raise ValueError
            except (TypeError, ValueError):
                raise bad("control_of", i, raw, "an integer split id (or empty)") from None
            ctrl.append(int(f))
        out["control_of"] = pd.array(ctrl, dtype="Int64")
    for col in ("dataset", "loss", "stage", "metric"):
        empty = np.flatnonzero(out[col].to_numpy() == "")
        if len(empty):
            raise bad(col, int(empty[0]), "", f"a non-empty {col} name")
    return out


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, str) and v.strip() in _NA_TEXT:
        return True
    return False


def _as_results(df: pd.DataFrame) -> pd.DataFrame:
    """Accept an already-validated table (cheap check) or validate a raw one."""
    if (
        isinstance(df, pd.DataFrame)
        and all(c in df.columns for c in REQUIRED_COLUMNS)
        and str(df["split"].dtype) == "Int64"
        and df["value"].dtype == np.float64
    ):
        return df
    return validate_results(df)


def datasets(df: pd.DataFrame) -> list[str]:
    """The datasets of a results table, in order of first appearance."""
    return list(dict.fromkeys(_as_results(df)["dataset"]))


def metrics(df: pd.DataFrame, stage: str = "zero-shot") -> list[str]:
    """The metrics present for ``stage``, in order of first appearance."""
    df = _as_results(df)
    return list(dict.fromkeys(df.loc[df["stage"] == stage, "metric"]))


# --------------------------------------------------------------------------------------------
# Names, units, styles
# --------------------------------------------------------------------------------------------
def sanitize(name: str) -> str:
    """A file-name-safe form of ``name``: ``@`` dropped, other characters outside
    ``[A-Za-z0-9_-]`` become ``-`` (``"glyphs_curve_recall@1"`` -> ``"glyphs_curve_recall1"``)."""
    s = str(name).replace("@", "")
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-")
    return s or "unnamed"


_PERCENT = re.compile(r"^((recall|precision)@\d+|r_precision|map@r|nmi|top1_.*|map@1000|f1)$")


def _base_metric(metric: str) -> str:
    for suffix in ("_gain", "_zero_shot"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def is_percent_metric(metric: str) -> bool:
    """Whether ``metric`` is a fraction in [0, 1] shown in percent (its gains in percentage points)."""
    return bool(_PERCENT.match(_base_metric(metric)))


def _scale(metric: str, percent: bool | None) -> float:
    if percent is None:
        percent = is_percent_metric(metric)
    return 100.0 if percent else 1.0


def metric_name(metric: str) -> str:
    """Display name of a metric without units: ``recall@1`` -> ``Recall@1``, ``map@r`` -> ``MAP@R``."""
    base = _base_metric(metric)
    m = re.match(r"^(recall|precision)@(\d+)$", base)
    if m:
        return f"{m.group(1).capitalize()}@{m.group(2)}"
    named = {
        "r_precision": "R-Precision",
        "map@r": "MAP@R",
        "nmi": "NMI",
        "map@1000": "mAP@1000",
        "f1": "F1 (clustering)",
        "rho_spectrum": "ρ-spectrum decay",
        "intra_inter_ratio": "intra/inter distance",
    }
    if base in named:
        return named[base]
    m = PROBE_METRIC.match(base)
    if m:
        return "Top-1 accuracy"
    return base


def metric_label(metric: str, percent: bool | None = None) -> str:
    """Axis label with units: ``Recall@1 (%)``; for a ``_gain`` metric ``Recall@1 gain (pp)``."""
    unit_pct = _scale(metric, percent) == 100.0
    name = metric_name(metric)
    if metric.endswith("_gain"):
        return f"{name} gain ({'pp' if unit_pct else 'abs.'})"
    return f"{name} (%)" if unit_pct else name


FID_LABEL = "FID (train→test, extractor features)"


def fid_label(extractor: str | None = None) -> str:
    """The FID axis label, naming the feature extractor when known."""
    return f"FID (train→test, {extractor} features)" if extractor else FID_LABEL


@functools.lru_cache(maxsize=1)
def registry_losses() -> tuple[str, ...]:
    """Names of the registered objectives, in registry order (fixes colours and markers)."""
    from oodml.losses import list_objectives

    return tuple(o["name"] for o in list_objectives())


def loss_order(losses: Iterable[str] | None = None) -> list[str]:
    """``losses`` (default: all registered) sorted in registry order, unknown names after them
    in alphabetical order, without duplicates."""
    reg = registry_losses()
    if losses is None:
        return list(reg)
    present = set(losses)
    known = [name for name in reg if name in present]
    return known + sorted(present - set(reg))


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


def loss_index(loss: str) -> int:
    """The fixed style index of ``loss`` (its registry position, or a stable hash beyond it)."""
    reg = registry_losses()
    if loss in reg:
        return reg.index(loss)
    return len(reg) + zlib.crc32(loss.encode("utf-8")) % 997


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
# Statistics helpers
# --------------------------------------------------------------------------------------------
def t_ci95(values: Sequence[float]) -> float:
    """Half-width of the 95 % Student-t confidence interval of the mean (NaN below 2 values)."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    n = len(v)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))


def _seed_stats(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean over seeds per ``keys`` with ``std``, ``ci95``, ``n_seeds`` and ``ci_source``."""
    from scipy import stats

    cols = keys + ["mean", "std", "ci95", "n_seeds", "ci_source"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    if "ci95" not in frame:
        frame = frame.assign(ci95=np.nan)
    g = frame.groupby(keys, dropna=False, sort=False)
    out = g["value"].agg(["mean", "std", "count"]).join(g["ci95"].first().rename("row_ci")).reset_index()
    n = out["count"].to_numpy(np.int64)
    std = out["std"].to_numpy(np.float64)
    tcrit = stats.t.ppf(0.975, np.maximum(n - 1, 1))
    seeds_ci = tcrit * std / np.sqrt(np.maximum(n, 1))
    row_ci = out["row_ci"].to_numpy(np.float64)
    out["ci95"] = np.where(n >= 2, seeds_ci, row_ci)
    out["ci_source"] = np.where(n >= 2, "seeds", np.where(np.isfinite(row_ci), "episodes", ""))
    out["std"] = np.where(n >= 2, std, np.nan)
    out["n_seeds"] = n
    return out[cols]


def _sort(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort with losses in registry order (stable, deterministic)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    frame = frame.copy()
    order = {name: i for i, name in enumerate(loss_order(frame["loss"].unique()))} if "loss" in frame else {}
    keys = []
    for col in by:
        if col == "loss":
            frame["_loss_rank"] = frame["loss"].map(order)
            keys.append("_loss_rank")
        else:
            keys.append(col)
    frame = frame.sort_values(keys, kind="mergesort", na_position="first")
    return frame.drop(columns=[c for c in ("_loss_rank",) if c in frame]).reset_index(drop=True)


def _select(df: pd.DataFrame, dataset: str | None, controls: bool = False) -> pd.DataFrame:
    """Rows of ``dataset`` (all with None); class-count control rows (``control_of`` set, see
    :mod:`oodml.controls`) are left out unless ``controls`` (then only they are kept)."""
    df = _as_results(df)
    if dataset is not None and dataset not in set(df["dataset"]):
        raise BadInputError(f"dataset {dataset!r} is not in the results table (datasets: {', '.join(datasets(df))})")
    if "control_of" in df.columns:
        is_control = df["control_of"].notna().to_numpy(bool)
        df = df[is_control] if controls else df[~is_control]
    elif controls:
        df = df.iloc[0:0]
    if dataset is None:
        return df
    return df[df["dataset"] == dataset]


def _dataset_list(df: pd.DataFrame, dataset: str | None) -> list[str]:
    return [dataset] if dataset is not None else datasets(df)


# --------------------------------------------------------------------------------------------
# Zero-shot generalization tables
# --------------------------------------------------------------------------------------------
def zero_shot(df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None) -> pd.DataFrame:
    """Zero-shot values of ``metric`` on ``dataset`` with a known FID, one row per (loss, split,
    seed): columns ``loss, split, fid, seed, value`` (scaled, see the module notes), sorted by
    loss (registry order), FID and seed."""
    sel = _select(df, dataset)
    sel = sel[(sel["stage"] == "zero-shot") & (sel["metric"] == metric)]
    sel = sel[np.isfinite(sel["fid"]) & np.isfinite(sel["value"])]
    cols = ["loss", "split", "fid", "seed", "value"]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    out = sel.groupby(["loss", "split", "fid", "seed"], dropna=False, sort=False)["value"].mean().reset_index()
    out["value"] = out["value"] * _scale(metric, percent)
    return _sort(out[cols], ["loss", "fid", "split", "seed"])


def control_table(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None
) -> pd.DataFrame:
    """The class-count controls (:mod:`oodml.controls`) of a dataset: per loss and controlled
    split, the mean over draws and seeds of ``metric`` at the mean FID of the draws, with the
    spread over draws. Columns ``loss, control_of, fid, mean, std, n_draws, n_values``; empty
    when the table has no control rows."""
    cols = ["loss", "control_of", "fid", "mean", "std", "n_draws", "n_values"]
    if dataset not in set(_as_results(df)["dataset"]):
        return pd.DataFrame(columns=cols)
    sel = _select(df, dataset, controls=True)
    sel = sel[(sel["stage"] == "zero-shot") & (sel["metric"] == metric)]
    sel = sel[np.isfinite(sel["fid"]) & np.isfinite(sel["value"])]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    per = sel.groupby(["loss", "control_of", "split"], sort=False).agg(fid=("fid", "first"), value=("value", "mean"))
    per = per.reset_index()
    g = per.groupby(["loss", "control_of"], sort=False)
    out = g.agg(fid=("fid", "mean"), mean=("value", "mean"), std=("value", "std"), n_draws=("split", "nunique"))
    out = out.join(sel.groupby(["loss", "control_of"], sort=False)["value"].size().rename("n_values")).reset_index()
    out["mean"] = out["mean"] * _scale(metric, percent)
    out["std"] = out["std"] * _scale(metric, percent)
    out["control_of"] = out["control_of"].astype("Int64")
    return _sort(out[cols], ["loss", "fid", "control_of"])


def curve_table(df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None) -> pd.DataFrame:
    """The generalization curve: per (loss, split) the mean over seeds of ``metric`` with
    ``std``, ``ci95``, ``n_seeds``. Columns ``loss, split, fid, mean, std, ci95, n_seeds``."""
    z = zero_shot(df, dataset, metric, percent)
    if z.empty:
        return pd.DataFrame(columns=["loss", "split", "fid", "mean", "std", "ci95", "n_seeds"])
    z = z.assign(ci95=np.nan)
    out = _seed_stats(z, ["loss", "split", "fid"]).drop(columns=["ci_source"])
    return _sort(out, ["loss", "fid", "split"])


def relative_table(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None
) -> pd.DataFrame:
    """Each loss's difference from the field on every split: ``diff = mean - field_mean`` where
    ``mean`` is the loss's mean over seeds and ``field_mean`` the mean of those means over the
    trained losses present on that split (frozen references, ``frozen:<name>``, are compared
    with the field but not part of it). Columns ``loss, split, fid, mean, field_mean, diff``."""
    cur = curve_table(df, dataset, metric, percent)
    cols = ["loss", "split", "fid", "mean", "field_mean", "diff"]
    if cur.empty:
        return pd.DataFrame(columns=cols)
    trained = cur[~cur["loss"].astype(str).str.startswith("frozen:")]  # frozen references are not in the field
    trained = trained if not trained.empty else cur
    field = (
        trained.groupby(["split", "fid"], dropna=False, sort=False)["mean"].mean().rename("field_mean").reset_index()
    )
    out = cur[["loss", "split", "fid", "mean"]].merge(field, on=["split", "fid"], how="left")
    out["diff"] = out["mean"] - out["field_mean"]
    return _sort(out[cols], ["loss", "fid", "split"])


def _linfit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(slope, intercept, stderr of slope, r) of a least-squares line; NaNs below 2 distinct x."""
    from scipy import stats

    if len(np.unique(x)) < 2:
        return (float("nan"),) * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.linregress(x, y)
    stderr = float(res.stderr) if len(x) > 2 else float("nan")
    return float(res.slope), float(res.intercept), stderr, float(res.rvalue)


def relative_slopes(
    df: pd.DataFrame, metric: str = "recall@1", dataset: str | None = None, percent: bool | None = None
) -> pd.DataFrame:
    """Per (dataset, loss) the least-squares slope of the loss's difference from the field vs FID
    (``slope_rel``, units of the metric per FID unit; negative = degrades faster than the field),
    its ``intercept_rel``, ``stderr_rel`` (NaN with 2 splits) and ``r_rel``, plus the slope of
    the loss's own mean vs FID (``slope_abs``) and ``n_splits``. Sorted per dataset by
    ``slope_rel`` (fastest degrading first)."""
    rows = []
    for ds in _dataset_list(df, dataset):
        rel = relative_table(df, ds, metric, percent)
        for loss, grp in rel.groupby("loss", sort=False):
            x = grp["fid"].to_numpy(np.float64)
            s, b, se, r = _linfit(x, grp["diff"].to_numpy(np.float64))
            sa, _, _, _ = _linfit(x, grp["mean"].to_numpy(np.float64))
            rows.append(
                {
                    "dataset": ds,
                    "loss": loss,
                    "slope_rel": s,
                    "intercept_rel": b,
                    "stderr_rel": se,
                    "r_rel": r,
                    "slope_abs": sa,
                    "n_splits": int(len(grp)),
                }
            )
    cols = ["dataset", "loss", "slope_rel", "intercept_rel", "stderr_rel", "r_rel", "slope_abs", "n_splits"]
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        return out
    out["_ds"] = out["dataset"].map({d: i for i, d in enumerate(_dataset_list(df, dataset))})
    order = {name: i for i, name in enumerate(loss_order(out["loss"].unique()))}
    out["_lo"] = out["loss"].map(order)
    out = out.sort_values(["_ds", "slope_rel", "_lo"], kind="mergesort", na_position="last")
    return out.drop(columns=["_ds", "_lo"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Area under the metric-vs-FID curve
# --------------------------------------------------------------------------------------------
def normalized_auc(fid: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under ``values`` over ``fid`` (sorted by FID) divided by the FID range:
    the mean level of the curve over the range. NaN with fewer than 2 distinct FIDs."""
    from scipy.integrate import trapezoid

    x = np.asarray(fid, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return float("nan")
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order]
    return float(trapezoid(y, x) / (x[-1] - x[0]))


def auc_per_seed(df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None) -> pd.DataFrame:
    """Normalized AUC (:func:`normalized_auc`) of every (loss, seed) curve on ``dataset``.

    A run missing some splits is integrated over the splits it has (``n_splits``, ``fid_min``,
    ``fid_max`` tell which range). Columns ``loss, seed, auc, n_splits, fid_min, fid_max``."""
    z = zero_shot(df, dataset, metric, percent)
    rows = []
    for (loss, seed), grp in z.groupby(["loss", "seed"], sort=False):
        x = grp["fid"].to_numpy(np.float64)
        rows.append(
            {
                "loss": loss,
                "seed": int(seed),
                "auc": normalized_auc(x, grp["value"].to_numpy(np.float64)),
                "n_splits": int(len(grp)),
                "fid_min": float(x.min()),
                "fid_max": float(x.max()),
            }
        )
    out = pd.DataFrame(rows, columns=["loss", "seed", "auc", "n_splits", "fid_min", "fid_max"])
    return _sort(out, ["loss", "seed"])


def auc_table(
    df: pd.DataFrame, metric: str = "recall@1", dataset: str | None = None, percent: bool | None = None
) -> pd.DataFrame:
    """Summary score per (dataset, loss): the mean over seeds of the normalized AUC of the
    metric-vs-FID curve (``auc``), its ``std`` and ``ci95`` over seeds, ``n_seeds``, the number of
    splits and FID range, ``rank`` (1 = best) and one column ``auc_seed<s>`` per seed. Sorted per
    dataset by decreasing ``auc``."""
    frames = []
    for ds in _dataset_list(df, dataset):
        per = auc_per_seed(df, ds, metric, percent)
        per = per[np.isfinite(per["auc"])]
        if per.empty:
            continue
        rows = []
        seeds = sorted(per["seed"].unique())
        for loss, grp in per.groupby("loss", sort=False):
            v = grp["auc"].to_numpy(np.float64)
            row = {
                "dataset": ds,
                "loss": loss,
                "auc": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                "ci95": t_ci95(v),
                "n_seeds": int(len(v)),
                "n_splits": int(grp["n_splits"].max()),
                "fid_min": float(grp["fid_min"].min()),
                "fid_max": float(grp["fid_max"].max()),
            }
            by_seed = dict(zip(grp["seed"], v))
            for s in seeds:
                row[f"auc_seed{s}"] = float(by_seed.get(s, np.nan))
            rows.append(row)
        t = pd.DataFrame(rows)
        order = {name: i for i, name in enumerate(loss_order(t["loss"].unique()))}
        t["_lo"] = t["loss"].map(order)
        t = t.sort_values(["auc", "_lo"], ascending=[False, True], kind="mergesort").drop(columns="_lo")
        t.insert(2, "rank", np.arange(1, len(t) + 1))
        frames.append(t)
    base = ["dataset", "loss", "rank", "auc", "std", "ci95", "n_seeds", "n_splits", "fid_min", "fid_max"]
    if not frames:
        return pd.DataFrame(columns=base)
    out = pd.concat(frames, ignore_index=True)
    seed_cols = sorted((c for c in out.columns if c.startswith("auc_seed")), key=lambda c: int(c[8:]))
    return out[base + seed_cols]


# --------------------------------------------------------------------------------------------
# Ranking stability
# --------------------------------------------------------------------------------------------
def ranking_stability(
    df: pd.DataFrame, metric: str = "recall@1", dataset: str | None = None, percent: bool | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranks of the losses on every split and their agreement with the easiest split.

    Returns ``(ranks, tau)``:

    * ``ranks``: ``dataset, split, fid, loss, mean, rank`` (rank 1 = highest mean over seeds;
      ties share the average rank), splits in order of FID;
    * ``tau``: for every split harder than the easiest one (lowest FID) of its dataset,
      ``dataset, split, fid, reference_split, reference_fid, tau, p_value, n_losses`` with
      Kendall's τ-b (:func:`scipy.stats.kendalltau`) between the two rankings over the losses
      present on both (NaN below 2 losses or when a ranking is constant).
    """
    from scipy import stats

    rank_frames, tau_rows = [], []
    for ds in _dataset_list(df, dataset):
        cur = curve_table(df, ds, metric, percent)
        if cur.empty:
            continue
        cur = cur[["split", "fid", "loss", "mean"]].copy()
        cur.insert(0, "dataset", ds)
        cur["rank"] = cur.groupby(["split", "fid"], dropna=False)["mean"].rank(ascending=False, method="average")
        cur = _sort(cur, ["fid", "split", "rank", "loss"])
        rank_frames.append(cur)
        split_keys = cur[["split", "fid"]].drop_duplicates().reset_index(drop=True)
        ref_split, ref_fid = split_keys.iloc[0]["split"], split_keys.iloc[0]["fid"]
        ref = cur[(cur["fid"] == ref_fid) & _same_split(cur["split"], ref_split)].set_index("loss")["rank"]
        for _, key in split_keys.iloc[1:].iterrows():
            other = cur[(cur["fid"] == key["fid"]) & _same_split(cur["split"], key["split"])].set_index("loss")["rank"]
            common = [loss for loss in ref.index if loss in other.index]
            tau, p = float("nan"), float("nan")
            if len(common) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = stats.kendalltau(ref[common].to_numpy(), other[common].to_numpy())
                tau, p = float(res.statistic), float(res.pvalue)
            tau_rows.append(
                {
                    "dataset": ds,
                    "split": key["split"],
                    "fid": float(key["fid"]),
                    "reference_split": ref_split,
                    "reference_fid": float(ref_fid),
                    "tau": tau,
                    "p_value": p,
                    "n_losses": len(common),
                }
            )
    rank_cols = ["dataset", "split", "fid", "loss", "mean", "rank"]
    tau_cols = ["dataset", "split", "fid", "reference_split", "reference_fid", "tau", "p_value", "n_losses"]
    ranks = pd.concat(rank_frames, ignore_index=True)[rank_cols] if rank_frames else pd.DataFrame(columns=rank_cols)
    tau = pd.DataFrame(tau_rows, columns=tau_cols)
    for col in ("split", "reference_split"):
        tau[col] = pd.array(list(tau[col]), dtype="Int64")
    return ranks, tau


def _same_split(col: pd.Series, value: Any) -> pd.Series:
    if pd.isna(value):
        return col.isna()
    return (col == value).fillna(False).astype(bool)


# --------------------------------------------------------------------------------------------
# Adaptation
# --------------------------------------------------------------------------------------------
def fewshot_table(
    df: pd.DataFrame, dataset: str, metric: str = "recall@1", percent: bool | None = None
) -> pd.DataFrame:
    """Few-shot gain over zero-shot per (k, loss, split), from stages ``few-shot-<k>``.

    The gain of a run is its ``<metric>_gain`` row (with that row's ``ci95`` over episodes) or,
    when absent, ``<metric>`` − ``<metric>_zero_shot``. Columns ``k, loss, split, fid, adapted,
    zero_shot, mean`` (the gain, mean over seeds), ``std, ci95, n_seeds, ci_source`` (``ci95``
    over seeds, or over episodes with one seed). Rows without FID are left out. Empty when the
    table has no few-shot rows for this metric."""
    sel = _select(df, dataset)
    stage_k = sel["stage"].str.extract(FEW_SHOT_STAGE.pattern, expand=False)
    names = {metric, f"{metric}_gain", f"{metric}_zero_shot"}
    sel = sel.assign(k=stage_k)[stage_k.notna() & sel["metric"].isin(names) & np.isfinite(sel["fid"])]
    cols = ["k", "loss", "split", "fid", "adapted", "zero_shot", "mean", "std", "ci95", "n_seeds", "ci_source"]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    scale = _scale(metric, percent)
    run_keys = ["k", "loss", "split", "fid", "seed"]
    per = sel.groupby(run_keys + ["metric"], dropna=False, sort=False)[["value", "ci95"]].mean()
    wide = per.unstack("metric")
    nan = pd.Series(np.nan, index=wide.index)

    def col(kind: str, name: str) -> pd.Series:
        return wide[(kind, name)] if (kind, name) in wide.columns else nan

    adapted, zs = col("value", metric), col("value", f"{metric}_zero_shot")
    given, given_ci = col("value", f"{metric}_gain"), col("ci95", f"{metric}_gain")
    has = np.isfinite(given.to_numpy(np.float64))
    gain = np.where(has, given, adapted - zs)
    ci = np.where(has, given_ci, np.nan)
    runs = pd.DataFrame(
        {
            "value": gain * scale,
            "ci95": ci * scale,
            "adapted": adapted.to_numpy(np.float64) * scale,
            "zero_shot": zs.to_numpy(np.float64) * scale,
        },
        index=wide.index,
    ).reset_index()
    runs = runs[np.isfinite(runs["value"])]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    runs["k"] = runs["k"].astype(int)
    stats_ = _seed_stats(runs, ["k", "loss", "split", "fid"])
    means = (
        runs.groupby(["k", "loss", "split", "fid"], dropna=False, sort=False)[["adapted", "zero_shot"]]
        .mean()
        .reset_index()
    )
    out = stats_.merge(means, on=["k", "loss", "split", "fid"], how="left")
    return _sort(out[cols], ["k", "loss", "fid", "split"])


def probe_table(df: pd.DataFrame, dataset: str, percent: bool | None = None) -> pd.DataFrame:
    """Linear-probe accuracy (stage ``linear-probe``, metrics ``top1_<features>_<setting>``) per
    (features, setting, loss, split): columns ``metric, features`` (``embedding``/``backbone``),
    ``setting`` (``2shot``, ..., ``half``), ``loss, split, fid, mean, std, ci95, n_seeds,
    ci_source``. Empty when the table has no such rows."""
    sel = _select(df, dataset)
    sel = sel[
        (sel["stage"] == "linear-probe")
        & sel["metric"].str.match(PROBE_METRIC.pattern)
        & np.isfinite(sel["fid"])
        & np.isfinite(sel["value"])
    ]
    cols = ["metric", "features", "setting", "loss", "split", "fid", "mean", "std", "ci95", "n_seeds", "ci_source"]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    sel = (
        sel.groupby(["metric", "loss", "split", "fid", "seed"], dropna=False, sort=False)[["value", "ci95"]]
        .mean()
        .reset_index()
    )
    scale = _scale("top1_embedding_half", percent)
    sel["value"] *= scale
    sel["ci95"] *= scale
    out = _seed_stats(sel, ["metric", "loss", "split", "fid"])
    parts = out["metric"].str.extract(PROBE_METRIC.pattern)
    out.insert(1, "features", parts[0])
    out.insert(2, "setting", parts[1])
    out["_feat"] = out["features"].map({"embedding": 0, "backbone": 1})
    out["_set"] = [setting_order(s) for s in out["setting"]]
    out = _sort(out, ["_set", "_feat", "loss", "fid", "split"]).drop(columns=["_feat", "_set"])
    return out[cols]


def setting_order(setting: str) -> int:
    """Sort key of a probe setting: ``<k>shot`` by k, then ``half``."""
    m = re.match(r"^(\d+)shot$", setting)
    return int(m.group(1)) if m else 10**9


def setting_label(setting: str, short: bool = False) -> str:
    """``"5shot"`` -> ``"5-shot"``, ``"half"`` -> ``"half of the images"`` (``"half"`` if ``short``)."""
    m = re.match(r"^(\d+)shot$", setting)
    if m:
        return f"{m.group(1)}-shot"
    if setting == "half":
        return "half" if short else "half of the images"
    return setting


# --------------------------------------------------------------------------------------------
# Writing tables: CSV, Markdown, LaTeX (booktabs)
# --------------------------------------------------------------------------------------------
def _cell(v: Any, fmt: str) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return ""
        return format(float(v), fmt)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def to_markdown(df: pd.DataFrame, float_format: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, floats with ``float_format``)."""
    header = [str(c).replace("|", "\\|") for c in df.columns]
    align = ["---:" if _is_numeric(df[c]) else ":---" for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, float_format).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, float_format: str = ".4g", caption: str | None = None) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), text escaped, numbers right-aligned;
    the caption, when given, as a leading comment (wrap it in a ``table`` float yourself)."""
    spec = "".join("r" if _is_numeric(df[c]) else "l" for c in df.columns)
    lines = []
    if caption:
        lines.append("% " + caption.replace("\n", " "))
    lines += [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in df.columns) + " \\\\",
        "\\midrule",
    ]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(latex_escape(_cell(v, float_format)) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(df: pd.DataFrame) -> str:
    """CSV text (full float precision, ``\\n`` line ends, empty cells for missing values)."""
    return df.to_csv(index=False, lineterminator="\n")


def write_table(df: pd.DataFrame, stem: PathLike, caption: str | None = None) -> list[Path]:
    """Write ``df`` atomically as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex``; return the paths."""
    stem = Path(stem)
    paths = []
    for ext, text in (("csv", to_csv(df)), ("md", to_markdown(df)), ("tex", to_latex(df, caption=caption))):
        path = stem.with_name(f"{stem.name}.{ext}")
        atomic_write(path, text)
        paths.append(path)
    return paths


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
]
