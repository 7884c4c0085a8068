"""DiVA, diverse visual feature aggregation (oodml.objectives.diva)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from oodml.errors import BadInputError
from oodml.losses import (
    make_objective,
)
from oodml.objectives.diva import DiVA, grad_reverse, intra_pairs, shared_triplets, uniformity_loss


def _batch(n_classes=3, per_class=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return emb, labels


def test_diva_decorrelation_matches_formula_with_reversed_gradient():
    torch.manual_seed(0)
    obj = make_objective("diva", 3, 16)
    crit = obj.criterion
    assert isinstance(crit, DiVA) and crit.head_dim == 4 and obj.embed_groups == 4
    assert (crit.alpha_shared, crit.alpha_intra, crit.alpha_ssl, crit.decorrelation) == (0.3, 0.3, 0.3, 1500.0)
    emb, labels = _batch(n_classes=3, per_class=4, dim=16)
    e1 = emb.clone().requires_grad_(True)
    heads = crit.split(e1)
    dec = crit.decorrelation_loss(heads)
    # explicit: - w * mean_b mean_k (n(z_t) * n(R(n(z_s))))^2 over the three directions, no reversal
    e2 = emb.clone().requires_grad_(True)
    z = {h: F.normalize(c, dim=1) for h, c in zip(("discriminative", "shared", "intra", "selfsim"), e2.split(4, dim=1))}
    expected = 0.0
    for d in ("discriminative-selfsim", "discriminative-shared", "discriminative-intra"):
        s, t = d.split("-")
        pred = F.normalize(crit.regressors[d.replace("-", "_to_")](F.normalize(z[s], dim=1)), dim=1)
        expected = expected - 1500.0 * ((F.normalize(z[t], dim=1) * pred) ** 2).mean(dim=1).mean()
    assert float(dec.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    reg_params = list(crit.regressors.parameters())
    g_dec = torch.autograd.grad(dec, [e1, *reg_params])
    g_exp = torch.autograd.grad(expected, [e2, *reg_params])
    torch.testing.assert_close(g_dec[0], -g_exp[0])  # the embedding is pushed to decorrelate
    for a, b in zip(g_dec[1:], g_exp[1:]):
        torch.testing.assert_close(a, b)  # the regressors learn to predict one head from the other
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x).sum().backward()
    assert torch.equal(x.grad, -torch.ones(3))


def test_diva_auxiliary_tuples_and_total():
    emb, labels = _batch(n_classes=3, per_class=2, dim=4, seed=2)
    a, p, n = shared_triplets(emb, labels)
    d = torch.cdist(emb, emb)
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):
        others = [m for m in range(6) if labels[m] != labels[i]]
        assert j == min(others, key=lambda m: float(d[i, m]))  # the nearest sample of another class
        assert k not in (i, j)
    i, j = intra_pairs(labels)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4)]
    sq = d.pow(2)
    off = ~torch.eye(6, dtype=torch.bool)
    assert float(uniformity_loss(emb, 2.0)) == pytest.approx(math.log(float(torch.exp(-2 * sq[off]).mean())), rel=1e-5)
    # the total is the weighted sum of the named parts
    torch.manual_seed(0)
    obj = make_objective("diva", 3, 16)
    emb16, labels16 = _batch(n_classes=3, per_class=4, dim=16)
    total = float(obj(emb16, labels16).detach())
    t = obj.last_terms()
    assert total == pytest.approx(
        t["discriminative"] + 0.3 * (t["shared"] + t["intra"] + t["selfsim"]) + t["decorrelation"], rel=1e-5
    )
    with pytest.raises(BadInputError, match="multiple of 4"):
        make_objective("diva", 3, 18)
    with pytest.raises(BadInputError, match="direction"):
        make_objective("diva", 3, 16, directions=["discriminative-nope"])


def test_model_embed_groups_normalise_each_head():
    from oodml.models import build_from_config, build_model

    model = build_model("test_resnet", pretrained=False, embed_dim=16, embed_groups=4).eval()
    z = model(torch.randn(2, 3, 32, 32))
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(z.reshape(2, 4, 4).norm(dim=2), torch.full((2, 4), 0.5), atol=1e-5)
    assert model.config["embed_groups"] == 4 and build_from_config(model.config).embed_groups == 4
    assert "embed_groups" not in build_model("test_resnet", pretrained=False, embed_dim=16).config
    with pytest.raises(BadInputError, match="embed_groups"):
        build_model("test_resnet", pretrained=False, embed_dim=10, embed_groups=4)
