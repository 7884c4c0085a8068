"""Training: one embedding model on one split with one objective, resumable, deterministic.

Library::

    from oodml.train import TrainConfig, train, load_run, embed
    cfg = TrainConfig(loss="margin", backbone="resnet18", pretrained=False, epochs=5)
    metrics = train(cfg, "runs/train/my-run")          # resumes when the folder has a checkpoint
    run = load_run("runs/train/my-run")                # best model, config, dataset, split
    emb = embed(run.model, run.dataset, run.dataset.indices_of(run.test_classes), run.config)

Command line::

    python -m oodml.train --list-losses
    python -m oodml.train --dataset cub --splits splits/cub.json --split 3 --loss multisimilarity
    python -m oodml.train --config my.yaml --loss-param margin=0.1 --epochs 20

What a run does
---------------
* **Classes.** ``split=None`` uses the dataset's standard split; otherwise series ``split`` of the
  split file ``splits`` (default ``splits/<dataset>.json``).  The model is fitted on the split's
  *fit* classes (train minus validation), whose labels are remapped to ``0..C-1``; proxy and
  classifier objectives get ``C`` classes.  Validation classes come from the split file; for the
  standard split (or a split without them) ``val_fraction`` of the train classes (at least 2,
  ``0`` = none) are drawn with the run's seed by :func:`oodml.splits.validation_classes`.
* **Model selection on validation classes only.** Every ``eval_every`` epochs (and after the
  last) the validation classes are embedded and scored; the epoch with the best validation
  Recall@1 (earliest on ties; the last epoch when there is no validation) is ``best.pt``.
  The test classes are used once, at the end, on that checkpoint — except with
  ``test_curve=True``, which also scores them after every epoch into ``test_curve.csv``
  (columns ``test_*``, never used for any choice).
* **Protocol and checkpoint rule** (``protocol``, ``selection``). ``protocol: default`` is the
  above. ``protocol: oodml`` reproduces the ooDML study: the model is fitted on *all* of the
  split's train classes (no validation classes are held out; ``val_fraction`` and a split's
  ``val`` list are ignored) and the checkpoint is chosen the way the study's code chose it,
  by the best test Recall@1 over the evaluated epochs. ``selection`` makes the rule explicit:
  ``val`` (best validation Recall@1; the default protocol's rule), ``last`` (the last epoch)
  or ``test`` (best *test* Recall@1 every ``eval_every`` epochs and after the last, earliest on
  ties: an **oracle** that looks at the test classes, the study's rule and the default under
  ``protocol: oodml``). ``metrics.json`` records ``protocol``, ``selection`` and ``oracle``;
  ``log.csv`` gets ``oracle_test_*`` columns under ``test`` selection. ``protocol: oodml`` with
  ``selection: val`` is refused (there are no validation classes).
* **Test metrics** of the chosen checkpoint: Recall@k, precision@1, R-precision, MAP@R, NMI and
  the study's mAP@1000, clustering F1, ρ-spectrum decay and intra/inter distance ratio
  (:data:`oodml.evaluate.STUDY_METRICS`).
* **Loop.** Class-balanced batches (:mod:`oodml.data`), Adam (default; ``adamw``/``sgd``) with
  the objective's own parameter groups, an optional per-epoch scheduler (``cosine``, ``step``,
  ``multistep``), AMP on CUDA only (``amp="auto"``: bf16 when supported, else fp16 with a
  GradScaler), a clear :class:`~oodml.errors.OodmlError` naming epoch and step when the loss
  becomes NaN/inf.
* **Determinism.** The seed fixes the model initialisation; at the start of epoch ``e`` the
  python, numpy and torch generators are re-seeded from ``(seed, e)`` and the sampler draws
  epoch ``e``'s batches and augmentations from ``(seed, e)`` only.  A resumed run therefore
  repeats an uninterrupted one; with ``deterministic=True`` (``torch.use_deterministic_algorithms``)
  bit for bit on CPU.
* **Files** in the run folder: ``config.yaml`` (every :class:`TrainConfig` key; reusable with
  ``--config``), ``run.json`` (provenance: oodml/torch/timm versions, dataset fingerprint,
  split file digest, resolved device/AMP/workers, class lists), ``log.csv`` (per epoch: epoch,
  loss, lr, seconds, ``val_*`` metrics), ``checkpoint.pt`` (last epoch, for resume),
  ``best.pt`` (chosen model: a ``torch.load(weights_only=True)`` dict of tensors and plain
  config), ``test_curve.csv`` (optional), ``tb/`` (TensorBoard, when installed) and, last,
  ``metrics.json``.  A run is *done* iff ``metrics.json`` exists.  All files are written
  atomically.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oodml.cli import add_quiet, progress_disabled, run_cli
from oodml.errors import BadInputError, OodmlError
from oodml.evaluate import STUDY_METRICS
from oodml.io import atomic_open, atomic_write, dump_yaml, file_digest, load_yaml, read_json, write_json

__all__ = [
    "PROTOCOLS",
    "SELECTIONS",
    "LoadedRun",
    "RunClasses",
    "TrainConfig",
    "default_run_dir",
    "embed",
    "load_run",
    "main",
    "resolve_classes",
    "train",
]

CHECKPOINT_SCHEMA = "oodml.train.checkpoint/1"
BEST_SCHEMA = "oodml.train.best/1"
SCHEDULERS = ("cosine", "step", "multistep")
OPTIMIZERS = ("adam", "adamw", "sgd")
AMP_MODES = ("auto", "off", "bf16", "fp16")
#: Training protocols: oodml's own (validation classes held out) and the ooDML study's.
PROTOCOLS = ("default", "oodml")
#: Checkpoint rules; ``test`` is an oracle (it looks at the test classes).
SELECTIONS = ("val", "last", "test")
#: Config keys added after the first release, with the value a file without them means (old
#: checkpoints resume, old study runs keep their ids).
ADDED_KEYS: dict[str, Any] = {"protocol": "default", "selection": None}
#: Config keys that do not change the result: they may differ when a run is resumed.
_RESUME_FREE = ("device", "workers", "threads", "tensorboard", "eval_batch_size")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a training run.  Defaults are the ooDML GPU protocol (ResNet-50,
    ImageNet weights, 512-d embedding, frozen BatchNorm, 224 px crops of 256 px images, batches
    of 112 with 2 images per class, Adam 1e-5 / weight decay 4e-4, 150 epochs); for the
    embedded dataset on a CPU see ``studies/`` or ``--backbone resnet10t --no-pretrained``.

    Build from a plain dict (YAML) with :meth:`from_dict`, which rejects unknown keys.
    """

    # data and split
    dataset: str | None = None  # None = the embedded dataset
    root: str | None = None
    splits: str | None = None  # split file; None = splits/<dataset>.json when `split` is set
    split: int | None = None  # series id; None = the dataset's standard split
    val_fraction: float = 0.15  # validation share of train classes when the split has none
    # objective
    loss: str = "margin"
    loss_params: dict = field(default_factory=dict)
    seed: int = 0
    # model
    backbone: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None
    embed_dim: int = 512
    pooling: str = "avg"
    freeze_bn: bool = True
    channels_last: bool = True
    drop_path: float | None = None
    # images
    image_size: int = 224
    resize_size: int = 256
    augment: bool = True
    crop_scale_min: float = 0.08
    # batches and optimisation
    batch_size: int = 112
    m_per_class: int = 2
    epochs: int = 150
    iterations_per_epoch: int | None = None  # None = fit images // batch_size
    optimizer: str = "adam"
    lr: float = 1e-5
    weight_decay: float = 4e-4
    head_lr_mult: float = 1.0
    scheduler: str | None = None
    scheduler_params: dict = field(default_factory=dict)
    grad_clip: float | None = None
    # evaluation
    eval_every: int = 1
    eval_batch_size: int = 256
    protocol: str = "default"  # "default" (validation classes held out) | "oodml" (the study's)
    selection: str | None = None  # checkpoint rule "val" | "last" | "test" (oracle); None = the protocol's
    ks: Any = None  # Recall@k for the test metrics: list of ints or preset; None = "sop" for SOP else default
    test_curve: bool = False
    # execution
    device: str = "auto"
    workers: Any = "auto"
    amp: str = "auto"
    threads: int | None = None  # torch CPU threads (None = torch's default)
    deterministic: bool = False
    tensorboard: bool = True

    # ---------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, source: str = "training config") -> TrainConfig:
        """Build a config from plain data; unknown keys and wrong types are clear errors."""
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise BadInputError(f"{source} must be a mapping of TrainConfig keys, got {type(d).__name__}")
        valid = cls.keys()
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise BadInputError(f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")
        cfg = cls(**{k: _coerce(k, v, source) for k, v in d.items()})
        cfg.validate(source)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["loss_params"] = dict(self.loss_params)
        out["scheduler_params"] = dict(self.scheduler_params)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self, source: str = "training config") -> None:
        def bad(msg: str) -> None:
            raise BadInputError(f"{source}: {msg}")

        for key in ("embed_dim", "image_size", "resize_size", "batch_size", "m_per_class", "epochs", "eval_batch_size"):
            if getattr(self, key) < (0 if key == "embed_dim" else 1):
                bad(f"{key} must be a positive integer (got {getattr(self, key)})")
        if self.image_size > self.resize_size:
            bad(f"image_size ({self.image_size}) must not exceed resize_size ({self.resize_size})")
        if self.batch_size % self.m_per_class:
            bad(f"batch_size ({self.batch_size}) must be a multiple of m_per_class ({self.m_per_class})")
        if self.iterations_per_epoch is not None and self.iterations_per_epoch < 1:
            bad(f"iterations_per_epoch must be at least 1 or null (got {self.iterations_per_epoch})")
        if self.eval_every < 0:
            bad(f"eval_every must be >= 0 (0 = no validation; got {self.eval_every})")
        if not 0 <= self.val_fraction < 1:
            bad(f"val_fraction must be in [0, 1) (got {self.val_fraction})")
        if not 0 < self.crop_scale_min <= 1:
            bad(f"crop_scale_min must be in (0, 1] (got {self.crop_scale_min})")
        if self.lr <= 0 or not math.isfinite(self.lr):
            bad(f"lr must be a positive number (got {self.lr})")
        if self.weight_decay < 0:
            bad(f"weight_decay must be >= 0 (got {self.weight_decay})")
        if self.optimizer not in OPTIMIZERS:
            bad(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            bad(f"scheduler must be null or one of {', '.join(SCHEDULERS)} (got {self.scheduler!r})")
        if self.amp not in AMP_MODES:
            bad(f"amp must be one of {', '.join(AMP_MODES)} (got {self.amp!r})")
        if not (self.workers == "auto" or (isinstance(self.workers, int) and self.workers >= 0)):
            bad(f"workers must be 'auto' or a number >= 0 (got {self.workers!r})")
        if self.threads is not None and self.threads < 1:
            bad(f"threads must be at least 1 or null (got {self.threads})")
        if self.protocol not in PROTOCOLS:
            bad(f"protocol must be one of {', '.join(PROTOCOLS)} (got {self.protocol!r})")
        if self.selection is not None and self.selection not in SELECTIONS:
            bad(f"selection must be null or one of {', '.join(SELECTIONS)} (test = oracle; got {self.selection!r})")
        if self.protocol == "oodml" and self.selection == "val":
            bad(
                "protocol oodml trains on all train classes, so there are no validation classes to select on; "
                "use selection: test (the study's rule, an oracle) or last, or protocol: default"
            )
        if self.split is not None and self.split < 1:
            bad(f"split must be a series id >= 1 or null for the standard split (got {self.split})")
        from oodml.losses import get_spec

        try:
            get_spec(self.loss)
        except BadInputError as exc:
            bad(str(exc))

    # ---------------------------------------------------------------------------------------
    @property
    def selection_rule(self) -> str:
        """The checkpoint rule in force: ``selection``, else ``test`` under ``protocol: oodml``
        (the study's rule) and ``val`` under the default protocol."""
        if self.selection is not None:
            return self.selection
        return "test" if self.protocol == "oodml" else "val"

    @property
    def dataset_name(self) -> str:
        from oodml.datasets import canonical_name

        return canonical_name(self.dataset)


_FIELD_KINDS: dict[str, str] = {
    "dataset": "str?",
    "root": "str?",
    "splits": "str?",
    "split": "int?",
    "val_fraction": "float",
    "loss": "str",
    "loss_params": "dict",
    "seed": "int",
    "backbone": "str",
    "pretrained": "bool",
    "weights": "str?",
    "embed_dim": "int",
    "pooling": "str",
    "freeze_bn": "bool",
    "channels_last": "bool",
    "drop_path": "float?",
    "image_size": "int",
    "resize_size": "int",
    "augment": "bool",
    "crop_scale_min": "float",
    "batch_size": "int",
    "m_per_class": "int",
    "epochs": "int",
    "iterations_per_epoch": "int?",
    "optimizer": "str",
    "lr": "float",
    "weight_decay": "float",
    "head_lr_mult": "float",
    "scheduler": "str?",
    "scheduler_params": "dict",
    "grad_clip": "float?",
    "eval_every": "int",
    "eval_batch_size": "int",
    "protocol": "str",
    "selection": "str?",
    "ks": "ks",
    "test_curve": "bool",
    "device": "str",
    "workers": "workers",
    "amp": "amp",
    "threads": "int?",
    "deterministic": "bool",
    "tensorboard": "bool",
}


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = _FIELD_KINDS[key]

    def bad(what: str) -> BadInputError:
        return BadInputError(f"{source}: {key} must be {what} (got {value!r})")

    if kind.endswith("?"):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        kind = kind[:-1]
    if kind == "str":
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, str):
            raise bad("text")
        if key == "loss" and value.strip()[:4].lower() == "pml:":  # pml:<ClassName> keeps its case
            return "pml:" + value.strip()[4:].strip()
        return value.strip().lower() if key in ("loss", "optimizer", "scheduler", "pooling") else value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise bad("true or false")
    if kind in ("int", "float"):
        if isinstance(value, str):
            try:
                value = float(value) if kind == "float" or any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if kind == "int":
            if float(value) != int(value):
                raise bad("an integer")
            return int(value)
        if not math.isfinite(float(value)):
            raise bad("a finite number")
        return float(value)
    if kind == "dict":
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise bad("a mapping of key: value")
        from oodml.losses import _NUMBER  # YAML 1.1 reads 1e-3 as text: make it a number

        return {str(k): (float(v) if isinstance(v, str) and _NUMBER.match(v.strip()) else v) for k, v in value.items()}
    if kind == "ks":
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in value
        ):
            return [int(k) for k in value]
        raise bad("a list of positive integers or a preset name")
    if kind == "workers":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if value is None:
            return "auto"
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise bad("'auto' or a number of processes") from None
        if n < 0 or isinstance(value, bool):
            raise bad("'auto' or a number >= 0")
        return n
    if kind == "amp":
        if value is None or value is False:
            return "off"
        text = str(value).strip().lower()
        text = {"none": "off", "false": "off", "no": "off", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}.get(
            text, text
        )
        return text
    raise AssertionError(kind)


