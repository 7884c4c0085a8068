"""The study grid: datasets x splits x losses x seeds (and a search's trials and tuned runs)
expanded into :class:`~oodml.runs.RunSpec` cells, each with its resolved TrainConfig and run id.

A run id is ``stable_hash({"config": <resolved config without HASH_EXCLUDED>, "split_digest":
<hash of the split's entry in the split file, or null>})`` (see :mod:`oodml.study`); trials and
tuned runs of a search add the search's identity (:func:`expand_search`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oodml.errors import BadInputError, OodmlError
from oodml.io import stable_hash
from oodml.runs import HASH_EXCLUDED, RunSpec
from oodml.splits.controls import control_cells

__all__ = ["Grid", "expand_grid", "expand_search", "hashed_config", "selection_of", "train_config_class"]


def train_config_class() -> Any:
    """:class:`oodml.train.TrainConfig` (imported on first use: the trainer imports torch)."""
    try:
        from oodml.train import TrainConfig  # lazy: torch is a measured startup cost
    except ImportError as exc:  # pragma: no cover - the trainer is part of the package
        raise OodmlError(f"oodml.train is not importable ({exc}); reinstall oodml") from None
    return TrainConfig


def _config_dict(cfg: Any) -> dict:
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    return dataclasses.asdict(cfg)


def hashed_config(cfg: dict) -> dict:
    """The config part of a run id: without :data:`~oodml.runs.HASH_EXCLUDED`, and without keys
    added after the first release while they hold the value older files mean (so existing runs
    keep their ids)."""
    from oodml.train import ADDED_KEYS  # lazy: torch

    return {k: v for k, v in cfg.items() if k not in HASH_EXCLUDED and not (k in ADDED_KEYS and v == ADDED_KEYS[k])}


def selection_of(config: dict) -> str:
    """The checkpoint rule of a resolved run config (``val``, ``last`` or ``test`` = oracle)."""
    sel = config.get("selection")
    if sel:
        return str(sel)
    return "test" if config.get("protocol") == "oodml" else "val"


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


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


@dataclass
class Grid:
    """What every cell of a study shares: the study file (for messages), the TrainConfig class,
    the shared ``train`` keys and the ``splits`` selection."""

    path: Path
    TrainConfig: Any
    shared: dict
    splits: Any = "all"

    def cells(self, ds: dict) -> list[tuple]:
        """The ``(split, fid, digest)`` cells of a resolved dataset entry (one standard cell
        ``(None, None, None)`` without a split file)."""
        if ds["series"] is None:
            return [(None, None, None)]
        ids = [int(s["id"]) for s in ds["series"]]
        chosen = _split_ids(self.splits, ids, Path(ds["splits"]), self.path)
        by_id = {int(s["id"]): s for s in ds["series"]}
        return [(sid, by_id[sid].get("fid"), stable_hash(by_id[sid], 32)) for sid in chosen]

    def config(self, ds: dict, split: int | None, loss: dict, seed: int) -> dict:
        """The resolved TrainConfig dict of one grid cell."""
        d = dict(self.shared)
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
            return _config_dict(self.TrainConfig.from_dict(d))
        except OodmlError as exc:
            raise BadInputError(f"{self.path}: invalid train settings: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"{self.path}: invalid train settings: {exc}") from None


def expand_grid(
    grid: Grid,
    datasets: Sequence[dict],
    losses: Sequence[dict],
    seeds: Sequence[int],
    adapt: Sequence[dict],
    runs_dir: Path,
    search: dict | None = None,
    controls: Any = None,
) -> list[RunSpec]:
    """Every run of a study, in table order (dataset, split, loss, seed; a search's trials and
    tuned runs beside the cells they tune)."""
    path = grid.path
    runs: list[RunSpec] = []
    seen: dict[str, tuple] = {}
    for di, ds in enumerate(datasets):
        cells = grid.cells(ds)
        if controls and ds["series"] is not None:
            cells += control_cells(ds["splits"], [c[0] for c in cells], controls, path)
        for split, fid, digest in cells:
            for li, loss in enumerate(losses):
                if search is not None and not search["default"] and loss["name"] in search["spaces"]:
                    continue  # only tuned runs for this loss
                for seed in seeds:
                    cfg = grid.config(ds, split, loss, seed)
                    run_id = stable_hash({"config": hashed_config(cfg), "split_digest": digest})
                    key = (di, -1 if split is None else split, li, seed)
                    if run_id in seen:
                        raise BadInputError(
                            f"{path}: two grid cells give the same run ({ds['name']}, split {split}, "
                            f"{loss['name']}, seed {seed}); remove the duplicate entry"
                        )
                    seen[run_id] = key
                    runs.append(RunSpec.cell(run_id, runs_dir, ds, split, fid, loss, seed, cfg, adapt, order=key))
    if search is not None:
        for spec in expand_search(
            search, datasets, grid.cells, losses, seeds, grid.config, runs_dir, adapt, HASH_EXCLUDED
        ):
            if spec.run_id in seen:
                raise BadInputError(f"{path}: a search run collides with a grid run ({spec.run_id}); report this")
            seen[spec.run_id] = spec.order
            runs.append(spec)
    runs.sort(key=lambda r: r.order)
    return runs


def expand_search(
    search: dict,
    datasets: Sequence[dict],
    cells_of: Callable[[dict], list],
    losses: Sequence[dict],
    seeds: Sequence[int],
    make_config: Callable[[dict, int | None, dict, int], dict],
    runs_dir: Path,
    adapt: Sequence[dict],
    excluded: Sequence[str],
) -> list:
    """The trial runs and tuned runs of a study's search (RunSpecs, with ``order`` keys that put
    trials first in execution order and tuned runs right after the default run of their cell).

    ``cells_of(ds)`` gives the study's ``(split, fid, digest)`` cells of a dataset;
    ``make_config(ds, split, loss, seed)`` the resolved TrainConfig dict of a grid cell.
    """
    from oodml.search import SCOPES, search_identity, standard_cell  # lazy: oodml.search imports torch

    out: list = []
    by_id: dict[str, Any] = {}
    trial_seed = int(seeds[0])
    for di, ds in enumerate(datasets):
        cells = cells_of(ds)
        for li, loss in enumerate(losses):
            if loss["name"] not in search["spaces"]:
                continue
            for scope in search["scopes"]:
                tune_cells = [standard_cell(ds)] if scope == "standard" else list(cells)
                for tsplit, tfid, tdigest in tune_cells:
                    base = make_config(ds, tsplit, loss, trial_seed)
                    sid = search_identity(search, loss["name"], base, tdigest, excluded)
                    trial_ids = [stable_hash({"search": sid, "trial": k}) for k in range(search["trials"])]
                    trial_dirs = [runs_dir / t for t in trial_ids]
                    for k, rid in enumerate(trial_ids):
                        if rid in by_id:
                            continue
                        order = (di, -2 if tsplit is None else tsplit, li, -1, k)
                        ref = _ref(search, loss, sid, runs_dir, "trial", scope, trial_dirs, k)
                        spec = RunSpec.cell(
                            rid, runs_dir, ds, tsplit, tfid, loss, trial_seed, base, (), order, "trial", ref
                        )
                        by_id[rid] = spec
                        out.append(spec)
                    targets = list(cells) if scope == "standard" else [(tsplit, tfid, tdigest)]
                    label = f"tuned-{scope}"
                    for split, fid, digest in targets:
                        for seed in seeds:
                            cfg = make_config(ds, split, loss, seed)
                            rid = _tuned_id(cfg, digest, sid, search["trials"], excluded)
                            if rid in by_id:  # the standard split, tuned on itself by both scopes: one run
                                by_id[rid].search["tunings"].append(label)
                                continue
                            ref = _ref(search, loss, sid, runs_dir, "tuned", scope, trial_dirs)
                            ref["tunings"] = [label]
                            order = (di, -1 if split is None else split, li, seed, 1 + SCOPES.index(scope))
                            spec = RunSpec.cell(
                                rid, runs_dir, ds, split, fid, loss, seed, cfg, adapt, order, label, ref
                            )
                            by_id[rid] = spec
                            out.append(spec)
    return out


def _ref(search: dict, loss: dict, sid: str, runs_dir: Path, role: str, scope: str, trial_dirs: list, *k: int) -> dict:
    from oodml.search import make_ref  # lazy: oodml.search imports torch

    return make_ref(search, loss["name"], sid, runs_dir, role, scope, trial_dirs, *k)


def _tuned_id(cfg: dict, digest: str | None, sid: str, trials: int, excluded: Sequence[str]) -> str:
    """Run id of a tuned run: its cell's config and split, and the search that tunes it."""
    return stable_hash(
        {
            "config": {k: v for k, v in cfg.items() if k not in excluded},
            "split_digest": digest,
            "tuned": sid,
            "trials": trials,
        }
    )
