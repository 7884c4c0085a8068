"""Feature tables for a split file (one per extractor or features file) and the tables built on
them: every split × extractor × measure (:func:`shift_table`), Kendall's τ between the orderings,
and how well each measure predicts a metric of a results table.

Importing this module never imports torch: :mod:`oodml.features` loads its extractors (torch)
only when a name is extracted, so ``shift --features-file`` stays torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from oodml import analysis
from oodml import features as feats  # lazy package: torch only if an extractor runs
from oodml.datasets import load_dataset
from oodml.errors import BadInputError, OodmlError
from oodml.progress import progress_bar
from oodml.shift.fid import FIDComputer
from oodml.shift.measures import BLOCK, MEASURE_FUNCTIONS, MEASURES, MeasureOptions
from oodml.splits import _table_from_featureset

__all__ = ["kendall_table", "predictive_table", "shift_table", "tau_matrix"]


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

    def fid(self, level: str) -> FIDComputer:
        if level not in self._fc:
            self._fc[level] = FIDComputer(self.features, self.labels, level=level)
        return self._fc[level]


def _tables(
    sf, features: Sequence[str], features_files: Sequence[str], *, root=None, weights=None, progress: bool = False
) -> list[_Table]:
    """One :class:`_Table` per extractor name (extracted from the split file's dataset, cached)
    and per features file; a name given twice is an error."""
    out: list[_Table] = []
    if features:
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
    measure, value, se`` (``fid`` is the split file's own FID; ``se`` only for ``kid``); the
    measures are those of :data:`~oodml.shift.measures.MEASURE_FUNCTIONS`."""
    bad = [m for m in measures if m not in MEASURES]
    if bad:
        raise OodmlError(f"unknown shift measure {bad[0]!r}; known: {', '.join(MEASURES)}")
    opts = MeasureOptions(
        kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, median_points=median_points, seed=seed, block=block
    )
    rows = []
    jobs = [(t, s) for t in tables for s in sf.series]
    for t, s in progress_bar(jobs, desc="shift measures", enabled=progress):
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

        need_points = any(MEASURE_FUNCTIONS[m].points for m in measures)
        x = t.points(s.train) if need_points else None
        y = t.points(s.test) if need_points else None
        for m in measures:
            add(m, *MEASURE_FUNCTIONS[m].fn(t, tr, te, x, y, opts))
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
