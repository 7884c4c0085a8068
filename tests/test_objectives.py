"""The ooDML study's own methods (oodml/objectives/) against explicit small-batch computations,
pml losses/miners by class name, plugins, and short CLI trainings whose loss falls."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as L
from pytorch_metric_learning import miners as M

from oodml.errors import BadInputError
from oodml.losses import (
    OBJECTIVES,
    STUDY_METHODS,
    ObjectiveSpec,
    format_objectives_table,
    get_spec,
    list_objectives,
    load_plugins,
    make_objective,
    register_objective,
    unregister_objective,
)
from oodml.objectives import RhoDistanceMiner, UniformityRegularizer, inverse_sphere_distance_weights
from oodml.objectives.diva import DiVA, grad_reverse, intra_pairs, shared_triplets, uniformity_loss
from oodml.objectives.s2sd import S2SD, similarity_kl

REPO = Path(__file__).resolve().parents[1]


def _batch(n_classes=3, per_class=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return emb, labels


# ============================================================================================
# rho-distance miner
# ============================================================================================
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


def test_rmargin_defaults_are_the_study_settings():
    obj = make_objective("rmargin", 10, 32)
    assert isinstance(obj.loss, L.MarginLoss) and obj.loss.margin == pytest.approx(0.2)
    assert torch.allclose(obj.loss.beta, torch.full((10,), 0.6)) and obj.loss.learn_beta
    assert (obj.miner.rho, obj.miner.cutoff) == (0.4, 0.5)
    assert obj.param_groups(1e-5)[0]["lr"] == pytest.approx(5e-4)  # beta_lr as the margin loss
    # the miner is usable with any triplet-style loss
    trip = make_objective("triplet", 10, 32, miner="rho_distance", **{"miner.rho": 0.2})
    assert isinstance(trip.miner, RhoDistanceMiner) and trip.miner.rho == 0.2


# ============================================================================================
# uniformity regulariser (MaxEntropy)
# ============================================================================================
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


# ============================================================================================
# S2SD
# ============================================================================================
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


# ============================================================================================
# DiVA
# ============================================================================================
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


# ============================================================================================
# Each study method learns (a small embedder on a clustered batch)
# ============================================================================================
def _clustered(seed=2, n_classes=6, per_class=4, in_dim=24, noise=3.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, in_dim, generator=g) * 2
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return centres[labels] + noise * torch.randn(len(labels), in_dim, generator=g), labels


@pytest.mark.parametrize("name", ["rmargin", "maxentropy", "s2sd", "diva"])
def test_study_method_loss_falls(name):
    torch.manual_seed(0)
    # DiVA's decorrelation weight (1500) is set for 128-d heads: give each head 32 dimensions here
    x, labels = _clustered(in_dim=256, noise=2.0) if name == "diva" else _clustered()
    dim = 128 if name == "diva" else 16
    fc = torch.nn.Linear(x.shape[1], dim)
    kw = {"feature_dim": x.shape[1], "dims": [32, 48], "feat_delay": 0} if name == "s2sd" else {}
    obj = make_objective(name, 6, dim, **kw)
    opt = torch.optim.Adam([{"params": fc.parameters(), "lr": 1e-2}, *obj.param_groups(1e-2)])
    track = []
    for _ in range(40):
        loss = obj(F.normalize(fc(x), dim=1), labels, features=x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t = obj.last_terms()
        if name == "diva":  # the adversarial decorrelation term is not a loss that falls
            track.append(t["discriminative"])
        elif name == "maxentropy":  # the base margin loss (the adversarial game is not monotone)
            track.append(float(loss.detach()) - 0.2 * t["uniformity_generator"] - t["uniformity_discriminator"])
        else:
            track.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in track)
    first, last = np.mean(track[:5]), np.mean(track[-5:])
    assert last < 0.7 * first, (name, first, last)


# ============================================================================================
# pml:<ClassName>, miner=pml:<ClassName>, listing
# ============================================================================================
def test_any_pml_loss_and_miner_by_class_name():
    obj = make_objective("pml:SubCenterArcFaceLoss", 5, 16, sub_centers=2, lr_mult=10)
    assert isinstance(obj.loss, L.SubCenterArcFaceLoss) and obj.loss.sub_centers == 2
    assert obj.kind == "classifier" and obj.param_groups(1e-3)[0]["lr"] == pytest.approx(1e-2)
    assert get_spec("PML:SubCenterArcFaceLoss").name == "pml:SubCenterArcFaceLoss"
    pair = make_objective("pml:NTXentLoss", 5, 16, temperature=0.2, miner="pml:BatchHardMiner")
    assert isinstance(pair.loss, L.NTXentLoss) and pair.loss.temperature == 0.2
    assert isinstance(pair.miner, M.BatchHardMiner)
    emb, labels = _batch(n_classes=5, per_class=2, dim=16)
    assert torch.isfinite(obj(emb, labels)) and torch.isfinite(pair(emb, labels))
    m = make_objective("margin", 5, 16, miner="pml:TripletMarginMiner", **{"miner.margin": 0.3})
    assert isinstance(m.miner, M.TripletMarginMiner) and m.miner.margin == 0.3
    with pytest.raises(BadInputError, match="no loss class 'NoSuchLoss'.*ArcFaceLoss"):
        make_objective("pml:NoSuchLoss", 5, 16)
    with pytest.raises(BadInputError, match="no miner class"):
        make_objective("margin", 5, 16, miner="pml:NoSuchMiner")
    with pytest.raises(BadInputError, match="unknown option 'bogus'"):
        make_objective("pml:NTXentLoss", 5, 16, bogus=1)
    from oodml.train import TrainConfig

    cfg = TrainConfig.from_dict({"loss": "pml:SubCenterArcFaceLoss", "loss_params": {"sub_centers": 2}})
    assert cfg.loss == "pml:SubCenterArcFaceLoss"  # the class name keeps its case
    from oodml.train import default_run_dir

    assert ":" not in default_run_dir(cfg).name


def test_listing_shows_study_methods_pml_names_and_plugins():
    names = [r["name"] for r in list_objectives()]
    assert set(STUDY_METHODS) <= set(names) and len(STUDY_METHODS) == 8
    table = format_objectives_table()
    for name in STUDY_METHODS:
        assert any(line.startswith(name + " ") for line in table.splitlines())
    assert "pml:SubCenterArcFaceLoss" in table and "pml:BatchHardMiner" in table and "rho_distance" in table
    assert "--plugin" in table and "oodml.objectives" in table


# ============================================================================================
# Plugins
# ============================================================================================
PLUGIN = '''
import torch
from oodml.losses import ObjectiveSpec, register_objective


class CentreSpread(torch.nn.Module):
    """A user loss: pull each embedding to its class mean."""

    def __init__(self, pull: float = 1.0):
        super().__init__()
        self.pull = pull

    def forward(self, embeddings, labels, indices_tuple=None):
        means = torch.stack([embeddings[labels == c].mean(0) for c in labels.unique()])
        idx = torch.searchsorted(labels.unique(), labels)
        return self.pull * (embeddings - means[idx]).pow(2).sum(1).mean()


register_objective(ObjectiveSpec("centrespread", "CentreSpread", "pair", "pull to class means (a user plugin)",
                                 loss_type=CentreSpread, loss_defaults={"pull": 2.0}))
register_objective(ObjectiveSpec("mytriplet", "TripletMarginLoss", "pair", "triplet, batch-hard (a user plugin)",
                                 loss_defaults={"margin": 0.1}, miner="batch_hard"))
'''


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "my_oodml_losses.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(d))
    yield d
    for name in ("centrespread", "mytriplet"):
        unregister_objective(name)
    sys.modules.pop("my_oodml_losses", None)


def test_plugin_module_registers_user_objectives(plugin_dir):
    assert "centrespread" not in OBJECTIVES
    assert load_plugins(["my_oodml_losses"]) == ["my_oodml_losses"]
    obj = make_objective("centrespread", 3, 8, pull=0.5)
    assert type(obj.loss).__name__ == "CentreSpread" and obj.loss.pull == 0.5
    emb, labels = _batch(n_classes=3, per_class=4, dim=8)
    assert float(obj(emb, labels)) > 0
    trip = make_objective("mytriplet", 3, 8)
    assert isinstance(trip.miner, M.BatchHardMiner) and trip.loss.margin == 0.1
    assert "centrespread" in format_objectives_table() and "mytriplet" in [r["name"] for r in list_objectives()]
    with pytest.raises(BadInputError, match="already registered"):
        register_objective(ObjectiveSpec("centrespread", "TripletMarginLoss", "pair", "another"))
    with pytest.raises(BadInputError, match="lower-case"):
        register_objective(ObjectiveSpec("Bad Name", "TripletMarginLoss", "pair", "x"))
    with pytest.raises(BadInputError, match="could not be imported"):
        load_plugins(["no_such_oodml_plugin"])


@pytest.mark.slow
def test_plugin_from_the_command_line_and_environment(plugin_dir, capsys):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(plugin_dir)])}
    out = subprocess.run(
        [sys.executable, "-m", "oodml.train", "--plugin", "my_oodml_losses", "--list-losses"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("centrespread ") for line in out.stdout.splitlines())
    code = "from oodml.losses import get_spec; print(get_spec('mytriplet').summary)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "OODML_PLUGINS": "my_oodml_losses"},
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0 and "batch-hard" in out.stdout, out.stderr
    from oodml.train import main

    assert main(["--plugin", "nope_nope", "--list-losses"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope_nope" in err and "Traceback" not in err


# ============================================================================================
# Each study method trains from the command line and its loss falls
# ============================================================================================
@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """A small folder dataset: 16 classes x 12 images of 32 px, each class a (very) noisy copy of
    its own random 4x4 colour pattern (learnable in a few steps, not solved at the first one)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    for c in range(16):
        pattern = rng.uniform(64, 192, size=(4, 4, 3))
        (root / f"c{c:02d}").mkdir()
        for i in range(12):
            img = np.kron(pattern, np.ones((8, 8, 1))) + rng.normal(0, 100, size=(32, 32, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"c{c:02d}" / f"{i}.png")
    return root


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


CLI_EXTRA = {
    "rmargin": [],
    "maxentropy": ["--loss-param", "regularizers=[{name: uniformity, chunk: 8}]"],
    "s2sd": ["--loss-param", "dims=[32, 48]", "--loss-param", "feat_delay=0"],
    # 32-d heads; the decorrelation term grows with 1/head_dim^2 at full alignment, so the study's
    # 1500 (for 128-d heads) is scaled by (32/128)^2 to keep its strength
    "diva": ["--embed-dim", "128", "--loss-param", "decorrelation=100"],
}
# the log column whose fall shows learning: DiVA's discriminative head (its adversarial
# decorrelation term is not a loss that falls); S2SD's base loss on the evaluated embedding (its
# distillation terms start near 0, all heads being random alike, and grow as the heads learn)
CLI_TRACKED = {"diva": "loss_discriminative", "s2sd": "loss_base"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLI_EXTRA))
def test_study_method_trains_from_the_cli(name, blobs, tmp_path, monkeypatch):
    from oodml.train import main

    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    run = tmp_path / "run"
    argv = [
        "--dataset",
        "folder",
        "--root",
        str(blobs),
        "--loss",
        name,
        "--backbone",
        "oodml_convnet",
        "--no-pretrained",
        "--embed-dim",
        "32",
        "--image-size",
        "32",
        "--resize-size",
        "36",
        "--batch-size",
        "24",
        "--m-per-class",
        "4",
        "--epochs",
        "4",
        "--iterations-per-epoch",
        "6",
        "--lr",
        "2e-3",
        "--eval-every",
        "0",
        "--workers",
        "0",
        "--threads",
        "1",
        "--set",
        "tensorboard=false",
        "--set",
        "freeze_bn=false",
        "--out",
        str(run),
        "--quiet",
        *CLI_EXTRA[name],
    ]
    assert main(argv) == 0
    log = _log(run)
    key = CLI_TRACKED.get(name, "loss")
    first, last = float(log[0][key]), float(log[-1][key])
    assert math.isfinite(first) and last < first, (name, [r[key] for r in log])
    if name == "maxentropy":
        assert "loss_uniformity_discriminator" in log[0]
    if name == "diva":
        from oodml.train import load_run

        loaded = load_run(run)
        assert loaded.model.embed_groups == 4 and loaded.model.embed_dim == 128


