"""S2SD, similarity-based self-distillation (oodml.objectives.s2sd)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oodml.errors import BadInputError
from oodml.losses import (
    make_objective,
)
from oodml.objectives.s2sd import S2SD, similarity_kl


def _batch(n_classes=3, per_class=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return emb, labels


def test_similarity_kl_at_temperature_1_matches_explicit_sum():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)
    expected = 0.0
    for i in range(5):
        p = torch.softmax(a[i], 0).numpy()
        q = torch.softmax(b[i], 0).numpy()
        expected += float((q * np.log(q / p)).sum())
    assert float(similarity_kl(a, b, 1.0)) == pytest.approx(expected / 5, rel=1e-5)
    # at temperature T: T^2 * KL of the tempered distributions
    t = 2.0
    exp_t = (
        sum(
            float(
                (torch.softmax(b[i] / t, 0) * (torch.log_softmax(b[i] / t, 0) - torch.log_softmax(a[i] / t, 0))).sum()
            )
            for i in range(5)
        )
        * t
        * t
        / 5
    )
    assert float(similarity_kl(a, b, t)) == pytest.approx(exp_t, rel=1e-5)


def test_s2sd_total_matches_explicit_composition_and_feature_distillation_delay():
    torch.manual_seed(0)
    obj = make_objective(
        "s2sd", 3, 8, feature_dim=10, dims=[12, 16], feat_delay=1, source_params={"miner": "none"}
    )  # no random mining: the sum is exact
    crit = obj.criterion
    assert isinstance(crit, S2SD) and len(crit.heads) == 2 and len(crit.aux_losses) == 2
    assert crit.temperature == 1.0 and crit.weight == 50.0 and crit.feat_weight == 50.0
    emb, labels = _batch(n_classes=3, per_class=4, dim=8)
    feats = torch.randn(12, 10)

    def explicit(with_feat):
        f = F.normalize(emb, dim=1)
        total = crit.target(f, labels)
        s_f = f @ f.T
        for head, c in zip(crit.heads, crit.aux_losses):
            gz = F.normalize(head(feats), dim=1)
            total = total + (c(gz, labels) + 50.0 * similarity_kl(s_f, gz @ gz.T)) / 2
        if with_feat:
            h = F.normalize(feats, dim=1)
            total = total + 50.0 * similarity_kl(s_f, h @ h.T)
        return float(total.detach())

    assert int(crit.step) == 0
    first = obj(emb, labels, features=feats)  # step 0 < feat_delay 1: no feature distillation
    assert float(first.detach()) == pytest.approx(explicit(False), rel=1e-5) and "kl_features" not in crit.last
    second = obj(emb, labels, features=feats)
    assert float(second.detach()) == pytest.approx(explicit(True), rel=1e-5) and int(crit.step) == 2
    assert "step" in dict(obj.named_buffers()).keys() or any(k.endswith("step") for k in obj.state_dict())
    # the teachers are detached: the KL terms give no gradient to the auxiliary heads
    e = emb.clone().requires_grad_(True)
    f = F.normalize(e, dim=1)
    gz = F.normalize(crit.heads[0](feats), dim=1)
    similarity_kl(f @ f.T, (gz @ gz.T).detach()).backward()
    assert e.grad.abs().sum() > 0 and all(p.grad is None for p in crit.heads[0].parameters())
    # features are required, and so is feature_dim
    with pytest.raises(BadInputError, match="features"):
        obj(emb, labels)
    with pytest.raises(BadInputError, match="feature_dim"):
        make_objective("s2sd", 3, 8)
    with pytest.raises(BadInputError, match="plain objective"):
        make_objective("s2sd", 3, 8, feature_dim=10, source="diva")