def default_run_dir(cfg: TrainConfig, base: str | os.PathLike = "runs/train") -> Path:
    """``runs/train/<dataset>-split<id|std>-<loss>-s<seed>``."""
    split = "std" if cfg.split is None else str(cfg.split)
    return Path(base) / f"{cfg.dataset_name}-split{split}-{cfg.loss.replace(':', '_')}-s{cfg.seed}"


# --------------------------------------------------------------------------------------------
# Classes of a run
# --------------------------------------------------------------------------------------------
@dataclass
class RunClasses:
    """The dataset and class lists a config trains and evaluates on."""

    dataset: Any
    split: Any  # oodml.splits.Split or None
    train_classes: list[str]  # fit + validation
    fit_classes: list[str]
    val_classes: list[str]
    test_classes: list[str]
    fid: float | None
    splits_path: str | None
    splits_digest: str | None


def _split_file(cfg: TrainConfig) -> Path:
    if cfg.splits is not None:
        return Path(cfg.splits).expanduser()
    path = Path("splits") / f"{cfg.dataset_name}.json"
    if not path.is_file():
        raise BadInputError(
            f"split {cfg.split} asked for but no split file given and {path} does not exist; "
            "pass --splits FILE (written by python -m oodml.make_splits) or drop --split for the standard split"
        )
    return path


