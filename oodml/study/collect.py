"""The results table of a study: one long row per (run, stage, metric), written as
``results.csv`` (byte-identical for identical inputs) and ``results.parquet`` when pyarrow is
importable; columns :data:`RESULT_COLUMNS` (+ :data:`EXTRA_RESULT_COLUMNS` when present)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from oodml.frozen import frozen_rows
from oodml.io import atomic_open, atomic_write, read_json
from oodml.runs import METRICS, _metrics_complete
from oodml.splits.controls import control_map
from oodml.study.load import Study
from oodml.study.plan import selection_of

__all__ = ["EXTRA_RESULT_COLUMNS", "RESULT_COLUMNS", "collect", "collect_rows", "results_csv_text"]

#: Columns of ``results.csv``, in order.
RESULT_COLUMNS = (
    "study",
    "dataset",
    "split",
    "fid",
    "loss",
    "seed",
    "selection",
    "stage",
    "metric",
    "value",
    "ci95",
    "run_id",
    "tuning",
    "hparams",
)  #: Optional results columns, written only when a study has them (``control_of``: oodml.controls).
EXTRA_RESULT_COLUMNS = ("control_of",)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def collect_rows(study: Study) -> tuple[list[dict], list[str]]:
    """The long results rows (grid order; zero-shot first, then adaptation rows) and the ids of
    runs without results yet."""
    rows: list[dict] = []
    missing: list[str] = []
    adaptation_rows = None
    from oodml.search import hparams_text, run_hparams  # lazy: torch

    for r in study.runs:
        if r.tuning == "trial":  # search trials: <runs_dir>/search/searches.csv, not the results table
            continue
        if not _metrics_complete(r.run_dir):
            missing.append(r.run_id)
            continue
        m = json.loads((r.run_dir / METRICS).read_text(encoding="utf-8"))
        fid = _num(m.get("fid")) if _num(m.get("fid")) is not None else r.fid
        base = {
            "study": study.name,
            "dataset": r.dataset,
            "split": r.split,
            "fid": fid,
            "loss": r.loss,
            "seed": r.seed,
            "selection": str(m.get("selection") or selection_of(r.config)),
        }
        first = len(rows)
        hp = hparams_text(run_hparams(r, study.search))
        for metric, value in (m.get("test") or {}).items():
            v = _num(value)
            if v is not None:
                rows.append(
                    {**base, "stage": "zero-shot", "metric": str(metric), "value": v, "ci95": None, "run_id": r.run_id}
                )
        ad = r.run_dir / "adaptation.json"
        if ad.is_file():
            if adaptation_rows is None:
                from oodml.adapt import adaptation_rows  # lazy: torch
            for a in adaptation_rows(read_json(ad, "adaptation file")):
                v = _num(a.get("value"))
                if v is None:
                    continue
                rows.append(
                    {
                        **base,
                        "stage": str(a["stage"]),
                        "metric": str(a["metric"]),
                        "value": v,
                        "ci95": _num(a.get("ci95")),
                        "run_id": r.run_id,
                    }
                )
        labels = r.search.get("tunings", [r.tuning]) if r.search is not None else [r.tuning]
        own = rows[first:]
        del rows[first:]
        for label in labels:  # a run tuned on its own split by both scopes counts for both
            rows.extend({**row, "tuning": label, "hparams": hp} for row in own)
    if study.raw.get("frozen"):
        # a frozen network has no checkpoint rule or tuning of its own: it stands beside the study's runs
        sel = selection_of(study.runs[0].config) if study.runs else "val"
        rows += [{"selection": sel, "tuning": "default", "hparams": "{}", **row} for row in frozen_rows(study)]
    if study.raw.get("controls"):
        maps = {ds["name"]: control_map(ds["splits"]) for ds in study.datasets if ds["splits"]}
        for row in rows:
            row["control_of"] = maps.get(row["dataset"], {}).get(row["split"])
    return rows, missing


def _result_columns(rows: list[dict]) -> tuple[str, ...]:
    return RESULT_COLUMNS + tuple(c for c in EXTRA_RESULT_COLUMNS if any(c in row for row in rows))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def results_csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = _result_columns(rows)
    w.writerow(cols)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in cols])
    return buf.getvalue()


def collect(study: Study, out: str | os.PathLike | None = None, parquet: bool = True) -> dict:
    """Write ``results.csv`` (+ ``results.parquet`` when pyarrow is importable) into the runs folder
    (or ``out``); returns ``{"csv", "parquet", "rows", "runs", "missing"}``."""
    rows, missing = collect_rows(study)
    out_csv = Path(out) if out is not None else study.runs_dir / "results.csv"
    atomic_write(out_csv, results_csv_text(rows))
    if study.search is not None:
        from oodml.search import write_search_summary  # lazy: torch

        write_search_summary(study)
    pq_path = None
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pyarrow = None
        if pyarrow is not None:
            import pandas as pd  # lazy: pandas is a measured startup cost, needed only for parquet

            df = pd.DataFrame(rows, columns=list(_result_columns(rows)))
            df["split"] = df["split"].astype("Int64")
            if "control_of" in df:
                df["control_of"] = df["control_of"].astype("Int64")
            df["seed"] = df["seed"].astype("int64")
            for c in ("fid", "value", "ci95"):
                df[c] = df[c].astype("float64")
            pq_path = out_csv.with_suffix(".parquet")
            with atomic_open(pq_path, "wb") as fh:
                df.to_parquet(fh, index=False)
    return {
        "csv": str(out_csv),
        "parquet": None if pq_path is None else str(pq_path),
        "rows": len(rows),
        "runs": len(study.runs) - len(missing),
        "missing": missing,
    }
