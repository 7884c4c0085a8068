"""Loading a study file: every block checked before anything runs, then the grid expanded.

:func:`load_study` reads the YAML (safely), checks each block in turn (top-level keys, datasets
and their split files, losses, seeds, adaptation stages, the executor (each executor checks its
own keys), frozen rows, TrainConfig keys, the search), and hands the grid to
:mod:`oodml.study.plan`. A mistake is one line naming the key, with the closest valid spelling.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oodml.config import check_keys, closest
from oodml.datasets import DEFAULT_DATASET, canonical_name, dataset_names, load_dataset
from oodml.errors import BadInputError, OodmlError
from oodml.executors import check_executor
from oodml.frozen import frozen_specs
from oodml.io import load_yaml
from oodml.paths import find_base_dir
from oodml.runs import DEFAULT_HEARTBEAT, DEFAULT_STALE_AFTER, RunSpec
from oodml.splits import load_splits, read_series
from oodml.study.plan import Grid, expand_grid, train_config_class

__all__ = ["Study", "load_study", "preflight"]

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
DATASET_KEYS = ("name", "root", "splits")
LOSS_KEYS = ("name", "params", "train")  # train: TrainConfig keys for this loss only (e.g. DiVA's batch 108)
#: Grid keys of TrainConfig that the study sets itself (not allowed under ``train``).
GRID_KEYS = ("dataset", "root", "splits", "split", "loss", "loss_params", "seed")


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


_suggest = closest  # "; did you mean 'x'?"


def _check_keys(where: str, mapping: dict, valid: Any, path: Path) -> None:
    """The study's spelling of :func:`oodml.config.check_keys` (``where`` first)."""
    check_keys(mapping, valid, str(path), where)


def _resolve_path(base: Path, value: Any) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


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
    return read_series(path, where)


def _loss_entries(raw: Any, study_path: Path) -> list[dict]:
    from oodml.losses import get_spec, list_objectives, valid_keys  # lazy: the registry imports torch

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
    from oodml.adapt import MODES as ADAPT_MODES  # lazy: oodml.adapt imports torch
    from oodml.adapt import OPTIONS

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


def _read_raw(path: Path) -> dict:
    """The study file's mapping, with its top-level keys and ``name`` checked."""
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
    return raw


def _datasets(raw_items: Any, path: Path, base: Path) -> list[dict]:
    """The ``datasets`` block resolved: ``{name, root, splits, series}`` per entry."""
    datasets = []
    ds_items = _as_list(raw_items)
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
    return datasets


def _seeds(raw: dict, path: Path) -> list[int]:
    seeds = _as_list(raw.get("seeds", [0]))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise BadInputError(f"{path}: seeds must be a list of non-negative integers, got {raw.get('seeds')!r}")
    if len(set(seeds)) != len(seeds):
        raise BadInputError(f"{path}: seeds has duplicates: {seeds}")
    return seeds


def _shared_train(raw: dict, losses: list[dict], path: Path, train_keys: list[str]) -> dict:
    """The TrainConfig keys every run shares (``train:`` plus top-level ``protocol``/``selection``),
    with the per-loss ``train`` keys checked against the same rules."""
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
    return shared


def _runs_dir(raw: dict, base: Path, runs_dir: str | os.PathLike | None) -> Path:
    if runs_dir is not None:
        return Path(runs_dir)
    if raw.get("runs_dir") is not None:
        return _resolve_path(base, raw["runs_dir"])
    return base / "runs" / raw["name"]


def load_study(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Study:
    """Load and validate a study file and expand its grid (no dataset is loaded here).

    ``runs_dir`` overrides the file's ``runs_dir``. Raises :class:`~oodml.errors.BadInputError`
    with one line naming the key for any mistake.
    """
    from oodml.search import parse_search  # lazy: oodml.search imports the objectives (torch)

    path = Path(path)
    raw = _read_raw(path)
    base = find_base_dir(path)
    datasets = _datasets(raw["datasets"], path, base)
    losses = _loss_entries(raw["losses"], path)
    seeds = _seeds(raw, path)
    adapt = _adapt_stages(raw.get("adapt"), path)
    executor = check_executor(raw.get("executor"), path)
    if raw.get("frozen"):
        frozen_specs(raw["frozen"], path, base)  # checked now, computed by collect
    TrainConfig = train_config_class()
    train_keys = [f.name for f in dataclasses.fields(TrainConfig)]
    shared = _shared_train(raw, losses, path, train_keys)
    rdir = _runs_dir(raw, base, runs_dir)
    search = parse_search(raw.get("search"), losses, path, train_keys)
    grid = Grid(path=path, TrainConfig=TrainConfig, shared=shared, splits=raw.get("splits", "all"))
    runs = expand_grid(grid, datasets, losses, seeds, adapt, rdir, search, raw.get("controls"))
    return Study(
        name=raw["name"],
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
    for i, ds in enumerate(study.datasets):
        if ds["name"] == DEFAULT_DATASET and ds["splits"] is None:
            continue
        try:
            dataset = load_dataset(ds["name"], root=ds["root"])
        except OodmlError as exc:
            raise type(exc)(f"{study.path}: datasets[{i}] ({ds['name']}): {exc}") from None
        if ds["splits"] is not None:
            try:
                load_splits(ds["splits"], dataset=dataset)
            except OodmlError as exc:
                raise BadInputError(f"{study.path}: datasets[{i}].splits: {exc}") from None
