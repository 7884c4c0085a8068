"""Studies: a grid of training runs described by one YAML file, executed resumably.

A *study* crosses datasets × graded splits × objectives × seeds, trains every combination with
:func:`oodml.train.train`, optionally adapts each trained model (:func:`oodml.adapt.run_adaptation`)
and gathers everything into one long results table::

    python -m oodml.study plan    studies/embedded_quick.yaml     # the grid and each run's state
    python -m oodml.study run     studies/embedded_quick.yaml     # execute what is pending
    python -m oodml.study status  studies/embedded_quick.yaml     # counts and ETA
    python -m oodml.study collect studies/embedded_quick.yaml     # runs/<name>/results.csv

The same from Python: ``study = load_study(path)``, ``plan_table(study)``, ``run_study(study)``,
``status_summary(study)``, ``collect(study)``.

Study file (YAML, loaded safely with :func:`oodml.io.load_yaml`)::

    name: embedded_quick                # folder name of the runs: runs/<name>/ (``runs_dir`` overrides)
    datasets:                           # list of names or {name, root, splits}
      - {name: glyphs, splits: splits/glyphs.json}   # no ``splits`` -> the standard split only
    splits: all                         # or a list of series ids of the split files
    controls: all                       # optional: also the class-count controls of those splits (or N draws)
    frozen: true                        # optional: frozen-extractor reference rows (oodml.frozen) at collect
    losses: [margin, {name: multisimilarity, params: {alpha: 2.0}}, {name: diva, train: {batch_size: 108}}]
    seeds: [0]
    train: {backbone: resnet10t, ...}  # shared TrainConfig keys
    adapt:                              # optional stages run after training, in order
      - {mode: fewshot, shots: [2, 5], episodes: 3}
      - {mode: probe, shots: [2, 5]}
    executor: {kind: local}             # local (jobs) | gpus (gpus, runs_per_gpu) | slurm (slurm: {...})
    protocol: oodml                     # optional: default | oodml (also accepted under train:)
    selection: test                     # optional: val | last | test (an ORACLE); default: the protocol's
    runs_dir: runs/embedded_quick       # default runs/<name>
    search: {sampler: random, trials: 4, scope: standard}   # optional: see oodml.search

Relative paths (split files, dataset roots, ``runs_dir``) are relative to the study's *base
folder*: the nearest folder above the study file holding ``pyproject.toml`` or ``.git`` (the
repository root), else the parent of a ``studies/`` folder, else the study file's folder.
Everything is checked before anything runs; a mistake gives one line naming the key (with the
closest valid spelling for a misspelt one).

**Runs as data.** Each grid cell becomes a resolved :class:`~oodml.train.TrainConfig` dict. Its run
id is ``oodml.io.stable_hash`` of ``{"config": <that dict without the keys in HASH_EXCLUDED>,
"split_digest": <hash of the split's entry in the split file, or null>}``. Keys added to the
config later (``protocol``, ``selection``) enter it only when they differ from the value older
files mean, so existing runs keep their ids. Excluded are the keys
that say *where* or *how fast* a run happens, not *what* it computes (``root``, ``splits`` path,
``device``, ``workers``, ``tensorboard``, ``eval_batch_size``): moving the data or the split
file, or running on another machine, keeps the ids, while changing a hyperparameter or
regenerating a split differently gives new ones. Adaptation stages
do **not** enter the id, so adding a stage later reuses the trained models: a run is *done* when
``metrics.json`` exists and every current stage is recorded in ``adapt_done.json``. Each run lives
in ``<runs_dir>/<run id>/``: ``study_run.json`` (study, dataset, split, fid, loss, seed, the
resolved config, stages; written before training), ``log.txt`` (its stdout/stderr), the trainer's
files (``run.json`` is the trainer's provenance, ``metrics.json``, checkpoints), ``adaptation.json``,
``study_timing.json`` (wall time of the last attempt, for the ETA), and on failure ``failed.json``
+ ``error.txt``.

**Crash safety.** A runner takes a run by creating ``claim.json`` with ``O_CREAT|O_EXCL`` (pid,
host, start time, a token) and keeps its mtime fresh (heartbeat). A claim is stale when its pid is
gone on the same host, or, from another host, when its heartbeat is older than ``stale_after``
seconds; a stale claim is removed (under a short reclaim lock) and the run taken again. Every file
is written atomically, the trainer resumes from its checkpoint, and a run counts as done only once
its ``metrics.json`` is complete, so killing a runner at any moment and starting it again finishes
the study with every result present exactly once. A failing run records ``failed.json`` (the
traceback's last line) and ``error.txt`` (the whole traceback) and does not stop the others;
``run --retry-failed`` runs it again.

**Results table.** :func:`collect` writes ``<runs_dir>/results.csv`` (and ``results.parquet``
when pyarrow is importable) with the columns :data:`RESULT_COLUMNS` (``selection`` is the run's checkpoint
rule: ``val``, ``last`` or ``test``, the oracle), one row per (run, stage,
metric), in grid order; identical inputs give a byte-identical CSV. Load it with
``pd.read_csv("runs/<name>/results.csv")``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import difflib
import io
import json
import math
import os
import re
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oodml.errors import BadInputError, OodmlError
from oodml.io import dumps_json, read_json, stable_hash, write_json
from oodml.paths import find_base_dir

__all__ = [
    "HASH_EXCLUDED",
    "RESULT_COLUMNS",
    "RunSpec",
    "Study",
    "collect",
    "collect_rows",
    "execute_run",
    "load_study",
    "plan_table",
    "run_state",
    "run_study",
    "status_summary",
]

RUN_SCHEMA = "oodml.study.run/1"
#: TrainConfig keys left out of the run id (where/how fast a run happens, not what it computes).
HASH_EXCLUDED = ("root", "splits", "device", "workers", "tensorboard", "eval_batch_size")
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
)
#: Run states, in display order.
STATES = ("done", "running", "queued", "failed", "waiting", "pending")  # waiting: a tuned run whose search runs

TOP_KEYS = (
    "name",
    "description",
    "datasets",
    "splits",
    "losses",
    "seeds",
    "train",
    "adapt",
    "executor",
    "runs_dir",
    "protocol",
    "selection",
    "search",
    "controls",
    "frozen",
)  # controls / frozen: oodml.controls, oodml.frozen
#: Top-level keys that are TrainConfig keys shared by every run (also accepted under ``train``).
PROTOCOL_KEYS = ("protocol", "selection")
#: Optional results columns, written only when a study has them (``control_of``: oodml.controls).
EXTRA_RESULT_COLUMNS = ("control_of",)
DATASET_KEYS = ("name", "root", "splits")
LOSS_KEYS = ("name", "params", "train")  # train: TrainConfig keys for this loss only (e.g. DiVA's batch 108)
ADAPT_MODES = ("fewshot", "probe")
EXECUTOR_KINDS = ("local", "gpus", "slurm")
EXECUTOR_KEYS = ("kind", "jobs", "gpus", "runs_per_gpu", "slurm", "stale_after", "heartbeat")
#: Grid keys of TrainConfig that the study sets itself (not allowed under ``train``).
GRID_KEYS = ("dataset", "root", "splits", "split", "loss", "loss_params", "seed")

DEFAULT_STALE_AFTER = 900.0  # seconds without heartbeat before another host's claim is stale
DEFAULT_HEARTBEAT = 30.0  # seconds between heartbeats

CLAIM = "claim.json"
QUEUED = "queued.json"
FAILED = "failed.json"
ERROR = "error.txt"
METRICS = "metrics.json"
ADAPT_DONE = "adapt_done.json"
RUN_JSON = "study_run.json"  # the trainer owns run.json (its provenance)
TIMING = "study_timing.json"
LOG = "log.txt"

RunFn = Callable[[dict, Path], Any]
AdaptFn = Callable[[Path, dict], Any]


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: what to train (``config``), where (``run_dir``) and what to adapt."""

    run_id: str
    run_dir: Path
    dataset: str
    split: int | None
    fid: float | None
    loss: str
    loss_params: dict
    seed: int
    config: dict
    adapt: tuple
    order: tuple = field(compare=False)
    #: "default", "trial" (a hyperparameter-search trial), "tuned-standard" or "tuned-per-split"
    tuning: str = "default"
    #: for trials and tuned runs: their search (see oodml.search.make_ref); None for default runs
    search: dict | None = field(default=None, compare=False)

    def describe(self, study: str) -> dict:
        """The content of ``study_run.json``."""
        extra = {} if self.search is None else {"tuning": self.tuning, "search": self.search}
        return {
            **extra,
            "schema": RUN_SCHEMA,
            "study": study,
            "run_id": self.run_id,
            "dataset": self.dataset,
            "split": self.split,
            "fid": self.fid,
            "loss": self.loss,
            "loss_params": self.loss_params,
            "seed": self.seed,
            "hash_excludes": list(HASH_EXCLUDED),
            "config": self.config,
            "adapt": [dict(s) for s in self.adapt],
        }


