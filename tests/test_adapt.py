"""Few-shot adaptation and linear probes (oodml.adapt).

The shared fixture trains one tiny run (a few seconds) on a folder dataset written here with a
deliberate shift: the train classes are *colours* (noise in 8 hues), the test classes are grey
*gratings* of 8 orientations. The run's 2-d embedding learns hue, which is useless on the test
classes (zero-shot Recall@1 near chance); adapting the embedding layer on a few support images
of the gratings re-aims it at orientation, which the frozen backbone features do encode.
"""

from __future__ import annotations

import json
import math
import shutil
import socket

import numpy as np
import pytest
import torch

from oodml import adapt as A
from oodml.errors import BadInputError

N_IMAGES = 12  # per class
SIZE = 32


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    def _no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setenv("OODML_QUIET", "1")


def _write_dataset(root, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for c in range(8):  # train side: colour classes
        hue = np.cos(2 * np.pi * (c / 8 + np.array([0, 1 / 3, 2 / 3]))) * 0.5 + 0.5
        d = root / f"a_colour{c}"
        d.mkdir(parents=True)
        for i in range(N_IMAGES):
            img = hue[None, None, :] * 255 * (0.7 + 0.3 * rng.random((SIZE, SIZE, 1)))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    for c in range(8):  # test side: grey gratings, class = orientation, random phase
        th = np.pi * c / 8
        d = root / f"b_grating{c}"
        d.mkdir(parents=True)
        for i in range(N_IMAGES):
            g = np.sin((xx * np.cos(th) + yy * np.sin(th)) * 2 * np.pi / 6 + rng.random() * 2 * np.pi)
            img = (0.5 + 0.25 * g + 0.1 * rng.standard_normal((SIZE, SIZE)))[..., None].repeat(3, 2) * 255
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


RUN_CONFIG = dict(
    dataset="folder",
    backbone="test_resnet",
    pretrained=False,
    embed_dim=2,
    image_size=SIZE,
    resize_size=SIZE,
    batch_size=16,
    m_per_class=2,
    epochs=3,
    lr=1e-3,
    freeze_bn=False,
    augment=False,
    workers=0,
    device="cpu",
    tensorboard=False,
    val_fraction=0.0,
    eval_every=0,
    threads=1,
    seed=0,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("adapt")
    mp.setenv("OODML_CACHE", str(base / "cache"))
    mp.setenv("HF_HOME", str(base / "hf"))
    mp.setenv("TORCH_HOME", str(base / "torch"))
    root = _write_dataset(base / "data")
    yield {"base": base, "root": root}
    mp.undo()


@pytest.fixture(scope="module")
def trained(env):
    from oodml.train import train

    run_dir = env["base"] / "run"
    train({**RUN_CONFIG, "root": str(env["root"])}, run_dir, progress=False)
    return run_dir


def _fresh_copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    (dst / "adaptation.json").unlink(missing_ok=True)
    return dst


# --------------------------------------------------------------------------------------------
# statistics and options
# --------------------------------------------------------------------------------------------
def test_confidence_interval_is_the_student_t_half_width():
    x = [0.2, 0.5, 0.4, 0.9]
    n, mean = 4, sum(x) / 4
    s = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    t_975_3 = 3.182446305284263  # Student t quantile, 3 degrees of freedom
    assert A.confidence_interval(x) == pytest.approx(t_975_3 * s / math.sqrt(n), rel=1e-9)
    assert A.confidence_interval([0.3]) is None and A.confidence_interval([]) is None
    assert A.confidence_interval([0.5, 0.5, 0.5]) == 0.0
    assert A.confidence_interval([1.0, 2.0], confidence=0.9) == pytest.approx(
        6.313751514675 * math.sqrt(0.5) / math.sqrt(2)
    )
    assert A.summarize([0.25]) == {"mean": 0.25, "ci95": None}


def test_iterations_parsing():
    assert A.parse_iterations(None, [2, 5]) == {2: 1000, 5: 1500}
    assert A.parse_iterations(["2=10", "5=20"], [2, 5]) == {2: 10, 5: 20}
    assert A.parse_iterations(["7"], [2, 5]) == {2: 7, 5: 7}
    assert A.parse_iterations(30, [1]) == {1: 30}
    assert A.parse_iterations({5: 3}, [2, 5]) == {2: 1000, 5: 3}
    with pytest.raises(BadInputError, match="k=n"):
        A.parse_iterations(["2=10", "oops"], [2])
    with pytest.raises(BadInputError, match="non-negative integer"):
        A.parse_iterations(["2=-1"], [2])


# --------------------------------------------------------------------------------------------
# episodes
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(env):
    from oodml.datasets import load_dataset

    return load_dataset("folder", root=env["root"])


def test_drawn_episodes_are_deterministic_and_split_support_from_query(dataset):
    classes = list(dataset.test_classes)
    eps, source = A.resolve_episodes(dataset, classes, (2, 5), None, 4, seed=3)
    again, _ = A.resolve_episodes(dataset, classes, (2, 5), None, 4, seed=3)
    other, _ = A.resolve_episodes(dataset, classes, (2, 5), None, 4, seed=4)
    assert eps == again and eps != other and source == {2: "drawn", 5: "drawn"}
    test_ids = dataset.indices_of(classes)
    labels = np.array([classes.index(dataset.items[i].label) for i in test_ids])
    by_class = dataset.indices_by_class()
    for k in (2, 5):
        assert len(eps[k]) == 4
        for ep in eps[k]:
            assert list(ep) == classes
            s_rows, s_lab, q_rows, q_lab = A.episode_sets(ep, test_ids, labels, classes)
            support, query = set(test_ids[s_rows].tolist()), set(test_ids[q_rows].tolist())
            assert not support & query  # disjoint
            assert support | query == set(test_ids.tolist())  # query = every other test image
            assert len(support) == k * len(classes) and len(query) == (N_IMAGES - k) * len(classes)
            for c, ids in ep.items():
                assert len(ids) == k and set(ids) <= set(by_class[c].tolist())
            assert np.bincount(s_lab).tolist() == [k] * len(classes)
            assert np.bincount(q_lab).tolist() == [N_IMAGES - k] * len(classes)


def test_split_episodes_are_used_validated_and_may_leave_classes_out(dataset):
    classes = list(dataset.test_classes)
    by_class = dataset.indices_by_class()
    given = [{c: sorted(by_class[c][e : e + 2].tolist()) for c in classes[1:]} for e in range(3)]
    eps, source = A.resolve_episodes(dataset, classes, [2], {2: given}, 2)
    assert source == {2: "split"} and eps[2] == given[:2]
    test_ids = dataset.indices_of(classes)
    labels = np.array([classes.index(dataset.items[i].label) for i in test_ids])
    _, _, q_rows, q_lab = A.episode_sets(eps[2][0], test_ids, labels, classes)
    assert 0 not in q_lab and len(q_rows) == (N_IMAGES - 2) * (len(classes) - 1)  # class left out of the query set
    with pytest.raises(BadInputError, match="has 3 episodes for 2 shots, 5 were asked"):
        A.resolve_episodes(dataset, classes, [2], {2: given}, 5)
    wrong = [{**given[0], classes[1]: [int(by_class[classes[2]][0]), int(by_class[classes[1]][0])]}]
    with pytest.raises(BadInputError, match="is not an image of class"):
        A.resolve_episodes(dataset, classes, [2], {2: wrong})
    short = [{c: v[:1] for c, v in given[0].items()}]
    with pytest.raises(BadInputError, match="not 2"):
        A.resolve_episodes(dataset, classes, [2], {2: short})
    stranger = [{**given[0], "a_colour0": by_class["a_colour0"][:2].tolist()}]
    with pytest.raises(BadInputError, match="not a test class"):
        A.resolve_episodes(dataset, classes, [2], {2: stranger})


def test_too_many_shots_is_a_clear_error(dataset):
    with pytest.raises(
        BadInputError, match=rf"{N_IMAGES} shots need at least {N_IMAGES + 1} images per test class.*has {N_IMAGES}"
    ):
        A.resolve_episodes(dataset, list(dataset.test_classes), [2, N_IMAGES], None, 2)


def test_support_batches_fit_or_are_class_balanced():
    labels = np.repeat(np.arange(6), 5)  # 6 classes x 5 shots
    whole = A.support_batches(labels, batch_size=64, m_per_class=2, iterations=3, seed=0)
    assert len(whole) == 3 and all(sorted(i for i, _ in b) == list(range(30)) for b in whole)
    batches = A.support_batches(labels, batch_size=8, m_per_class=2, iterations=20, seed=0)
    assert batches == A.support_batches(labels, batch_size=8, m_per_class=2, iterations=20, seed=0)
    for b in batches:
        counts = np.bincount(labels[[i for i, _ in b]], minlength=6)
        assert len(b) == 8 and sorted(counts[counts > 0].tolist()) == [2, 2, 2, 2]
    seen = np.bincount(labels[[i for b in batches for i, _ in b]], minlength=6)
    assert seen.min() > 0  # every class is visited


# --------------------------------------------------------------------------------------------
# the core on a model built directly: the frozen backbone runs once
# --------------------------------------------------------------------------------------------
def test_head_mode_and_probe_reuse_one_backbone_pass(env, dataset):
    from oodml.models import build_model
    from oodml.train import TrainConfig

    torch.manual_seed(0)
    model = build_model("test_resnet", pretrained=False, embed_dim=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    model.backbone.register_forward_hook(lambda mod, inp, out: seen.append(int(inp[0].shape[0])))
    config = TrainConfig(image_size=SIZE, resize_size=SIZE, workers=0)
    classes = list(dataset.test_classes)
    frozen = A.compute_frozen(model, dataset, classes, A.RunImages(dataset, config, model=model))
    eps, _ = A.resolve_episodes(dataset, classes, (2, 5), None, 2)
    out = A.fewshot_adaptation(model, frozen, eps, iterations=5, lr=1e-3, metrics=("recall",), progress=False)
    probe = A.linear_probe(frozen, eps, max_iter=20, progress=False)
    assert sum(seen) == len(frozen) == len(classes) * N_IMAGES  # one pass over the test images, in total
    assert set(out["shots"]) == {"2", "5"} and set(probe["shots"]) == {"2", "5"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights restored
    # the zero-shot embeddings are the model's own on those images
    with torch.no_grad():
        direct = A.RunImages(dataset, config, model=model).embed(model, frozen.ids[:5])
    np.testing.assert_allclose(frozen.embeddings[:5].numpy(), direct, atol=1e-5)


# --------------------------------------------------------------------------------------------
# a trained run
# --------------------------------------------------------------------------------------------
def test_head_adaptation_beats_zero_shot_under_shift(trained, tmp_path):
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
        assert rec["zero_shot"]["recall@1"]["mean"] < 0.4  # the hue embedding is blind to orientation
    opts = result["fewshot"]["options"]
    assert opts["adapt"] == "head" and opts["loss"] == "margin" and opts["iterations"] == {"2": 200, "5": 200}
    assert opts["batch_size"] == RUN_CONFIG["batch_size"] and opts["lr"] == 1e-3
    rows = A.adaptation_rows(result)
    got = {(r["stage"], r["metric"]): r for r in rows}
    for k in (2, 5):
        for m in ("recall@1", "recall@1_zero_shot", "recall@1_gain", "recall@8"):
            assert (f"few-shot-{k}", m) in got
    row = got[("few-shot-5", "recall@1_gain")]
    assert row["value"] == result["fewshot"]["shots"]["5"]["gain"]["recall@1"]["mean"] and row["ci95"] > 0


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


def test_fewshot_record_is_byte_identical_when_repeated(trained, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        run = _fresh_copy(trained, d)
        A.run_adaptation(run, mode="fewshot", shots=[2], episodes=2, iterations=20, progress=False)
    assert (a / "run" / "adaptation.json").read_bytes() == (b / "run" / "adaptation.json").read_bytes()


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


def test_rows_of_a_hand_written_record():
    s = lambda m, c: {"mean": m, "ci95": c}  # noqa: E731
    record = {
        "fewshot": {
            "shots": {
                "10": {
                    "adapted": {"recall@1": s(0.6, 0.1)},
                    "zero_shot": {"recall@1": s(0.5, 0.05)},
                    "gain": {"recall@1": s(0.1, 0.02)},
                },
                "2": {
                    "adapted": {"recall@1": s(0.55, None)},
                    "zero_shot": {"recall@1": s(0.5, None)},
                    "gain": {"recall@1": s(0.05, None)},
                },
            }
        },
        "probe": {
            "shots": {"2": {"embedding": s(0.3, 0.01), "backbone": s(0.4, 0.02)}},
            "half": {"embedding": 0.7, "backbone": 0.8},
        },
    }
    rows = A.adaptation_rows(record)
    assert rows[:3] == [
        {"stage": "few-shot-2", "metric": "recall@1", "value": 0.55, "ci95": None},
        {"stage": "few-shot-2", "metric": "recall@1_zero_shot", "value": 0.5, "ci95": None},
        {"stage": "few-shot-2", "metric": "recall@1_gain", "value": 0.05, "ci95": None},
    ]
    assert [r["stage"] for r in rows] == ["few-shot-2"] * 3 + ["few-shot-10"] * 3 + ["linear-probe"] * 4
    assert rows[-1] == {"stage": "linear-probe", "metric": "top1_backbone_half", "value": 0.8, "ci95": None}
    assert A.adaptation_rows({}) == []
    table = A.format_rows(rows)
    assert "few-shot-10" in table and "0.1000" in table


# --------------------------------------------------------------------------------------------
# command line and errors
# --------------------------------------------------------------------------------------------
def test_cli_prints_tables_of_the_modes_it_ran(trained, tmp_path, capsys):
    run_dir = _fresh_copy(trained, tmp_path)
    code = A.main([str(run_dir), "--mode", "probe", "--shots", "2", "--episodes", "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "top1_backbone_2shot" in out and "few-shot" not in out
    code = A.main(
        [
            str(run_dir),
            "--mode",
            "fewshot",
            "--shots",
            "2",
            "--episodes",
            "1",
            "--iterations",
            "2=3",
            "--metrics",
            "recall",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "recall@1_gain" in out and "linear-probe" not in out
    record = json.loads((run_dir / "adaptation.json").read_text())
    assert set(record) >= {"fewshot", "probe"} and record["fewshot"]["options"]["iterations"] == {"2": 3}


def test_clear_errors(trained, tmp_path, capsys):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert A.main([str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "best.pt" in err and len(err.strip().splitlines()) == 1
    run_dir = _fresh_copy(trained, tmp_path)
    assert A.main([str(run_dir), "--shots", str(N_IMAGES + 3), "--quiet"]) == 2
    assert f"{N_IMAGES + 3} shots need at least" in capsys.readouterr().err
    assert A.main([str(run_dir), "--loss-param", "bogus=1", "--shots", "2", "--episodes", "1", "--quiet"]) == 2
    assert "unknown option 'bogus'" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="unknown adaptation option"):
        A.run_adaptation(run_dir, mode="probe", shots=[2], nonsense=1)
    with pytest.raises(BadInputError, match="mode must be"):
        A.run_adaptation(run_dir, mode="zero-shot")
    assert not (run_dir / "adaptation.json").exists()  # nothing half-written
