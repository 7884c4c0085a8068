"""Reading a study's results table: load and validate it, or find it from a study YAML.

A results table (written by ``python -m oodml.study collect``) is long: one row per
(run, stage, metric) with the columns :data:`REQUIRED_COLUMNS`. :func:`load_results` reads a
``.csv``/``.parquet`` file, :func:`validate_results` normalises a DataFrame, and
:func:`resolve_input` accepts a DataFrame, a table path or a study YAML (whose split files it
also names). Nothing here imports matplotlib, scipy or torch.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oodml.errors import BadInputError
from oodml.io import PathLike, load_yaml, read_json
from oodml.paths import find_base_dir

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
    bad = functools.partial(_bad_value, source)
    for col in _TEXT_COLUMNS:
        out[col] = [("" if _is_missing(v) else str(v)) for v in out[col]]
        out[col] = out[col].astype(object)
    for col in _FLOAT_COLUMNS:
        out[col] = _floats(out[col], col, bad)
    out["split"] = _split_ids(out["split"], bad)
    out["seed"] = _integers(out["seed"], "seed", bad, "an integer seed", nullable=False)
    if "control_of" in out.columns:  # optional: class-count controls (oodml.controls)
        out["control_of"] = _integers(out["control_of"], "control_of", bad, "an integer split id (or empty)")
    for col in ("dataset", "loss", "stage", "metric"):
        empty = np.flatnonzero(out[col].to_numpy() == "")
        if len(empty):
            raise bad(col, int(empty[0]), "", f"a non-empty {col} name")
    return out


def _bad_value(source: str, col: str, i: int, raw: Any, what: str) -> BadInputError:
    return BadInputError(
        f"results table {source}, row {i + 1} (data row, after the header): column {col!r} "
        f"has {raw!r}, expected {what}; fix or regenerate the table"
    )


def _floats(values: Iterable[Any], col: str, bad: Callable[..., BadInputError]) -> np.ndarray:
    vals = []
    for i, raw in enumerate(values):
        if _is_missing(raw):
            vals.append(np.nan)
            continue
        try:
            vals.append(float(raw))
        except (TypeError, ValueError):
            raise bad(col, i, raw, "a number (or empty)") from None
    return np.asarray(vals, dtype=np.float64)


def _split_ids(values: Iterable[Any], bad: Callable[..., BadInputError]) -> pd.arrays.IntegerArray:
    """Split ids as nullable ``Int64`` (empty or ``standard`` = the standard split, ``<NA>``)."""
    splits = []
    for i, raw in enumerate(values):
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
    return pd.array(splits, dtype="Int64")


def _integers(values: Iterable[Any], col: str, bad: Callable[..., BadInputError], what: str, nullable: bool = True):
    """Whole numbers: ``int64`` (``nullable=False``, no missing value allowed) or nullable ``Int64``."""
    ints = []
    for i, raw in enumerate(values):
        if nullable and _is_missing(raw):
            ints.append(pd.NA)
            continue
        try:
            f = float(raw)
            if not f.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise bad(col, i, raw, what) from None
        ints.append(int(f))
    return pd.array(ints, dtype="Int64") if nullable else np.asarray(ints, dtype=np.int64)


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
# Inputs: results table or study YAML
# --------------------------------------------------------------------------------------------
def _study_base(study_path: Path) -> Path:
    """The folder a study's relative paths are resolved against (the rule of :mod:`oodml.study`)."""
    return find_base_dir(study_path)


def _study_path(base: Path, value: Any) -> list[Path]:
    """Where a relative path of a study may be: the study's base folder, then the current one."""
    p = Path(str(value)).expanduser()
    if p.is_absolute():
        return [p]
    return list(dict.fromkeys([base / p, Path.cwd() / p]))