@dataclass
class Study:
    """A loaded, validated study with its expanded grid (``runs``, in table order)."""

    name: str
    path: Path
    base_dir: Path
    runs_dir: Path
    runs: list[RunSpec]
    adapt: list[dict]
    executor: dict
    datasets: list[dict]
    losses: list[dict]
    seeds: list[int]
    raw: dict
    search: dict | None = None  # the resolved ``search:`` block (oodml.search.parse_search)

    def get(self, run_id: str) -> RunSpec:
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise BadInputError(f"run {run_id!r} is not part of study {self.name} ({self.path}); see `plan`")

    @property
    def stale_after(self) -> float:
        return float(self.executor.get("stale_after", DEFAULT_STALE_AFTER))

    @property
    def heartbeat(self) -> float:
        return float(self.executor.get("heartbeat", DEFAULT_HEARTBEAT))


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------
def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(where: str, mapping: dict, valid: Sequence[str], path: Path) -> None:
    for key in mapping:
        if key not in valid:
            raise BadInputError(
                f"{path}: unknown key {where}{key!r}{_suggest(key, valid)} (valid keys: {', '.join(valid)})"
            )


def _resolve_path(base: Path, value: Any) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _train_config_api():
    try:
        from oodml.train import TrainConfig
    except ImportError as exc:  # pragma: no cover - the trainer is part of the package
        raise OodmlError(f"oodml.train is not importable ({exc}); reinstall oodml") from None
    return TrainConfig


def _config_dict(cfg: Any) -> dict:
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    return dataclasses.asdict(cfg)


def _hashed_config(cfg: dict) -> dict:
    """The config part of a run id: without :data:`HASH_EXCLUDED`, and without keys added after
    the first release while they hold the value older files mean (so existing runs keep their ids)."""
    from oodml.train import ADDED_KEYS

    return {k: v for k, v in cfg.items() if k not in HASH_EXCLUDED and not (k in ADDED_KEYS and v == ADDED_KEYS[k])}


def selection_of(config: dict) -> str:
    """The checkpoint rule of a resolved run config (``val``, ``last`` or ``test`` = oracle)."""
    sel = config.get("selection")
    if sel:
        return str(sel)
    return "test" if config.get("protocol") == "oodml" else "val"


def _train_keys(TrainConfig: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _read_split_file(path: Path, where: str, study_path: Path, dataset: str | None = None) -> list[dict]:
    if not path.is_file():
        make = "python -m oodml.make_splits" + (f" --dataset {dataset}" if dataset else "")
        make += f" --out {shlex.quote(str(path))}"
        raise BadInputError(
            f"{study_path}: split file {path} ({where}) does not exist; create it with "
            f"`{make}` (add --root as for the study) or remove the key to use the dataset's standard split"
        )
    data = read_json(path, "split file")
    series = data.get("series") if isinstance(data, dict) else None
    if not isinstance(series, list) or not all(isinstance(s, dict) and "id" in s for s in series):
        raise BadInputError(
            f"split file {path} ({where}) has no valid 'series' list; regenerate it with oodml.make_splits"
        )
    return series


def _split_ids(selection: Any, ids: list[int], split_file: Path, study_path: Path) -> list[int]:
    if selection is None or selection == "all":
        return list(ids)
    chosen = []
    for s in _as_list(selection):
        if isinstance(s, bool) or not isinstance(s, int):
            raise BadInputError(f"{study_path}: splits must be 'all' or a list of integer series ids, got {s!r}")
        if s not in ids:
            rng = f"{min(ids)}..{max(ids)}" if ids else "none"
            raise BadInputError(
                f"{study_path}: splits: id {s} is out of range for {split_file} (its series ids are {rng})"
            )
        if s not in chosen:
            chosen.append(s)
    return chosen


def _loss_entries(raw: Any, study_path: Path) -> list[dict]:
    from oodml.losses import get_spec, list_objectives, valid_keys

    names = [o["name"] for o in list_objectives()]
    entries = []
    items = _as_list(raw)
    if not items:
        raise BadInputError(f"{study_path}: losses is empty; list at least one of {', '.join(names)}")
    for i, item in enumerate(items):
        where = f"losses[{i}]"
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict):
            _check_keys(f"{where}.", item, LOSS_KEYS, study_path)
            if "name" not in item:
                raise BadInputError(f"{study_path}: {where} has no 'name'")
            name, params = item["name"], item.get("params") or {}
            if not isinstance(params, dict):
                raise BadInputError(f"{study_path}: {where}.params must be a mapping of loss options")
        else:
            raise BadInputError(f"{study_path}: {where} must be a loss name or {{name, params}}, got {item!r}")
        try:
            canon = get_spec(str(name)).name
        except OodmlError:
            raise BadInputError(
                f"{study_path}: {where}: unknown loss {name!r}{_suggest(str(name), names)} "
                f"(choose from {', '.join(names)})"
            ) from None
        keys = valid_keys(canon)
        for k, v in params.items():
            if k == "miner" and isinstance(v, dict):
                continue
            if k not in keys and not str(k).startswith("miner."):
                raise BadInputError(
                    f"{study_path}: {where}.params: unknown option {k!r} for loss {canon}{_suggest(k, keys)} "
                    f"(valid: {', '.join(keys)})"
                )
        entry = {"name": canon, "params": dict(params)}
        own_train = item.get("train") if isinstance(item, dict) else None
        if own_train:  # TrainConfig keys for this loss only, checked with the shared train keys
            if not isinstance(own_train, dict):
                raise BadInputError(f"{study_path}: {where}.train must be a mapping of TrainConfig keys")
            entry["train"] = dict(own_train)
        entries.append(entry)
    return entries


