"""The training loop of one run, in named steps: set up (data, model, objective, optimizer),
resume, record provenance, then per epoch fit, evaluate, checkpoint; finally the test metrics of
the chosen checkpoint.  :func:`train` is the entry point (see :mod:`oodml.training` for what a run
does and which files it writes)."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import oodml
from oodml.data import ClassBalancedBatchSampler, image_cache, normalize_batch, train_loader
from oodml.device import resolve_device
from oodml.errors import BadInputError, OodmlError
from oodml.evaluate import STUDY_METRICS
from oodml.io import atomic_write, dump_yaml, read_json, write_json
from oodml.losses import get_spec, make_objective
from oodml.progress import progress_bar, progress_disabled
from oodml.threads import torch_threads
from oodml.training.checkpoints import (
    BEST_SCHEMA,
    CHECKPOINT_SCHEMA,
    clean_run_dir,
    load_checkpoint,
    same_config,
    save,
)
from oodml.training.classes import RunClasses, resolve_classes
from oodml.training.config import TrainConfig
from oodml.training.embedding import evaluate_classes, model_mean_std, recall_ks
from oodml.training.optim import make_optimizer, make_scheduler
from oodml.training.runtime import resolve_amp, resolve_workers, rng_state, seed_all, set_rng_state

__all__ = ["train"]

#: What validation (and the oracle's per-epoch test scoring) computes; the final test computes
#: :data:`oodml.evaluate.STUDY_METRICS`.
VAL_METRICS = ("recall", "precision@1", "r_precision", "map@r")
VAL_KS = "default"


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def train(
    config: TrainConfig | Mapping[str, Any],
    run_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    dataset=None,
) -> dict[str, Any]:
    """Train (or resume) the run ``config`` in ``run_dir`` and return its ``metrics.json`` dict.

    Args:
        config: a :class:`TrainConfig` or a plain dict of its keys.
        run_dir: the run folder (created).  With ``resume`` (default) a finished run (its
            ``metrics.json`` exists) is returned as is and an unfinished one continues from
            ``checkpoint.pt``; both must have been made with the same config (except ``device``,
            ``workers``, ``tensorboard``, ``eval_batch_size``).  ``resume=False`` starts over,
            deleting the run files of an earlier run there.
        progress: progress bars (also off with ``OODML_QUIET=1``).
        stop_after_epoch: stop after this (1-based) epoch has been checkpointed, leaving the run
            unfinished (for tests and time-sliced schedulers); returns ``{"stopped_after_epoch": e}``.
        dataset: an already loaded dataset (e.g. a subset) to use instead of loading
            ``config.dataset``; its fingerprint is recorded, and :func:`load_run` needs it again.

    Raises:
        OodmlError: bad configuration, a run folder holding a different run, or a NaN/inf loss
            (the message names the epoch and step).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    show = progress and not progress_disabled()
    finished, state = _prepare_run_dir(cfg, run_dir, resume)
    if finished is not None:
        return finished
    with torch_threads(cfg.threads or 1, enabled=cfg.threads is not None), _deterministic(cfg.deterministic):
        try:
            return _train(cfg, run_dir, state, show, stop_after_epoch, dataset)
        except BaseException:
            # a run that failed before writing anything (bad split id, missing dataset) leaves no folder
            if created and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
            raise


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> tuple[dict | None, Any]:
    """``(metrics, None)`` for a finished run of this config, ``(None, checkpoint)`` to resume,
    ``(None, None)`` for a fresh start (earlier run files deleted); a folder holding another
    config's run is an error."""
    now = cfg.to_dict()
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and (run_dir / "metrics.json").is_file():
        metrics = read_json(run_dir / "metrics.json", "run metrics")
        diff = same_config(metrics.get("run", {}), now)
        if diff is None:
            return metrics, None
        raise BadInputError(
            f"{run_dir} holds a finished run with a different config ({diff}: {metrics.get('run', {}).get(diff)!r} "
            f"there, {now[diff]!r} now); choose another --out or pass --no-resume to overwrite it"
        )
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        diff = same_config(state.get("config", {}), now)
        if diff is not None:
            raise BadInputError(
                f"{ckpt_path} belongs to a run with a different config ({diff}: {state['config'].get(diff)!r} there, "
                f"{now[diff]!r} now); choose another --out or pass --no-resume to start over"
            )
        return None, state
    clean_run_dir(run_dir)
    return None, None


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the body (restored afterwards) when ``enabled``."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------
@dataclass
class _Session:
    """What a run sets up once: its classes, data, model, objective and optimizer."""

    cfg: TrainConfig
    run_dir: Path
    show: bool
    device: torch.device
    amp_dtype: torch.dtype | None
    workers: int
    rc: RunClasses
    cache: Any
    num_batches: int
    sampler: ClassBalancedBatchSampler
    loader: Any
    model: Any = None
    objective: Any = None
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    tb: Any = None

    @property
    def rule(self) -> str:
        return self.cfg.selection_rule

    @property
    def has_val(self) -> bool:
        return bool(self.rc.val_classes) and self.cfg.eval_every > 0

    def evaluate(self, classes: Sequence[str], ks: Any, metrics: Sequence[str]) -> dict[str, float]:
        return evaluate_classes(
            self.model, self.rc, classes, self.cfg, self.cache, self.device, ks, metrics, self.workers
        )


