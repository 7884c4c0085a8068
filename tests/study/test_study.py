"""oodml.study end to end: one real tiny study through oodml.train and oodml.adapt, controls and
the frozen reference in the results table."""

from __future__ import annotations

import json

import pytest

from oodml import study as S
from oodml.errors import BadInputError
from oodml.testing.studies import FAKE_STUDY, TINY_TRAIN, fake_trainer
from oodml.testing.studies import study_file as _study
from oodml.testing.studies import write_splits as _write_splits


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return fake_trainer(tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------
# end to end with the real trainer
# --------------------------------------------------------------------------------------------
def test_real_tiny_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    train = ", ".join(f"{k}: {json.dumps(v) if isinstance(v, bool) else v}" for k, v in TINY_TRAIN.items())
    p = _study(
        tmp_path,
        f"""
    name: tiny
    datasets: [embedded]
    losses: [multisimilarity]
    seeds: [0]
    train: {{{train}}}
    adapt: [{{mode: probe, shots: [2], probe_iterations: 20}}]
    """,
    )
    from oodml.study import main

    assert main(["run", str(p), "--quiet"]) == 0
    st = S.load_study(p)
    run = st.runs[0]
    assert S.run_state(run) == "done"
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["run"]["loss"] == "multisimilarity" and "recall@1" in metrics["test"]
    assert "oodml.study tiny run" in (run.run_dir / "log.txt").read_text()
    assert main(["collect", str(p)]) == 0
    import pandas as pd

    df = pd.read_csv(st.runs_dir / "results.csv")
    zs = df[df.stage == "zero-shot"].set_index("metric")["value"]
    assert zs["recall@1"] == pytest.approx(metrics["test"]["recall@1"])
    assert (df.stage == "linear-probe").any() and set(df.run_id) == {run.run_id}
    # nothing left to do: running again trains nothing
    assert main(["run", str(p), "--quiet"]) == 0


def _brute_recall1(x, labels):
    import numpy as np

    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(axis=1)
    return float(np.mean(np.asarray(labels)[nn] == np.asarray(labels)))


def test_controls_and_frozen_reference_in_a_study(tmp_path, fake):
    import numpy as np
    import pandas as pd

    sp = _write_splits(tmp_path / "splits" / "g.json", n=3)
    doc = json.loads(sp.read_text())
    doc["controls"] = [
        {
            "id": 4 + d,
            "control_of": 3,
            "draw": d,
            "fid": 0.05 + d / 100,
            "step": -1,
            "phase": "control",
            "standard": False,
            "train": [f"c{j}" for j in range(6)],
            "test": [f"t{j}" for j in range(d, d + 3)],
            "val": ["c0"],
            "episodes": {},
        }
        for d in range(2)
    ]
    sp.write_text(json.dumps(doc))
    rng = np.random.default_rng(0)
    names = [f"c{j}" for j in range(6)] + [f"t{j}" for j in range(5)]
    labels = np.repeat(names, 4)
    feats = rng.normal(size=(len(names), 8))[np.repeat(np.arange(len(names)), 4)] + rng.normal(size=(len(labels), 8))
    np.savez(tmp_path / "feats.npz", features=feats.astype(np.float32), labels=labels)
    body = (
        FAKE_STUDY.replace("[glyphs]", "[{name: glyphs, splits: splits/g.json}]")
        .replace("[margin, multisimilarity, proxyanchor]", "[margin]")
        .replace("seeds: [0]", "seeds: [0, 1]")
    )
    p = _study(tmp_path, body + "controls: all\nfrozen: [{name: syn, features_file: feats.npz}]\n")
    st = S.load_study(p)
    assert sorted({r.split for r in st.runs}) == [1, 2, 3, 4, 5] and len(st.runs) == 10
    assert [r.fid for r in st.runs if r.split == 5] == [pytest.approx(0.06)] * 2
    st1 = S.load_study(_study(tmp_path, body + "controls: 1\n", "one.yaml"))
    assert sorted({r.split for r in st1.runs}) == [1, 2, 3, 4]
    # only the controls of the chosen splits
    st2 = S.load_study(_study(tmp_path, body + "splits: [1, 2]\ncontrols: all\n", "two.yaml"))
    assert sorted({r.split for r in st2.runs}) == [1, 2]
    st3 = S.load_study(_study(tmp_path, body + "controls: {draws: 1, splits: [3]}\n", "three.yaml"))
    assert sorted({r.split for r in st3.runs}) == [1, 2, 3, 4]
    with pytest.raises(BadInputError, match="does not run"):
        S.load_study(_study(tmp_path, body + "splits: [1]\ncontrols: {splits: [3]}\n", "four.yaml"))
    for bad, needle in (("controls: maybe\n", "controls must be"), ("frozen: [3]\n", "frozen must be")):
        with pytest.raises(BadInputError, match=needle):
            S.load_study(_study(tmp_path, body + bad, "bad.yaml"))
    nofile = _study(
        tmp_path,
        FAKE_STUDY.replace("[glyphs]", "[{name: glyphs, splits: splits/h.json}]") + "controls: all\n",
        "nofile.yaml",
    )
    _write_splits(tmp_path / "splits" / "h.json", n=2)
    with pytest.raises(BadInputError, match="has none"):
        S.load_study(nofile)

    assert S.run_study(st, run_fn=fake.run, progress=False)["done"] == 10
    S.collect(st)
    df = pd.read_csv(st.runs_dir / "results.csv")
    assert list(df.columns) == list(S.RESULT_COLUMNS) + ["control_of"]
    assert set(df.loc[df["split"] >= 4, "control_of"]) == {3} and df.loc[df["split"] <= 3, "control_of"].isna().all()
    fr = df[df["loss"] == "frozen:syn"]
    assert set(fr["split"]) == {1, 2, 3, 4, 5} and set(fr["seed"]) == {0, 1} and set(fr["run_id"]) == {"frozen:syn"}
    assert {"recall@1", "map@r", "nmi", "r_precision"} <= set(fr["metric"])
    for split, test in ((1, [f"t{j}" for j in range(4)]), (5, ["t1", "t2", "t3"])):
        keep = np.isin(labels, test)
        got = fr[(fr["split"] == split) & (fr["metric"] == "recall@1")]["value"]
        assert np.allclose(got, _brute_recall1(feats[keep], labels[keep]), atol=1e-6)
    text = (st.runs_dir / "results.csv").read_text()
    S.collect(st)
    assert (st.runs_dir / "results.csv").read_text() == text  # byte-identical
    from oodml import analysis

    res = analysis.load_results(st.runs_dir / "results.csv")
    assert set(analysis.zero_shot(res, "glyphs")["split"]) == {1, 2, 3}  # controls are not points of the curve
    ctl = analysis.control_table(res, "glyphs", "recall@1", percent=False)
    assert set(ctl["loss"]) == {"margin", "frozen:syn"} and set(ctl["control_of"]) == {3}
    row = ctl[ctl["loss"] == "margin"].iloc[0]
    assert row["n_draws"] == 2 and row["n_values"] == 4 and row["fid"] == pytest.approx(0.055)
    assert row["mean"] == pytest.approx(0.55)  # the fake trainer: 0.5 + seed / 10, seeds 0 and 1