def _adapt_stages(raw: Any, study_path: Path) -> list[dict]:
    stages = []
    for i, st in enumerate(_as_list(raw)):
        where = f"adapt[{i}]"
        if not isinstance(st, dict) or "mode" not in st:
            raise BadInputError(f"{study_path}: {where} must be a mapping with a 'mode' ({' or '.join(ADAPT_MODES)})")
        if st["mode"] not in ADAPT_MODES:
            raise BadInputError(
                f"{study_path}: {where}.mode: unknown mode {st['mode']!r}{_suggest(st['mode'], ADAPT_MODES)} "
                f"(choose {' or '.join(ADAPT_MODES)})"
            )
        shots = st.get("shots", [2, 5])
        shots = _as_list(shots)
        if not shots or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in shots):
            raise BadInputError(
                f"{study_path}: {where}.shots must be a list of positive integers, got {st.get('shots')!r}"
            )
        ep = st.get("episodes")
        if ep is not None and (isinstance(ep, bool) or not isinstance(ep, int) or ep < 1):
            raise BadInputError(f"{study_path}: {where}.episodes must be a positive integer, got {ep!r}")
        stage = {"mode": st["mode"], "shots": shots}
        if ep is not None:
            stage["episodes"] = ep
        extra = {k: v for k, v in st.items() if k not in ("mode", "shots", "episodes")}
        if extra:
            from oodml.adapt import OPTIONS

            valid = [k for k in OPTIONS if k != "progress"]
            for k in extra:
                if k not in valid:
                    raise BadInputError(
                        f"{study_path}: unknown key {where}.{k!r}{_suggest(k, valid)} "
                        f"(valid: mode, shots, episodes, {', '.join(valid)})"
                    )
        stage.update(extra)
        stages.append(stage)
    return stages


def _executor_config(raw: Any, study_path: Path) -> dict:
    raw = {} if raw is None else raw
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise BadInputError(f"{study_path}: executor must be a mapping like {{kind: local}}")
    _check_keys("executor.", raw, EXECUTOR_KEYS, study_path)
    ex = dict(raw)
    ex.setdefault("kind", "local")
    if ex["kind"] not in EXECUTOR_KINDS:
        raise BadInputError(
            f"{study_path}: executor.kind: unknown executor {ex['kind']!r}{_suggest(ex['kind'], EXECUTOR_KINDS)} "
            f"(choose {', '.join(EXECUTOR_KINDS)})"
        )
    for key in ("runs_per_gpu", "jobs"):
        val = ex.get(key, 1)
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise BadInputError(f"{study_path}: executor.{key} must be a positive integer, got {val!r}")
    for key in ("stale_after", "heartbeat"):
        if key in ex and (isinstance(ex[key], bool) or not isinstance(ex[key], (int, float)) or ex[key] <= 0):
            raise BadInputError(f"{study_path}: executor.{key} must be a positive number of seconds")
    if ex.get("slurm") is not None:
        from oodml.executors import check_slurm_options

        check_slurm_options(ex["slurm"], study_path)
    return ex


