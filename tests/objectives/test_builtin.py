"""The built-in objectives (oodml.objectives.builtin): literature and ooDML defaults reach pml,
each study method learns (also from the command line), the study files use them."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as L
from pytorch_metric_learning import miners as M

from oodml.errors import BadInputError
from oodml.losses import (
    STUDY_METHODS,
    get_spec,
    make_objective,
)
from oodml.objectives import RhoDistanceMiner

NUM_CLASSES, PER_CLASS, IN_DIM, EMB_DIM = 6, 4, 24, 16


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


def test_literature_defaults_reach_pml():
    m = make_objective("margin", 10, 32)
    assert isinstance(m.loss, L.MarginLoss) and m.loss.margin == pytest.approx(0.2)
    assert m.loss.learn_beta and m.loss.beta.shape == (10,) and torch.allclose(m.loss.beta, torch.full((10,), 1.2))
    assert isinstance(m.miner, M.DistanceWeightedMiner)
    assert (m.miner.cutoff, m.miner.nonzero_loss_cutoff) == (0.5, 1.4)

    ms = make_objective("multisimilarity", 10, 32)
    assert (ms.loss.alpha, ms.loss.beta, ms.loss.base) == (2, 40, 0.5) and ms.miner.epsilon == pytest.approx(0.1)

    t = make_objective("triplet", 10, 32)
    assert t.loss.margin == pytest.approx(0.2) and t.miner.type_of_triplets == "semihard"
    assert t.miner.margin == pytest.approx(0.2)
    # the miner's margin follows the loss margin unless set on its own
    assert make_objective("triplet", 10, 32, margin=0.1).miner.margin == pytest.approx(0.1)
    assert make_objective("triplet", 10, 32, margin=0.1, **{"miner.margin": 0.3}).miner.margin == pytest.approx(0.3)

    pa = make_objective("proxyanchor", 10, 32)
    assert (pa.loss.alpha, pa.loss.margin) == (32, pytest.approx(0.1)) and pa.loss.proxies.shape == (10, 32)

    arc = make_objective("arcface", 10, 32)
    # pml takes degrees and stores radians: 0.5 rad must arrive as 0.5 rad (28.65 deg), not 0.5 deg
    assert arc.loss.margin == pytest.approx(0.5) and arc.loss.scale == 16
    assert arc.loss.W.shape == (32, 10)

    assert make_objective("cosface", 10, 32).loss.margin == pytest.approx(0.35)
    assert make_objective("normsoftmax", 10, 32).loss.temperature == pytest.approx(0.05)
    assert make_objective("softtriple", 10, 32).loss.fc.shape == (32, 100)


def _train(name, steps=40, base_lr=1e-2, **overrides):
    torch.manual_seed(0)
    model = _TinyEmbedder(seed=1)
    obj = make_objective(name, NUM_CLASSES, EMB_DIM, **overrides)
    opt = torch.optim.Adam([{"params": model.parameters(), "lr": base_lr}, *obj.param_groups(base_lr)])
    x, labels = _clustered_batch(seed=2, spread=1.0)
    losses = []
    for _ in range(steps):
        loss = obj(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["margin", "multisimilarity", "proxyanchor", "arcface"])
def test_optimisation_reduces_loss(name):
    losses = _train(name, base_lr=1e-2 if name in ("margin", "multisimilarity") else 1e-3)
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, (name, first, last)


REPO = Path(__file__).resolve().parents[2]


def test_rmargin_defaults_are_the_study_settings():
    obj = make_objective("rmargin", 10, 32)
    assert isinstance(obj.loss, L.MarginLoss) and obj.loss.margin == pytest.approx(0.2)
    assert torch.allclose(obj.loss.beta, torch.full((10,), 0.6)) and obj.loss.learn_beta
    assert (obj.miner.rho, obj.miner.cutoff) == (0.4, 0.5)
    assert obj.param_groups(1e-5)[0]["lr"] == pytest.approx(5e-4)  # beta_lr as the margin loss
    # the miner is usable with any triplet-style loss
    trip = make_objective("triplet", 10, 32, miner="rho_distance", **{"miner.rho": 0.2})
    assert isinstance(trip.miner, RhoDistanceMiner) and trip.miner.rho == 0.2


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
