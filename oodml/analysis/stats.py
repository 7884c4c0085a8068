r"""Statistics over seeds and splits: bootstrap intervals, paired bootstrap tests between losses,
and the Friedman test with Nemenyi's critical difference (Demšar, JMLR 2006).

Are the differences between losses larger than the noise?  Three answers, each from the results
table (:mod:`oodml.analysis.tables`):

* :func:`curve_intervals` -- per loss and split, the mean over seeds and a 95 % percentile
  bootstrap interval over seeds (what the curves draw when there are several seeds);
* :func:`auc_intervals` / :func:`pairwise_auc_tests` -- the normalized AUC of each loss with a
  bootstrap interval over seeds, and for every two losses the paired bootstrap of their AUC
  difference (seeds resampled jointly for both losses: a seed's two runs share its split and data
  order), with a two-sided p-value;
* :func:`friedman_nemenyi` (drawn by :func:`oodml.analysis.figures.cd_diagram`) -- the losses
  ranked on every split (the blocks),
  Friedman's χ² test that all losses rank alike, and Nemenyi's critical difference
  :math:`CD = q_\alpha\sqrt{k(k+1)/(6N)}` (``k`` losses, ``N`` splits,
  :math:`q_\alpha` the studentized range quantile / √2): two losses whose average ranks differ by
  less than CD are not told apart.

Bootstrap draws come from ``numpy.random.default_rng(seed)``: the same inputs give the same
numbers.  With a single seed the intervals and the paired test are NaN (there is nothing to
resample); with two seeds they are honest but coarse (only three distinct resamples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from oodml.analysis.labels import loss_order
from oodml.analysis.results import datasets
from oodml.analysis.tables import auc_per_seed, auc_table, curve_table, zero_shot
from oodml.errors import BadInputError

# scipy.stats is imported inside the functions, on purpose (a startup cost about that of pandas).

__all__ = [
    "auc_intervals",
    "bootstrap_ci",
    "curve_intervals",
    "friedman_nemenyi",
    "nemenyi_cd",
    "paired_bootstrap",
    "pairwise_auc_tests",
]

N_BOOT = 10_000


def bootstrap_ci(
    values: Sequence[float], *, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D floats; NaNs dropped).
    Returns ``(low, high)``; NaNs with fewer than 2 values."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(int(n_boot), len(v)))].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> dict:
    """Paired bootstrap of ``mean(a - b)`` (``a[i]`` and ``b[i]`` share unit ``i``, e.g. a seed).

    Returns ``{"diff", "low", "high", "p_value", "n"}``: the observed mean difference, its
    percentile interval, and the two-sided p-value ``min(1, 2·min(P*(d ≤ 0), P*(d ≥ 0)))`` of the
    bootstrap distribution ``d`` (each proportion as ``(1 + count) / (n_boot + 1)``, so a Monte-Carlo
    p-value is never exactly 0).  NaNs (but ``diff``) with fewer than 2 pairs.  With very few pairs
    the bootstrap distribution has few distinct values (3 with 2 seeds) and the test is
    anti-conservative: read it with the number of seeds beside it.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples need the same 1-D shape, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    out = {
        "diff": float(d.mean()) if len(d) else float("nan"),
        "low": float("nan"),
        "high": float("nan"),
        "p_value": float("nan"),
        "n": int(len(d)),
    }
    if len(d) < 2:
        return out
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), size=(int(n_boot), len(d)))].mean(axis=1)
    al = (1.0 - level) / 2.0
    out["low"], out["high"] = (float(q) for q in np.quantile(boot, [al, 1.0 - al]))
    nb = len(boot)
    out["p_value"] = float(
        min(1.0, 2.0 * min((1 + np.sum(boot <= 0.0)) / (nb + 1), (1 + np.sum(boot >= 0.0)) / (nb + 1)))
    )
    return out