def load_study(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Study:
    """Load and validate a study file and expand its grid (no dataset is loaded here).

    ``runs_dir`` overrides the file's ``runs_dir``. Raises :class:`~oodml.errors.BadInputError`
    with one line naming the key for any mistake.
    """
    path = Path(path)
    from oodml.io import load_yaml

    raw = load_yaml(path, "study file")
    if not isinstance(raw, dict):
        raise BadInputError(f"study file {path} must be a YAML mapping with at least 'name', 'datasets', 'losses'")
    _check_keys("", raw, TOP_KEYS, path)
    for key in ("name", "datasets", "losses"):
        if key not in raw:
            raise BadInputError(f"study file {path} has no {key!r}; add it (see `python -m oodml.study --help`)")
    name = raw["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise BadInputError(f"{path}: name must be a folder-safe word (letters, digits, _ . -), got {name!r}")
    base = find_base_dir(path)

    # datasets
    from oodml.datasets import canonical_name, dataset_names

    datasets = []
    ds_items = _as_list(raw["datasets"])
    if not ds_items:
        raise BadInputError(f"{path}: datasets is empty; list at least one dataset (e.g. glyphs)")
    for i, item in enumerate(ds_items):
        where = f"datasets[{i}]"
        if isinstance(item, str) or item is None:
            item = {"name": item}
        if not isinstance(item, dict):
            raise BadInputError(f"{path}: {where} must be a dataset name or {{name, root, splits}}")
        _check_keys(f"{where}.", item, DATASET_KEYS, path)
        if item.get("name") is None:
            raise BadInputError(f"{path}: {where} has no 'name' (choose one of {', '.join(dataset_names())})")
        try:
            dname = canonical_name(str(item["name"]))
        except OodmlError:
            known = dataset_names()
            raise BadInputError(
                f"{path}: {where}.name: unknown dataset {item['name']!r}{_suggest(str(item['name']), known)} "
                f"(choose one of {', '.join(known)})"
            ) from None
        entry = {"name": dname, "root": None, "splits": None, "series": None}
        if item.get("root") is not None:
            entry["root"] = str(_resolve_path(base, item["root"]))
        if item.get("splits") is not None:
            sp = _resolve_path(base, item["splits"])
            entry["splits"] = str(sp)
            entry["series"] = _read_split_file(sp, f"{where}.splits", path, dname)
        datasets.append(entry)

    losses = _loss_entries(raw["losses"], path)
    seeds = _as_list(raw.get("seeds", [0]))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise BadInputError(f"{path}: seeds must be a list of non-negative integers, got {raw.get('seeds')!r}")
    if len(set(seeds)) != len(seeds):
        raise BadInputError(f"{path}: seeds has duplicates: {seeds}")
    adapt = _adapt_stages(raw.get("adapt"), path)
    executor = _executor_config(raw.get("executor"), path)
    if raw.get("frozen"):
        from oodml.frozen import frozen_specs

        frozen_specs(raw["frozen"], path, base)  # checked now, computed by collect

    TrainConfig = _train_config_api()
    train_keys = _train_keys(TrainConfig)
    shared = raw.get("train") or {}
    if not isinstance(shared, dict):
        raise BadInputError(f"{path}: train must be a mapping of TrainConfig keys")
    shared = dict(shared)
    for key in PROTOCOL_KEYS:  # `protocol: oodml` at the top level = under train: for every run
        if key in raw:
            if key in shared and shared[key] != raw[key]:
                raise BadInputError(
                    f"{path}: {key} is {raw[key]!r} at the top level but {shared[key]!r} under train; keep one"
                )
            shared[key] = raw[key]
    per_loss = [(f"losses[{i}].train.", k) for i, e in enumerate(losses) for k in e.get("train", {})]
    for prefix, key in [("train.", k) for k in shared] + per_loss:
        if key in GRID_KEYS:
            raise BadInputError(
                f"{path}: {prefix}{key} is set by the study grid; use datasets / splits / losses / seeds instead"
            )
        if key not in train_keys:
            raise BadInputError(
                f"{path}: unknown key {prefix}{key!r}{_suggest(key, train_keys)} (TrainConfig keys: "
                f"{', '.join(k for k in train_keys if k not in GRID_KEYS)})"
            )

    if runs_dir is not None:
        rdir = Path(runs_dir)
    elif raw.get("runs_dir") is not None:
        rdir = _resolve_path(base, raw["runs_dir"])
    else:
        rdir = base / "runs" / name

    from oodml.search import expand_search, parse_search

    search = parse_search(raw.get("search"), losses, path, train_keys)

    def cells_of(ds: dict) -> list[tuple]:
        if ds["series"] is None:
            return [(None, None, None)]
        ids = [int(s["id"]) for s in ds["series"]]
        chosen = _split_ids(raw.get("splits", "all"), ids, Path(ds["splits"]), path)
        by_id = {int(s["id"]): s for s in ds["series"]}
        return [(sid, by_id[sid].get("fid"), stable_hash(by_id[sid], 32)) for sid in chosen]

    def make_config(ds: dict, split: int | None, loss: dict, seed: int) -> dict:
        d = dict(shared)
        d.update(loss.get("train", {}))  # a loss entry's own train keys (e.g. DiVA's batch 108)
        d.update(
            dataset=ds["name"],
            root=ds["root"],
            splits=ds["splits"],
            split=split,
            loss=loss["name"],
            loss_params=loss["params"],
            seed=seed,
        )
        try:
            return _config_dict(TrainConfig.from_dict(d))
        except OodmlError as exc:
            raise BadInputError(f"{path}: invalid train settings: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"{path}: invalid train settings: {exc}") from None

    runs: list[RunSpec] = []
    seen: dict[str, tuple] = {}
    for di, ds in enumerate(datasets):
        cells = cells_of(ds)
        if raw.get("controls") and ds["series"] is not None:
            from oodml.controls import control_cells

            cells += control_cells(ds["splits"], [c[0] for c in cells], raw["controls"], path)
        for split, fid, digest in cells:
            for li, loss in enumerate(losses):
                if search is not None and not search["default"] and loss["name"] in search["spaces"]:
                    continue  # only tuned runs for this loss
                for seed in seeds:
                    cfg = make_config(ds, split, loss, seed)
                    run_id = stable_hash({"config": _hashed_config(cfg), "split_digest": digest})
                    key = (di, -1 if split is None else split, li, seed)
                    if run_id in seen:
                        raise BadInputError(
                            f"{path}: two grid cells give the same run ({ds['name']}, split {split}, "
                            f"{loss['name']}, seed {seed}); remove the duplicate entry"
                        )
                    seen[run_id] = key
                    runs.append(
                        RunSpec(
                            run_id=run_id,
                            run_dir=rdir / run_id,
                            dataset=ds["name"],
                            split=split,
                            fid=None if fid is None else float(fid),
                            loss=loss["name"],
                            loss_params=loss["params"],
                            seed=seed,
                            config=cfg,
                            adapt=tuple(adapt),
                            order=key,
                        )
                    )
    if search is not None:
        for spec in expand_search(search, datasets, cells_of, losses, seeds, make_config, rdir, adapt, HASH_EXCLUDED):
            if spec.run_id in seen:
                raise BadInputError(f"{path}: a search run collides with a grid run ({spec.run_id}); report this")
            seen[spec.run_id] = spec.order
            runs.append(spec)
    runs.sort(key=lambda r: r.order)
    return Study(
        name=name,
        path=path,
        base_dir=base,
        runs_dir=rdir,
        runs=runs,
        adapt=adapt,
        executor=executor,
        datasets=datasets,
        losses=losses,
        seeds=seeds,
        raw=raw,
        search=search,
    )


def preflight(study: Study) -> None:
    """Check, before running, that every dataset is on disk and every split file fits it.

    The embedded dataset is generated on demand and not checked.
    """
    from oodml.datasets import DEFAULT_DATASET, load_dataset

    for i, ds in enumerate(study.datasets):
        if ds["name"] == DEFAULT_DATASET and ds["splits"] is None:
            continue
        try:
            dataset = load_dataset(ds["name"], root=ds["root"])
        except OodmlError as exc:
            raise type(exc)(f"{study.path}: datasets[{i}] ({ds['name']}): {exc}") from None
        if ds["splits"] is not None:
            try:
                from oodml.splits import load_splits
            except ImportError:  # pragma: no cover - part of the package
                continue
            try:
                load_splits(ds["splits"], dataset=dataset)
            except OodmlError as exc:
                raise BadInputError(f"{study.path}: datasets[{i}].splits: {exc}") from None


# --------------------------------------------------------------------------------------------
# Claims (exactly-once execution across runners and hosts)
# --------------------------------------------------------------------------------------------
_HOST = socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) from /proc, to detect pid reuse."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _proc_is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] in ("Z", "X")


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """Whether ``pid`` is a live process on this host (and still the one started at ``proc_start``)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    if _proc_is_zombie(int(pid)):
        return False
    if proc_start is not None:
        now = _proc_start(int(pid))
        if now is not None and now != proc_start:
            return False
    return True


def _read_claim(path: Path) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}  # being written (or written by a killed process)
    return data if isinstance(data, dict) else {}


def claim_is_stale(info: dict, mtime: float, stale_after: float, now: float | None = None) -> bool:
    """Whether a claim no longer protects its run.

    Same host: stale iff its pid is not alive (or was reused). Other host: stale iff its heartbeat
    (the claim file's mtime) is older than ``stale_after`` seconds. An unreadable claim (being
    written, or left half-written by a killed process) is stale after 60 seconds.
    """
    now = time.time() if now is None else now
    if not info or "pid" not in info:
        return now - mtime > 60.0
    if info.get("host") == _HOST:
        return not pid_alive(info["pid"], info.get("proc_start"))
    return now - mtime > stale_after


def _claim_status(path: Path, stale_after: float) -> tuple[dict | None, bool]:
    """(claim content or None when absent, whether it is live)."""
    info = _read_claim(path)
    if info is None:
        return None, False
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None, False
    return info, not claim_is_stale(info, mtime, stale_after)


class Claim:
    """A held claim on a run folder; keeps its heartbeat fresh from a daemon thread."""

    def __init__(self, path: Path, info: dict, heartbeat: float):
        self.path = path
        self.info = info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.held():
                with contextlib.suppress(OSError):
                    os.utime(self.path)

    def held(self) -> bool:
        info = _read_claim(self.path)
        return bool(info) and info.get("token") == self.info["token"]

    def release(self) -> None:
        self._stop.set()
        if self.held():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _remove_stale(path: Path, seen: dict, stale_after: float) -> None:
    """Remove ``path`` if it still is the stale claim ``seen``, under a short reclaim lock."""
    lock = path.with_name(path.name + ".reclaim")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > 60.0:  # left by a killed reclaimer
                os.unlink(lock)
        return
    try:
        info, live = _claim_status(path, stale_after)
        if info is not None and not live and info == seen:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


def try_claim(
    run_dir: Path,
    stale_after: float = DEFAULT_STALE_AFTER,
    heartbeat: float = DEFAULT_HEARTBEAT,
    extra: dict | None = None,
) -> Claim | None:
    """Take the run folder's claim (``O_CREAT|O_EXCL``), reclaiming a stale one; None if it is taken."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    for _ in range(2):
        info = {
            "pid": os.getpid(),
            "host": _HOST,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "proc_start": _proc_start(os.getpid()),
            "token": uuid.uuid4().hex,
        }
        info.update(extra or {})
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen, live = _claim_status(path, stale_after)
            if live:
                return None
            if seen is not None:
                _remove_stale(path, seen, stale_after)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps_json(info))
            fh.flush()
            os.fsync(fh.fileno())
        return Claim(path, info, heartbeat)
    return None


# --------------------------------------------------------------------------------------------
# Run state
# --------------------------------------------------------------------------------------------
def stage_key(stage: dict) -> str:
    """Identifier of an adaptation stage in ``adapt_done.json``."""
    return stable_hash(stage)


def _metrics_complete(run_dir: Path) -> bool:
    p = run_dir / METRICS
    if not p.is_file():
        return False
    try:
        json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def _stages_done(run_dir: Path) -> dict:
    p = run_dir / ADAPT_DONE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data.get("stages", {}) if isinstance(data, dict) else {}


def is_done(run: RunSpec) -> bool:
    """Trained (complete ``metrics.json``) and every current adaptation stage recorded."""
    if not _metrics_complete(run.run_dir):
        return False
    if run.adapt:
        done = _stages_done(run.run_dir)
        return all(stage_key(s) in done for s in run.adapt)
    return True


def _queued_alive(marker: dict, mtime: float, stale_after: float) -> bool:
    from oodml.executors import job_alive

    return job_alive(marker, mtime, stale_after)


def run_state(run: RunSpec, stale_after: float = DEFAULT_STALE_AFTER) -> str:
    """One of ``done``, ``running`` (live claim), ``queued`` (submitted, job alive), ``failed``, ``pending``."""
    if is_done(run):
        return "done"
    _, live = _claim_status(run.run_dir / CLAIM, stale_after)
    if live:
        return "running"
    q = run.run_dir / QUEUED
    if q.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError, UnicodeDecodeError):
            marker = json.loads(q.read_text(encoding="utf-8"))
            if _queued_alive(marker, q.stat().st_mtime, stale_after):
                return "queued"
            from oodml.executors import record_ended_job

            record_ended_job(run.run_dir, marker)  # cancelled / timed out: failed, not queued forever
    if (run.run_dir / FAILED).is_file():
        return "failed"
    if run.search is not None and run.search["role"] == "tuned":
        from oodml.search import search_complete

        if not search_complete(run.search):
            return "waiting"
    return "pending"


