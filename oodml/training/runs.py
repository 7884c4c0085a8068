"""Loading a finished (or checkpointed) run folder: its chosen model, config, dataset and classes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oodml.errors import BadInputError
from oodml.io import load_yaml, read_json
from oodml.training.checkpoints import load_checkpoint
from oodml.training.classes import resolve_classes
from oodml.training.config import TrainConfig
from oodml.training.embedding import embed

__all__ = ["LoadedRun", "load_run"]


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
    from oodml.models import build_from_config  # lazy: oodml.models imports timm (see loop._setup_model)

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise BadInputError(
            f"{run_dir} is not a training run folder (no config.yaml); train it with python -m oodml.train"
        )
    cfg = TrainConfig.from_dict(load_yaml(run_dir / "config.yaml", "run config"), source=str(run_dir / "config.yaml"))
    best = load_checkpoint(run_dir / "best.pt")
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
