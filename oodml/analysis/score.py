"""``python -m oodml.score``: one JSON file to cite -- each loss's AUC over a split series with its
interval, the protocol, and the digests of the split files and dataset it came from.

Two papers' numbers are comparable only when they come from the same splits of the same data
under the same protocol.  This file carries what is needed to check that::

    python -m oodml.score studies/embedded_quick.yaml --out figures/glyphs_score.json
    python -m oodml.score runs/x/results.csv --splits splits/cub.json --metric map@r
    python -m oodml.plot studies/embedded_quick.yaml --score figures/score.json   # the same, with the figures

Document (schema ``oodml.score/1``; keys in a fixed order, NaN written as null, byte-identical
for identical inputs)::

    {"schema", "oodml_version", "metric", "results": {"name", "sha256"},
     "protocol": {study name, train settings, losses with their parameters, seeds, splits} | null,
     "datasets": {<name>: {"split_file": {"name", "sha256", "dataset_fingerprint", "extractor",
                                          "level", "splits": [{"id", "fid"}, ...]} | null,
                           "scores": [{"loss", "rank", "auc", "auc_low", "auc_high", "ci95",
                                       "n_seeds", "n_splits", "fid_min", "fid_max"}, ...],
                           "pairwise": [{"loss_a", "loss_b", "diff", "low", "high", "p_value"}, ...]}}}

The AUC is :func:`oodml.analysis.normalized_auc` (the mean level of the metric-vs-FID curve over
the series' FID range); its interval and the pairwise tests are those of :mod:`oodml.stats`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

import oodml
from oodml.analysis.results import datasets, resolve_input, split_files_by_dataset, study_results_path
from oodml.analysis.stats import auc_intervals, pairwise_auc_tests
from oodml.analysis.tables import zero_shot
from oodml.errors import BadInputError
from oodml.io import PathLike, file_digest, load_yaml, read_json, write_json

__all__ = ["SCHEMA", "score_document", "write_score"]

SCHEMA = "oodml.score/1"


def _split_info(path: Path, ids: Iterable[int]) -> dict:
    doc = read_json(path, "split file")
    prov = doc.get("provenance", {}) if isinstance(doc, dict) else {}
    wanted = set(int(i) for i in ids)
    splits = [{"id": int(s["id"]), "fid": float(s["fid"])} for s in doc.get("series", []) if int(s["id"]) in wanted]
    return {
        "name": path.name,
        "sha256": file_digest(path, "sha256"),
        "dataset_fingerprint": prov.get("fingerprint") or None,
        "extractor": prov.get("extractor") or None,
        "level": prov.get("level") or None,
        "splits": splits,
    }


def _protocol(results: PathLike | pd.DataFrame) -> dict | None:
    if isinstance(results, pd.DataFrame) or Path(results).suffix.lower() not in (".yaml", ".yml"):
        return None
    raw = load_yaml(Path(results), "study file")
    keys = ("name", "splits", "controls", "frozen", "losses", "seeds", "train")
    return {k: raw.get(k) for k in keys if k in raw}


_SCORE_KEYS = ("loss", "rank", "auc", "auc_low", "auc_high", "ci95", "n_seeds", "n_splits", "fid_min", "fid_max")


def _dataset_entry(
    df: pd.DataFrame, ds: str, metric: str, splits: Mapping[str, Path], *, n_boot: int, seed: int
) -> dict | None:
    """``{"split_file", "scores", "pairwise"}`` of one dataset (None without an AUC to report)."""
    auc = auc_intervals(df, metric, ds, n_boot=n_boot, seed=seed)
    if auc.empty:
        return None
    z = zero_shot(df, ds, metric)
    ids = sorted(int(s) for s in z["split"].dropna().unique())
    pair = pairwise_auc_tests(df, metric, ds, n_boot=n_boot, seed=seed)
    return {
        "split_file": _split_info(splits[ds], ids) if ds in splits else None,
        "scores": [
            {k: (int(r[k]) if k in ("rank", "n_seeds", "n_splits") else r[k]) for k in _SCORE_KEYS}
            for r in auc.to_dict("records")
        ],
        "pairwise": [
            {k: r[k] for k in ("loss_a", "loss_b", "diff", "low", "high", "p_value")} for r in pair.to_dict("records")
        ],
    }


def score_document(
    results: PathLike | pd.DataFrame,
    metric: str = "recall@1",
    split_files: Iterable[PathLike] | Mapping[str, PathLike] | None = None,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict:
    """The score document (see the module docstring) of a results table or study YAML."""
    df, study_splits, _, source = resolve_input(results)
    zs = df[df["stage"] == "zero-shot"]
    if metric not in set(zs["metric"]):
        available = ", ".join(dict.fromkeys(zs["metric"])) or "none"
        raise BadInputError(
            f"results {source} have no zero-shot rows of metric {metric!r} (available: {available}); "
            "pick one with --metric"
        )
    splits = split_files_by_dataset(split_files, study_splits)
    if isinstance(results, pd.DataFrame):
        res_info = {"name": "<DataFrame>", "sha256": None}
    else:
        path = Path(results)
        if path.suffix.lower() in (".yaml", ".yml"):
            path = study_results_path(path)  # the table resolve_input found
        res_info = {"name": path.name, "sha256": file_digest(path, "sha256")}
    out_ds: dict[str, dict] = {}
    for ds in datasets(df):
        entry = _dataset_entry(df, ds, metric, splits, n_boot=n_boot, seed=seed)
        if entry is not None:
            out_ds[ds] = entry
    if not out_ds:
        raise BadInputError(
            f"results {source}: no dataset has {metric} on at least 2 splits with an FID; nothing to score"
        )
    return {
        "schema": SCHEMA,
        "oodml_version": oodml.__version__,
        "metric": metric,
        "results": res_info,
        "protocol": _protocol(results),
        "datasets": out_ds,
    }


def write_score(path: PathLike, results: PathLike | pd.DataFrame, metric: str = "recall@1", split_files=None) -> Path:
    """Compute :func:`score_document` and write it atomically to ``path``."""
    doc = score_document(results, metric, split_files)
    path = Path(path)
    write_json(path, doc)
    return path
