"""make_objective (oodml.objectives.factory) over every registered objective: builds, overrides, checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import miners as M

from oodml.errors import BadInputError
from oodml.losses import (
    OBJECTIVES,
    Objective,
    make_objective,
    parse_overrides,
    valid_keys,
)

NUM_CLASSES, PER_CLASS, IN_DIM, EMB_DIM = 6, 4, 24, 16


NAMES = list(OBJECTIVES)


# pair-based objectives that nevertheless own trainable parameters (learnable beta, heads, discriminators)
OWN_PARAMS = {"margin", "rmargin", "maxentropy", "s2sd", "diva"}


# objective -> (override key, value, attribute of the built Objective, expected attribute value)
OVERRIDES = {
    "margin": ("margin", 0.1, "loss.margin", 0.1),
    "multisimilarity": ("alpha", 3, "loss.alpha", 3),
    "triplet": ("margin", 0.3, "loss.margin", 0.3),
    "contrastive": ("neg_margin", 0.7, "loss.neg_margin", 0.7),
    "lifted": ("neg_margin", 0.8, "loss.neg_margin", 0.8),
    "npairs": ("miner", "multisimilarity", "miner.__class__.__name__", "MultiSimilarityMiner"),
    "proxynca": ("softmax_scale", 3.0, "loss.softmax_scale", 3.0),
    "proxyanchor": ("alpha", 16, "loss.alpha", 16),
    "softtriple": ("la", 10.0, "loss.la", 10.0),
    "arcface": ("margin", 0.3, "loss.margin", 0.3),  # radians in, radians stored by pml
    "cosface": ("scale", 30.0, "loss.scale", 30.0),
    "normsoftmax": ("temperature", 0.1, "loss.temperature", 0.1),
    "circle": ("gamma", 64.0, "loss.gamma", 64.0),
    "supcon": ("temperature", 0.2, "loss.temperature", 0.2),
    "rmargin": ("miner.rho", 0.1, "miner.rho", 0.1),
    "maxentropy": ("regularizers", [{"name": "uniformity", "weight": 0.5}], "regularizers.0.weight", 0.5),
    "s2sd": ("weight", 10.0, "criterion.weight", 10.0),
    "diva": ("decorrelation", 100.0, "criterion.decorrelation", 100.0),
}


def _make(name, num_classes=NUM_CLASSES, embed_dim=EMB_DIM, **kw):
    """make_objective with the pooled-feature width of the test embedder (S2SD's heads read it)."""
    return make_objective(name, num_classes, embed_dim, feature_dim=IN_DIM, **kw)


def _call(obj, emb, labels, x):
    return obj(emb, labels, features=x) if obj.needs_features else obj(emb, labels)


def _getattr_path(obj, path):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _clustered_batch(seed=0, spread=1.0):
    """A class-balanced batch: inputs around per-class centres (linearly separable)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_CLASSES, IN_DIM, generator=g) * 2
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    x = centres[labels] + spread * torch.randn(len(labels), IN_DIM, generator=g)
    return x, labels


class _TinyEmbedder(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = torch.nn.Linear(IN_DIM, EMB_DIM)

    def forward(self, x):
        return F.normalize(self.fc(x), dim=1)


@pytest.mark.parametrize("name", NAMES)
def test_objective_builds_loss_is_finite_and_gradients_flow(name):
    torch.manual_seed(0)
    obj = _make(name)
    assert isinstance(obj, Objective) and isinstance(obj, torch.nn.Module)
    model = _TinyEmbedder()
    x, labels = _clustered_batch()
    loss = _call(obj, model(x), labels, x)
    assert (
        loss.ndim == 0 and torch.isfinite(loss) and (loss.item() > 0 or name == "diva")
    )  # DiVA's adversarial term is negative
    loss.backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    own = [p for p in obj.parameters() if p.requires_grad]
    for p in own:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # proxy / classifier objectives and the margin loss own trainable parameters
    assert bool(own) == (obj.kind != "pair" or name in OWN_PARAMS)
    assert obj.needs_pairs == (obj.kind == "pair")


@pytest.mark.parametrize("name", NAMES)
def test_override_changes_pml_attribute(name):
    key, value, attr, expected = OVERRIDES[name]
    default = _make(name)
    changed = _make(name, **{key: value})
    got = _getattr_path(changed, attr)
    assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected
    try:
        assert _getattr_path(default, attr) != got
    except AttributeError:  # e.g. npairs has no miner by default
        pass


@pytest.mark.parametrize("name", NAMES)
def test_unknown_key_fails_clearly(name):
    with pytest.raises(BadInputError) as err:
        _make(name, bogus_key=1)
    msg = str(err.value)
    assert "'bogus_key'" in msg and name in msg and "valid keys" in msg
    for key in valid_keys(name):
        assert key in msg


def test_param_groups_learning_rates():
    base = 1e-5
    margin = make_objective("margin", 10, 32)
    (g,) = margin.param_groups(base)
    assert g["lr"] == pytest.approx(5e-4) and g["params"][0] is margin.loss.beta
    (g,) = make_objective("margin", 10, 32, beta_lr=1e-3).param_groups(base)
    assert g["lr"] == pytest.approx(1e-3)

    pa = make_objective("proxyanchor", 10, 32)
    (g,) = pa.param_groups(base)
    assert g["lr"] == pytest.approx(100 * base) and g["params"][0] is pa.loss.proxies
    assert make_objective("proxyanchor", 10, 32, lr=0.02).param_groups(base)[0]["lr"] == pytest.approx(0.02)
    assert make_objective("proxyanchor", 10, 32, lr_mult=10).param_groups(base)[0]["lr"] == pytest.approx(10 * base)

    assert make_objective("proxynca", 10, 32).param_groups(base)[0]["lr"] == pytest.approx(50 * base)
    assert make_objective("softtriple", 10, 32).param_groups(base)[0]["lr"] == pytest.approx(100 * base)
    for name in ("arcface", "cosface", "normsoftmax"):
        (g,) = make_objective(name, 10, 32).param_groups(base, weight_decay=0.0)
        assert g["lr"] == pytest.approx(50 * base) and g["weight_decay"] == 0.0
    for name in ("multisimilarity", "triplet", "contrastive", "lifted", "npairs", "circle", "supcon"):
        assert make_objective(name, 10, 32).param_groups(base) == []
    # a constant (non-learnable) beta has nothing to train
    assert make_objective("margin", 10, 32, learn_beta=False).param_groups(base) == []


def test_miner_overrides():
    assert make_objective("margin", 5, 8, miner="none").miner is None
    assert make_objective("margin", 5, 8, **parse_overrides(["miner=none"])).miner is None
    eps = make_objective("multisimilarity", 5, 8, **parse_overrides(["miner.epsilon=0.2"]))
    assert eps.miner.epsilon == pytest.approx(0.2)
    hard = make_objective("triplet", 5, 8, **parse_overrides(["miner.type_of_triplets=hard"]))
    assert hard.miner.type_of_triplets == "hard"
    swapped = make_objective("contrastive", 5, 8, miner={"type": "pair_margin", "neg_margin": 0.6})
    assert isinstance(swapped.miner, M.PairMarginMiner) and swapped.miner.neg_margin == pytest.approx(0.6)
    with pytest.raises(BadInputError, match="has no miner"):
        make_objective("contrastive", 5, 8, **{"miner.epsilon": 0.2})
    with pytest.raises(BadInputError, match=r"miner\.epsilon.*valid: miner\.cutoff"):
        make_objective("margin", 5, 8, **{"miner.epsilon": 0.2})
    with pytest.raises(BadInputError, match="unknown miner 'bogus'"):
        make_objective("margin", 5, 8, miner="bogus")
    with pytest.raises(BadInputError, match="semihard"):
        make_objective("triplet", 5, 8, **{"miner.type_of_triplets": "semi"})
    with pytest.raises(BadInputError, match="takes no miner"):
        make_objective("proxyanchor", 5, 8, miner="multisimilarity")


def test_value_checks_and_bad_sizes():
    with pytest.raises(BadInputError, match="margin must be a number"):
        make_objective("margin", 5, 8, margin="wide")
    with pytest.raises(BadInputError, match="learn_beta must be true or false"):
        make_objective("margin", 5, 8, learn_beta=3)
    with pytest.raises(BadInputError, match="beta_lr must be positive"):
        make_objective("margin", 5, 8, beta_lr=-1)
    with pytest.raises(BadInputError, match="num_classes must be a positive integer"):
        make_objective("proxyanchor", 0, 8)
    with pytest.raises(BadInputError, match="unknown objective 'nope'.*margin"):
        make_objective("nope", 5, 8)
    # numbers YAML 1.1 leaves as text are accepted (e.g. from a study file)
    assert make_objective("margin", 5, 8, beta_lr="5e-3").param_groups(1.0)[0]["lr"] == pytest.approx(5e-3)
    assert make_objective("proxy_anchor", 5, 8).name == "proxyanchor"
