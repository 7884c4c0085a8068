"""Tests of oodml.search (hyperparameter search as study runs), the registry's search spaces and
oodml.tuning_plot: validation, seeded draws, SIGKILL + restart, failed trials, results table,
figures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oodml import losses as L
from oodml import search as SR
from oodml import study as S
from oodml.errors import BadInputError

# A fake trainer: marks each call, can sleep / fail, and scores the validation classes with a
# known function of the settings (best: margin 0.3, lr 1e-3) so the chosen trial is predictable.
FAKE = """
import json, os, time, uuid
from pathlib import Path
from oodml.io import write_json

def score(config):
    lp = config["loss_params"]
    return 1.0 - abs(float(lp.get("margin", 0.2)) - 0.3) - abs(float(config["lr"]) - 1e-3) * 100

def run(config, run_dir):
    run_dir = Path(run_dir)
    marks = Path(os.environ["FAKE_MARKS"])
    marks.mkdir(exist_ok=True)
    (marks / f"{run_dir.name}.{os.getpid()}.{uuid.uuid4().hex}").write_text(
        json.dumps({"loss_params": config["loss_params"], "lr": config["lr"]}, sort_keys=True))
    end = time.time() + float(os.environ.get("FAKE_SLEEP", "0"))
    while time.time() < end:
        time.sleep(0.05)
    if run_dir.name in os.environ.get("FAKE_FAIL_RUNS", "").split(","):
        raise ValueError("boom in " + run_dir.name)
    v = score(config)
    write_json(run_dir / "metrics.json", {"run": config, "split": config["split"], "fid": None,
               "val": {"map@r": v, "recall@1": v}, "test": {"recall@1": v / 2, "map@r": v / 3}, "seconds": 1.0})
"""

STUDY = """
name: srch
datasets: [{name: glyphs, splits: splits.json}]
losses: [margin, multisimilarity]
seeds: [0]
train: {backbone: resnet10t, pretrained: false, epochs: 1, lr: 1.0e-3}
search:
  sampler: random
  trials: 3
  scope: standard
  losses: [margin]
  space:
    all: {train.lr: {low: 5.0e-4, high: 2.0e-3, log: true}}
    margin: {beta: null, beta_lr: null, miner.cutoff: null}
