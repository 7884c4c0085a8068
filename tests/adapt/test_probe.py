"""Linear probes (oodml.adapt.probe) of a trained run (fixture in conftest.py)."""

from __future__ import annotations

import shutil

from oodml import adapt as A

N_IMAGES = 12  # per class


def _fresh_copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    (dst / "adaptation.json").unlink(missing_ok=True)
    return dst


def test_probe_is_above_chance_deterministic_and_merges(trained, tmp_path):
    from oodml.io import read_json

    run_dir = _fresh_copy(trained, tmp_path)
    A.run_adaptation(run_dir, mode="fewshot", shots=[2], episodes=1, iterations=3, metrics=("recall",), progress=False)
    first_fewshot = read_json(run_dir / "adaptation.json")["fewshot"]
    result = A.run_adaptation(run_dir, mode="probe", shots=(2, 5), episodes=3, progress=False)
    data = (run_dir / "adaptation.json").read_bytes()
    again = A.run_adaptation(run_dir, mode="probe", shots=(2, 5), episodes=3, progress=False)
    assert (run_dir / "adaptation.json").read_bytes() == data and again == result  # byte-identical
    assert result["fewshot"] == first_fewshot  # the other mode is kept
    probe = result["probe"]
    chance = 1 / 8
    for k in ("2", "5"):
        for rep in ("embedding", "backbone"):
            assert len(probe["shots"][k][rep]["per_episode"]) == 3
        assert probe["shots"][k]["backbone"]["mean"] > 3 * chance  # gratings are linearly separable in the features
    half = probe["half"]
    assert half["train_images"] == 8 * N_IMAGES // 2 == half["test_images"]
    assert half["backbone"] > 3 * chance and half["embedding"] >= 0
    names = [r["metric"] for r in A.adaptation_rows(result) if r["stage"] == "linear-probe"]
    assert names == [
        "top1_embedding_2shot",
        "top1_backbone_2shot",
        "top1_embedding_5shot",
        "top1_backbone_5shot",
        "top1_embedding_half",
        "top1_backbone_half",
    ]
    assert [r["ci95"] for r in A.adaptation_rows(result) if r["metric"].endswith("_half")] == [None, None]