def resolve_classes(cfg: TrainConfig, dataset=None, progress: bool = True) -> RunClasses:
    """Load the dataset (unless given) and the split of ``cfg``: fit/val/test class lists."""
    if dataset is None:
        from oodml.datasets import load_dataset

        dataset = load_dataset(cfg.dataset, root=cfg.root)
    split = None
    fid = None
    splits_path = splits_digest = None
    if cfg.split is None:
        train_classes, test_classes = list(dataset.train_classes), list(dataset.test_classes)
        val_given: list[str] = []
    else:
        from oodml.splits import load_splits  # written concurrently; imported lazily

        path = _split_file(cfg)
        split_file = load_splits(path, dataset=dataset)
        split = split_file.get(int(cfg.split))
        splits_path, splits_digest = str(path), "sha256:" + file_digest(path, "sha256")
        train_classes, test_classes = list(split.train), list(split.test)
        val_given = list(split.val or [])
        fid = None if split.fid is None else float(split.fid)
    if cfg.protocol == "oodml":  # the study fits on every train class
        val_classes = []
    elif val_given:
        val = set(val_given)
        val_classes = [c for c in train_classes if c in val]
    elif cfg.val_fraction > 0 and cfg.eval_every > 0:
        from oodml.splits import validation_classes  # the rule the split files use

        val_classes = validation_classes(train_classes, seed=cfg.seed, fraction=cfg.val_fraction)
    else:
        val_classes = []
    vset = set(val_classes)
    fit_classes = [c for c in train_classes if c not in vset]
    if not fit_classes:
        raise BadInputError("the split leaves no classes to train on (all train classes are validation classes)")
    return RunClasses(
        dataset, split, train_classes, fit_classes, val_classes, test_classes, fid, splits_path, splits_digest
    )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BadInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return dev