def states(study: Study) -> dict[str, str]:
    """run id -> state for every run of the grid."""
    return {r.run_id: run_state(r, study.stale_after) for r in study.runs}


# --------------------------------------------------------------------------------------------
# Executing one run
# --------------------------------------------------------------------------------------------
def train_run(config: dict, run_dir: Path) -> Any:
    """The default ``run_fn``: :func:`oodml.train.train` on the resolved config (resumes)."""
    from oodml.train import TrainConfig, train

    return train(TrainConfig.from_dict(config), run_dir, resume=True, progress=False)


def adapt_run(run_dir: Path, stage: dict) -> Any:
    """The default ``adapt_fn``: :func:`oodml.adapt.run_adaptation` for one stage."""
    from oodml.adapt import run_adaptation

    opts = {k: v for k, v in stage.items() if k not in ("mode", "shots", "episodes")}
    opts.setdefault("progress", False)
    return run_adaptation(
        run_dir, mode=stage["mode"], shots=tuple(stage["shots"]), episodes=stage.get("episodes"), **opts
    )


@contextlib.contextmanager
def _redirect_output(log_path: Path):
    """Send this process's stdout/stderr (Python and C level) to ``log_path`` (appending)."""
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = []
    try:
        for target in (1, 2):
            try:
                saved.append((target, os.dup(target)))
            except OSError:
                continue
            os.dup2(fd, target)
        quiet = os.environ.get("OODML_QUIET")
        os.environ["OODML_QUIET"] = "1"  # no progress bars in log files
        try:
            with (
                open(os.dup(fd), "w", encoding="utf-8", buffering=1) as fh,
                contextlib.redirect_stdout(fh),
                contextlib.redirect_stderr(fh),
            ):
                yield
        finally:
            if quiet is None:
                os.environ.pop("OODML_QUIET", None)
            else:
                os.environ["OODML_QUIET"] = quiet
    finally:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        for target, dup in saved:
            os.dup2(dup, target)
            os.close(dup)
        os.close(fd)


