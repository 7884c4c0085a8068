r"""``python -m oodml.shift``: several measures of train→test shift, side by side, on a split series.

A generalization curve orders the splits of a series by one number (the FID under one frozen
network).  This module rescores every split under several extractors and several measures so a
reader can see whether another network or another distance would have ordered them the same way,
and (with a results table) which measure predicts the drop of Recall@1 best::

    python -m oodml.shift splits/glyphs.json --features pixels hog
    python -m oodml.shift splits/cub.json --root ~/data --features resnet50 inception \
        --features-file clip.npz --results runs/oodml_cub/results.csv --out figures/shift_cub

Measures (``x`` = train-side points, ``y`` = test-side points, features in float64):

``fid_class``  Fréchet distance between the two sides' sets of class means (the ooDML grading);
``fid_image``  Fréchet distance between all train-side and all test-side images;
``kid``        kernel inception distance: the *unbiased* squared MMD with the cubic polynomial kernel
               :math:`k(a,b) = (a^\top b/d + 1)^3`, averaged over ``kid_subsets`` random subsets of
               ``kid_subset_size`` images per side (Bińkowski et al. 2018); ``kid_se`` is its standard
               error over the subsets (sample std / √subsets);
``mmd``        unbiased squared MMD with the Gaussian kernel :math:`\exp(-\lVert a-b\rVert^2/2\sigma^2)`,
               :math:`\sigma` the median pairwise distance of the pooled sample (computed exactly on
               up to ``median_points`` pooled points, a seeded subsample above that);
``mean_dist``  Euclidean distance between the two sides' mean features.

The FIDs come from :class:`oodml.fid.FIDComputer` (exact float64).  Kernel sums are taken block by
block (``block`` rows at a time), so memory is ``O(block² + n d)``: no n × n matrix is ever built.

Per-class attribution (:func:`fid_attribution`) gives, for every class of a split, how much the FID
changes when that class is left out of its side (negative: the class carries shift), using the
incremental statistics of :class:`~oodml.fid.FIDComputer`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from oodml.cli import add_quiet, progress_disabled, run_cli
from oodml.errors import BadInputError, OodmlError

__all__ = [
    "MEASURES",
    "fid_attribution",
    "kendall_table",
    "kid",
    "mean_distance",
    "median_bandwidth",
    "mmd_rbf",
    "predictive_table",
    "shift_figure",
    "shift_table",
    "attribution_figure",
]

MEASURES = ("fid_class", "fid_image", "kid", "mmd", "mean_dist")
BLOCK = 1024


# ============================================================================================
# Block-wise kernel sums
# ============================================================================================
def _f64(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty (n, d) array, got shape {a.shape}")
    return a


def _kernel_sum(
    x: np.ndarray, y: np.ndarray | None, kernel: Callable[[np.ndarray, np.ndarray], np.ndarray], block: int = BLOCK
) -> float:
    """Sum of ``kernel(x_i, y_j)`` over all pairs, off-diagonal pairs only when ``y is None``
    (then ``y = x``); computed ``block`` rows at a time (at most ``block²`` values in memory).
    Over x itself only the blocks on or above the diagonal are evaluated (the kernel is symmetric)."""
    total = 0.0
    if y is None:
        n = x.shape[0]
        for i in range(0, n, block):
            a = np.asarray(x[i : i + block], dtype=np.float64)
            for j in range(i, n, block):
                b = a if j == i else np.asarray(x[j : j + block], dtype=np.float64)
                k = kernel(a, b)
                if j == i:
                    total += float(k.sum() - np.trace(k))
                else:
                    total += 2.0 * float(k.sum())
        return total
    for i in range(0, x.shape[0], block):
        a = np.asarray(x[i : i + block], dtype=np.float64)
        for j in range(0, y.shape[0], block):
            total += float(kernel(a, np.asarray(y[j : j + block], dtype=np.float64)).sum())
    return total


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, kernel, block: int) -> float:
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per side, got {m} and {n}")
    kxx = _kernel_sum(x, None, kernel, block) / (m * (m - 1))
    kyy = _kernel_sum(y, None, kernel, block) / (n * (n - 1))
    kxy = _kernel_sum(x, y, kernel, block) / (m * n)
    return kxx + kyy - 2.0 * kxy


def _poly_kernel(d: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        g = a @ b.T
        g /= d
        g += 1.0
        return g * g * g

    return k


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    g = a @ b.T
    g *= -2.0
    g += np.einsum("ij,ij->i", a, a)[:, None]
    g += np.einsum("ij,ij->i", b, b)[None, :]
    np.maximum(g, 0.0, out=g)
    return g


def _rbf_kernel(sigma: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    scale = -1.0 / (2.0 * sigma * sigma)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        g = _sqdist(a, b)
        g *= scale
        return np.exp(g, out=g)

    return k


# ============================================================================================
# Measures
# ============================================================================================
def kid(x, y, *, subsets: int = 50, subset_size: int = 1000, seed: int = 0, block: int = BLOCK) -> tuple[float, float]:
    """Kernel inception distance between point sets ``x`` (m, d) and ``y`` (n, d).

    The unbiased squared MMD with the kernel ``(a·b/d + 1)³``, averaged over ``subsets`` draws of
    ``min(subset_size, m, n)`` points per side without replacement (seeded).  When ``subset_size``
    covers both sides completely, the estimate on all points is exact and used.  Returns ``(kid, se)`` with
    ``se`` the standard error over the draws (``std(ddof=1)/√subsets``; NaN for one draw).
    """
    x, y = _f64(x, "x"), _f64(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have different dimensions: {x.shape[1]} and {y.shape[1]}")
    kern = _poly_kernel(x.shape[1])
    if subset_size >= x.shape[0] and subset_size >= y.shape[0]:
        return _unbiased_mmd2(x, y, kern, block), float("nan")
    size = int(min(subset_size, x.shape[0], y.shape[0]))
    rng = np.random.default_rng(seed)
    vals = np.empty(int(subsets))
    for s in range(int(subsets)):
        ix = np.sort(rng.choice(x.shape[0], size, replace=False))
        iy = np.sort(rng.choice(y.shape[0], size, replace=False))
        vals[s] = _unbiased_mmd2(x[ix], y[iy], kern, block)
    se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan")
    return float(vals.mean()), se


def median_bandwidth(x, y, *, max_points: int = 2000, seed: int = 0, block: int = BLOCK) -> float:
    """Median Euclidean distance between distinct points of the pooled sample ``x ∪ y``.

    Exact when the pooled sample has at most ``max_points`` points; otherwise taken on a seeded
    subsample of ``max_points`` of them (the distances are gathered block by block; their number
    is ``max_points²/2``).
    """
    x, y = _f64(x, "x"), _f64(y, "y")
    n = x.shape[0] + y.shape[0]
    if n > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        ix, iy = pick[pick < x.shape[0]], pick[pick >= x.shape[0]] - x.shape[0]
        z = np.concatenate([np.asarray(x[ix], np.float64), np.asarray(y[iy], np.float64)])
    else:
        z = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    parts = []
    for i in range(0, z.shape[0], block):
        a = z[i : i + block]
        for j in range(i, z.shape[0], block):
            d2 = _sqdist(a, z[j : j + block])
            if j == i:
                d2 = d2[np.triu_indices(d2.shape[0], k=1)]
            parts.append(d2.ravel())
    d2 = np.concatenate(parts)
    return float(np.sqrt(np.median(d2)))


def mmd_rbf(
    x, y, *, sigma: float | None = None, median_points: int = 2000, seed: int = 0, block: int = BLOCK
) -> tuple[float, float]:
    """Unbiased squared MMD with a Gaussian kernel between ``x`` (m, d) and ``y`` (n, d), over all
    points, block-wise.  ``sigma`` defaults to :func:`median_bandwidth`.  Returns ``(mmd2, sigma)``."""
    x, y = _f64(x, "x"), _f64(y, "y")
    if sigma is None:
        sigma = median_bandwidth(x, y, max_points=median_points, seed=seed, block=block)
    if not sigma > 0:
        return 0.0, float(sigma)
    return _unbiased_mmd2(x, y, _rbf_kernel(sigma), block), float(sigma)


def mean_distance(x, y) -> float:
    """Euclidean distance between the mean rows of ``x`` (m, d) and ``y`` (n, d), in float64."""
    x, y = _f64(x, "x"), _f64(y, "y")
    return float(np.linalg.norm(x.mean(axis=0, dtype=np.float64) - y.mean(axis=0, dtype=np.float64)))


# ============================================================================================
# Feature tables for a split file
# ============================================================================================
class _Table:
    """A feature table indexed by the split file's class names."""

    def __init__(self, name: str, features: np.ndarray, labels: np.ndarray, classes: list[str]):
        self.name = name
        self.features = features
        self.labels = labels
        self.classes = classes
        self.index = {c: i for i, c in enumerate(classes)}
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(classes) + 1))
        self.rows = {c: order[bounds[i] : bounds[i + 1]] for i, c in enumerate(classes)}
        self._fc: dict[str, object] = {}

    def ids(self, names: Iterable[str], source: str) -> list[int]:
        out = []
        for c in names:
            if c not in self.index:
                raise BadInputError(
                    f"{source}: class {c!r} is not in the {self.name} feature table; "
                    "were the features computed on the same dataset?"
                )
            out.append(self.index[c])
        return out

    def points(self, names: Sequence[str]) -> np.ndarray:
        idx = np.concatenate([self.rows[c] for c in names])
        return self.features[np.sort(idx)]

    def fid(self, level: str):
        from oodml.fid import FIDComputer

        if level not in self._fc:
            self._fc[level] = FIDComputer(self.features, self.labels, level=level)
        return self._fc[level]