@dataclass
class _Progress:
    """What changes from epoch to epoch (and is saved in ``checkpoint.pt``)."""

    start_epoch: int = 0
    best_epoch: int = 0
    best_val: float = -math.inf
    best_metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)


def _setup(cfg: TrainConfig, run_dir: Path, show: bool, dataset) -> _Session:
    """Devices, classes, the decoded-image cache and the class-balanced loader, then the model."""
    device = resolve_device(cfg.device)
    amp_dtype = resolve_amp(cfg.amp, device)
    workers = resolve_workers(cfg.workers, device)
    rc = resolve_classes(cfg, dataset=dataset, progress=show)
    ds = rc.dataset
    cache = image_cache(ds, cfg.resize_size, progress=show)
    label_of = {c: i for i, c in enumerate(rc.fit_classes)}
    fit_ids = ds.indices_of(rc.fit_classes)
    labels_by_id = np.full(len(ds), -1, dtype=np.int64)
    all_labels = ds.label_names
    labels_by_id[fit_ids] = [label_of[all_labels[i]] for i in fit_ids]
    num_batches = cfg.iterations_per_epoch or max(1, len(fit_ids) // cfg.batch_size)
    sampler = ClassBalancedBatchSampler(
        fit_ids, labels_by_id[fit_ids], cfg.m_per_class, cfg.batch_size, num_batches, seed=cfg.seed
    )
    loader = train_loader(
        cache,
        labels_by_id,
        sampler,
        image_size=cfg.image_size,
        augment=cfg.augment,
        scale=(cfg.crop_scale_min, 1.0),
        workers=workers,
        device=device,
    )
    s = _Session(cfg, run_dir, show, device, amp_dtype, workers, rc, cache, num_batches, sampler, loader)
    _setup_model(s)
    return s


def _setup_model(s: _Session) -> None:
    """The seeded model, the objective, the optimizer, its scheduler and (fp16) grad scaler."""
    # oodml.models imports timm (through oodml.backbones), and timm torchvision: seconds of startup
    # that `python -m oodml.train --help`, `--list-losses` and a study's config checks must not pay.
    from oodml.models import build_model

    cfg = s.cfg
    seed_all(cfg.seed, 0xB01D)
    s.model = build_model(
        cfg.backbone,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        embed_dim=cfg.embed_dim,
        pooling=cfg.pooling,
        freeze_bn=cfg.freeze_bn,
        channels_last=cfg.channels_last,
        drop_path=cfg.drop_path,
        embed_groups=get_spec(cfg.loss).embed_groups,
    ).to(s.device)
    s.objective = make_objective(
        cfg.loss,
        num_classes=len(s.rc.fit_classes),
        embed_dim=s.model.embed_dim,
        feature_dim=s.model.feature_dim,
        **cfg.loss_params,
    ).to(s.device)
    if s.objective.needs_pairs and cfg.m_per_class < 2:
        raise BadInputError(
            f"loss {cfg.loss} compares images of one class: m_per_class must be at least 2 (got {cfg.m_per_class})"
        )
    s.optimizer = make_optimizer(cfg, s.model, s.objective)
    s.scheduler = make_scheduler(cfg, s.optimizer)
    s.scaler = torch.amp.GradScaler("cuda") if s.amp_dtype == torch.float16 else None
    s.mean, s.std = model_mean_std(s.model)


# --------------------------------------------------------------------------------------------
# Resume and provenance
# --------------------------------------------------------------------------------------------
def _resume(s: _Session, state: Mapping[str, Any] | None) -> _Progress:
    """Load ``checkpoint.pt``'s states into the session; the progress made so far."""
    if state is None:
        return _Progress()
    s.model.load_state_dict(state["model"])
    s.objective.load_state_dict(state["objective"])
    s.optimizer.load_state_dict(state["optimizer"])
    if s.scheduler is not None and state.get("scheduler") is not None:
        s.scheduler.load_state_dict(state["scheduler"])
    if s.scaler is not None and state.get("scaler") is not None:
        s.scaler.load_state_dict(state["scaler"])
    s.sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"])
    return _Progress(
        start_epoch=int(state["epoch"]),
        best_epoch=int(state["best_epoch"]),
        best_val=float(state["best_val"]),
        best_metrics=dict(state["best_metrics"]),
        seconds=float(state["seconds"]),
        log=[dict(r) for r in state["log"]],
        curve=[dict(r) for r in state["test_curve"]],
    )


def _write_provenance(s: _Session) -> None:
    """``config.yaml`` and ``run.json`` (versions, dataset fingerprint, resolved settings, classes)."""
    # timm (and torchvision under it) cost seconds to import; only a run that trains pays them, not
    # `python -m oodml.train --help` or `--list-losses` (the model builder imports timm lazily too).
    import timm

    ds, rc, cfg = s.rc.dataset, s.rc, s.cfg
    provenance = {
        "schema": "oodml.train.run/1",
        "oodml_version": oodml.__version__,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "dataset": ds.name,
        "dataset_fingerprint": ds.fingerprint(),
        "num_images": len(ds),
        "splits_file": rc.splits_path,
        "splits_digest": rc.splits_digest,
        "split": cfg.split,
        "fid": rc.fid,
        "device": str(s.device),
        "amp": None if s.amp_dtype is None else str(s.amp_dtype).replace("torch.", ""),
        "workers": s.workers,
        "deterministic": cfg.deterministic,
        "weights_source": s.model.weights_source,
        "model": s.model.config,
        "objective": s.objective.config,
        "iterations_per_epoch": s.num_batches,
        "fit_classes": rc.fit_classes,
        "val_classes": rc.val_classes,
        "test_classes": rc.test_classes,
    }
    atomic_write(s.run_dir / "config.yaml", dump_yaml(cfg.to_dict()))
    write_json(s.run_dir / "run.json", provenance)


def _tensorboard(run_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        # tensorboard is optional, and importing it is slow: only runs that log to it pay.
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _train(cfg: TrainConfig, run_dir: Path, state, show: bool, stop_after_epoch, dataset) -> dict[str, Any]:
    s = _setup(cfg, run_dir, show, dataset)
    p = _resume(s, state)
    _write_provenance(s)
    s.tb = _tensorboard(run_dir, cfg.tensorboard)
    try:
        for epoch in range(p.start_epoch, cfg.epochs):
            _run_epoch(s, p, epoch)
            last = epoch + 1 == cfg.epochs
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not last:
                return {"stopped_after_epoch": epoch + 1}
        return _final_test(s, p)
    finally:
        if s.tb is not None:
            s.tb.close()


def _run_epoch(s: _Session, p: _Progress, epoch: int) -> None:
    """Fit one epoch, evaluate, log and checkpoint it."""
    t0 = time.perf_counter()
    row = _fit_epoch(s, epoch)
    train_seconds = time.perf_counter() - t0
    val = _select(s, p, epoch, row)
    row["seconds"] = time.perf_counter() - t0
    row.update({f"val_{k}": v for k, v in val.items()})
    p.seconds += row["seconds"]
    p.log.append(row)
    atomic_write(s.run_dir / "log.csv", _csv_text(p.log))
    _log_tensorboard(s, p, epoch, row, val, train_seconds)
    _checkpoint(s, p, epoch)
    if s.show:
        shown = f", val recall@1 {val['recall@1']:.4f}" if val else ""
        tqdm.write(f"epoch {epoch + 1}/{s.cfg.epochs}: loss {row['loss']:.4f}{shown} ({row['seconds']:.1f} s)")


def _fit_epoch(s: _Session, epoch: int) -> dict[str, Any]:
    """One epoch of optimizer steps; its log row (epoch, mean loss, lr, mean loss terms)."""
    cfg = s.cfg
    s.sampler.set_epoch(epoch)
    batches = iter(s.loader)  # (creating the iterator must not shift the seeded generators)
    seed_all(cfg.seed, epoch, 0xE90C)
    s.model.train()
    s.objective.train()
    total, count = 0.0, 0
    term_sums: dict[str, float] = {}  # named parts of composite objectives (DiVA, S2SD, regularisers)
    bar = progress_bar(batches, enabled=s.show, total=s.num_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}")
    for step, (images, labels) in enumerate(bar):
        total += _step(s, images, labels, epoch, step)
        count += 1
        for k, v in s.objective.last_terms().items():
            term_sums[k] = term_sums.get(k, 0.0) + float(v)
        bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    lr_now = float(s.optimizer.param_groups[0]["lr"])
    if s.scheduler is not None:
        s.scheduler.step()
    row: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(count, 1), "lr": lr_now}
    row.update({f"loss_{k}": v / max(count, 1) for k, v in term_sums.items()})
    return row


def _step(s: _Session, images, labels, epoch: int, step: int) -> float:
    """One optimizer step; the loss value (a NaN/inf loss is an :class:`OodmlError`)."""
    cfg, model, objective, optimizer, scaler = s.cfg, s.model, s.objective, s.optimizer, s.scaler
    x = normalize_batch(images, s.mean, s.std, s.device)
    y = labels.to(s.device, non_blocking=True)
    with torch.autocast(s.device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None):
        if objective.needs_features:  # e.g. S2SD: its auxiliary heads read the pooled features
            feats = model.forward_features(x)
            emb = model.embed_from_features(feats)
        else:
            feats, emb = None, model(x)
    if feats is None:
        loss = objective(emb.float(), y)
    else:
        loss = objective(emb.float(), y, features=feats.float())
    value = float(loss.detach())
    if not math.isfinite(value):
        raise OodmlError(
            f"training diverged: the {cfg.loss} loss is {value} at epoch {epoch + 1}, step {step + 1} "
            f"of {s.num_batches} (run {s.run_dir}); lower the learning rate (lr={cfg.lr:g}) or change the loss "
            "parameters, then re-run with --no-resume"
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    return value


# --------------------------------------------------------------------------------------------
# Evaluation and checkpoint choice
# --------------------------------------------------------------------------------------------
def _select(s: _Session, p: _Progress, epoch: int, row: dict[str, Any]) -> dict[str, float]:
    """Evaluate after epoch ``epoch`` when due, apply the checkpoint rule (``best.pt``), extend the
    test curve; the validation metrics (empty when none were computed)."""
    cfg, rule = s.cfg, s.rule
    last = epoch + 1 == cfg.epochs
    val: dict[str, float] = {}
    eval_now = (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0) or last
    if s.has_val and eval_now:
        val = s.evaluate(s.rc.val_classes, VAL_KS, VAL_METRICS)
        if rule == "val" and val["recall@1"] > p.best_val:
            p.best_val, p.best_epoch, p.best_metrics = float(val["recall@1"]), epoch + 1, dict(val)
            save(_best_payload(s, epoch + 1, val), s.run_dir / "best.pt")
    oracle: dict[str, float] | None = None
    if rule == "test" and eval_now:  # the study's rule: an oracle on the test classes
        oracle = s.evaluate(s.rc.test_classes, recall_ks(cfg), VAL_METRICS)
        row.update({f"oracle_test_{k}": v for k, v in oracle.items()})
        if oracle["recall@1"] > p.best_val:
            p.best_val, p.best_epoch = float(oracle["recall@1"]), epoch + 1
            p.best_metrics = {f"oracle_test_{k}": v for k, v in oracle.items()}
            save(_best_payload(s, epoch + 1, p.best_metrics), s.run_dir / "best.pt")
    elif rule == "last" or (rule == "val" and not s.has_val):
        p.best_epoch, p.best_metrics = epoch + 1, dict(val)
        save(_best_payload(s, epoch + 1, val), s.run_dir / "best.pt")
    if cfg.test_curve:
        test = oracle if oracle is not None else s.evaluate(s.rc.test_classes, recall_ks(cfg), VAL_METRICS)
        p.curve.append({"epoch": epoch + 1, **{f"test_{k}": v for k, v in test.items()}})
        atomic_write(s.run_dir / "test_curve.csv", _csv_text(p.curve))
    return val


def _best_payload(s: _Session, epoch: int, val: Mapping[str, float]) -> dict[str, Any]:
    """``best.pt``: the chosen model's weights and plain config (``weights_only``-loadable)."""
    return {
        "schema": BEST_SCHEMA,
        "model": {k: v.detach().cpu() for k, v in s.model.state_dict().items()},
        "model_config": s.model.config,
        "config": s.cfg.to_dict(),
        "epoch": epoch,
        "val": dict(val),
        "oodml_version": oodml.__version__,
        "dataset_fingerprint": s.rc.dataset.fingerprint(),
        "fit_classes": list(s.rc.fit_classes),
    }


def _checkpoint(s: _Session, p: _Progress, epoch: int) -> None:
    """``checkpoint.pt``: everything needed to resume after epoch ``epoch`` bit for bit."""
    save(
        {
            "schema": CHECKPOINT_SCHEMA,
            "config": s.cfg.to_dict(),
            "epoch": epoch + 1,
            "model": s.model.state_dict(),
            "objective": s.objective.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict() if s.scheduler is not None else None,
            "scaler": s.scaler.state_dict() if s.scaler is not None else None,
            "sampler": s.sampler.state_dict(),
            "rng": rng_state(),
            "best_epoch": p.best_epoch,
            "best_val": p.best_val,
            "best_metrics": p.best_metrics,
            "log": p.log,
            "test_curve": p.curve,
            "seconds": p.seconds,
            "oodml_version": oodml.__version__,
        },
        s.run_dir / "checkpoint.pt",
    )


def _log_tensorboard(s: _Session, p: _Progress, epoch: int, row, val, train_seconds: float) -> None:
    if s.tb is None:
        return
    tb = s.tb
    tb.add_scalar("train/loss", row["loss"], epoch + 1)
    tb.add_scalar("train/lr", row["lr"], epoch + 1)
    tb.add_scalar("train/seconds", train_seconds, epoch + 1)
    for k, v in val.items():
        tb.add_scalar(f"val/{k}", v, epoch + 1)
    if s.cfg.test_curve:
        for k, v in p.curve[-1].items():
            if k != "epoch":
                tb.add_scalar(f"test_curve/{k[5:]}", v, epoch + 1)
    tb.flush()


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(
            {k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])) for k in cols}
        )
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Final test
# --------------------------------------------------------------------------------------------
def _final_test(s: _Session, p: _Progress) -> dict[str, Any]:
    """The test metrics of the chosen checkpoint (``best.pt``), written last as ``metrics.json``."""
    cfg, rc = s.cfg, s.rc
    if p.best_epoch == 0:
        raise OodmlError(f"{s.run_dir}: no checkpoint was chosen (no epoch ran); check epochs")
    best = load_checkpoint(s.run_dir / "best.pt", s.device)
    s.model.load_state_dict(best["model"])
    test = s.evaluate(rc.test_classes, recall_ks(cfg), STUDY_METRICS)
    if s.tb is not None:
        for k, v in test.items():
            s.tb.add_scalar(f"test/{k}", v, p.best_epoch)
    metrics = {
        "run": cfg.to_dict(),
        "split": cfg.split,
        "fid": rc.fid,
        "best_epoch": p.best_epoch,
        "protocol": cfg.protocol,
        "selection": s.rule,
        "oracle": s.rule == "test",
        "val": p.best_metrics,
        "test": test,
        "epochs": cfg.epochs,
        "seconds": p.seconds,
        "dataset_fingerprint": rc.dataset.fingerprint(),
        "splits_digest": rc.splits_digest,
        "oodml_version": oodml.__version__,
    }
    write_json(s.run_dir / "metrics.json", metrics)
    return metrics