# ============================================================================================
# The study files
# ============================================================================================
@pytest.mark.parametrize("dataset", ["cub", "cars", "sop"])
@pytest.mark.parametrize("clean", [False, True])
def test_study_files_are_the_study(dataset, clean, tmp_path, capsys):
    """studies/oodml_<dataset>[_clean].yaml: the eight methods with the study's settings, 3 seeds and
    the few-shot stage; ``plan`` prints the grid and its size (with a stand-in split file of 4 series)."""
    import json
    import shutil

    from oodml.study import load_study
    from oodml.study import main as study_main

    name = f"oodml_{dataset}" + ("_clean" if clean else "")
    src = REPO / "studies" / f"{name}.yaml"
    text = src.read_text()
    assert ("\nprotocol: oodml\n" in text) != clean  # the study's protocol
    (tmp_path / "studies").mkdir()
    shutil.copy(src, tmp_path / "studies" / src.name)
    (tmp_path / "pyproject.toml").write_text("")
    series = [
        {
            "id": i,
            "fid": 10.0 * i,
            "step": i,
            "phase": "harder",
            "standard": False,
            "train": [f"c{j}" for j in range(6)],
            "test": [f"t{j}" for j in range(4)],
            "val": ["c0"],
            "episodes": {},
        }
        for i in range(1, 5)
    ]
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / f"{dataset}.json").write_text(json.dumps({"schema": "oodml.splits/1", "series": series}))
    study = load_study(tmp_path / "studies" / src.name)
    assert [e["name"] for e in study.losses] == list(STUDY_METHODS)
    assert study.seeds == [0, 1, 2] and len(study.runs) == 8 * 4 * 3
    assert study.adapt == [
        {
            "mode": "fewshot",
            "shots": [2, 5],
            "episodes": 10,
            "adapt": "head",
            "loss": "margin",
            "lr_mult": 10,
            "iterations": 1000,
        }
    ]
    by_loss = {r.loss: r.config for r in study.runs}
    assert {c["protocol"] for c in by_loss.values()} == {"default" if clean else "oodml"}
    assert by_loss["diva"]["batch_size"] == 108 and by_loss["margin"]["batch_size"] == 112
    for cfg in by_loss.values():
        assert (cfg["backbone"], cfg["embed_dim"], cfg["freeze_bn"], cfg["m_per_class"], cfg["lr"]) == (
            "resnet50",
            512,
            True,
            2,
            1e-5,
        )
        assert cfg["loss_params"] == {}  # the registry's defaults are the study's settings
    from oodml.adapt import resolve_lr

    assert resolve_lr(None, study.adapt[0]["lr_mult"], by_loss["margin"]["lr"]) == pytest.approx(1e-4)
    assert study_main(["plan", str(tmp_path / "studies" / src.name)]) == 0
    out = capsys.readouterr().out
    assert "96 runs" in out and all(m in out for m in STUDY_METHODS)


