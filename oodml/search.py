"""Hyperparameter search on validation classes (Optuna), with trials that are ordinary study runs.

One cohesive module (~650 lines): the ``search:`` block, the search identity, drawing and
reporting trials through Optuna, the chosen settings, and the search summary all share one record
(:func:`make_ref`) and one storage; the grid expansion lives in :mod:`oodml.study.plan`.

A study file may carry a ``search:`` block::

    search:
      sampler: random          # random | tpe (Optuna's RandomSampler / TPESampler, seeded)
      trials: 4                # trials per search (one search per loss, or per loss and split)
      metric: map@r            # validation metric to maximise (map@r, r_precision, precision@1, recall@<k>)
      scope: standard          # standard | per-split | [standard, per-split]
      seed: 0                  # sampler seed: the same seed draws the same trials
      default: true            # also train every loss with its default settings (the "default" curve)
      losses: [margin]         # which of the study's losses to tune (default: all)
      space:                   # overrides of the registry's search spaces (oodml.losses), per loss or `all`
        all: {train.lr: {low: 3.0e-4, high: 3.0e-3, log: true}}
        margin: {margin: [0.05, 0.4], beta: null}     # null removes a key from the search

**Search spaces.** Every objective of :mod:`oodml.losses` declares its tunable hyperparameters
(``ObjectiveSpec.search_space``: key -> :class:`Tunable`) beside its defaults; ``python -m
oodml.train --list-losses --search-space`` prints them. Keys are the objective's override keys
(``margin``, ``miner.epsilon``, ``lr_mult``, ...) or ``train.<TrainConfig key>`` (``train.lr``).
A range is written ``[low, high]``, ``{low, high, log: true, int: true, step: s}`` or
``{choices: [...]}``; a plain value fixes the key. An objective without a declared space is
refused only when a search is asked for it (give it a ``space:`` in the study).

**Trials are runs.** A search is identified by :func:`oodml.io.stable_hash` of what it computes
(dataset, tuning split, loss, base settings, space, sampler, seed, metric). Its ``trials`` slots are
ordinary :class:`~oodml.runs.RunSpec` cells
(expanded by :func:`oodml.study.plan.expand_search`) (``tuning="trial"``) of the study grid: planned,
claimed, resumable, run by every executor, listed by ``plan`` and ``status``. When a runner
claims a slot it draws the slot's settings from Optuna (once: they are kept in the run folder's
``tuned.json``, so a killed and restarted trial resumes with the same settings) and, when it has
trained, reports the validation metric of the chosen checkpoint to Optuna. A failed trial is
recorded as failed (in the run folder and in Optuna) and the search goes on.

**Determinism.** The settings of slot ``k`` are drawn by a sampler seeded with
``hash(seed, k)``: with the random sampler they are a pure function of (seed, k, space), whatever
the order, the process or the number of workers. TPE draws its first ``n_startup_trials`` (10)
the same way; later TPE draws depend on the trials finished at that moment (sequential with one
worker, so reproducible; with parallel workers the history they see depends on timing). Slot
seeds do not depend on the search, so searches with the same seed and space (per-split searches of
one loss, say) draw the same random candidates -- common random numbers: they differ only in which
candidate their split's validation classes prefer.

**Storage.** One Optuna study per search, in ``<runs_dir>/search/<search id>/journal.log``:
Optuna's ``JournalStorage`` over a ``JournalFileBackend`` with ``JournalFileOpenLock``. The journal
is an append-only log guarded by a lock file created with ``O_CREAT|O_EXCL`` (atomic on NFS too),
so separate processes and Slurm tasks on other nodes share it safely (a lock left by a killed
process is broken after Optuna's 30 s grace period); SQLite relies on POSIX file locks, which NFS
does not honour reliably. The run folders remain the source of truth: the chosen
settings are read from the trials' ``metrics.json`` (the best validation value, ties to the lowest
slot), and results a killed process trained but never reported reach Optuna on the next draw.

**Tuned runs.** Once every trial of a search is finished (done or failed), the grid's tuned runs
(``tuning="tuned-standard"`` / ``"tuned-per-split"``) train with the chosen settings on their
splits; until then they are ``waiting``. With ``scope: standard`` the search runs on the standard
split of the dataset (the split file's series marked ``standard``, else the dataset's own standard
split) and its settings serve every split; ``scope: per-split`` searches on each split.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from oodml.config import check_keys
from oodml.errors import BadInputError, OodmlError
from oodml.io import atomic_write, stable_hash, write_json
from oodml.losses import format_search_spaces, get_spec, list_objectives, search_space, valid_keys
from oodml.objectives.space import Tunable, is_number

__all__ = [
    "SAMPLERS",
    "SCOPES",
    "TUNINGS",
    "Tunable",
    "apply_params",
    "chosen_settings",
    "format_search_spaces",
    "parse_search",
    "search_complete",
    "search_space",
    "trial_params",
]

SCHEMA = "oodml.search/1"
SAMPLERS = ("random", "tpe")
SCOPES = ("standard", "per-split")
#: Values of the results table's ``tuning`` column (trials themselves are not in the table).
TUNINGS = ("default", "tuned-standard", "tuned-per-split")
SEARCH_KEYS = ("sampler", "trials", "metric", "scope", "seed", "default", "losses", "space")
VAL_METRICS = ("map@r", "r_precision", "precision@1")
TUNED = "tuned.json"  # in a trial's or tuned run's folder: the settings it trained with
JOURNAL = "journal.log"


# --------------------------------------------------------------------------------------------
# The search block of a study
# --------------------------------------------------------------------------------------------
def _check_metric(metric: Any, path: Path) -> str:
    m = str(metric).strip().lower()
    if m in VAL_METRICS or (m.startswith("recall@") and m[7:].isdigit() and int(m[7:]) > 0):
        return m
    raise BadInputError(
        f"{path}: search.metric {metric!r} is not a validation metric; choose map@r, r_precision, "
        "precision@1 or recall@<k>"
    )


def _search_scalars(raw: Mapping, path: Path) -> tuple[str, int, int, list[str], bool]:
    """(sampler, trials, seed, scopes, default) of a ``search:`` block, checked."""
    sampler = str(raw.get("sampler", "random")).lower()
    if sampler not in SAMPLERS:
        raise BadInputError(f"{path}: search.sampler must be one of {', '.join(SAMPLERS)}, got {raw.get('sampler')!r}")
    trials = raw.get("trials", 4)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise BadInputError(f"{path}: search.trials must be a positive integer, got {trials!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BadInputError(f"{path}: search.seed must be a non-negative integer, got {seed!r}")
    scopes = raw.get("scope", "standard")
    scopes = list(scopes) if isinstance(scopes, (list, tuple)) else [scopes]
    if not scopes or any(s not in SCOPES for s in scopes):
        raise BadInputError(
            f"{path}: search.scope must be standard, per-split or a list of both, got {raw.get('scope')!r}"
        )
    scopes = [s for s in SCOPES if s in scopes]
    default = raw.get("default", True)
    if not isinstance(default, bool):
        raise BadInputError(f"{path}: search.default must be true or false, got {default!r}")
    return sampler, trials, seed, scopes, default


def _tuned_losses(raw: Mapping, names: list[str], path: Path) -> list[str]:
    """The study's losses the search tunes (``search.losses``, canonical names, study order)."""
    tuned = raw.get("losses")
    if tuned is None:
        return list(names)
    tuned = list(tuned) if isinstance(tuned, (list, tuple)) else [tuned]
    canon = []
    for t in tuned:
        try:
            c = get_spec(str(t)).name
        except OodmlError:
            c = str(t)
        if c not in names:
            raise BadInputError(f"{path}: search.losses: {t!r} is not one of the study's losses ({', '.join(names)})")
        canon.append(c)
    return [n for n in names if n in canon]


