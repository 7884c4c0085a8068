"""The options of one training run: :class:`TrainConfig`, an :class:`oodml.config.Config` dataclass.

Its type hints are the schema (coercion of YAML/flag text, unknown keys with the closest valid
key); the keys that need more than their type say so in ``field(metadata={"coerce": ...})``:
lower-cased names (``loss`` keeps the case of ``pml:<ClassName>``), YAML-1.1 number strings in
``loss_params``, ``ks`` (a list of positive integers or a preset name), ``workers`` (``auto`` or a
count) and ``amp`` (with its aliases). :meth:`TrainConfig.validate` holds the cross-field rules.

``to_dict()`` is the plain dict a study hashes into a run id and the run folder's ``config.yaml``:
its keys, order and values must not change (see :data:`ADDED_KEYS` for keys added later).

This module does not import torch: a study reads and hashes configs without it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from oodml.config import Config
from oodml.datasets import canonical_name
from oodml.errors import BadInputError

__all__ = [
    "ADDED_KEYS",
    "AMP_MODES",
    "OPTIMIZERS",
    "PROTOCOLS",
    "SCHEDULERS",
    "SELECTIONS",
    "TrainConfig",
    "default_run_dir",
]

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
_SOURCE = "training config"
_NULLS = ("none", "null", "")


# --------------------------------------------------------------------------------------------
# Field coercions that need more than the annotation
# --------------------------------------------------------------------------------------------
def _bad(key: str, value: Any, source: str, what: str) -> BadInputError:
    return BadInputError(f"{source}: {key} must be {what} (got {value!r})")


def _text(value: Any, key: str, source: str) -> str:
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise _bad(key, value, source, "text")
    return value


def _optional_text(value: Any, key: str, source: str) -> str | None:
    """Text or null; a choice among names is checked by :meth:`TrainConfig.validate`, whose
    message lists the choices (and names the oracle)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NULLS):
        return None
    return _text(value, key, source)


def _name(value: Any, key: str, source: str) -> str | None:
    """A lower-cased name (``loss``, ``optimizer``, ``pooling``; ``scheduler`` may be null);
    ``pml:<ClassName>`` keeps the case of its class name."""
    if key == "scheduler" and _optional_text(value, key, source) is None:
        return None
    text = _text(value, key, source)
    if key == "loss" and text.strip()[:4].lower() == "pml:":
        return "pml:" + text.strip()[4:].strip()
    return text.strip().lower()


def _params(value: Any, key: str, source: str) -> dict:
    """A mapping of parameters; text that YAML 1.1 left unread (``1e-3``) becomes a number."""
    # lazy: the oodml.objectives package imports torch (about 3.6 s); only a config with parameters pays for it
    from oodml.objectives.overrides import NUMBER

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(key, value, source, "a mapping of key: value")
    return {str(k): (float(v) if isinstance(v, str) and NUMBER.match(v.strip()) else v) for k, v in value.items()}


def _ks(value: Any, key: str, source: str) -> list[int] | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in value
    ):
        return [int(k) for k in value]
    raise _bad(key, value, source, "a list of positive integers or a preset name")


def _workers(value: Any, key: str, source: str) -> int | str:
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise _bad(key, value, source, "'auto' or a number of processes") from None
    if n < 0 or isinstance(value, bool):
        raise _bad(key, value, source, "'auto' or a number >= 0")
    return n