"""


def _write_splits(path: Path, n: int = 3, standard: int = 2) -> Path:
    series = [
        {
            "id": i,
            "fid": 0.1 * i,
            "step": i,
            "phase": "easier",
            "standard": i == standard,
            "train": [f"c{j}" for j in range(6)],
            "test": [f"t{j}" for j in range(4)],
            "val": ["c0"],
            "episodes": {},
        }
        for i in range(1, n + 1)
    ]
    path.write_text(json.dumps({"schema": "oodml.splits/1", "series": series}))
    return path


def _study(tmp_path: Path, text: str = STUDY, name: str = "s.yaml") -> Path:
    (tmp_path / "pyproject.toml").touch()
    _write_splits(tmp_path / "splits.json")
    d = tmp_path / "studies"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def fake(tmp_path, monkeypatch):
    (tmp_path / "fakesearch.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("FAKE_MARKS", str(tmp_path / "marks"))
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    import importlib

    import fakesearch

    importlib.reload(fakesearch)
    return fakesearch


def _marks(tmp_path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    d = tmp_path / "marks"
    for f in sorted(d.iterdir()) if d.is_dir() else []:
        out.setdefault(f.name.split(".")[0], []).append(json.loads(f.read_text()))
    return out


def _run(study, fake, **kw):
    return S.run_study(study, run_fn=fake.run, progress=False, check_data=False, **kw)


def _trials(study) -> list:
    return [r for r in study.runs if r.tuning == "trial"]


# --------------------------------------------------------------------------------------------
# the registry's search spaces
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(L.OBJECTIVES))
def test_every_objective_declares_a_valid_space(name):
    space = SR.search_space(name)
    assert "train.lr" in space and len(space) >= 1
    keys = set(L.valid_keys(name))
    defaults = next(r["defaults"] for r in L.list_objectives() if r["name"] == name)
    own = {}
    for key, t in space.items():
        if key.startswith("train."):
            continue
        assert key in keys, f"{name}: {key} is not an option of the objective"
        d = defaults[key]
        if t.choices:
            assert d in t.choices
            own[key] = t.choices[-1]
        else:
            assert t.low <= d <= t.high, f"{name}: default {key}={d} outside {t.describe()}"
            own[key] = t.high  # an extreme of the range must build
    obj = L.make_objective(
        name, num_classes=5, embed_dim=16, feature_dim=32, **own
    )  # 16: DiVA heads, uniformity chunks
    assert obj.name == name


def test_list_losses_search_space_cli(capsys):
    from oodml.train import main

    assert main(["--list-losses", "--search-space"]) == 0
    out = capsys.readouterr().out
    assert "miner.epsilon" in out and "[0.01, 0.5] log" in out and "train.lr" in out
    assert main(["--search-space"]) == 2  # only with --list-losses: one line, no traceback
    assert "--search-space goes with --list-losses" in capsys.readouterr().err


def test_tunable_parse_and_errors():
    assert SR.Tunable.parse([0.1, 0.5], "x") == SR.Tunable(0.1, 0.5)
    t = SR.Tunable.parse({"low": 1, "high": 8, "int": True, "log": True}, "x")
    assert t.integer and t.log and t.describe() == "[1, 8] log"
    assert SR.Tunable.parse({"choices": ["a", "b"]}, "x").choices == ("a", "b")
    for bad, needle in [
        ([0.5, 0.1], "low < high"),
        ({"low": 0, "high": 1, "log": True}, "low > 0"),
        ({"lo": 0, "high": 1}, "unknown key 'lo'"),
        ("wide", "a range must be"),
    ]:
        with pytest.raises(BadInputError, match=needle):
            SR.Tunable.parse(bad, "study.yaml: search.space.margin.margin")


# --------------------------------------------------------------------------------------------
# the search block
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "block, needle",
    [
        ("search: {sampler: grid}", "search.sampler must be one of random, tpe"),
        ("search: {trials: 0}", "search.trials must be a positive integer"),
        ("search: {metric: nmi}", "not a validation metric"),
        ("search: {scope: everywhere}", "search.scope must be"),
        ("search: {trails: 3}", "did you mean 'trials'"),
        ("search: {losses: [arcface]}", "not one of the study's losses"),
        ("search: {space: {margin: {margn: [0, 1]}}}", "unknown option for loss margin"),
        ("search: {space: {margin: {train.seed: [0, 3]}}}", "not a tunable TrainConfig key"),
        ("search: {space: {all: {margn: [0, 1]}}}", "search.space.all.margn: no tuned loss"),
        ("search: {space: {margin: {margin: [0.5, 0.1]}}}", "search.space.margin.margin: a range needs low < high"),
    ],
)
def test_search_errors_name_the_key(tmp_path, block, needle):
    p = _study(tmp_path, "name: s\ndatasets: [glyphs]\nlosses: [margin]\n" + block + "\n")
    with pytest.raises(BadInputError, match=needle):
        S.load_study(p)


def test_objective_without_space_fails_only_when_searched(tmp_path, monkeypatch):
    import dataclasses

    bare = dataclasses.replace(L.OBJECTIVES["supcon"], search_space={})
    monkeypatch.setitem(L.OBJECTIVES, "supcon", bare)
    plain = _study(tmp_path, "name: s\ndatasets: [glyphs]\nlosses: [margin, supcon]\n", "plain.yaml")
    assert len(S.load_study(plain).runs) == 2  # no search asked: fine
    p = _study(tmp_path, "name: s\ndatasets: [glyphs]\nlosses: [margin, supcon]\nsearch: {trials: 2}\n")
    with pytest.raises(BadInputError, match="loss supcon declares no search space"):
        S.load_study(p)
    ok = _study(
        tmp_path,
        "name: s\ndatasets: [glyphs]\nlosses: [margin, supcon]\n"
        "search: {trials: 2, space: {supcon: {temperature: [0.05, 0.2]}}}\n",
        "ok.yaml",
    )
    st = S.load_study(ok)
    assert st.search["spaces"]["supcon"] == {"temperature": SR.Tunable(0.05, 0.2)}
    skip = _study(
        tmp_path,
        "name: s\ndatasets: [glyphs]\nlosses: [margin, supcon]\nsearch: {trials: 2, losses: [margin]}\n",
        "skip.yaml",
    )
    assert "supcon" not in S.load_study(skip).search["spaces"]


def test_plan_lists_trials_and_tuned_runs(tmp_path, capsys):
    p = _study(tmp_path)
    st = S.load_study(p)
    trials = _trials(st)
    assert len(trials) == 3 and {r.split for r in trials} == {2}  # the split file's standard split
    tuned = [r for r in st.runs if r.tuning == "tuned-standard"]
    assert sorted(r.split for r in tuned) == [1, 2, 3] and {r.loss for r in tuned} == {"margin"}
    defaults = [r for r in st.runs if r.tuning == "default"]
    assert len(defaults) == 6  # default: true keeps the default runs of both losses
    states = S.states(st)
    assert {states[r.run_id] for r in tuned} == {"waiting"} and {states[r.run_id] for r in trials} == {"pending"}
    assert S.main(["plan", str(p)]) == 0
    out = capsys.readouterr().out
    assert "trial 3/3" in out and "tuned-standard" in out and "waiting" in out and "3 trial runs" in out
    # ids: stable across loads; a different sampler seed gives a different search
    assert [r.run_id for r in S.load_study(p).runs] == [r.run_id for r in st.runs]
    p2 = _study(tmp_path, STUDY.replace("trials: 3", "trials: 3\n  seed: 1"), "s2.yaml")
    assert not {r.run_id for r in _trials(S.load_study(p2))} & {r.run_id for r in trials}
    # more trials later: the first three are the same runs
    p3 = _study(tmp_path, STUDY.replace("trials: 3", "trials: 5"), "s3.yaml")
    assert {r.run_id for r in trials} < {r.run_id for r in _trials(S.load_study(p3))}


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def test_search_runs_then_tuned_runs_use_the_chosen_settings(tmp_path, fake):
    st = S.load_study(_study(tmp_path))
    counts = _run(st, fake)
    assert counts["done"] == len(st.runs) and counts["failed"] == 0
    assert set(S.states(st).values()) == {"done"}
    trial_params = {r.run_id: SR.read_tuned(r.run_dir)["params"] for r in _trials(st)}
    assert all(set(p) == {"margin", "train.lr"} for p in trial_params.values())
    scores = {rid: fake.score(SR.apply_params({"loss_params": {}, "lr": 1e-3}, p)) for rid, p in trial_params.items()}
    best = max(scores, key=scores.get)
    for r in st.runs:
        if r.tuning != "tuned-standard":
            continue
        tuned = SR.read_tuned(r.run_dir)
        assert tuned["trial_run"] == best and tuned["params"] == trial_params[best]
        cfg = json.loads((r.run_dir / "metrics.json").read_text())["run"]
        assert cfg["loss_params"]["margin"] == trial_params[best]["margin"]
        assert cfg["lr"] == trial_params[best]["train.lr"] and cfg["split"] == r.split
    # Optuna saw every trial with its validation value
    import optuna

    ref = _trials(st)[0].search
    ost = SR._optuna_study(ref, None)
    done = ost.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 3 and ost.best_value == pytest.approx(max(scores.values()))
    # a finished search is never re-run
    again = _run(S.load_study(st.path), fake)
    assert again["done"] == 0
    assert all(len(v) == 1 for v in _marks(tmp_path).values())


def test_same_seed_same_trials_whatever_the_order(tmp_path, fake):
    p = _study(tmp_path)
    a = S.load_study(p, runs_dir=tmp_path / "a")
    _run(a, fake)
    b = S.load_study(p, runs_dir=tmp_path / "b")
    _run(b, fake, only=[r.run_id for r in reversed(_trials(b))])  # other order, other process state
    pa = [SR.read_tuned(r.run_dir)["params"] for r in _trials(a)]
    pb = [SR.read_tuned(r.run_dir)["params"] for r in _trials(b)]
    assert pa == pb and len({json.dumps(x, sort_keys=True) for x in pa}) == 3
    c = S.load_study(
        _study(tmp_path, STUDY.replace("trials: 3", "trials: 3\n  seed: 7"), "c.yaml"), runs_dir=tmp_path / "c"
    )
    _run(c, fake, only=[r.run_id for r in _trials(c)])
    assert [SR.read_tuned(r.run_dir)["params"] for r in _trials(c)] != pa


def test_tpe_sampler(tmp_path, fake):
    st = S.load_study(
        _study(tmp_path, STUDY.replace("sampler: random", "sampler: tpe").replace("trials: 3", "trials: 2"))
    )
    assert _run(st, fake)["failed"] == 0
    assert set(S.states(st).values()) == {"done"}
    assert all(SR.read_tuned(r.run_dir)["sampler"] == "tpe" for r in _trials(st))


def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, fake, monkeypatch):
    st = S.load_study(_study(tmp_path))
    bad = _trials(st)[1]
    monkeypatch.setenv("FAKE_FAIL_RUNS", bad.run_id)
    counts = _run(st, fake)
    assert counts["failed"] == 1
    states = S.states(st)
    assert states[bad.run_id] == "failed" and (bad.run_dir / "failed.json").is_file()
    assert all(states[r.run_id] == "done" for r in st.runs if r.run_id != bad.run_id)
    chosen = SR.chosen_settings(bad.search)
    assert chosen["done"] == 2 and chosen["failed"] == 1 and chosen["run_id"] != bad.run_id
    import optuna

    ost = SR._optuna_study(bad.search, None)
    assert len(ost.get_trials(states=(optuna.trial.TrialState.FAIL,))) == 1
    # retrying the failed trial keeps its settings and completes it
    monkeypatch.delenv("FAKE_FAIL_RUNS")
    before = SR.read_tuned(bad.run_dir)["params"]
    _run(st, fake, retry_failed=True)
    assert S.run_state(bad) == "done" and SR.read_tuned(bad.run_dir)["params"] == before
    retried = [
        t
        for t in ost.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs.get("retry_of") is not None
    ]
    assert len(retried) == 1 and retried[0].params == before  # Optuna learns the retried result


def test_all_trials_failing_fails_the_tuned_runs_clearly(tmp_path, fake, monkeypatch):
    st = S.load_study(_study(tmp_path))
    monkeypatch.setenv("FAKE_FAIL_RUNS", ",".join(r.run_id for r in _trials(st)))
    _run(st, fake)
    tuned = [r for r in st.runs if r.tuning == "tuned-standard"]
    for r in tuned:
        assert S.run_state(r) == "failed"
        assert "none of its 3 trials succeeded" in json.loads((r.run_dir / "failed.json").read_text())["error"]


@pytest.mark.slow
def test_sigkill_and_restart_never_repeat_a_finished_trial(tmp_path, fake, monkeypatch):
    p = _study(tmp_path)
    st = S.load_study(p)
    monkeypatch.setenv("FAKE_SLEEP", "1.0")
    cmd = [
        sys.executable,
        "-m",
        "oodml.study",
        "run",
        str(p),
        "--run-fn",
        "fakesearch:run",
        "--quiet",
        "--no-check-data",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    trial_dirs = [r.run_dir for r in _trials(st)]
    deadline = time.time() + 60
    while time.time() < deadline and not (
        (trial_dirs[0] / "metrics.json").is_file() and (trial_dirs[1] / "tuned.json").is_file()
    ):
        time.sleep(0.05)
    time.sleep(0.3)  # the second trial is training
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {d.name for d in trial_dirs if (d / "metrics.json").is_file()}
    assert finished and len(finished) < 3
    drawn = {d.name: SR.read_tuned(d)["params"] for d in trial_dirs if SR.read_tuned(d) is not None}
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(S.states(st).values()) == {"done"}
    marks = _marks(tmp_path)
    for rid in finished:
        assert len(marks[rid]) == 1, f"finished trial {rid} trained again"
    for rid, params in drawn.items():  # an interrupted trial resumes with the settings it drew
        assert SR.read_tuned(tmp_path / "runs" / "srch" / rid)["params"] == params
        assert all(m["loss_params"]["margin"] == params["margin"] for m in marks[rid])
    best = SR.chosen_settings(_trials(st)[0].search)
    assert best["done"] == 3
    for r in st.runs:
        if r.tuning == "tuned-standard":
            assert SR.read_tuned(r.run_dir)["params"] == best["params"]


# --------------------------------------------------------------------------------------------
# results table and figures
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_results_table_tuning_hparams_and_figures(tmp_path, fake):
    text = STUDY.replace("scope: standard", "scope: [standard, per-split]")
    st = S.load_study(_study(tmp_path, text))
    _run(st, fake)
    res = S.collect(st)
    assert res["missing"] == []
    with open(res["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-2:] == ["tuning", "hparams"]
    assert {r["tuning"] for r in rows} == {"default", "tuned-standard", "tuned-per-split"}
    assert not {r["run_id"] for r in rows} & {r.run_id for r in _trials(st)}  # trials are not results
    d = next(r for r in rows if r["loss"] == "margin" and r["tuning"] == "default")
    assert json.loads(d["hparams"]) == {"margin": 0.2, "train.lr": 0.001}
    std2 = [r for r in rows if r["split"] == "2" and r["loss"] == "margin" and r["tuning"] != "default"]
    assert {r["tuning"] for r in std2} == {"tuned-standard", "tuned-per-split"} and len(
        {r["run_id"] for r in std2}
    ) == 1
    ms = next(r for r in rows if r["loss"] == "multisimilarity")
    assert ms["tuning"] == "default" and json.loads(ms["hparams"]) == {}
    summary = (st.runs_dir / "search" / "searches.csv").read_text().splitlines()
    assert len(summary) == 1 + 3 and summary[0].startswith("dataset,split,loss,scope")
    first = Path(res["csv"]).read_bytes()
    S.collect(st)
    assert Path(res["csv"]).read_bytes() == first

    import matplotlib

    matplotlib.use("Agg")
    from oodml import plot
    from oodml import tuning_plot as tp

    df = plot.load_results(res["csv"])
    fig = tp.default_vs_tuned_figure(df, "glyphs", "recall@1")
    assert len([a for a in fig.axes if a.get_visible()]) == 1
    gap = tp.transfer_gap_table(df, "glyphs", "recall@1")
    assert list(gap["split"]) == [1, 2, 3] and (gap.loc[gap["split"] == 2, "gap"] == 0).all()
    chosen = tp.chosen_settings_table(df, "glyphs")
    assert list(chosen.columns) == ["loss", "tuning", "split", "margin", "train.lr"]
    assert list(chosen["split"]) == ["all", "1", "2", "3"]
    out = plot.make_all(df, tmp_path / "figs", "recall@1")
    for name in ("glyphs_tuning_recall1.png", "glyphs_transfer_gap_recall1.pdf", "glyphs_chosen_settings.tex"):
        assert name in out
    cur = (tmp_path / "figs" / "glyphs_curve_recall1.csv").read_text()
    assert cur.count("margin") == 3  # the main curve shows one tuning (default) per loss and split


def test_figure_without_tuned_rows_is_a_clear_error(tmp_path):
    import pandas as pd

    from oodml import tuning_plot as tp

    df = pd.DataFrame(
        {
            "study": ["s"],
            "run_id": ["r"],
            "dataset": ["glyphs"],
            "loss": ["margin"],
            "tuning": ["default"],
            "split": [1],
            "fid": [0.1],
            "seed": [0],
            "stage": ["zero-shot"],
            "metric": ["recall@1"],
            "value": [0.5],
            "ci95": [float("nan")],
        }
    )
    with pytest.raises(BadInputError, match="no tuned runs"):
        tp.default_vs_tuned_figure(df, "glyphs")
    assert tp.transfer_gap_table(df, "glyphs").empty and not tp.has_tuning(df)


@pytest.mark.slow
def test_real_tiny_search_through_the_trainer(tmp_path, monkeypatch):
    """The real oodml.train: a trial trains with its drawn settings and reports validation MAP@R;
    the tuned run trains with the chosen ones."""
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    tiny = {
        "backbone": "resnet10t",
        "pretrained": False,
        "image_size": 32,
        "resize_size": 36,
        "embed_dim": 16,
        "batch_size": 16,
        "val_fraction": 0.25,
        "m_per_class": 4,
        "epochs": 1,
        "iterations_per_epoch": 2,
        "workers": 0,
        "tensorboard": False,
        "eval_batch_size": 512,
    }
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c in range(16):  # a small folder dataset: 16 classes of 8 noisy images around a class pattern
        (root / f"class{c:02d}").mkdir(parents=True)
        base = rng.integers(0, 256, (36, 36, 3))
        for i in range(8):
            img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class{c:02d}" / f"{i}.png")
    train = ", ".join(f"{k}: {json.dumps(v) if isinstance(v, bool) else v}" for k, v in tiny.items())
    p = _study(
        tmp_path,
        f"""
    name: tinysearch
    datasets: [{{name: folder, root: {root}}}]
    losses: [margin]
    seeds: [0]
    train: {{{train}}}
    search: {{trials: 2, default: false, space: {{margin: {{beta: null, beta_lr: null, miner.cutoff: null}}}}}}
    """,
    )
    assert S.main(["run", str(p), "--quiet"]) == 0
    st = S.load_study(p)
    assert [r.tuning for r in st.runs] == ["trial", "trial", "tuned-standard"]
    assert set(S.states(st).values()) == {"done"}
    for r in st.runs[:2]:
        params = SR.read_tuned(r.run_dir)["params"]
        m = json.loads((r.run_dir / "metrics.json").read_text())
        assert m["run"]["loss_params"]["margin"] == params["margin"] and m["run"]["lr"] == params["train.lr"]
        assert 0.0 <= m["val"]["map@r"] <= 1.0
    chosen = SR.chosen_settings(st.runs[0].search)
    final = json.loads((st.runs[2].run_dir / "metrics.json").read_text())["run"]
    assert final["loss_params"]["margin"] == chosen["params"]["margin"] and final["lr"] == chosen["params"]["train.lr"]
    assert S.main(["collect", str(p)]) == 0
    with open(st.runs_dir / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["tuning"] for r in rows} == {"tuned-standard"}
    assert json.loads(rows[0]["hparams"]) == chosen["params"]
