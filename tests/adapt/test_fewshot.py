"""Few-shot adaptation (oodml.adapt.fewshot) of a trained run (fixture in conftest.py)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from oodml import adapt as A
from oodml.errors import BadInputError

N_IMAGES = 12  # per class


def _fresh_copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    (dst / "adaptation.json").unlink(missing_ok=True)
    return dst


def test_head_adaptation_beats_zero_shot_under_shift(trained, run_config, tmp_path):
    run_dir = _fresh_copy(trained, tmp_path)
    result = A.run_adaptation(
        run_dir, mode="fewshot", shots=(2, 5), episodes=3, iterations=200, lr=1e-3, metrics=("recall",), progress=False
    )
    for k in ("2", "5"):
        rec = result["fewshot"]["shots"][k]
        assert rec["source"] == "drawn" and rec["episodes"] == 3 and rec["classes"] == 8
        assert rec["support_images"] == 8 * int(k) and rec["query_images"] == 8 * (N_IMAGES - int(k))
        gains = [p["adapted"]["recall@1"] - p["zero_shot"]["recall@1"] for p in rec["per_episode"]]
        assert min(gains) > 0.1, gains  # every episode, by a wide margin (measured: +0.2 to +0.6)
        assert rec["gain"]["recall@1"]["mean"] == pytest.approx(np.mean(gains))
        assert rec["gain"]["recall@1"]["ci95"] == pytest.approx(A.confidence_interval(gains))
        # the hue embedding barely sees orientation: zero-shot 0.43 at 2 shots (8 classes), adapted 0.7
        assert rec["zero_shot"]["recall@1"]["mean"] < 0.5
    opts = result["fewshot"]["options"]
    assert opts["adapt"] == "head" and opts["loss"] == "margin" and opts["iterations"] == {"2": 200, "5": 200}
    assert opts["batch_size"] == run_config["batch_size"] and opts["lr"] == 1e-3
    rows = A.adaptation_rows(result)
    got = {(r["stage"], r["metric"]): r for r in rows}
    for k in (2, 5):
        for m in ("recall@1", "recall@1_zero_shot", "recall@1_gain", "recall@8"):
            assert (f"few-shot-{k}", m) in got
    row = got[("few-shot-5", "recall@1_gain")]
    assert row["value"] == result["fewshot"]["shots"]["5"]["gain"]["recall@1"]["mean"] and row["ci95"] > 0


def test_full_adaptation_trains_the_network_and_restores_it(trained):
    from oodml.train import load_run

    run = load_run(trained)
    model = run.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = A.RunImages(run.dataset, run.config, model=model)
    classes = list(run.test_classes)
    frozen = A.compute_frozen(model, run.dataset, classes, images)
    eps, _ = A.resolve_episodes(run.dataset, classes, [2], None, 1)
    out = A.fewshot_adaptation(
        model,
        frozen,
        eps,
        adapt="full",
        loss="contrastive",
        iterations=3,
        lr=1e-3,
        metrics=("recall", "map@r"),
        images=images,
        progress=False,
    )
    rec = out["shots"]["2"]["per_episode"][0]
    assert out["options"]["adapt"] == "full" and out["options"]["loss"] == "contrastive"
    assert math.isfinite(rec["final_loss"]) and rec["adapted"] != rec["zero_shot"]  # the network did change
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # and was restored
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    with pytest.raises(BadInputError, match="needs the run's images"):
        A.fewshot_adaptation(model, frozen, eps, adapt="full", iterations=1)
