"""The objective registry (oodml.objectives.registry): names, pml:<ClassName> specs, plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as L
from pytorch_metric_learning import miners as M

from oodml.errors import BadInputError
from oodml.losses import (
    OBJECTIVES,
    ObjectiveSpec,
    format_objectives_table,
    get_spec,
    list_objectives,
    load_plugins,
    make_objective,
    register_objective,
    unregister_objective,
)

REQUIRED = [
    "margin",
    "multisimilarity",
    "triplet",
    "contrastive",
    "lifted",
    "npairs",
    "proxynca",
    "proxyanchor",
    "softtriple",
    "arcface",
    "cosface",
    "normsoftmax",
    "circle",
    "supcon",
    # the ooDML study's methods that pml does not ship (oodml/objectives/)
    "rmargin",
    "maxentropy",
    "s2sd",
    "diva",
]


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


def test_registry_has_required_objectives():
    assert set(REQUIRED) <= set(OBJECTIVES)
    assert set(OVERRIDES) == set(OBJECTIVES)


REPO = Path(__file__).resolve().parents[2]


def _batch(n_classes=3, per_class=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return emb, labels


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
