"""Training: one embedding model on one split with one objective (the public face of :mod:`oodml.training`).

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

What a run does, and which module of :mod:`oodml.training` owns what, is described there. This
module re-exports every name that was importable from ``oodml.train`` before the package existed
(the private ones too, for ``oodml.estimate``, benchmarks and notebooks).
"""

from __future__ import annotations

import sys

from oodml.device import resolve_device as _resolve_device
from oodml.training.checkpoints import BEST_SCHEMA, CHECKPOINT_SCHEMA
from oodml.training.checkpoints import clean_run_dir as _clean_run_dir
from oodml.training.checkpoints import load_checkpoint as _load
from oodml.training.checkpoints import same_config as _same_config
from oodml.training.checkpoints import save as _save
from oodml.training.classes import RunClasses, _split_file, resolve_classes
from oodml.training.cli import _FLAG_KEYS, build_parser, config_from_args, main
from oodml.training.config import (
    _RESUME_FREE,
    ADDED_KEYS,
    AMP_MODES,
    OPTIMIZERS,
    PROTOCOLS,
    SCHEDULERS,
    SELECTIONS,
    TrainConfig,
    default_run_dir,
)
from oodml.training.embedding import embed
from oodml.training.embedding import evaluate_classes as _evaluate
from oodml.training.embedding import model_mean_std as _model_mean_std
from oodml.training.embedding import recall_ks as _test_ks
from oodml.training.loop import _csv_text, _tensorboard, train
from oodml.training.optim import make_optimizer as _make_optimizer
from oodml.training.optim import make_scheduler as _make_scheduler
from oodml.training.runs import LoadedRun, load_run
from oodml.training.runtime import resolve_amp as _resolve_amp
from oodml.training.runtime import resolve_workers as _resolve_workers
from oodml.training.runtime import rng_state as _rng_state
from oodml.training.runtime import seed_all as _seed_all
from oodml.training.runtime import set_rng_state as _set_rng_state

__all__ = [
    "ADDED_KEYS",
    "AMP_MODES",
    "BEST_SCHEMA",
    "CHECKPOINT_SCHEMA",
    "OPTIMIZERS",
    "PROTOCOLS",
    "SCHEDULERS",
    "SELECTIONS",
    "LoadedRun",
    "RunClasses",
    "TrainConfig",
    "build_parser",
    "config_from_args",
    "default_run_dir",
    "embed",
    "load_run",
    "main",
    "resolve_classes",
    "train",
]

# Private names kept importable from their old place (oodml.estimate imports _resolve_device,
# benchmarks/bench_train.py imported _model_mean_std and _seed_all).
_COMPAT = (
    _FLAG_KEYS,
    _RESUME_FREE,
    _clean_run_dir,
    _csv_text,
    _evaluate,
    _load,
    _make_optimizer,
    _make_scheduler,
    _model_mean_std,
    _resolve_amp,
    _resolve_device,
    _resolve_workers,
    _rng_state,
    _same_config,
    _save,
    _seed_all,
    _set_rng_state,
    _split_file,
    _tensorboard,
    _test_ks,
)

if __name__ == "__main__":
    sys.exit(main())