def _record_failure(run_dir: Path, exc: BaseException, phase: str) -> None:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    last = (traceback.format_exception_only(type(exc), exc)[-1]).strip()
    from oodml.io import atomic_write

    atomic_write(run_dir / ERROR, tb)
    with contextlib.suppress(OSError), open(run_dir / LOG, "a", encoding="utf-8") as fh:
        fh.write(f"=== failed during {phase}: {last} (traceback in {ERROR}) ===\n")
    write_json(
        run_dir / FAILED,
        {
            "error": last,
            "phase": phase,
            "host": _HOST,
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def execute_run(
    run: RunSpec,
    study_name: str,
    *,
    run_fn: RunFn | None = None,
    adapt_fn: AdaptFn | None = None,
    retry_failed: bool = False,
    stale_after: float = DEFAULT_STALE_AFTER,
    heartbeat: float = DEFAULT_HEARTBEAT,
    claim_extra: dict | None = None,
) -> str:
    """Claim, train (``run_fn(config, run_dir)``), adapt (``adapt_fn(run_dir, stage)``) and release.

    Returns ``"done"``, ``"failed"`` or ``"skipped"`` (already done, failed without
    ``retry_failed``, or claimed by another runner). Output goes to ``run_dir/log.txt``. An
    exception is recorded in ``failed.json``/``error.txt`` and not raised; ``KeyboardInterrupt``
    and ``SystemExit`` are re-raised after the claim is released.
    """
    run_fn = run_fn or train_run
    adapt_fn = adapt_fn or adapt_run
    if run.search is not None:  # a search trial or a tuned run: train with its drawn / chosen settings
        from oodml.search import bind_run_fn

        run_fn = bind_run_fn(run.search, run_fn)
    if is_done(run) or ((run.run_dir / FAILED).is_file() and not retry_failed):
        return "skipped"
    claim = try_claim(run.run_dir, stale_after, heartbeat, claim_extra)
    if claim is None:
        return "skipped"
    try:
        if is_done(run):  # finished by another runner between our check and our claim
            return "skipped"
        if (run.run_dir / FAILED).is_file():
            if not retry_failed:
                return "skipped"
            for name in (FAILED, ERROR):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(run.run_dir / name)
        write_json(run.run_dir / RUN_JSON, run.describe(study_name))
        phase = "train"
        started = time.time()
        try:
            with _redirect_output(run.run_dir / LOG):
                print(
                    f"=== oodml.study {study_name} run {run.run_id} on {_HOST} pid {os.getpid()} at "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')} ===",
                    flush=True,
                )
                if not _metrics_complete(run.run_dir):
                    run_fn(dict(run.config), run.run_dir)
                    if not _metrics_complete(run.run_dir):
                        raise RuntimeError(f"the run function returned without writing {METRICS}")
                for stage in run.adapt:
                    key = stage_key(stage)
                    if key in _stages_done(run.run_dir):
                        continue
                    phase = f"adapt {stage['mode']}"
                    adapt_fn(run.run_dir, dict(stage))
                    done = _stages_done(run.run_dir)
                    done[key] = dict(stage)
                    write_json(run.run_dir / ADAPT_DONE, {"schema": "oodml.study.adapt_done/1", "stages": done})
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            _record_failure(run.run_dir, exc, phase)
            return "failed"
        write_json(
            run.run_dir / TIMING,
            {
                "seconds": round(time.time() - started, 3),
                "host": _HOST,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run.run_dir / QUEUED)
        return "done"
    finally:
        claim.release()


# --------------------------------------------------------------------------------------------
# Running a study
# --------------------------------------------------------------------------------------------
def load_run_fn(spec: str | None) -> RunFn | None:
    """Import a ``module:function`` run function (``--run-fn``); None for the default trainer."""
    if not spec:
        return None
    mod, _, fn = spec.partition(":")
    if not mod or not fn:
        raise BadInputError(f"--run-fn {spec!r} must look like module:function")
    import importlib

    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise BadInputError(f"--run-fn {spec!r} cannot be imported ({exc})") from None


def select_runs(
    study: Study, *, retry_failed: bool = False, only: Sequence[str] | None = None, max_runs: int | None = None
) -> list[RunSpec]:
    """The runs to execute, in execution order (seed, dataset, split, loss): pending ones, plus
    failed ones with ``retry_failed``; ``only`` restricts to (and orders by) the given run ids."""
    st = states(study)
    wanted = {"pending"} | ({"failed"} if retry_failed else set())
    if only is not None:
        runs = [study.get(rid) for rid in only]
    else:
        runs = sorted(study.runs, key=lambda r: (r.order[3], r.order[0], r.order[1], r.order[2]))
    chosen = [r for r in runs if st[r.run_id] in wanted]
    if max_runs is not None:
        chosen = chosen[: max(0, int(max_runs))]
    return chosen


def make_bar(study: Study, progress: bool):
    """The overall tqdm bar (runs done / total, ETA) on the terminal's original stderr."""
    from tqdm import tqdm

    done = sum(1 for s in states(study).values() if s == "done")
    stream = None
    if progress:
        with contextlib.suppress(OSError, ValueError):
            stream = open(os.dup(2), "w", encoding="utf-8", buffering=1)
    bar = tqdm(
        total=len(study.runs),
        initial=done,
        desc=f"study {study.name}",
        unit="run",
        disable=not progress,
        file=stream,
        dynamic_ncols=True,
        smoothing=0.0,
    )
    bar._oodml_stream = stream  # closed by close_bar
    return bar


def close_bar(bar) -> None:
    bar.close()
    stream = getattr(bar, "_oodml_stream", None)
    if stream is not None:
        stream.close()


def run_study(
    study: Study | str | os.PathLike,
    *,
    executor: str | None = None,
    retry_failed: bool = False,
    max_runs: int | None = None,
    only: Sequence[str] | None = None,
    stale_after: float | None = None,
    run_fn: RunFn | None = None,
    run_fn_spec: str | None = None,
    adapt_fn: AdaptFn | None = None,
    progress: bool = True,
    wait: bool = True,
    check_data: bool = True,
    jobs: int | None = None,
) -> dict[str, int]:
    """Execute the study's pending runs with its executor (or ``executor``); returns outcome counts.

    ``jobs`` overrides ``executor.jobs``: the number of runs the local executor trains at once on
    the CPU (worker processes that share the claims; see :func:`oodml.executors.run_local`).

    ``run_fn(config, run_dir)`` replaces :func:`oodml.train.train` (a hook for tests and for
    other trainers; ``run_fn_spec`` is its ``module:function`` name, needed by the executors that
    start other processes); ``adapt_fn(run_dir, stage)`` replaces the adaptation call.
    """
    from oodml import executors

    if not isinstance(study, Study):
        study = load_study(study)
    if stale_after is not None:
        study.executor["stale_after"] = float(stale_after)
    if jobs is not None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise BadInputError(f"--jobs must be a positive integer, got {jobs!r}")
        study.executor["jobs"] = jobs
    if run_fn is None and run_fn_spec:
        run_fn = load_run_fn(run_fn_spec)
    kind = executor or study.executor.get("kind", "local")
    if kind not in EXECUTOR_KINDS:
        raise BadInputError(f"unknown executor {kind!r}; choose {', '.join(EXECUTOR_KINDS)}")
    if check_data and run_fn is None:
        preflight(study)
    runs = select_runs(study, retry_failed=retry_failed, only=only, max_runs=max_runs)
    study.runs_dir.mkdir(parents=True, exist_ok=True)
    opts = dict(
        retry_failed=retry_failed,
        run_fn=run_fn,
        run_fn_spec=run_fn_spec,
        adapt_fn=adapt_fn,
        progress=progress,
        wait=wait,
    )
    counts = executors.get_executor(kind)(study, runs, **opts)
    # Tuned runs wait for their search; once its trials have finished, run them in another pass
    # (an executor that returns before its jobs finish, e.g. Slurm without --wait: run again later).
    while study.search is not None and (wait or kind != "slurm") and only is None and max_runs is None:
        more = select_runs(study, retry_failed=False)
        if not more:
            break
        again = executors.get_executor(kind)(study, more, **opts)
        for k, v in again.items():
            counts[k] = counts.get(k, 0) + v
        if not again.get("done"):
            break
    return counts


# --------------------------------------------------------------------------------------------
# Plan / status
# --------------------------------------------------------------------------------------------
def _fmt_fid(fid: float | None) -> str:
    return "-" if fid is None else f"{fid:.4g}"


def _fmt_split(split: int | None) -> str:
    return "standard" if split is None else str(split)


def plan_table(study: Study) -> str:
    """The grid as a text table: run id, dataset, split, FID, loss, seed, state."""
    st = states(study)
    header = ("run_id", "dataset", "split", "fid", "loss", "seed", "state")
    rows = [
        (r.run_id, r.dataset, _fmt_split(r.split), _fmt_fid(r.fid), r.loss, str(r.seed), st[r.run_id])
        for r in study.runs
    ]
    if study.search is not None:  # which runs are search trials / tuned runs
        from oodml.search import plan_label

        header += ("tuning",)
        rows = [row + (plan_label(r),) for row, r in zip(rows, study.runs)]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    n_split = len({(r.dataset, r.split) for r in study.runs if r.tuning == "default"})
    if study.search is not None:
        from oodml.search import plan_summary

        lines.append(plan_summary(study))
    lines.append(
        f"{len(study.runs)} runs = {n_split} dataset splits x {len(study.losses)} losses x {len(study.seeds)} seeds; "
        f"adapt: {', '.join(s['mode'] + ' ' + str(s['shots']) for s in study.adapt) or 'none'}; "
        f"runs in {study.runs_dir}"
    )
    rules = sorted({selection_of(r.config) for r in study.runs})
    protocols = sorted({str(r.config.get("protocol") or "default") for r in study.runs})
    lines.append(
        f"protocol: {', '.join(protocols)}; checkpoint selection: "
        + ", ".join(f"{x} (ORACLE: chosen on the test classes)" if x == "test" else x for x in rules)
    )
    lines.append(_counts_line(st))
    return "\n".join(lines)


def _counts_line(st: dict[str, str]) -> str:
    counts = {s: 0 for s in STATES}
    for v in st.values():
        counts[v] += 1
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s] or s in ("done", "pending"))


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def status_summary(study: Study) -> dict:
    """Counts per state, mean seconds per finished run and an ETA for the rest.

    The ETA assumes the remaining runs (pending, queued, running, waiting; failed excluded) take the mean
    time of the finished ones (wall time of training + adaptation recorded by the runner in
    ``study_timing.json``, else the trainer's ``seconds`` in ``metrics.json``), spread over the
    executor's parallel capacity (1 local, GPUs × runs_per_gpu, the Slurm array parallelism).
    """
    st = states(study)
    counts = {s: 0 for s in STATES}
    for v in st.values():
        counts[v] += 1
    secs = []
    for r in study.runs:
        if st[r.run_id] != "done":
            continue
        for name in (TIMING, METRICS):  # wall time of train + adapt, else the trainer's own time
            with contextlib.suppress(Exception):
                m = json.loads((r.run_dir / name).read_text(encoding="utf-8"))
                if isinstance(m.get("seconds"), (int, float)):
                    secs.append(float(m["seconds"]))
                    break
    mean = sum(secs) / len(secs) if secs else None
    remaining = counts["pending"] + counts["queued"] + counts["running"] + counts["waiting"]
    from oodml.executors import parallel_capacity

    par = max(1, min(parallel_capacity(study), max(remaining, 1)))
    eta = None if mean is None else mean * math.ceil(remaining / par)
    return {
        "study": study.name,
        "total": len(study.runs),
        "counts": counts,
        "mean_seconds": mean,
        "parallel": par,
        "eta_seconds": eta,
        "runs_dir": str(study.runs_dir),
    }


def format_status(summary: dict) -> str:
    c = summary["counts"]
    shown = [s for s in STATES if s != "done" and (s != "waiting" or c[s])]  # waiting: tuned runs of a search
    lines = [
        f"study {summary['study']}: {c['done']}/{summary['total']} runs done "
        f"({', '.join(f'{c[s]} {s}' for s in shown)}) in {summary['runs_dir']}"
    ]
    if summary["mean_seconds"] is not None:
        eta = summary["eta_seconds"]
        lines.append(
            f"mean {_fmt_duration(summary['mean_seconds'])} per run; "
            f"ETA {_fmt_duration(eta) if eta else '0s'} for the rest ({summary['parallel']} in parallel)"
        )
    else:
        lines.append("ETA unknown until a run has finished")
    if c["failed"]:
        lines.append("failed runs: see <run>/failed.json and error.txt; retry with `run --retry-failed`")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Results table
# --------------------------------------------------------------------------------------------
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
    from oodml.search import hparams_text, run_hparams

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
                from oodml.adapt import adaptation_rows
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
        from oodml.frozen import frozen_rows

        # a frozen network has no checkpoint rule or tuning of its own: it stands beside the study's runs
        sel = selection_of(study.runs[0].config) if study.runs else "val"
        rows += [{"selection": sel, "tuning": "default", "hparams": "{}", **row} for row in frozen_rows(study)]
    if study.raw.get("controls"):
        from oodml.controls import control_map

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
    from oodml.io import atomic_open, atomic_write

    rows, missing = collect_rows(study)
    out_csv = Path(out) if out is not None else study.runs_dir / "results.csv"
    atomic_write(out_csv, results_csv_text(rows))
    if study.search is not None:
        from oodml.search import write_search_summary

        write_search_summary(study)
    pq_path = None
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pyarrow = None
        if pyarrow is not None:
            import pandas as pd

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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from oodml.cli import add_quiet

    p = argparse.ArgumentParser(
        prog="python -m oodml.study",
        description="Plan, run, monitor and collect a study (a grid of training runs described by a YAML file).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("file", help="study YAML file (e.g. studies/embedded_quick.yaml)")
        sp.add_argument("--runs-dir", default=None, help="runs folder (default: the file's runs_dir or runs/<name>)")
        add_quiet(sp)

    sp = sub.add_parser("plan", help="print the grid: run id, dataset, split, FID, loss, seed, state")
    common(sp)
    sp.add_argument(
        "--estimate",
        action="store_true",
        help="also estimate the study's training compute (GPU- or CPU-hours; see oodml.estimate)",
    )
    sp.add_argument(
        "--estimate-steps",
        type=int,
        default=5,
        metavar="N",
        help="training steps timed on this machine's device for --estimate (default 5)",
    )
    sp.add_argument(
        "--seconds-per-step",
        type=float,
        default=None,
        metavar="S",
        help="use this recorded time per training step instead of timing one here",
    )
    sp = sub.add_parser("run", help="execute the pending runs")
    common(sp)
    sp.add_argument("--executor", choices=EXECUTOR_KINDS, default=None, help="override executor.kind")
    sp.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="local executor: runs trained at once on the CPU (default: executor.jobs, else 1)",
    )
    sp.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    sp.add_argument("--max-runs", type=int, default=None, help="execute at most N runs")
    sp.add_argument(
        "--stale-after",
        type=float,
        default=None,
        help=f"seconds without heartbeat before another host's claim is stale (default {DEFAULT_STALE_AFTER:g})",
    )
    sp.add_argument("--only", default=None, help="comma-separated run ids (or @file with one id a line), in this order")
    sp.add_argument("--run-fn", default=None, help="module:function replacing oodml.train.train (fn(config, run_dir))")
    sp.add_argument("--wait", action="store_true", help="slurm: wait for the jobs with a progress bar")
    sp.add_argument("--no-check-data", action="store_true", help="skip the dataset/split-file check before running")
    sp = sub.add_parser("status", help="counts per state and an ETA")
    common(sp)
    sp = sub.add_parser("collect", help="write <runs_dir>/results.csv (+ .parquet)")
    common(sp)
    sp.add_argument("--out", default=None, help="CSV path (default <runs_dir>/results.csv)")
    return p


def _parse_only(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").split()
        except OSError as exc:
            raise BadInputError(f"--only {text}: cannot read {path} ({exc})") from None
        return [x for x in lines if x]
    return [x for x in text.split(",") if x]


def _terminate(signum, frame):  # noqa: ARG001
    raise SystemExit(128 + signum)


def _main(argv: list[str] | None = None) -> int:
    from oodml.cli import progress_disabled

    args = build_parser().parse_args(argv)
    study = load_study(args.file, runs_dir=args.runs_dir)
    if args.command == "plan":
        print(plan_table(study))
        if args.estimate:
            from oodml.estimate import estimate_study, format_estimate

            print(
                format_estimate(
                    estimate_study(study, steps=args.estimate_steps, seconds_per_step=args.seconds_per_step)
                )
            )
    elif args.command == "status":
        print(format_status(status_summary(study)))
        if (
            study.executor.get("kind") == "slurm"
            and (study.executor.get("slurm") or {}).get("cluster", "slurm") == "slurm"
        ):
            from oodml.executors import STATUS_SOURCE

            print(STATUS_SOURCE)
    elif args.command == "collect":
        res = collect(study, out=args.out)
        extra = f" and {res['parquet']}" if res["parquet"] else ""
        print(
            f"wrote {res['rows']} rows from {res['runs']} runs to {res['csv']}{extra}"
            + (f"; {len(res['missing'])} runs have no results yet" if res["missing"] else "")
        )
    elif args.command == "run":
        if threading.current_thread() is threading.main_thread():
            # `kill` / Slurm cancel: leave like Ctrl-C, releasing the claim of the run in progress
            signal.signal(signal.SIGTERM, _terminate)
            # a worker of a runner (executor.jobs > 1, gpus) ends with it, even when it is SIGKILLed
            from oodml.executors import start_parent_watchdog

            start_parent_watchdog()
        counts = run_study(
            study,
            executor=args.executor,
            retry_failed=args.retry_failed,
            max_runs=args.max_runs,
            only=_parse_only(args.only),
            stale_after=args.stale_after,
            run_fn_spec=args.run_fn,
            progress=not progress_disabled(args.quiet),
            wait=args.wait,
            check_data=not args.no_check_data,
            jobs=args.jobs,
        )
        print(", ".join(f"{v} {k}" for k, v in counts.items()))
        summary = status_summary(study)
        print(format_status(summary))
        if summary["counts"].get("waiting"):
            print(
                f"{summary['counts']['waiting']} tuned runs wait for their search's trials; "
                "run this command again once the trials have finished"
            )
        return 1 if counts.get("failed") else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    from oodml.cli import run_cli

    return run_cli(_main)(argv)


if __name__ == "__main__":
    sys.exit(main())
