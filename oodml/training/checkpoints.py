"""The files of a run folder that hold tensors (``checkpoint.pt``, ``best.pt``), and the rule for
resuming: a folder may only continue a run with the same config (keys in ``_RESUME_FREE`` aside).

Checkpoints are written atomically and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from oodml.errors import BadInputError
from oodml.io import atomic_open
from oodml.training.config import _RESUME_FREE, ADDED_KEYS

__all__ = ["BEST_SCHEMA", "CHECKPOINT_SCHEMA", "RUN_FILES", "clean_run_dir", "load_checkpoint", "same_config", "save"]

CHECKPOINT_SCHEMA = "oodml.train.checkpoint/1"
BEST_SCHEMA = "oodml.train.best/1"
#: The files a run writes into its folder (``tb/`` aside); ``--no-resume`` deletes them.
RUN_FILES = ("metrics.json", "checkpoint.pt", "best.pt", "log.csv", "test_curve.csv", "run.json", "config.yaml")


def save(obj: Any, path: Path) -> None:
    """``torch.save`` through an atomic write."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def load_checkpoint(path: Path, device: Any = "cpu") -> Any:
    """A checkpoint of this package (tensors and plain data only); a missing or unreadable file
    is one clear :class:`BadInputError`."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist; is this a training run folder?") from None
    except Exception as exc:
        raise BadInputError(
            f"{path} is not a readable oodml checkpoint ({type(exc).__name__}: {exc}); delete it or re-run"
        ) from None


def clean_run_dir(run_dir: Path) -> None:
    """Delete the files of an earlier run in ``run_dir`` (a fresh start)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / "tb").is_dir():
        shutil.rmtree(run_dir / "tb")


def same_config(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first key whose value differs (ignoring keys that do not change results), else None."""
    for k in now:
        if k in _RESUME_FREE:
            continue
        if saved.get(k, ADDED_KEYS.get(k)) != now[k]:
            return k
    return None