def test_adaptation_lr_mult_is_relative_to_the_run():
    from oodml.adapt import OPTIONS, resolve_lr

    assert "lr_mult" in OPTIONS and OPTIONS["lr_mult"] is None
    assert resolve_lr(None, 10, 1e-5) == pytest.approx(1e-4) and resolve_lr(3e-4, None, 1e-5) == 3e-4
    assert resolve_lr(None, None, 1e-5) is None  # the mode's default
    for args, msg in (((1e-4, 10, 1e-5), "not both"), ((None, -1, 1e-5), "positive"), ((None, 10, None), "training")):
        with pytest.raises(BadInputError, match=msg):
            resolve_lr(*args)


def test_study_method_defaults_are_the_table_settings():
    rm = make_objective("rmargin", 10, 512)
    assert rm.miner.rho == 0.4 and float(rm.loss.beta.detach()[0]) == pytest.approx(0.6)
    s2 = make_objective("s2sd", 10, 512, feature_dim=2048).criterion
    assert s2.dims == [1024, 1536, 2048] and (s2.temperature, s2.weight, s2.feat_weight) == (1.0, 50.0, 50.0)
    assert get_spec("s2sd").composite_defaults["source"] == "rmargin"
    assert get_spec("oproxy").name == "proxyanchor" and get_spec("R-Margin").name == "rmargin"
    assert make_objective("maxentropy", 10, 512).regularizers[0].weight == 0.2
    dv = make_objective("diva", 10, 512).criterion
    assert (
        dv.head_dim == 128 and dv.decorrelation == 1500.0 and dv.alpha_shared == dv.alpha_intra == dv.alpha_ssl == 0.3
    )


