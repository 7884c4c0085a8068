"""The adversarial uniformity regulariser of MaxEntropy (oodml.objectives.uniformity)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oodml.errors import BadInputError
from oodml.losses import (
    make_objective,
)
from oodml.objectives import UniformityRegularizer


def _batch(n_classes=3, per_class=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return emb, labels


def _bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_uniformity_losses_match_explicit_bce_and_train_the_right_player():
    torch.manual_seed(0)
    reg = UniformityRegularizer(embed_dim=8, weight=0.2, chunk=4, hidden=5)
    emb = F.normalize(torch.randn(3, 8), dim=1).requires_grad_(True)
    noise = torch.rand(6, 4) * 2 - 1
    l_g, l_d = reg.losses(emb, noise)
    chunks = emb.detach().reshape(-1, 4) * math.sqrt(8 / 3)
    D = reg.discriminator
    with torch.no_grad():
        real = [float(D(u)) for u in noise]
        fake = [float(D(c)) for c in chunks]
    exp_d = np.mean([_bce(v, 1) for v in real]) + np.mean([_bce(v, 0) for v in fake])
    exp_g = np.mean([_bce(v, 1) for v in fake])
    assert l_d.item() == pytest.approx(exp_d, rel=1e-5) and l_g.item() == pytest.approx(exp_g, rel=1e-5)
    # L_G trains only the embedding; L_D only the discriminator
    l_g.backward(retain_graph=True)
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.parameters())
    emb.grad = None
    l_d.backward()
    assert emb.grad is None and all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
    with pytest.raises(ValueError, match="chunk"):
        UniformityRegularizer(embed_dim=10, chunk=4)


def test_maxentropy_discriminator_in_optimizer_and_checkpoint(tmp_path):
    obj = make_objective("maxentropy", 4, 32)
    assert len(obj.regularizers) == 1 and obj.regularizers[0].weight == pytest.approx(0.2)
    disc = list(obj.regularizers[0].discriminator.parameters())
    groups = obj.param_groups(1e-3)
    grouped = [p for g in groups for p in g["params"]]
    assert all(any(p is q for q in grouped) for p in disc)
    assert any(k.startswith("regularizers.0.discriminator") for k in obj.state_dict())
    # on top of any objective, with its own options; bad names and options are one clear line
    ms = make_objective("multisimilarity", 4, 32, regularizers=[{"name": "uniformity", "weight": 0.5, "chunk": 8}])
    assert ms.regularizers[0].weight == 0.5 and ms.regularizers[0].chunk == 8
    for bad, msg in (([{"name": "nope"}], "unknown regularizer"), ([{"name": "uniformity", "wieght": 1}], "wieght")):
        with pytest.raises(BadInputError, match=msg):
            make_objective("margin", 4, 32, regularizers=bad)
    # the regularised total = base + weight * L_G + L_D
    torch.manual_seed(3)
    emb, labels = _batch(n_classes=4, per_class=4, dim=32)
    torch.manual_seed(5)
    total = obj(emb, labels)
    terms = obj.last_terms()
    torch.manual_seed(5)
    base = obj.loss(emb, labels, obj.miner(emb, labels))
    assert total.item() == pytest.approx(
        base.item() + 0.2 * terms["uniformity_generator"] + terms["uniformity_discriminator"], rel=1e-5
    )
