"""The classes of a run: which dataset, which split, and its fit / validation / test class lists.

Split files are read through :func:`oodml.splits.load_splits`, validation classes drawn by
:func:`oodml.splits.validation_classes` (the rule the split files use). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oodml.datasets import load_dataset
from oodml.errors import BadInputError
from oodml.io import file_digest
from oodml.splits import load_splits, validation_classes
from oodml.training.config import TrainConfig

__all__ = ["RunClasses", "resolve_classes"]


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


def _validation(cfg: TrainConfig, train_classes: list[str], val_given: list[str]) -> list[str]:
    if cfg.protocol == "oodml":  # the study fits on every train class
        return []
    if val_given:
        val = set(val_given)
        return [c for c in train_classes if c in val]
    if cfg.val_fraction > 0 and cfg.eval_every > 0:
        return validation_classes(train_classes, seed=cfg.seed, fraction=cfg.val_fraction)
    return []


def resolve_classes(cfg: TrainConfig, dataset=None, progress: bool = True) -> RunClasses:
    """Load the dataset (unless given) and the split of ``cfg``: fit/val/test class lists."""
    if dataset is None:
        dataset = load_dataset(cfg.dataset, root=cfg.root)
    split = None
    fid = None
    splits_path = splits_digest = None
    if cfg.split is None:
        train_classes, test_classes = list(dataset.train_classes), list(dataset.test_classes)
        val_given: list[str] = []
    else:
        path = _split_file(cfg)
        split_file = load_splits(path, dataset=dataset)
        split = split_file.get(int(cfg.split))
        splits_path, splits_digest = str(path), "sha256:" + file_digest(path, "sha256")
        train_classes, test_classes = list(split.train), list(split.test)
        val_given = list(split.val or [])
        fid = None if split.fid is None else float(split.fid)
    val_classes = _validation(cfg, train_classes, val_given)
    vset = set(val_classes)
    fit_classes = [c for c in train_classes if c not in vset]
    if not fit_classes:
        raise BadInputError("the split leaves no classes to train on (all train classes are validation classes)")
    return RunClasses(
        dataset, split, train_classes, fit_classes, val_classes, test_classes, fid, splits_path, splits_digest
    )