def curve_intervals(
    df: pd.DataFrame,
    dataset: str,
    metric: str = "recall@1",
    *,
    percent: bool | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`oodml.curve_table` plus ``boot_low``/``boot_high``: the 95 % bootstrap
    interval over seeds of the mean per (loss, split) (NaN with one seed)."""
    cur = curve_table(df, dataset, metric, percent)
    z = zero_shot(df, dataset, metric, percent)
    lows, highs = [], []
    for loss, split, fid in zip(cur["loss"], cur["split"], cur["fid"]):
        sel = (z["loss"] == loss) & (z["fid"] == fid)
        sel &= z["split"].isna() if pd.isna(split) else (z["split"] == split).fillna(False)
        lo, hi = bootstrap_ci(z.loc[sel, "value"].to_numpy(np.float64), n_boot=n_boot, seed=seed)
        lows.append(lo)
        highs.append(hi)
    return cur.assign(boot_low=np.asarray(lows, dtype=np.float64), boot_high=np.asarray(highs, dtype=np.float64))


def auc_intervals(
    df: pd.DataFrame,
    metric: str = "recall@1",
    dataset: str | None = None,
    *,
    percent: bool | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`oodml.auc_table` plus ``auc_low``/``auc_high``: the 95 % bootstrap
    interval over seeds of each loss's mean normalized AUC."""
    tab = auc_table(df, metric, dataset, percent)
    lows, highs = [], []
    per_ds: dict[str, pd.DataFrame] = {}
    for ds, loss in zip(tab["dataset"], tab["loss"]):
        if ds not in per_ds:
            per_ds[ds] = auc_per_seed(df, ds, metric, percent)
        per = per_ds[ds]
        lo, hi = bootstrap_ci(per.loc[per["loss"] == loss, "auc"].to_numpy(np.float64), n_boot=n_boot, seed=seed)
        lows.append(lo)
        highs.append(hi)
    tab = tab.copy()
    at = list(tab.columns).index("ci95") + 1
    tab.insert(at, "auc_low", np.asarray(lows, dtype=np.float64))
    tab.insert(at + 1, "auc_high", np.asarray(highs, dtype=np.float64))
    return tab


def pairwise_auc_tests(
    df: pd.DataFrame,
    metric: str = "recall@1",
    dataset: str | None = None,
    *,
    percent: bool | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired bootstrap (:func:`paired_bootstrap`, seeds as the paired unit) of the AUC difference
    between every two losses of a dataset.  Columns ``dataset, loss_a, loss_b, diff, low, high,
    p_value, n_seeds`` (``diff = AUC(a) - AUC(b)``; ``a`` ranks above ``b`` in the AUC table)."""
    rows = []
    for ds in [dataset] if dataset else datasets(df):
        per = auc_per_seed(df, ds, metric, percent)
        per = per[np.isfinite(per["auc"])]
        if per.empty:
            continue
        order = list(auc_table(df, metric, ds, percent)["loss"])
        wide = per.pivot_table(index="seed", columns="loss", values="auc")
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                r = paired_bootstrap(wide[a].to_numpy(), wide[b].to_numpy(), n_boot=n_boot, seed=seed)
                rows.append(
                    {
                        "dataset": ds,
                        "loss_a": a,
                        "loss_b": b,
                        "diff": r["diff"],
                        "low": r["low"],
                        "high": r["high"],
                        "p_value": r["p_value"],
                        "n_seeds": r["n"],
                    }
                )
    return pd.DataFrame(rows, columns=["dataset", "loss_a", "loss_b", "diff", "low", "high", "p_value", "n_seeds"])


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks for ``k`` treatments over ``n`` blocks."""
    from scipy.stats import studentized_range

    if k < 2 or n < 1:
        return float("nan")
    q = float(studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


def friedman_nemenyi(
    df: pd.DataFrame,
    metric: str = "recall@1",
    dataset: str | None = None,
    *,
    alpha: float = 0.05,
    percent: bool | None = None,
) -> dict:
    """Friedman test and Nemenyi critical difference of the losses ranked on every split.

    Blocks are the (dataset, split) pairs where every loss has a value (mean over seeds); rank 1
    is the highest ``metric`` (ties share the average rank).  Returns ``{"ranks": DataFrame(loss,
    avg_rank) sorted best first, "k", "n_blocks", "statistic", "p_value", "cd", "alpha"}``
    (``statistic``/``p_value`` NaN below 3 losses or 2 blocks, as Friedman's test needs).
    """
    from scipy.stats import friedmanchisquare, rankdata

    frames = []
    for ds in [dataset] if dataset else datasets(df):
        cur = curve_table(df, ds, metric, percent)
        if not cur.empty:
            frames.append(cur.assign(block=[f"{ds}/{s}/{f!r}" for s, f in zip(cur["split"], cur["fid"])]))
    if not frames:
        raise BadInputError(f"no zero-shot {metric} rows with an FID to rank the losses on")
    cur = pd.concat(frames, ignore_index=True)
    wide = cur.pivot_table(index="block", columns="loss", values="mean", sort=False).dropna(axis=0, how="any")
    losses = loss_order(wide.columns)
    wide = wide[losses]
    k, n = len(losses), len(wide)
    if n == 0:
        raise BadInputError(f"no split where every loss has a {metric} value; cannot rank the losses")
    ranks = np.vstack([rankdata(-row) for row in wide.to_numpy(np.float64)])
    avg = ranks.mean(axis=0)
    stat = p = float("nan")
    if k >= 3 and n >= 2:
        res = friedmanchisquare(*[wide[c].to_numpy(np.float64) for c in losses])
        stat, p = float(res.statistic), float(res.pvalue)
    table = pd.DataFrame({"loss": losses, "avg_rank": avg}).sort_values("avg_rank", kind="mergesort")
    return {
        "ranks": table.reset_index(drop=True),
        "k": k,
        "n_blocks": n,
        "statistic": stat,
        "p_value": p,
        "cd": nemenyi_cd(k, n, alpha),
        "alpha": alpha,
    }


def _cliques(ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``(i, j)`` (i < j, positions in ascending rank order) whose ranks span less than ``cd``."""
    r = list(ranks)
    out: list[tuple[int, int]] = []
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out