def resolve_input(results: PathLike | pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Path], list[str], str]:
    """Load ``results`` (DataFrame, results table or study YAML).

    Returns ``(table, split_files, notes, source_name)`` where ``split_files`` maps dataset names
    to the split files a study names. Relative paths in a study (``runs_dir``, ``splits``) are
    resolved like :mod:`oodml.study` does (against the repository holding the study file), then
    against the current folder."""
    if isinstance(results, pd.DataFrame):
        return validate_results(results), {}, [], "<DataFrame>"
    path = Path(results)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return load_results(path), {}, [], path.name
    study = _load_study(path)
    df = load_results(_study_table(path, study))
    splits, notes = _study_split_files(path, study)
    return df, splits, notes, path.name


def study_results_path(study_path: PathLike) -> Path:
    """The results table a study YAML names (``<runs_dir>/results.csv`` or ``.parquet``, the
    one :func:`resolve_input` reads); raises :class:`~oodml.errors.BadInputError` when none exists."""
    path = Path(study_path)
    return _study_table(path, _load_study(path))


def _load_study(path: Path) -> dict:
    study = load_yaml(path, "study file")
    if not isinstance(study, dict) or not study.get("name"):
        raise BadInputError(f"study file {path} has no `name:`; a study YAML needs name, datasets and losses")
    return study


def _study_table(path: Path, study: dict) -> Path:
    """The first ``results.csv`` / ``results.parquet`` among the study's candidate run folders."""
    cands = _study_path(_study_base(path), study.get("runs_dir") or f"runs/{study['name']}")
    for c in cands:
        for fname in ("results.csv", "results.parquet"):
            if (c / fname).is_file():
                return c / fname
    raise BadInputError(
        f"study {path}: no results table at {cands[0] / 'results.csv'}; run the study and "
        f"`python -m oodml.study collect {path}` first"
    )


def _study_split_files(path: Path, study: dict) -> tuple[dict[str, Path], list[str]]:
    """``({dataset: split file}, notes)`` from the study's ``datasets: [{name, splits}]``."""
    base = _study_base(path)
    splits: dict[str, Path] = {}
    notes: list[str] = []
    entries = study.get("datasets") or []
    if not isinstance(entries, list):
        raise BadInputError(f"study file {path}: `datasets:` must be a list of names or {{name, splits}} entries")
    for entry in entries:
        if isinstance(entry, str) or entry is None:
            continue
        if not isinstance(entry, dict) or not entry.get("name"):
            raise BadInputError(f"study file {path}: every `datasets:` entry needs a `name:` (got {entry!r})")
        if not entry.get("splits"):
            continue
        hit = next((c for c in _study_path(base, entry["splits"]) if c.is_file()), None)
        if hit is None:
            notes.append(
                f"{entry['name']}: split file {entry['splits']} named by {path.name} not found; "
                "split-series figure skipped"
            )
        else:
            splits[_split_file_info(hit, default=str(entry["name"]))[0]] = hit
    return splits, notes


def _split_file_info(path: Path, default: str | None = None) -> tuple[str, str | None]:
    """(dataset name, extractor) from a split file's provenance (``default`` or the file stem
    when the provenance does not say)."""
    data = read_json(path, "split file")
    prov = data.get("provenance", {}) if isinstance(data, dict) else {}
    prov = prov if isinstance(prov, dict) else {}
    name = str(prov.get("dataset") or default or path.stem)
    return name, (str(prov["extractor"]) if prov.get("extractor") not in (None, "", "none") else None)


def split_files_by_dataset(
    split_files: Iterable[PathLike] | Mapping[str, PathLike] | None, known: Mapping[str, Path] | None = None
) -> dict[str, Path]:
    """``{dataset: split file}``: ``known`` (e.g. a study's), then ``split_files`` given as
    ``{dataset: path}`` or as paths whose dataset is read from the file's provenance."""
    splits: dict[str, Path] = dict(known or {})
    if isinstance(split_files, Mapping):
        splits.update({str(k): Path(v) for k, v in split_files.items()})
    elif split_files is not None:
        for p in split_files:
            p = Path(p)
            if not p.is_file():
                raise BadInputError(f"split file {p} does not exist; check the path")
            splits[_split_file_info(p)[0]] = p
    return splits