def _space_overrides(raw: Mapping, names: list[str], tuned: list[str], path: Path) -> Mapping:
    """``search.space``: loss name (or ``all``) -> {key: range}, its names checked."""
    overrides = raw.get("space") or {}
    if not isinstance(overrides, Mapping):
        raise BadInputError(f"{path}: search.space must be a mapping of loss name (or all) to {{key: range}}")
    for k in overrides:
        if k != "all" and k not in names:
            raise BadInputError(f"{path}: search.space.{k}: not one of the study's losses ({', '.join(names)}) or all")
    for key in overrides.get("all") or {}:  # a key for all losses must fit at least one of them
        key = str(key)
        if not key.startswith("train.") and not any(key in valid_keys(n) for n in tuned):
            raise BadInputError(f"{path}: search.space.all.{key}: no tuned loss ({', '.join(tuned)}) has this option")
    return overrides


#: TrainConfig keys the study grid sets: not tunable.
_GRID_KEYS = ("dataset", "root", "splits", "split", "loss", "loss_params", "seed")


def _loss_space(name: str, overrides: Mapping, path: Path, train_keys: Sequence[str]) -> dict[str, Tunable]:
    """The search space of one tuned loss: the registry's, with the study's overrides applied."""
    space = search_space(name)
    for scope_key in ("all", name):
        for key, value in (overrides.get(scope_key) or {}).items():
            where = f"{path}: search.space.{scope_key}.{key}"
            key = str(key)
            if key.startswith("train."):
                tk = key[6:]
                if tk not in train_keys or tk in _GRID_KEYS:
                    raise BadInputError(f"{where}: {tk!r} is not a tunable TrainConfig key")
            elif key not in valid_keys(name):
                if scope_key == "all":
                    continue  # a key of other losses only
                raise BadInputError(
                    f"{where}: unknown option for loss {name} (valid: {', '.join(valid_keys(name))}, train.<key>)"
                )
            if value is None:
                space.pop(key, None)
            elif isinstance(value, (list, tuple, Mapping)):
                space[key] = Tunable.parse(value, where)
            else:
                space[key] = Tunable(choices=(value,))
    if not space:
        raise BadInputError(
            f"{path}: search: loss {name} declares no search space in the registry (oodml.losses) and the study "
            f"gives none; add search.space.{name}: {{<key>: [low, high]}} or leave it out of search.losses"
        )
    return dict(sorted(space.items()))


