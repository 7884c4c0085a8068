"""Optimizer and learning-rate scheduler of a config (oodml.training.optim)."""

from __future__ import annotations

import pytest
import torch

from oodml.errors import BadInputError
from oodml.train import TrainConfig
from oodml.training.optim import make_scheduler


def _opt():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_schedulers_and_their_errors():
    assert make_scheduler(TrainConfig(), _opt()) is None
    sched = make_scheduler(TrainConfig(scheduler="step", epochs=6), _opt())
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and sched.step_size == 2
    with pytest.raises(BadInputError, match="scheduler_params given without a scheduler"):
        make_scheduler(TrainConfig(scheduler_params={"gamma": 0.5}), _opt())
    with pytest.raises(BadInputError, match="unknown parameter 'gama'; valid: eta_min"):
        make_scheduler(TrainConfig(scheduler="cosine", scheduler_params={"gama": 0.5}), _opt())
