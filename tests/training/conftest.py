"""Shared helpers of the training tests: a tiny CPU config and a run's log."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from oodml.train import TrainConfig

BACKBONE = "test_resnet"  # timm's tiny test ResNet, random init


def _make_cfg(root, **kw) -> TrainConfig:
    base = dict(
        dataset="glyphs",
        root=str(root),
        backbone=BACKBONE,
        pretrained=False,
        embed_dim=32,
        image_size=32,
        resize_size=36,
        batch_size=16,
        m_per_class=2,
        epochs=3,
        lr=2e-3,
        iterations_per_epoch=12,
        workers=0,
        threads=1,
        tensorboard=False,
        loss="normsoftmax",
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


def _read_log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def make_cfg():
    """``make_cfg(root, **overrides)``: a TrainConfig of a tiny CPU run on the embedded glyphs."""
    return _make_cfg


@pytest.fixture()
def read_log():
    """``read_log(run_dir)``: the rows of a run's ``log.csv``."""
    return _read_log