def _resolve_workers(workers: Any, device: torch.device) -> int:
    if workers != "auto":
        return int(workers)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return max(1, min(8, cpus - 1))
    # On a CPU the model itself needs the cores; small decoded images are cheap to transform.
    return 0 if cpus <= 4 else min(4, cpus // 4)


def _resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "auto":
            return None
        raise BadInputError(f"amp={amp} needs a CUDA device (running on {device}); use amp: auto or off")
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _seed_all(*key: int) -> None:
    seq = np.random.SeedSequence([int(k) for k in key])
    a, b = (int(x) for x in seq.generate_state(2, dtype=np.uint32))
    random.seed(b)
    np.random.seed(a)
    torch.manual_seed((a << 32) | b)


def _rng_state() -> dict[str, Any]:
    npst = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": npst["bit_generator"],
            "key": torch.from_numpy(np.asarray(npst["state"]["key"], dtype=np.int64)),
            "pos": int(npst["state"]["pos"]),
            "has_gauss": int(npst["has_gauss"]),
            "gauss": float(npst["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _test_ks(cfg: TrainConfig) -> Any:
    if cfg.ks is not None:
        return cfg.ks
    return "sop" if cfg.dataset_name == "sop" else "default"


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


def _tensorboard(run_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def _save(obj: Any, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def _load(path: Path, device: Any = "cpu") -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist; is this a training run folder?") from None
    except Exception as exc:
        raise BadInputError(
            f"{path} is not a readable oodml checkpoint ({type(exc).__name__}: {exc}); delete it or re-run"
        ) from None


def _model_mean_std(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    dc = model.data_config
    return tuple(float(v) for v in dc["mean"]), tuple(float(v) for v in dc["std"])


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------
def embed(
    model,
    dataset,
    indices: Sequence[int] | np.ndarray,
    config: TrainConfig | Mapping[str, Any],
    *,
    device: Any = None,
    batch_size: int = 256,
    features: bool = False,
    progress: bool = False,
    cache=None,
    workers: int | None = None,
) -> np.ndarray:
    """Embeddings of images ``indices`` of ``dataset``: ``(len(indices), embed_dim)`` float32
    (``features=True``: the pooled backbone features, ``(n, feature_dim)``).

    Uses the evaluation transform of ``config`` (``Resize(resize_size)`` + ``CenterCrop(image_size)``
    through the decoded-image cache) and the model's normalisation; ``device`` defaults to the
    model's.  The model's train/eval mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    from oodml.data import eval_loader, image_cache, normalize_batch

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    indices = np.asarray(indices, dtype=np.int64)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    dim = model.feature_dim if features else model.embed_dim
    if len(indices) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    cache = cache if cache is not None else image_cache(dataset, cfg.resize_size, progress=progress)
    n_workers = _resolve_workers(cfg.workers, dev) if workers is None else int(workers)
    loader = eval_loader(
        cache, indices, image_size=cfg.image_size, batch_size=batch_size, workers=n_workers, device=dev
    )
    mean, std = _model_mean_std(model)
    was_training = model.training
    model.eval()
    out = np.empty((len(indices), dim), dtype=np.float32)
    pos = 0
    try:
        with torch.inference_mode():
            for images, _ in tqdm(
                loader, desc="embedding", unit="batch", leave=False, disable=not progress or progress_disabled()
            ):
                x = normalize_batch(images, mean, std, dev)
                z = model.forward_features(x) if features else model(x)
                out[pos : pos + len(z)] = z.float().cpu().numpy()
                pos += len(z)
    finally:
        model.train(was_training)
    return out


def _evaluate(
    model, rc: RunClasses, classes: Sequence[str], cfg: TrainConfig, cache, device, ks, metrics, workers
) -> dict[str, float]:
    from oodml.evaluate import evaluate_embeddings

    ids = rc.dataset.indices_of(classes)
    emb = embed(
        model, rc.dataset, ids, cfg, device=device, batch_size=cfg.eval_batch_size, cache=cache, workers=workers
    )
    return evaluate_embeddings(emb, rc.dataset.labels[ids], ks=ks, metrics=metrics)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _make_scheduler(cfg: TrainConfig, optimizer):
    if cfg.scheduler is None:
        if cfg.scheduler_params:
            raise BadInputError("scheduler_params given without a scheduler; set scheduler: cosine, step or multistep")
        return None
    p = dict(cfg.scheduler_params)
    S = torch.optim.lr_scheduler
    allowed = {"cosine": {"eta_min"}, "step": {"step_size", "gamma"}, "multistep": {"milestones", "gamma"}}[
        cfg.scheduler
    ]
    unknown = sorted(set(p) - allowed)
    if unknown:
        raise BadInputError(
            f"scheduler {cfg.scheduler}: unknown parameter {unknown[0]!r}; valid: {', '.join(sorted(allowed))}"
        )
    try:
        if cfg.scheduler == "cosine":
            return S.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=float(p.get("eta_min", 0.0)))
        if cfg.scheduler == "step":
            return S.StepLR(
                optimizer, step_size=int(p.get("step_size", max(1, cfg.epochs // 3))), gamma=float(p.get("gamma", 0.1))
            )
        milestones = p.get("milestones", [max(1, cfg.epochs // 2), max(2, (3 * cfg.epochs) // 4)])
        return S.MultiStepLR(optimizer, milestones=[int(m) for m in milestones], gamma=float(p.get("gamma", 0.1)))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"scheduler {cfg.scheduler}: bad parameters {p} ({exc})") from None


def _make_optimizer(cfg: TrainConfig, model, objective):
    from oodml.models import param_groups

    groups = param_groups(model, cfg.lr, head_lr_mult=cfg.head_lr_mult, weight_decay=cfg.weight_decay)
    groups += objective.param_groups(cfg.lr, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _clean_run_dir(run_dir: Path) -> None:
    for name in ("metrics.json", "checkpoint.pt", "best.pt", "log.csv", "test_curve.csv", "run.json", "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / "tb").is_dir():
        shutil.rmtree(run_dir / "tb")


def _same_config(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first key whose value differs (ignoring keys that do not change results), else None."""
    for k in now:
        if k in _RESUME_FREE:
            continue
        if saved.get(k, ADDED_KEYS.get(k)) != now[k]:
            return k
    return None


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
    now = cfg.to_dict()
    ckpt_path = run_dir / "checkpoint.pt"
    show = progress and not progress_disabled()

    if resume and (run_dir / "metrics.json").is_file():
        metrics = read_json(run_dir / "metrics.json", "run metrics")
        diff = _same_config(metrics.get("run", {}), now)
        if diff is None:
            return metrics
        raise BadInputError(
            f"{run_dir} holds a finished run with a different config ({diff}: {metrics.get('run', {}).get(diff)!r} "
            f"there, {now[diff]!r} now); choose another --out or pass --no-resume to overwrite it"
        )
    state = None
    if resume and ckpt_path.is_file():
        state = _load(ckpt_path)
        diff = _same_config(state.get("config", {}), now)
        if diff is not None:
            raise BadInputError(
                f"{ckpt_path} belongs to a run with a different config ({diff}: {state['config'].get(diff)!r} there, "
                f"{now[diff]!r} now); choose another --out or pass --no-resume to start over"
            )
    elif not resume or not ckpt_path.is_file():
        _clean_run_dir(run_dir)

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        return _train(cfg, run_dir, state, show, stop_after_epoch, dataset)
    except BaseException:
        # a run that failed before writing anything (bad split id, missing dataset) leaves no folder
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    finally:
        if cfg.deterministic:
            torch.use_deterministic_algorithms(prev_det)
        if cfg.threads is not None:
            torch.set_num_threads(prev_threads)


def _train(cfg: TrainConfig, run_dir: Path, state, show: bool, stop_after_epoch, dataset) -> dict[str, Any]:
    from tqdm.auto import tqdm

    import oodml
    from oodml.data import ClassBalancedBatchSampler, image_cache, normalize_batch, train_loader
    from oodml.losses import get_spec, make_objective
    from oodml.models import build_model

    device = _resolve_device(cfg.device)
    amp_dtype = _resolve_amp(cfg.amp, device)
    workers = _resolve_workers(cfg.workers, device)
    rc = resolve_classes(cfg, dataset=dataset, progress=show)
    ds = rc.dataset
    cache = image_cache(ds, cfg.resize_size, progress=show)

    # ---- data -------------------------------------------------------------------------------
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

    # ---- model, objective, optimizer ---------------------------------------------------------
    _seed_all(cfg.seed, 0xB01D)
    model = build_model(
        cfg.backbone,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        embed_dim=cfg.embed_dim,
        pooling=cfg.pooling,
        freeze_bn=cfg.freeze_bn,
        channels_last=cfg.channels_last,
        drop_path=cfg.drop_path,
        embed_groups=get_spec(cfg.loss).embed_groups,
    ).to(device)
    objective = make_objective(
        cfg.loss,
        num_classes=len(rc.fit_classes),
        embed_dim=model.embed_dim,
        feature_dim=model.feature_dim,
        **cfg.loss_params,
    ).to(device)
    if objective.needs_pairs and cfg.m_per_class < 2:
        raise BadInputError(
            f"loss {cfg.loss} compares images of one class: m_per_class must be at least 2 (got {cfg.m_per_class})"
        )
    optimizer = _make_optimizer(cfg, model, objective)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    mean, std = _model_mean_std(model)

    log: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    start_epoch, best_epoch, best_val, best_metrics, seconds = 0, 0, -math.inf, {}, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        best_epoch, best_val = int(state["best_epoch"]), float(state["best_val"])
        best_metrics = dict(state["best_metrics"])
        log, curve = [dict(r) for r in state["log"]], [dict(r) for r in state["test_curve"]]
        seconds = float(state["seconds"])

    # ---- provenance ---------------------------------------------------------------------------
    import timm

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
        "device": str(device),
        "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
        "workers": workers,
        "deterministic": cfg.deterministic,
        "weights_source": model.weights_source,
        "model": model.config,
        "objective": objective.config,
        "iterations_per_epoch": num_batches,
        "fit_classes": rc.fit_classes,
        "val_classes": rc.val_classes,
        "test_classes": rc.test_classes,
    }
    atomic_write(run_dir / "config.yaml", dump_yaml(cfg.to_dict()))
    write_json(run_dir / "run.json", provenance)
    tb = _tensorboard(run_dir, cfg.tensorboard)
    val_ks = "default"
    val_metrics = ("recall", "precision@1", "r_precision", "map@r")
    has_val = bool(rc.val_classes) and cfg.eval_every > 0
    rule = cfg.selection_rule

    def best_payload(epoch: int, val: Mapping[str, float]) -> dict[str, Any]:
        return {
            "schema": BEST_SCHEMA,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "model_config": model.config,
            "config": cfg.to_dict(),
            "epoch": epoch,
            "val": dict(val),
            "oodml_version": oodml.__version__,
            "dataset_fingerprint": ds.fingerprint(),
            "fit_classes": list(rc.fit_classes),
        }

    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            sampler.set_epoch(epoch)
            batches = iter(loader)  # (creating the iterator must not shift the seeded generators)
            _seed_all(cfg.seed, epoch, 0xE90C)
            model.train()
            objective.train()
            total, count = 0.0, 0
            term_sums: dict[str, float] = {}  # named parts of composite objectives (DiVA, S2SD, regularisers)
            bar = tqdm(
                batches, total=num_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not show
            )
            for step, (images, labels) in enumerate(bar):
                x = normalize_batch(images, mean, std, device)
                y = labels.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
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
                        f"of {num_batches} (run {run_dir}); lower the learning rate (lr={cfg.lr:g}) or change the loss "
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
                total += value
                count += 1
                for k, v in objective.last_terms().items():
                    term_sums[k] = term_sums.get(k, 0.0) + float(v)
                bar.set_postfix(loss=f"{total / count:.4f}")
            bar.close()
            lr_now = float(optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
            train_seconds = time.perf_counter() - t0
            row: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(count, 1), "lr": lr_now}
            row.update({f"loss_{k}": v / max(count, 1) for k, v in term_sums.items()})
            last = epoch + 1 == cfg.epochs
            val: dict[str, float] = {}
            eval_now = (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0) or last
            if has_val and eval_now:
                val = _evaluate(model, rc, rc.val_classes, cfg, cache, device, val_ks, val_metrics, workers)
                if rule == "val" and val["recall@1"] > best_val:
                    best_val, best_epoch, best_metrics = float(val["recall@1"]), epoch + 1, dict(val)
                    _save(best_payload(epoch + 1, val), run_dir / "best.pt")
            oracle: dict[str, float] | None = None
            if rule == "test" and eval_now:  # the study's rule: an oracle on the test classes
                oracle = _evaluate(model, rc, rc.test_classes, cfg, cache, device, _test_ks(cfg), val_metrics, workers)
                row.update({f"oracle_test_{k}": v for k, v in oracle.items()})
                if oracle["recall@1"] > best_val:
                    best_val, best_epoch = float(oracle["recall@1"]), epoch + 1
                    best_metrics = {f"oracle_test_{k}": v for k, v in oracle.items()}
                    _save(best_payload(epoch + 1, best_metrics), run_dir / "best.pt")
            elif rule == "last" or (rule == "val" and not has_val):
                best_epoch, best_metrics = epoch + 1, dict(val)
                _save(best_payload(epoch + 1, val), run_dir / "best.pt")
            if cfg.test_curve:
                test = (
                    oracle
                    if oracle is not None
                    else _evaluate(model, rc, rc.test_classes, cfg, cache, device, _test_ks(cfg), val_metrics, workers)
                )
                curve.append({"epoch": epoch + 1, **{f"test_{k}": v for k, v in test.items()}})
                atomic_write(run_dir / "test_curve.csv", _csv_text(curve))
            row["seconds"] = time.perf_counter() - t0
            row.update({f"val_{k}": v for k, v in val.items()})
            seconds += row["seconds"]
            log.append(row)
            atomic_write(run_dir / "log.csv", _csv_text(log))
            if tb is not None:
                tb.add_scalar("train/loss", row["loss"], epoch + 1)
                tb.add_scalar("train/lr", lr_now, epoch + 1)
                tb.add_scalar("train/seconds", train_seconds, epoch + 1)
                for k, v in val.items():
                    tb.add_scalar(f"val/{k}", v, epoch + 1)
                if cfg.test_curve:
                    for k, v in curve[-1].items():
                        if k != "epoch":
                            tb.add_scalar(f"test_curve/{k[5:]}", v, epoch + 1)
                tb.flush()
            _save(
                {
                    "schema": CHECKPOINT_SCHEMA,
                    "config": cfg.to_dict(),
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "objective": objective.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "sampler": sampler.state_dict(),
                    "rng": _rng_state(),
                    "best_epoch": best_epoch,
                    "best_val": best_val,
                    "best_metrics": best_metrics,
                    "log": log,
                    "test_curve": curve,
                    "seconds": seconds,
                    "oodml_version": oodml.__version__,
                },
                run_dir / "checkpoint.pt",
            )
            if show:
                shown = f", val recall@1 {val['recall@1']:.4f}" if val else ""
                tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['loss']:.4f}{shown} ({row['seconds']:.1f} s)")
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not last:
                return {"stopped_after_epoch": epoch + 1}

        # ---- test metrics of the chosen checkpoint ----------------------------------------------
        if best_epoch == 0:
            raise OodmlError(f"{run_dir}: no checkpoint was chosen (no epoch ran); check epochs")
        best = _load(run_dir / "best.pt", device)
        model.load_state_dict(best["model"])
        test = _evaluate(model, rc, rc.test_classes, cfg, cache, device, _test_ks(cfg), STUDY_METRICS, workers)
        if tb is not None:
            for k, v in test.items():
                tb.add_scalar(f"test/{k}", v, best_epoch)
        metrics = {
            "run": cfg.to_dict(),
            "split": cfg.split,
            "fid": rc.fid,
            "best_epoch": best_epoch,
            "protocol": cfg.protocol,
            "selection": rule,
            "oracle": rule == "test",
            "val": best_metrics,
            "test": test,
            "epochs": cfg.epochs,
            "seconds": seconds,
            "dataset_fingerprint": ds.fingerprint(),
            "splits_digest": rc.splits_digest,
            "oodml_version": oodml.__version__,
        }
        write_json(run_dir / "metrics.json", metrics)
        return metrics
    finally:
        if tb is not None:
            tb.close()


# --------------------------------------------------------------------------------------------
# Loading a run
# --------------------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    """A trained run: the chosen model (eval mode), its config, dataset, split and classes."""

    run_dir: Path
    model: Any
    config: TrainConfig
    dataset: Any
    split: Any
    train_classes: list[str]
    fit_classes: list[str]
    val_classes: list[str]
    test_classes: list[str]
    best_epoch: int
    metrics: dict | None

    def embed(self, indices, *, features: bool = False, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        return embed(
            self.model, self.dataset, indices, self.config, batch_size=batch_size, features=features, progress=progress
        )


def load_run(run_dir: str | os.PathLike, device: Any = "cpu", dataset=None) -> LoadedRun:
    """Load the chosen model (``best.pt``) of a run folder with its config, dataset and split.

    The dataset must be the one the run was trained on (same fingerprint), else
    :class:`~oodml.errors.BadInputError`.  ``dataset`` may pass an already loaded one.
    """
    from oodml.models import build_from_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise BadInputError(
            f"{run_dir} is not a training run folder (no config.yaml); train it with python -m oodml.train"
        )
    cfg = TrainConfig.from_dict(load_yaml(run_dir / "config.yaml", "run config"), source=str(run_dir / "config.yaml"))
    best = _load(run_dir / "best.pt")
    rc = resolve_classes(cfg, dataset=dataset, progress=False)
    fp = best.get("dataset_fingerprint")
    if fp and fp != rc.dataset.fingerprint():
        raise BadInputError(
            f"{run_dir} was trained on dataset {rc.dataset.name!r} with fingerprint {fp[:12]}..., but the dataset "
            f"found now has {rc.dataset.fingerprint()[:12]}...; point --root at the original dataset"
        )
    model = build_from_config(best["model_config"])
    model.load_state_dict(best["model"])
    model.to(torch.device(device)).eval()
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else None
    return LoadedRun(
        run_dir,
        model,
        cfg,
        rc.dataset,
        rc.split,
        rc.train_classes,
        rc.fit_classes,
        rc.val_classes,
        rc.test_classes,
        int(best.get("epoch", 0)),
        metrics,
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.train",
        description="Train a deep-metric-learning model on one split (resumable; writes a run folder).",
        epilog="Precedence: defaults < --config YAML < command-line flags.",
    )
    a = p.add_argument
    a("--config", help="YAML file of TrainConfig keys")
    a("--dataset", help="dataset name (default: the embedded glyphs)")
    a("--root", help="data root")
    a("--splits", help="split file (default splits/<dataset>.json when --split is given)")
    a("--split", type=int, help="series id in the split file (default: the dataset's standard split)")
    a("--loss", help="objective (see --list-losses; default margin)")
    a("--loss-param", action="append", metavar="KEY=VALUE", help="objective hyperparameter (repeatable)")
    a("--seed", type=int)
    a("--backbone", help="timm model name (default resnet50)")
    a("--no-pretrained", dest="pretrained", action="store_false", default=None, help="random initialisation")
    a("--weights", help="local backbone weights file")
    a("--embed-dim", type=int)
    a("--pooling", choices=["avg", "max", "avg+max", "token"])
    a("--image-size", type=int)
    a("--resize-size", type=int)
    a("--batch-size", type=int)
    a("--m-per-class", type=int)
    a("--epochs", type=int)
    a("--iterations-per-epoch", type=int)
    a("--lr", type=float)
    a("--weight-decay", type=float)
    a("--scheduler", choices=list(SCHEDULERS) + ["none"])
    a("--scheduler-param", action="append", metavar="KEY=VALUE", help="scheduler parameter (repeatable)")
    a("--eval-every", type=int)
    a("--device")
    a("--workers", help="loader processes or auto")
    a("--amp", choices=list(AMP_MODES))
    a("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    a("--out", help="run folder (default runs/train/<dataset>-split<id>-<loss>-s<seed>)")
    a("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    a("--deterministic", action="store_true", default=None, help="torch deterministic algorithms")
    a(
        "--test-curve",
        action="store_true",
        default=None,
        help="also score the test classes every epoch (test_curve.csv)",
    )
    a(
        "--protocol",
        choices=list(PROTOCOLS),
        help="default (validation classes held out) or oodml (the study's: "
        "all train classes, checkpoint by test Recall@1)",
    )
    a(
        "--selection",
        choices=list(SELECTIONS),
        help="checkpoint rule: val, last, or test (an ORACLE; the study's); default: the protocol's",
    )
    a("--set", action="append", metavar="KEY=VALUE", help="any other TrainConfig key (repeatable)")
    a("--list-losses", action="store_true", help="print the objectives and their defaults, then exit")
    a(
        "--search-space",
        action="store_true",
        help="with --list-losses: print each objective's tunable hyperparameters (ranges, scales, defaults)",
    )
    a(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first: it registers objectives with oodml.losses.register_objective (repeatable; "
        "for studies set OODML_PLUGINS=MODULE[,MODULE] or declare an 'oodml.objectives' entry point)",
    )
    add_quiet(p)
    return p


_FLAG_KEYS = (
    "dataset",
    "root",
    "splits",
    "split",
    "loss",
    "seed",
    "backbone",
    "pretrained",
    "weights",
    "embed_dim",
    "pooling",
    "image_size",
    "resize_size",
    "batch_size",
    "m_per_class",
    "epochs",
    "iterations_per_epoch",
    "lr",
    "weight_decay",
    "scheduler",
    "eval_every",
    "device",
    "workers",
    "amp",
    "threads",
    "deterministic",
    "test_curve",
    "protocol",
    "selection",
)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the ``--config`` YAML and the flags (flags win)."""
    from oodml.losses import parse_overrides, parse_value

    d: dict[str, Any] = {}
    source = "command line"
    if args.config:
        loaded = load_yaml(args.config, "training config")
        if loaded is not None and not isinstance(loaded, dict):
            raise BadInputError(f"training config {args.config} must be a mapping of TrainConfig keys")
        d.update(loaded or {})
        TrainConfig.from_dict(d, source=f"training config {args.config}")  # report YAML errors as such
        source = f"training config {args.config} with command-line flags"
    for item in args.set or ():
        key, sep, value = str(item).partition("=")
        if not sep:
            raise BadInputError(f"--set {item!r} is not KEY=VALUE")
        d[key.strip().replace("-", "_")] = parse_value(value.strip())
    for key in _FLAG_KEYS:
        value = getattr(args, key)
        if value is not None:
            d[key] = None if (key == "scheduler" and value == "none") else value
    if args.loss_param:
        d["loss_params"] = {**dict(d.get("loss_params") or {}), **parse_overrides(args.loss_param)}
    if args.scheduler_param:
        d["scheduler_params"] = {**dict(d.get("scheduler_params") or {}), **parse_overrides(args.scheduler_param)}
    return TrainConfig.from_dict(d, source=source)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plugin:
        from oodml.losses import load_plugins

        load_plugins(args.plugin)
    if args.list_losses:
        from oodml.losses import format_objectives_table

        if args.search_space:
            from oodml.losses import format_search_spaces

            print(format_search_spaces())
        else:
            print(format_objectives_table())
        return 0
    if args.search_space:
        raise BadInputError(
            "--search-space goes with --list-losses (python -m oodml.train --list-losses --search-space)"
        )
    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_run_dir(cfg)
    quiet = progress_disabled(args.quiet)
    metrics = train(cfg, out, resume=not args.no_resume, progress=not quiet)
    test = metrics["test"]
    shown = "  ".join(f"{k} {v:.4f}" for k, v in test.items() if v is not None)
    rule = metrics.get("selection", "val")
    chosen = f" (selection: {rule}{', ORACLE: chosen on the test classes' if rule == 'test' else ''})"
    print(
        f"{out}: best epoch {metrics['best_epoch']}/{metrics['epochs']}{chosen if rule != 'val' else ''}, test {shown}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
