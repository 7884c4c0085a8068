"""oodml.study.load and .plan: a study file checked key by key, the grid and its run ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from oodml import study as S
from oodml.errors import BadInputError, OodmlError
from oodml.testing.studies import fake_trainer
from oodml.testing.studies import study_file as _study
from oodml.testing.studies import write_splits as _write_splits


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return fake_trainer(tmp_path, monkeypatch)


# validation and run ids
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, needle",
    [
        ("losses: [margn]", "did you mean 'margin'"),
        ("losses: [margin]\nsplits: [7]", "id 7 is out of range"),
        ("losses: [margin]\nseeds: [0]\nlosess: [x]", "did you mean 'losses'"),
        ("losses: [margin]\ntrain: {learning_rate: 0.1}", "unknown key train.'learning_rate'"),
        ("losses: [margin]\ntrain: {epoch: 3}", "did you mean 'epochs'"),
        ("losses: [{name: margin, params: {margn: 0.1}}]", "losses[0].params"),
        ("losses: [margin]\nadapt: [{mode: fewshoot}]", "did you mean 'fewshot'"),
        ("losses: [margin]\nexecutor: {kind: slurm, slurm: {partiton: gpu}}", "did you mean 'partition'"),
        ("losses: [margin]\ntrain: {seed: 3}", "set by the study grid"),
    ],
)
def test_study_errors_name_the_key(tmp_path, body, needle):
    _write_splits(tmp_path / "splits" / "g.json")
    p = _study(tmp_path, "name: bad\ndatasets: [{name: glyphs, splits: splits/g.json}]\n" + body + "\n")
    with pytest.raises(BadInputError) as exc:
        S.load_study(p)
    assert needle in str(exc.value) and str(p) in str(exc.value)


def test_missing_dataset_and_split_file(tmp_path):
    p = _study(tmp_path, "name: bad\ndatasets: [{name: glyphs, splits: splits/nope.json}]\nlosses: [margin]\n")
    with pytest.raises(BadInputError, match="nope.json.*does not exist") as exc:
        S.load_study(p)
    # the message names the command that makes the file, and that command parses
    import shlex

    from oodml.make_splits import build_parser

    cmd = str(exc.value).split("`")[1]
    assert cmd.startswith("python -m oodml.make_splits --dataset glyphs --out ")
    args = build_parser().parse_args(shlex.split(cmd)[3:])
    assert args.dataset == "glyphs" and Path(args.out) == tmp_path / "splits" / "nope.json"
    p = _study(tmp_path, "name: bad\ndatasets: [{name: cubb}]\nlosses: [margin]\n")
    with pytest.raises(BadInputError, match="unknown dataset 'cubb'; did you mean 'cub'"):
        S.load_study(p)
    # a dataset that is not on disk is caught before anything runs
    p = _study(tmp_path, f"name: bad\ndatasets: [{{name: cub, root: {tmp_path / 'nodata'}}}]\nlosses: [margin]\n")
    st = S.load_study(p)
    with pytest.raises(OodmlError, match="datasets\\[0\\] \\(cub\\)"):
        S.run_study(st, progress=False)
    assert not any(st.runs_dir.glob("*/claim.json"))


def test_grid_and_run_ids(tmp_path):
    _write_splits(tmp_path / "splits" / "g.json", n=4)
    text = """
    name: grid
    datasets: [{name: glyphs, splits: splits/g.json}]
    splits: %s
    losses: [margin, {name: ms, params: {alpha: 3.0}}]
    seeds: [0, 1]
    train: {backbone: resnet10t, pretrained: false, epochs: 1%s}
    %s
    """
    st = S.load_study(_study(tmp_path, text % ("all", "", "")))
    assert len(st.runs) == 4 * 2 * 2 and len({r.run_id for r in st.runs}) == 16
    assert st.runs_dir == tmp_path / "runs" / "grid"  # relative to the base folder (parent of studies/)
    assert [(r.split, r.loss, r.seed) for r in st.runs[:3]] == [
        (1, "margin", 0),
        (1, "margin", 1),
        (1, "multisimilarity", 0),
    ]
    assert st.runs[0].fid == pytest.approx(0.1) and st.runs[-1].config["loss_params"] == {"alpha": 3.0}
    assert st.runs[0].config["splits"] == str(tmp_path / "splits" / "g.json")
    ids = {(r.split, r.loss, r.seed): r.run_id for r in st.runs}
    # same grid again, plus execution-only keys and an adapt stage: same ids
    st2 = S.load_study(
        _study(tmp_path, text % ("[2, 3]", ", device: cpu, workers: 0", "adapt: [{mode: probe, shots: [2]}]"), "b.yaml")
    )
    assert len(st2.runs) == 2 * 2 * 2
    assert all(ids[(r.split, r.loss, r.seed)] == r.run_id for r in st2.runs)
    # a hyperparameter changes them
    st3 = S.load_study(_study(tmp_path, text % ("all", ", lr: 0.001", ""), "c.yaml"))
    assert not ({r.run_id for r in st3.runs} & set(ids.values()))
    table = S.plan_table(st)
    assert "pending" in table and st.runs[0].run_id in table and "16 runs" in table


# --------------------------------------------------------------------------------------------
