"""The rho-distance miner of R-Margin (oodml.objectives.rho_distance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oodml.losses import (
    make_objective,
)
from oodml.objectives import RhoDistanceMiner, inverse_sphere_distance_weights


def _batch(n_classes=3, per_class=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return emb, labels


def test_inverse_sphere_weights_match_the_formula():
    emb, labels = _batch(dim=8)
    d = torch.cdist(emb, emb)
    w = inverse_sphere_distance_weights(d, labels, dim=8, cutoff=0.5)
    n, D = len(labels), 8
    for i in range(n):
        q = np.zeros(n)
        for j in range(n):
            if labels[j] == labels[i]:
                continue
            dij = max(float(d[i, j]), 0.5)
            q[j] = math.exp((2 - D) * math.log(dij) - (D - 3) / 2 * math.log(1 - dij**2 / 4))
        np.testing.assert_allclose(w[i].numpy(), q / q.sum(), rtol=1e-4, atol=1e-7)


def test_rho_miner_sampling_statistics_and_push_swap():
    emb, labels = _batch(n_classes=3, per_class=4, dim=8, seed=1)
    miner = RhoDistanceMiner(rho=0.4, cutoff=0.5)
    q = inverse_sphere_distance_weights(torch.cdist(emb, emb), labels, 8, 0.5)
    torch.manual_seed(0)
    draws = 300
    n = len(labels)
    pushes = 0
    neg_counts = np.zeros((n, n))
    pos_counts = np.zeros((n, n))
    normal = np.zeros(n)
    for _ in range(draws):
        a, p, ng = miner(emb, labels)
        assert len(a) == n and torch.equal(a, torch.arange(n))  # one triplet per anchor
        push = p == a
        pushes += int(push.sum())
        assert miner.num_pushes == int(push.sum())
        # the push swap: anchor in the positive slot, a same-class *other* sample as the negative
        assert bool((labels[ng[push]] == labels[a[push]]).all()) and bool((ng[push] != a[push]).all())
        # regular triplets: a same-class positive other than the anchor, a negative of another class
        keep = ~push
        assert bool((labels[p[keep]] == labels[a[keep]]).all()) and bool((p[keep] != a[keep]).all())
        assert bool((labels[ng[keep]] != labels[a[keep]]).all())
        for i, j, k in zip(a[keep].tolist(), p[keep].tolist(), ng[keep].tolist()):
            neg_counts[i, k] += 1
            pos_counts[i, j] += 1
            normal[i] += 1
        for i, j in zip(a[push].tolist(), ng[push].tolist()):
            pos_counts[i, j] += 1  # the pushed same-class sample is drawn like the positive
    total = draws * n
    rate = pushes / total
    assert abs(rate - 0.4) < 4 * math.sqrt(0.4 * 0.6 / total)  # binomial, 4 sigma
    freq = neg_counts / normal[:, None]
    # negatives ~ inverse sphere-distance density (about 180 draws per anchor: 3.5 standard errors)
    assert np.abs(freq - q.numpy()).max() < 3.5 * math.sqrt(0.25 / normal.min())
    assert np.abs(freq.mean(0) - q.numpy().mean(0)).max() < 0.02
    pos_freq = pos_counts / draws
    same = (labels[:, None] == labels[None, :]).numpy() & ~np.eye(n, dtype=bool)
    assert np.abs(pos_freq[same] - 1 / 3).max() < 0.1 and pos_freq[~same].sum() == 0  # uniform positive


def test_rho_miner_edge_cases_and_margin_loss_with_push_triplets():
    # a singleton class gives no anchor; a batch of one class gives no triplet at all
    labels = torch.tensor([0, 0, 1, 2, 2])
    emb = F.normalize(torch.randn(5, 6), dim=1)
    a, p, n = RhoDistanceMiner(rho=1.0)(emb, labels)
    assert set(a.tolist()) == {0, 1, 3, 4} and torch.equal(p, a)
    a, p, n = RhoDistanceMiner(rho=0.0)(emb, torch.zeros(5, dtype=torch.long))
    assert len(a) == len(p) == len(n) == 0
    with pytest.raises(ValueError):
        RhoDistanceMiner(rho=1.5)
    # rmargin: the push triplets (d(a, a) = 0) give finite gradients that push a tight class apart
    obj = make_objective("rmargin", 3, 8, **{"miner.rho": 1.0})
    assert isinstance(obj.miner, RhoDistanceMiner) and obj.miner.rho == 1.0
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g)
    x = (centres.repeat_interleave(4, dim=0) + 0.05 * torch.randn(12, 8, generator=g)).requires_grad_(True)
    loss = obj(F.normalize(x, dim=1), torch.arange(3).repeat_interleave(4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