def test_study_per_loss_train_keys_are_checked(tmp_path):
    from oodml.study import load_study

    (tmp_path / "studies").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    p = tmp_path / "studies" / "s.yaml"
    p.write_text("name: s\ndatasets: [glyphs]\nlosses: [margin, {name: diva, train: {batchsize: 108}}]\nseeds: [0]\n")
    with pytest.raises(BadInputError, match=r"losses\[1\]\.train\.'batchsize'"):
        load_study(p)
    p.write_text("name: s\ndatasets: [glyphs]\nlosses: [{name: diva, train: {seed: 3}}]\nseeds: [0]\n")
    with pytest.raises(BadInputError, match=r"losses\[0\]\.train\.seed is set by the study grid"):
        load_study(p)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maxentropy", "s2sd"])
def test_composite_objectives_resume_bit_for_bit(name, blobs, tmp_path, monkeypatch):
    """The discriminator (MaxEntropy) and the auxiliary heads and step counter (S2SD) are in the
    optimizer and the checkpoint: a resumed run repeats an uninterrupted one exactly."""
    from oodml.train import TrainConfig, train

    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    params = (
        {"dims": [16], "feat_delay": 3} if name == "s2sd" else {"regularizers": [{"name": "uniformity", "chunk": 8}]}
    )
    cfg = TrainConfig.from_dict(
        dict(
            dataset="folder",
            root=str(blobs),
            backbone="oodml_convnet",
            pretrained=False,
            embed_dim=16,
            image_size=32,
            resize_size=36,
            batch_size=16,
            m_per_class=4,
            epochs=2,
            iterations_per_epoch=3,
            lr=2e-3,
            eval_every=0,
            workers=0,
            threads=1,
            tensorboard=False,
            freeze_bn=False,
            deterministic=True,
            loss=name,
            loss_params=params,
        )
    )
    full = train(cfg, tmp_path / "full")
    assert train(cfg, tmp_path / "part", stop_after_epoch=1) == {"stopped_after_epoch": 1}
    resumed = train(cfg, tmp_path / "part")
    assert resumed["test"] == full["test"]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    own = [k for k in a["objective"] if "discriminator" in k or "heads" in k or k.endswith("step")]
    assert own and all(torch.equal(a["objective"][k], b["objective"][k]) for k in a["objective"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    if name == "s2sd":
        assert int(a["objective"]["criterion.step"]) == 6  # 2 epochs x 3 steps
    n_groups = len(a["optimizer"]["param_groups"])
    assert n_groups == len(b["optimizer"]["param_groups"]) and n_groups >= 3  # backbone, head, objective's own
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(_log(tmp_path / "full")) == drop(_log(tmp_path / "part"))
