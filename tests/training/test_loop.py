"""The training loop (oodml.training.loop, through oodml.train): a tiny run learns, resumes bit for bit,
stops on NaN, and its files load (oodml.training.runs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from oodml.errors import BadInputError, OodmlError
from oodml.evaluate import evaluate_embeddings
from oodml.train import build_parser, config_from_args, embed, load_run, train

BACKBONE = "test_resnet"  # timm's tiny test ResNet, random init


@pytest.fixture(scope="session")
def glyph_root(tmp_path_factory):
    from oodml.datasets import load_dataset

    root = tmp_path_factory.mktemp("data")
    load_dataset("glyphs", root=root, progress=False)  # generate once for the session
    return root


@pytest.fixture()
def small(glyph_root, tmp_path, monkeypatch):
    """22 classes of the embedded dataset: 12 train (2 validation, 10 fit) and 10 test."""
    from oodml.datasets import load_dataset

    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    ds = load_dataset("glyphs", root=glyph_root, progress=False)
    return ds.subset(ds.train_classes[:12] + ds.test_classes[:10])


def test_tiny_run_learns_and_writes_its_files(small, glyph_root, tmp_path, make_cfg, read_log):
    run = tmp_path / "run"
    cfg = make_cfg(glyph_root, test_curve=True)
    metrics = train(cfg, run, dataset=small)
    log = read_log(run)
    assert [int(r["epoch"]) for r in log] == [1, 2, 3]
    assert float(log[-1]["loss"]) < float(log[0]["loss"])  # the loss falls
    chance = 7 / (10 * 16 - 1)  # R@1 of random retrieval among 10 classes x 16 images
    assert metrics["test"]["recall@1"] > 2 * chance
    assert set(metrics) >= {"run", "split", "fid", "best_epoch", "val", "test", "epochs", "seconds"}
    assert metrics["split"] is None and metrics["fid"] is None and metrics["epochs"] == 3
    assert metrics["run"] == cfg.to_dict()
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    # best epoch = the best validation Recall@1 (earliest on ties), reported with its metrics
    val_r1 = [float(r["val_recall@1"]) for r in log]
    assert metrics["best_epoch"] == 1 + int(np.argmax(val_r1))
    assert metrics["val"]["recall@1"] == pytest.approx(max(val_r1), abs=1e-6)
    # the test curve is separate and labelled as test
    with open(run / "test_curve.csv", newline="") as fh:
        curve = list(csv.DictReader(fh))
    assert len(curve) == 3 and "test_recall@1" in curve[0] and not any(k.startswith("test") for k in log[0])
    # provenance and the reusable config
    prov = json.loads((run / "run.json").read_text())
    assert prov["dataset_fingerprint"] == small.fingerprint() and prov["oodml_version"]
    assert len(prov["val_classes"]) == 2 and len(prov["fit_classes"]) == 10
    assert not set(prov["val_classes"]) & set(prov["test_classes"])
    args = build_parser().parse_args(["--config", str(run / "config.yaml")])
    assert config_from_args(args) == cfg

    # best.pt: a weights-only dict of tensors and plain config
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] == metrics["best_epoch"] and best["config"]["backbone"] == BACKBONE
    assert all(isinstance(v, torch.Tensor) for v in best["model"].values())

    # load_run + embed reproduce the reported test metrics
    loaded = load_run(run, dataset=small)
    assert not loaded.model.training and loaded.config == cfg and loaded.best_epoch == metrics["best_epoch"]
    ids = small.indices_of(loaded.test_classes)
    emb = embed(loaded.model, small, ids, loaded.config)
    assert emb.dtype == np.float32 and emb.shape == (len(ids), 32)
    assert evaluate_embeddings(emb, small.labels[ids])["recall@1"] == metrics["test"]["recall@1"]
    feats = loaded.embed(ids[:5], features=True)
    assert feats.shape == (5, loaded.model.feature_dim)

    # a finished run is returned as is; a different config in the same folder is refused
    assert train(cfg, run, dataset=small) == json.loads((run / "metrics.json").read_text())
    with pytest.raises(BadInputError, match="different config"):
        train(cfg.replace(lr=1e-3), run, dataset=small)


def test_resume_is_bit_for_bit(small, glyph_root, tmp_path, make_cfg, read_log):
    cfg = make_cfg(
        glyph_root,
        loss="margin",
        epochs=2,
        iterations_per_epoch=6,
        deterministic=True,
        scheduler="cosine",
        eval_every=1,
    )
    full = train(cfg, tmp_path / "full", dataset=small)
    part = train(cfg, tmp_path / "part", dataset=small, stop_after_epoch=1)
    assert part == {"stopped_after_epoch": 1}
    assert not (tmp_path / "part" / "metrics.json").exists()
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train(cfg, tmp_path / "part", dataset=small)
    assert resumed["test"] == full["test"] and resumed["val"] == full["val"]
    assert resumed["best_epoch"] == full["best_epoch"]
    for name in ("best.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "full" / name, weights_only=True)["model"]
        b = torch.load(tmp_path / "part" / name, weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    obj_a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["objective"]
    obj_b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["objective"]
    assert all(torch.equal(obj_a[k], obj_b[k]) for k in obj_a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(read_log(tmp_path / "full")) == drop(read_log(tmp_path / "part"))
    assert not torch.are_deterministic_algorithms_enabled()  # the global flag is restored


def test_nan_loss_stops_with_a_clear_message(small, glyph_root, tmp_path, monkeypatch, make_cfg):
    from oodml import losses

    calls = {"n": 0}
    original = losses.Objective.forward

    def poisoned(self, emb, labels):
        calls["n"] += 1
        loss = original(self, emb, labels)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(losses.Objective, "forward", poisoned)
    with pytest.raises(OodmlError, match=r"nan at epoch 1, step 3 of 12"):
        train(make_cfg(glyph_root, epochs=1), tmp_path / "nan", dataset=small)
    assert not (tmp_path / "nan" / "metrics.json").exists()


def test_split_file_series_sets_classes_and_fid(small, glyph_root, tmp_path, make_cfg):
    from oodml.io import write_json

    train_c, test_c = small.train_classes[:6] + small.test_classes[:4], small.train_classes[6:] + small.test_classes[4:]
    doc = {
        "schema": "oodml.splits/1",
        "provenance": {"dataset": "glyphs", "fingerprint": small.fingerprint(), "source": "search"},
        "classes": list(small.classes),
        "num_images": len(small),
        "trajectory": [],
        "series": [
            {
                "id": 1,
                "fid": 0.25,
                "step": 0,
                "phase": "start",
                "standard": False,
                "train": train_c,
                "test": test_c,
                "val": train_c[1:3],
                "episodes": {},
            }
        ],
    }
    path = tmp_path / "glyphs.json"
    write_json(path, doc)
    cfg = make_cfg(glyph_root, splits=str(path), split=1, epochs=1, iterations_per_epoch=3)
    metrics = train(cfg, tmp_path / "run", dataset=small)
    assert metrics["split"] == 1 and metrics["fid"] == 0.25
    prov = json.loads((tmp_path / "run" / "run.json").read_text())
    assert prov["val_classes"] == train_c[1:3] and prov["test_classes"] == test_c
    assert prov["fit_classes"] == [c for c in train_c if c not in train_c[1:3]]
    assert prov["objective"]["num_classes"] == 8  # sized to the fit classes
    assert prov["splits_digest"].startswith("sha256:")
    with pytest.raises(BadInputError, match="no split with id 2"):
        train(cfg.replace(split=2), tmp_path / "run2", dataset=small)
    assert not (tmp_path / "run2").exists()  # a run that failed before writing anything leaves no folder