def parse_search(raw: Any, losses: Sequence[dict], path: Path, train_keys: Sequence[str]) -> dict | None:
    """Validate a study's ``search:`` block; returns it resolved (one space per tuned loss) or None.

    ``losses`` are the study's resolved loss entries ``{name, params}``.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BadInputError(f"{path}: search must be a mapping like {{sampler: random, trials: 4, scope: standard}}")
    check_keys(raw, SEARCH_KEYS, str(path), "search.")
    sampler, trials, seed, scopes, default = _search_scalars(raw, path)
    names = [e["name"] for e in losses]
    tuned = _tuned_losses(raw, names, path)
    overrides = _space_overrides(raw, names, tuned, path)
    spaces = {name: _loss_space(name, overrides, path, train_keys) for name in tuned}
    return {
        "sampler": sampler,
        "trials": trials,
        "metric": _check_metric(raw.get("metric", "map@r"), path),
        "scopes": scopes,
        "seed": seed,
        "default": default,
        "losses": tuned,
        "spaces": spaces,
    }


def search_identity(
    search: dict, loss: str, base_config: dict, split_digest: str | None, excluded: Sequence[str]
) -> str:
    """The id of one search: what its trials compute (not how many there are)."""
    return stable_hash(
        {
            "schema": SCHEMA,
            "config": {k: v for k, v in base_config.items() if k not in excluded},
            "split_digest": split_digest,
            "space": {k: t.to_dict() for k, t in search["spaces"][loss].items()},
            "sampler": search["sampler"],
            "seed": search["seed"],
            "metric": search["metric"],
        }
    )


def make_ref(
    search: dict,
    loss: str,
    sid: str,
    runs_dir: Path,
    role: str,
    scope: str,
    trial_dirs: Sequence[Path],
    trial: int | None = None,
) -> dict:
    """The ``RunSpec.search`` record of a trial (``role="trial"``) or a tuned run (``role="tuned"``)."""
    return {
        "id": sid,
        "role": role,
        "scope": scope,
        "trial": trial,
        "trials": search["trials"],
        "sampler": search["sampler"],
        "seed": search["seed"],
        "metric": search["metric"],
        "space": {k: t.to_dict() for k, t in search["spaces"][loss].items()},
        "dir": str(runs_dir / "search" / sid),
        "trial_dirs": [str(d) for d in trial_dirs],
    }


def tuning_label(ref: dict | None) -> str:
    """The ``tuning`` value of a run with search record ``ref`` (None: ``default``)."""
    if ref is None:
        return "default"
    return "trial" if ref["role"] == "trial" else f"tuned-{ref['scope']}"


# --------------------------------------------------------------------------------------------
# Optuna
# --------------------------------------------------------------------------------------------
def _space(ref: dict) -> dict[str, Tunable]:
    return {k: Tunable.parse(v, "search space") for k, v in ref["space"].items()}


def slot_seed(seed: int, slot: int) -> int:
    """The sampler seed of trial slot ``slot`` of a search seeded ``seed``."""
    return int(stable_hash({"seed": int(seed), "slot": int(slot)}, 8), 16)


def _optuna_study(ref: dict, sampler_seed: int | None):
    try:  # lazy: optuna is a measured startup cost, needed only when a trial draws or reports
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise OodmlError(f"hyperparameter search needs optuna ({exc}); pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(ref["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    journal = str(folder / JOURNAL)
    storage = JournalStorage(JournalFileBackend(journal, lock_obj=JournalFileOpenLock(journal)))
    if ref["sampler"] == "tpe":
        sampler = optuna.samplers.TPESampler(seed=sampler_seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=sampler_seed)
    return optuna.create_study(
        storage=storage, study_name=ref["id"], sampler=sampler, direction="maximize", load_if_exists=True
    )


def _val_value(run_dir: Path, metric: str) -> float | None:
    p = run_dir / "metrics.json"
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    v = (m.get("val") or {}).get(metric)
    return float(v) if is_number(v) else None


def _sync(study, ref: dict) -> None:
    """Report to Optuna the trials whose run folders finished but were never reported (killed
    between writing metrics.json and telling Optuna), and fail those whose run failed."""
    from optuna.trial import TrialState

    running = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return
    for d in ref["trial_dirs"]:
        info = _read_tuned(Path(d))
        if info is None or info.get("optuna_trial") not in running:
            continue
        value = _val_value(Path(d), ref["metric"])
        with contextlib.suppress(Exception):
            if value is not None:
                study.tell(info["optuna_trial"], value)
            elif (Path(d) / "failed.json").is_file():
                study.tell(info["optuna_trial"], state=TrialState.FAIL)


def _read_tuned(run_dir: Path) -> dict | None:
    p = run_dir / TUNED
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def trial_params(ref: dict, run_dir: Path) -> dict:
    """The settings of the trial in ``run_dir``: kept from an earlier attempt, else drawn now from
    Optuna (slot-seeded sampler) and recorded in ``tuned.json``. Returns the ``tuned.json`` dict."""
    info = _read_tuned(run_dir)
    if info is not None and info.get("search") == ref["id"]:
        return info
    from optuna.trial import TrialState

    slot = int(ref["trial"])
    study = _optuna_study(ref, slot_seed(ref["seed"], slot))
    _sync(study, ref)
    space = _space(ref)
    trial = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("slot") == slot:  # asked by a process killed before it wrote tuned.json
            trial = t
            break
    if trial is None:
        t = study.ask({k: space[k].distribution() for k in sorted(space)})
        t.set_user_attr("slot", slot)
        number, params = t.number, dict(t.params)
    else:
        number, params = trial.number, dict(trial.params)
    info = {
        "schema": SCHEMA + "/tuned",
        "search": ref["id"],
        "tuning": "trial",
        "trial": slot,
        "optuna_trial": number,
        "sampler": ref["sampler"],
        "params": {k: params[k] for k in sorted(params)},
    }
    write_json(run_dir / TUNED, info)
    return info


def report_trial(ref: dict, run_dir: Path, failed: bool = False) -> None:
    """Tell Optuna the trial's validation value (or that it failed). A trial retried after a
    failure (its Optuna trial already FAIL) is added as a new completed trial with its settings."""
    import optuna
    from optuna.trial import TrialState

    info = _read_tuned(run_dir)
    if info is None:
        return
    study = _optuna_study(ref, None)
    t = {tr.number: tr for tr in study.get_trials(deepcopy=False)}.get(int(info["optuna_trial"]))
    value = None if failed else _val_value(run_dir, ref["metric"])
    if t is not None and t.state == TrialState.RUNNING:
        if value is None:
            study.tell(t.number, state=TrialState.FAIL)
        else:
            study.tell(t.number, value)
        return
    if value is None or (t is not None and t.state == TrialState.COMPLETE):
        return
    space = _space(ref)
    params = info["params"]
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions={k: space[k].distribution() for k in params},
            value=value,
            user_attrs={"slot": int(ref["trial"]), "retry_of": info["optuna_trial"]},
        )
    )
    number = max(tr.number for tr in study.get_trials(deepcopy=False))
    write_json(run_dir / TUNED, {**info, "optuna_trial": number})


def search_complete(ref: dict) -> bool:
    """Whether every trial of the search has finished (metrics.json) or failed."""
    for d in ref["trial_dirs"]:
        d = Path(d)
        if not (d / "metrics.json").is_file() and not (d / "failed.json").is_file():
            return False
    return True


def chosen_settings(ref: dict) -> dict:
    """The search's outcome from its trials' folders: ``{"params", "value", "trial", "run_id",
    "done", "failed", "values"}``; ``params`` is None when no trial succeeded."""
    best = None
    done = failed = 0
    values = []
    for slot, d in enumerate(ref["trial_dirs"]):
        d = Path(d)
        info = _read_tuned(d)
        value = _val_value(d, ref["metric"])
        if (d / "metrics.json").is_file():
            done += 1
        elif (d / "failed.json").is_file():
            failed += 1
        values.append(value)
        if info is None or value is None:
            continue
        if best is None or value > best[0]:
            best = (value, slot, d.name, info["params"])
    out = {
        "search": ref["id"],
        "metric": ref["metric"],
        "done": done,
        "failed": failed,
        "values": values,
        "params": None,
        "value": None,
        "trial": None,
        "run_id": None,
    }
    if best is not None:
        out.update(value=best[0], trial=best[1], run_id=best[2], params=best[3])
    return out


def apply_params(config: dict, params: Mapping[str, Any]) -> dict:
    """``config`` with the tuned ``params`` applied: ``train.<key>`` set the TrainConfig key, the
    others the loss options."""
    cfg = dict(config)
    loss_params = dict(cfg.get("loss_params") or {})
    for key, value in params.items():
        if key.startswith("train."):
            cfg[key[6:]] = value
        else:
            loss_params[key] = value
    cfg["loss_params"] = loss_params
    return cfg


def bind_run_fn(ref: dict, run_fn: Callable[[dict, Path], Any]) -> Callable[[dict, Path], Any]:
    """Wrap a study run function so that it trains with the trial's or the chosen settings."""

    def run(config: dict, run_dir: Path) -> Any:
        run_dir = Path(run_dir)
        if ref["role"] == "trial":
            info = trial_params(ref, run_dir)
            try:
                result = run_fn(apply_params(config, info["params"]), run_dir)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    with contextlib.suppress(Exception):
                        report_trial(ref, run_dir, failed=True)
                raise
            if _val_value(run_dir, ref["metric"]) is None and (run_dir / "metrics.json").is_file():
                with contextlib.suppress(Exception):
                    report_trial(ref, run_dir, failed=True)
                raise OodmlError(
                    f"trial {run_dir.name}: metrics.json has no validation {ref['metric']} (does the split have "
                    "validation classes, and does eval_every > 0?)"
                )
            report_trial(ref, run_dir)
            return result
        chosen = chosen_settings(ref)
        write_json(Path(ref["dir"]) / "chosen.json", chosen)
        if chosen["params"] is None:
            raise OodmlError(
                f"search {ref['id']}: none of its {len(ref['trial_dirs'])} trials succeeded, so there are no "
                "settings to train with; see the trials' failed.json, fix the cause and `run --retry-failed`"
            )
        write_json(
            run_dir / TUNED,
            {
                "schema": SCHEMA + "/tuned",
                "search": ref["id"],
                "tuning": tuning_label(ref),
                "trial": chosen["trial"],
                "trial_run": chosen["run_id"],
                "value": chosen["value"],
                "params": chosen["params"],
            },
        )
        return run_fn(apply_params(config, chosen["params"]), run_dir)

    return run