_AMP_ALIASES = {"none": "off", "false": "off", "no": "off", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def _amp(value: Any, key: str, source: str) -> str:
    if value is None or value is False:
        return "off"
    text = str(value).strip().lower()
    return _AMP_ALIASES.get(text, text)


def _named(fn, default: Any = None, factory=None) -> Any:
    """A dataclass field whose value goes through ``fn(value, key, source)``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"coerce": fn})
    return field(default=default, metadata={"coerce": fn})


# --------------------------------------------------------------------------------------------
# The config
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig(Config):
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
    loss: str = _named(_name, "margin")
    loss_params: dict = _named(_params, factory=dict)
    seed: int = 0
    # model
    backbone: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None
    embed_dim: int = 512
    pooling: str = _named(_name, "avg")
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
    optimizer: str = _named(_name, "adam")  # one of OPTIMIZERS (checked by validate)
    lr: float = 1e-5
    weight_decay: float = 4e-4
    head_lr_mult: float = 1.0
    scheduler: str | None = _named(_name, None)  # one of SCHEDULERS or None
    scheduler_params: dict = _named(_params, factory=dict)
    grad_clip: float | None = None
    # evaluation
    eval_every: int = 1
    eval_batch_size: int = 256
    protocol: Literal["default", "oodml"] = _named(_text, "default")  # checked (case and all) by validate()
    selection: Literal["val", "last", "test"] | None = _named(_optional_text, None)  # None = the protocol's rule
    ks: list[int] | str | None = _named(_ks, None)  # Recall@k of the test metrics; None = "sop" for SOP else default
    test_curve: bool = False
    # execution
    device: str = "auto"
    workers: int | Literal["auto"] = _named(_workers, "auto")
    amp: Literal["auto", "off", "bf16", "fp16"] = _named(_amp, "auto")
    threads: int | None = None  # torch CPU threads (None = torch's default)
    deterministic: bool = False
    tensorboard: bool = True

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = _SOURCE) -> TrainConfig:
        """Build a config from plain data; unknown keys and wrong types are clear errors."""
        return super().from_dict(data, source)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["loss_params"] = dict(self.loss_params)
        out["scheduler_params"] = dict(self.scheduler_params)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self, source: str = _SOURCE) -> None:
        def bad(msg: str) -> None:
            raise BadInputError(f"{source}: {msg}")

        self._validate_sizes(bad)
        self._validate_choices(bad)
        # oodml.losses imports torch (about 3.6 s); the config alone does not need it.
        from oodml.losses import get_spec

        try:
            get_spec(self.loss)
        except BadInputError as exc:
            bad(str(exc))

    def _validate_sizes(self, bad) -> None:
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
        if self.threads is not None and self.threads < 1:
            bad(f"threads must be at least 1 or null (got {self.threads})")
        if self.split is not None and self.split < 1:
            bad(f"split must be a series id >= 1 or null for the standard split (got {self.split})")

    def _validate_choices(self, bad) -> None:
        if self.optimizer not in OPTIMIZERS:
            bad(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            bad(f"scheduler must be null or one of {', '.join(SCHEDULERS)} (got {self.scheduler!r})")
        if self.amp not in AMP_MODES:
            bad(f"amp must be one of {', '.join(AMP_MODES)} (got {self.amp!r})")
        if not (self.workers == "auto" or (isinstance(self.workers, int) and self.workers >= 0)):
            bad(f"workers must be 'auto' or a number >= 0 (got {self.workers!r})")
        if self.protocol not in PROTOCOLS:
            bad(f"protocol must be one of {', '.join(PROTOCOLS)} (got {self.protocol!r})")
        if self.selection is not None and self.selection not in SELECTIONS:
            bad(f"selection must be null or one of {', '.join(SELECTIONS)} (test = oracle; got {self.selection!r})")
        if self.protocol == "oodml" and self.selection == "val":
            bad(
                "protocol oodml trains on all train classes, so there are no validation classes to select on; "
                "use selection: test (the study's rule, an oracle) or last, or protocol: default"
            )

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
        return canonical_name(self.dataset)


def default_run_dir(cfg: TrainConfig, base: str | os.PathLike = "runs/train") -> Path:
    """``runs/train/<dataset>-split<id|std>-<loss>-s<seed>``."""
    split = "std" if cfg.split is None else str(cfg.split)
    return Path(base) / f"{cfg.dataset_name}-split{split}-{cfg.loss.replace(':', '_')}-s{cfg.seed}"
