"""The Objective module (oodml.objectives.objective): checkpoints and call checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oodml.errors import BadInputError
from oodml.losses import (
    make_objective,
)


def test_objective_is_a_module_for_checkpoints():
    obj = make_objective("proxyanchor", 5, 8)
    state = obj.state_dict()
    assert set(state) == {"loss.proxies"}
    other = make_objective("proxyanchor", 5, 8)
    other.load_state_dict(state)
    assert torch.equal(other.loss.proxies, obj.loss.proxies)
    obj.to(torch.float64)
    assert obj.loss.proxies.dtype == torch.float64
    assert "loss.beta" in make_objective("margin", 5, 8).state_dict()


def test_call_checks_labels_and_shapes():
    obj = make_objective("proxyanchor", 4, 8)
    emb = F.normalize(torch.randn(3, 8), dim=1)
    with pytest.raises(BadInputError, match=r"4 training classes but got label 7.*0\.\.3"):
        obj(emb, torch.tensor([0, 1, 7]))
    with pytest.raises(BadInputError, match=r"shape \(batch, 8\)"):
        obj(torch.randn(3, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(BadInputError, match="one label per embedding"):
        obj(emb, torch.tensor([0, 1]))
