"""oodml's batched DistanceWeightedMiner against pytorch-metric-learning's own: the same triplet
count per class, the same (anchor, positive) pairs, the same distribution of negatives."""

from __future__ import annotations

import collections
import math

import pytest
import torch
from pytorch_metric_learning import miners as M

from oodml.objectives.distance_weighted import DistanceWeightedMiner
from oodml.objectives.miners import miner_class


def _batch(seed=0, classes=8, per_class=4, dim=16):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=g)]
    centers = torch.randn(classes, dim, generator=g)
    emb = centers[labels] + 0.8 * torch.randn(len(labels), dim, generator=g)
    return emb, labels


def _draws(miner, emb, labels, n, seed=0, ref=None):
    torch.manual_seed(seed)
    out = []
    for _ in range(n):
        if ref is None:
            out.append(miner(emb, labels))
        else:
            out.append(miner(emb, labels, *ref))
    return out


def test_registry_uses_the_batched_subclass_of_pmls_miner():
    cls = miner_class("distance_weighted")
    assert cls is DistanceWeightedMiner and issubclass(cls, M.DistanceWeightedMiner)


@pytest.mark.parametrize("per_class", [2, 4])
def test_same_triplet_counts_anchors_and_class_order_as_pml(per_class):
    emb, labels = _batch(per_class=per_class)
    ours = _draws(DistanceWeightedMiner(), emb, labels, 1)[0]
    theirs = _draws(M.DistanceWeightedMiner(), emb, labels, 1)[0]
    assert [len(t) for t in ours] == [len(t) for t in theirs] == [len(labels) * per_class] * 3
    assert torch.equal(ours[0], theirs[0])  # anchors: by class, then index, n_p times each
    a, p, n = ours
    assert bool((labels[a] == labels[p]).all()) and bool((a != p).all())
    assert bool((labels[a] != labels[n]).all())


def test_same_distribution_of_positives_and_negatives_as_pml():
    emb, labels = _batch(seed=1, classes=6, per_class=3, dim=8)
    rounds = 1500

    def freq(draws):
        pos, neg = collections.Counter(), collections.Counter()
        for a, p, n in draws:
            pos.update(zip(a.tolist(), p.tolist(), strict=True))
            neg.update(zip(a.tolist(), n.tolist(), strict=True))
        return pos, neg

    ours = freq(_draws(DistanceWeightedMiner(cutoff=0.2, nonzero_loss_cutoff=3.0), emb, labels, rounds, seed=3))
    theirs = freq(_draws(M.DistanceWeightedMiner(cutoff=0.2, nonzero_loss_cutoff=3.0), emb, labels, rounds, seed=4))
    n = rounds * 3  # n_p = 3 triplets per anchor per call, for each of the 18 anchors
    for mine, pml in zip(ours, theirs, strict=True):
        assert set(mine) == set(pml)
        for key in pml:
            f = (mine[key] + pml[key]) / (2 * n)  # pooled frequency of this pair among its anchor's triplets
            z = abs(mine[key] - pml[key]) / n / math.sqrt(2 * f * (1 - f) / n)
            assert z < 5, (key, mine[key], pml[key])  # ~300 pairs: a 5-sigma gap by chance is ~1e-4


def test_weights_equal_pmls_formula_and_rows_without_negatives_give_no_triplet():
    emb, labels = _batch(seed=2)
    ref = torch.nn.functional.normalize(emb, dim=1)
    miner = DistanceWeightedMiner()
    w = miner.negative_weights(ref, labels, ref, labels)
    assert torch.allclose(w.sum(dim=1), torch.ones(len(labels)))
    assert bool((w[labels[:, None] == labels[None, :]] == 0).all())
    one_class = torch.zeros(6, dtype=torch.long)
    a, p, n = DistanceWeightedMiner()(torch.randn(6, 4), one_class)
    assert len(a) == len(p) == len(n) == 0


def test_with_a_separate_reference_set_matches_pml_counts():
    emb, labels = _batch(seed=5)
    ref_emb, ref_labels = _batch(seed=6)
    ours = _draws(DistanceWeightedMiner(), emb, labels, 1, ref=(ref_emb, ref_labels))[0]
    theirs = _draws(M.DistanceWeightedMiner(), emb, labels, 1, ref=(ref_emb, ref_labels))[0]
    assert [len(t) for t in ours] == [len(t) for t in theirs]
    assert torch.equal(ours[0], theirs[0])
    assert bool((labels[ours[0]] == ref_labels[ours[1]]).all())