def run_hparams(run: Any, study_search: dict | None) -> dict:
    """The hyperparameters a run trained with, for the results table: the tuned settings
    (``tuned.json``), else, for a loss the study searches, the defaults of its searched keys, else
    the loss options the study sets."""
    info = _read_tuned(Path(run.run_dir))
    if info is not None and isinstance(info.get("params"), dict):
        return dict(info["params"])
    if study_search is not None and run.loss in study_search["spaces"]:
        defaults = _defaults(run.loss)
        out = {}
        for key in study_search["spaces"][run.loss]:
            if key.startswith("train."):
                out[key] = run.config.get(key[6:])
            else:
                out[key] = run.loss_params.get(key, defaults.get(key))
        return out
    return dict(run.loss_params)


@functools.cache
def _defaults(loss: str) -> dict:
    """Every overridable key of objective ``loss`` with its default (cached: collect asks per run)."""
    return next(r["defaults"] for r in list_objectives() if r["name"] == loss)


def hparams_text(params: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON of a run's hyperparameters (the ``hparams`` column)."""
    return json.dumps({k: params[k] for k in sorted(params)}, separators=(",", ":"), sort_keys=True)


def search_rows(study: Any) -> list[dict]:
    """One row per search of a study: dataset, split, loss, scope, trials done/failed, the best
    value and the chosen settings (for ``<runs_dir>/search/searches.csv``)."""
    rows, seen = [], set()
    for r in study.runs:
        ref = getattr(r, "search", None)
        if ref is None or ref["role"] != "trial" or ref["id"] in seen:
            continue
        seen.add(ref["id"])
        ch = chosen_settings(ref)
        rows.append(
            {
                "dataset": r.dataset,
                "split": r.split,
                "loss": r.loss,
                "scope": ref["scope"],
                "search": ref["id"],
                "sampler": ref["sampler"],
                "trials": ref["trials"],
                "done": ch["done"],
                "failed": ch["failed"],
                "metric": ref["metric"],
                "best": ch["value"],
                "params": None if ch["params"] is None else hparams_text(ch["params"]),
            }
        )
    return rows


def _ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_search_summary(study: Any) -> Path | None:
    """Write ``<runs_dir>/search/searches.csv`` (one row per search); None without a search."""
    rows = search_rows(study)
    if not rows:
        return None
    cols = (
        "dataset",
        "split",
        "loss",
        "scope",
        "search",
        "sampler",
        "trials",
        "done",
        "failed",
        "metric",
        "best",
        "params",
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow(["" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else row[c]) for c in cols])
    out = _ensure_dir(study.runs_dir / "search") / "searches.csv"
    atomic_write(out, buf.getvalue())
    return out


def read_tuned(run_dir: str | os.PathLike) -> dict | None:
    """The ``tuned.json`` of a run folder (None for a default run)."""
    return _read_tuned(Path(run_dir))


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------
def standard_cell(ds: dict) -> tuple[int | None, float | None, str | None]:
    """(series id, fid, digest) of the dataset's standard split: the split file's series marked
    ``standard``, else the dataset's own standard split (no split file entry)."""
    for s in ds.get("series") or ():
        if s.get("standard"):
            return int(s["id"]), s.get("fid"), stable_hash(s, 32)
    return None, None, None


def plan_label(run: Any) -> str:
    """The ``tuning`` cell of ``study plan``: ``default``, ``trial k/N`` or the tuned label(s)."""
    ref = getattr(run, "search", None)
    if ref is None:
        return "default"
    if ref["role"] == "trial":
        return f"trial {int(ref['trial']) + 1}/{ref['trials']}"
    return "+".join(ref.get("tunings", [run.tuning]))


def plan_summary(study: Any) -> str:
    """One line describing a study's search for ``study plan``."""
    s = study.search
    trials = [r for r in study.runs if r.tuning == "trial"]
    tuned = [r for r in study.runs if r.tuning not in ("trial", "default")]
    n_search = len({r.search["id"] for r in trials})
    return (
        f"search: {s['sampler']} sampler (seed {s['seed']}), {s['trials']} trials per search on validation "
        f"{s['metric']}, scope {' + '.join(s['scopes'])}, losses {', '.join(s['losses'])}: {n_search} searches "
        f"= {len(trials)} trial runs, then {len(tuned)} tuned runs; Optuna journals in {study.runs_dir / 'search'}"
    )