def _tables(
    sf, features: Sequence[str], features_files: Sequence[str], *, root=None, weights=None, progress: bool = False
) -> list[_Table]:
    from oodml import features as feats
    from oodml.splits import _table_from_featureset

    out: list[_Table] = []
    if features:
        from oodml.datasets import load_dataset

        ds = load_dataset(sf.dataset or None, root=root)
        for name in features:
            fs = feats.extract_features(ds, name, weights=weights, progress=progress)
            x, lab, classes = _table_from_featureset(fs)
            out.append(_Table(name, x, lab, classes))
    for path in features_files:
        fs = feats.load_features_file(path)
        x, lab, classes = _table_from_featureset(fs)
        out.append(_Table(Path(path).stem, x, lab, classes))
    names = [t.name for t in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise BadInputError(f"extractor {sorted(dup)[0]!r} is given twice; give each extractor or features file once")
    return out


def shift_table(
    sf,
    tables: Sequence[_Table],
    *,
    measures: Sequence[str] = MEASURES,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
    median_points: int = 2000,
    seed: int = 0,
    block: int = BLOCK,
    progress: bool = False,
) -> pd.DataFrame:
    """Tidy table of every series split × extractor × measure: columns ``split, fid, extractor,
    measure, value, se`` (``fid`` is the split file's own FID; ``se`` only for ``kid``)."""
    from tqdm.auto import tqdm

    bad = [m for m in measures if m not in MEASURES]
    if bad:
        raise OodmlError(f"unknown shift measure {bad[0]!r}; known: {', '.join(MEASURES)}")
    rows = []
    jobs = [(t, s) for t in tables for s in sf.series]
    for t, s in tqdm(jobs, desc="shift measures", disable=not progress, leave=False):
        src = str(sf.path)
        tr, te = t.ids(s.train, src), t.ids(s.test, src)

        def add(measure: str, value: float, se: float = float("nan"), s=s, t=t) -> None:
            rows.append(
                {
                    "split": int(s.id),
                    "fid": float(s.fid),
                    "extractor": t.name,
                    "measure": measure,
                    "value": float(value),
                    "se": float(se),
                }
            )

        need_points = any(m in measures for m in ("kid", "mmd", "mean_dist"))
        x = t.points(s.train) if need_points else None
        y = t.points(s.test) if need_points else None
        for m in measures:
            if m == "fid_class":
                add(m, t.fid("class")(tr, te))
            elif m == "fid_image":
                add(m, t.fid("image")(tr, te))
            elif m == "kid":
                add(m, *kid(x, y, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed, block=block))
            elif m == "mmd":
                add(m, mmd_rbf(x, y, median_points=median_points, seed=seed, block=block)[0])
            elif m == "mean_dist":
                add(m, mean_distance(x, y))
    return pd.DataFrame(rows, columns=["split", "fid", "extractor", "measure", "value", "se"])


def _wide(table: pd.DataFrame) -> pd.DataFrame:
    """One column per ``extractor/measure``, one row per split."""
    w = table.assign(key=table["extractor"] + "/" + table["measure"])
    w = w.pivot_table(index="split", columns="key", values="value", sort=False)
    cols = list(dict.fromkeys(table["extractor"] + "/" + table["measure"]))
    return w[cols].sort_index()


def kendall_table(table: pd.DataFrame) -> pd.DataFrame:
    """Kendall's τ (tau-b) between every two orderings of the splits, one row per pair:
    columns ``a, b, tau, p_value, n_splits`` (``a``/``b`` are ``extractor/measure``)."""
    from scipy.stats import kendalltau

    w = _wide(table)
    rows = []
    cols = list(w.columns)
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            keep = np.isfinite(w[a].to_numpy()) & np.isfinite(w[b].to_numpy())
            if keep.sum() >= 2:
                res = kendalltau(w[a].to_numpy()[keep], w[b].to_numpy()[keep])
                tau, p = float(res.statistic), float(res.pvalue)
            else:
                tau = p = float("nan")
            rows.append({"a": a, "b": b, "tau": tau, "p_value": p, "n_splits": int(keep.sum())})
    return pd.DataFrame(rows, columns=["a", "b", "tau", "p_value", "n_splits"])


def tau_matrix(tau: pd.DataFrame) -> pd.DataFrame:
    """The pairs of :func:`kendall_table` as a symmetric square table (1 on the diagonal)."""
    names = list(dict.fromkeys(list(tau["a"]) + list(tau["b"])))
    m = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for a, b, t in zip(tau["a"], tau["b"], tau["tau"]):
        m.loc[a, b] = m.loc[b, a] = t
    return m


def predictive_table(
    table: pd.DataFrame, results: pd.DataFrame, *, dataset: str | None = None, metric: str = "recall@1"
) -> pd.DataFrame:
    """How well each shift measure predicts ``metric`` across splits: per loss and
    ``extractor/measure``, Spearman's ρ between the measure and the loss's zero-shot ``metric``
    (mean over seeds) on the splits both have.  A good measure of shift has ρ close to -1.
    Columns ``loss, extractor, measure, spearman, p_value, n_splits``."""
    from scipy.stats import spearmanr

    from oodml import analysis

    ds = dataset or analysis.datasets(results)[0]
    z = analysis.zero_shot(results, ds, metric, percent=False)
    if z.empty:
        raise BadInputError(f"the results table has no zero-shot {metric} rows for dataset {ds!r}")
    perf = z.groupby(["loss", "split"], sort=False)["value"].mean().reset_index()
    rows = []
    for loss in analysis.loss_order(perf["loss"].unique()):
        p = perf[perf["loss"] == loss].set_index("split")["value"]
        for (ext, meas), grp in table.groupby(["extractor", "measure"], sort=False):
            m = grp.set_index("split")["value"]
            common = sorted(set(m.index) & {int(s) for s in p.index if pd.notna(s)})
            if len(common) >= 3:
                res = spearmanr(m.loc[common].to_numpy(), p.loc[common].to_numpy())
                rho, pv = float(res.statistic), float(res.pvalue)
            else:
                rho = pv = float("nan")
            rows.append(
                {
                    "loss": loss,
                    "extractor": ext,
                    "measure": meas,
                    "spearman": rho,
                    "p_value": pv,
                    "n_splits": len(common),
                }
            )
    return pd.DataFrame(rows, columns=["loss", "extractor", "measure", "spearman", "p_value", "n_splits"])


# ============================================================================================
# Attribution
# ============================================================================================
def fid_attribution(fc, train: Sequence[int], test: Sequence[int], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-class leave-one-out change of the FID of a split.

    ``fc``: a :class:`~oodml.fid.FIDComputer`; ``train``/``test``: its class ids of the two sides.
    For every class ``c`` the FID is recomputed with ``c`` left out of its side, through the
    computer's incremental statistics (at image level each call is a rank update of the cached
    side moments, not a rebuild).  Returns columns ``class, side, fid, fid_without, delta``
    (``delta = fid_without - fid``; negative = the class adds to the shift), sorted by ``delta``.
    A side of two points or fewer cannot lose one; its classes are skipped.
    """
    train, test = [int(c) for c in train], [int(c) for c in test]
    base = float(fc(train, test))
    rows = []
    for side, own, other in (("train", train, test), ("test", test, train)):
        npts = int(sum(fc._point_counts[c] for c in own))
        for c in own:
            if npts - int(fc._point_counts[c]) < 2:
                continue
            rest = [k for k in own if k != c]
            value = float(fc(rest, other) if side == "train" else fc(other, rest))
            rows.append(
                {
                    "class": names[c] if names is not None else c,
                    "side": side,
                    "fid": base,
                    "fid_without": value,
                    "delta": value - base,
                }
            )
    out = pd.DataFrame(rows, columns=["class", "side", "fid", "fid_without", "delta"])
    return out.sort_values(["delta", "side"], kind="mergesort").reset_index(drop=True)


def attribution_table(sf, table: _Table, *, level: str | None = None, progress: bool = False) -> pd.DataFrame:
    """:func:`fid_attribution` for every split of a series under one feature table (at the split
    file's level by default); columns ``split`` + those of :func:`fid_attribution`."""
    from tqdm.auto import tqdm

    level = level or sf.provenance.get("level", "class")
    fc = table.fid(level)
    frames = []
    for s in tqdm(sf.series, desc="FID attribution", disable=not progress, leave=False):
        a = fid_attribution(fc, table.ids(s.train, str(sf.path)), table.ids(s.test, str(sf.path)), table.classes)
        frames.append(a.assign(split=int(s.id)))
    out = pd.concat(frames, ignore_index=True)
    return out[["split", "class", "side", "fid", "fid_without", "delta"]]


# ============================================================================================
# Figures
# ============================================================================================
def shift_figure(table: pd.DataFrame):
    """One panel per measure: every extractor's value on every split (split ids in FID order
    along x), each line scaled to its maximum so that orderings compare at a glance."""
    from matplotlib.ticker import MaxNLocator

    from oodml import plot

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
    from oodml import plot

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


# ============================================================================================
# Command line
# ============================================================================================
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m oodml.shift", description="Rescore a split series under several extractors and shift measures."
    )
    ap.add_argument("splits", help="split file (python -m oodml.make_splits)")
    ap.add_argument(
        "--features",
        nargs="*",
        default=None,
        metavar="NAME",
        help="extractors (inception, resnet50, pixels, hog, timm:NAME); default: the split file's own",
    )
    ap.add_argument(
        "--features-file",
        nargs="*",
        default=[],
        metavar="FILE",
        help="feature tables (.npz: features, labels) computed elsewhere, e.g. CLIP or DINOv2",
    )
    ap.add_argument("--root", help="data root of the split file's dataset")
    ap.add_argument("--weights", metavar="PATH", help="local weights file for the extractors")
    ap.add_argument(
        "--measures",
        nargs="+",
        default=list(MEASURES),
        choices=MEASURES,
        metavar="M",
        help=f"measures (default all: {' '.join(MEASURES)})",
    )
    ap.add_argument("--kid-subsets", type=int, default=50, help="KID subsets (default 50)")
    ap.add_argument("--kid-subset-size", type=int, default=1000, help="KID points per side and subset (default 1000)")
    ap.add_argument(
        "--median-points", type=int, default=2000, help="pooled points for the RBF median bandwidth (default 2000)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", metavar="FILE", help="results table: Spearman of each measure vs Recall@1 per loss")
    ap.add_argument("--metric", default="recall@1", help="metric predicted with --results (default recall@1)")
    ap.add_argument(
        "--attribution",
        action="store_true",
        help="also per-class leave-one-out FID attribution (first extractor, the split file's level)",
    )
    ap.add_argument("--top", type=int, default=10, help="classes in the attribution figure (default 10)")
    ap.add_argument("--out", metavar="STEM", help="output stem (default figures/shift_<dataset>)")
    add_quiet(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    from oodml import analysis, plot
    from oodml.splits import load_splits

    args = build_parser().parse_args(argv)
    progress = not progress_disabled(args.quiet)
    if args.kid_subsets < 1 or args.kid_subset_size < 2 or args.median_points < 2:
        raise OodmlError("--kid-subsets must be ≥ 1, --kid-subset-size and --median-points ≥ 2")
    sf = load_splits(args.splits)
    features = args.features
    if features is None:
        features = [] if args.features_file else [sf.provenance.get("extractor") or "pixels"]
    if not features and not args.features_file:
        raise OodmlError("give at least one extractor (--features) or feature table (--features-file)")
    tables = _tables(sf, features, args.features_file, root=args.root, weights=args.weights, progress=progress)
    table = shift_table(
        sf,
        tables,
        measures=args.measures,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        median_points=args.median_points,
        seed=args.seed,
        progress=progress,
    )
    stem = Path(args.out or f"figures/shift_{analysis.sanitize(sf.dataset or Path(args.splits).stem)}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = analysis.write_table(table, stem)
    tau = kendall_table(table)
    written += analysis.write_table(tau, Path(f"{stem}_kendall"))
    fig = shift_figure(table)
    written += plot.save_figure(fig, stem)
    wide = _wide(table)
    with pd.option_context("display.width", 160, "display.max_columns", 40):
        print(wide.to_string(float_format=lambda v: f"{v:.4g}"))
        print()
        print("Kendall's tau between orderings of the splits:")
        print(tau_matrix(tau).to_string(float_format=lambda v: f"{v:.2f}"))
    if args.results:
        res = analysis.load_results(args.results)
        pred = predictive_table(table, res, dataset=sf.dataset or None, metric=args.metric)
        written += analysis.write_table(pred, Path(f"{stem}_predicts_{analysis.sanitize(args.metric)}"))
        print()
        print(f"Spearman of each measure vs {args.metric} across splits (per loss; -1 = predicts the drop):")
        wide = pred.assign(key=pred["extractor"] + "/" + pred["measure"]).pivot_table(
            index="key", columns="loss", values="spearman", sort=False
        )
        print(wide.to_string(float_format=lambda v: f"{v:.2f}"))
    if args.attribution:
        attr = attribution_table(sf, tables[0], progress=progress)
        written += analysis.write_table(attr, Path(f"{stem}_attribution"))
        hardest = int(sf.series[-1].id)
        written += plot.save_figure(attribution_figure(attr, hardest, args.top), Path(f"{stem}_attribution"))
        print()
        print(f"split {hardest}: top classes carrying the FID ({tables[0].name})")
        print(attr[attr["split"] == hardest].head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if not args.quiet:
        print()
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


cli = run_cli(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
