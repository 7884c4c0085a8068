"""Tables of a study's results table: the numbers behind the figures.

Everything here takes a results table (a :class:`pandas.DataFrame` from
:func:`oodml.analysis.results.load_results`) and returns tidy DataFrames; the figures that draw
them live in :mod:`oodml.analysis.figures` (see :mod:`oodml.analysis` for the conventions: units,
what enters the FID analyses, spread over seeds, loss order).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from oodml.analysis.labels import _scale, loss_order, setting_order
from oodml.analysis.results import FEW_SHOT_STAGE, PROBE_METRIC, _as_results, datasets
from oodml.errors import BadInputError

# scipy.stats is imported inside the functions that need it, on purpose: it costs about as much
# as pandas at startup, and loading, labelling and writing tables need none of it.


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
