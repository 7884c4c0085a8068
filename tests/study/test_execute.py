"""oodml.study.execute and .collect: failures recorded and retried, logs, the results table,
adaptation stages added later."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from oodml import study as S
from oodml.testing.studies import FAKE_STUDY, fake_trainer
from oodml.testing.studies import marks as _marks
from oodml.testing.studies import study_file as _study
from oodml.testing.studies import write_splits as _write_splits


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return fake_trainer(tmp_path, monkeypatch)


# failures, logs, results table
# --------------------------------------------------------------------------------------------
def _fake_adapt(run_dir, stage):
    from oodml.io import write_json

    stat = {"mean": 0.6, "ci95": 0.05}
    shots = {
        str(k): {"adapted": {"recall@1": stat}, "zero_shot": {"recall@1": stat}, "gain": {"recall@1": stat}}
        for k in stage["shots"]
    }
    write_json(Path(run_dir) / "adaptation.json", {"fewshot": {"shots": shots}})


def test_failure_recorded_retry_and_collect(tmp_path, fake, monkeypatch):
    _write_splits(tmp_path / "splits" / "g.json", n=2)
    p = _study(
        tmp_path,
        FAKE_STUDY.replace("[glyphs]", "[{name: glyphs, splits: splits/g.json}]")
        + "adapt: [{mode: fewshot, shots: [2, 5], episodes: 2}]\n",
    )
    st = S.load_study(p)
    monkeypatch.setenv("FAKE_FAIL_LOSS", "multisimilarity")
    counts = S.run_study(st, run_fn=fake.run, adapt_fn=_fake_adapt, progress=False)
    assert counts == {"done": 4, "failed": 2, "skipped": 0}
    failed = [r for r in st.runs if r.loss == "multisimilarity"]
    for r in failed:
        info = json.loads((r.run_dir / "failed.json").read_text())
        assert info["error"] == "ValueError: boom for multisimilarity" and info["phase"] == "train"
        assert "Traceback" in (r.run_dir / "error.txt").read_text()
        log = (r.run_dir / "log.txt").read_text()
        assert "fake training" in log and "failed during train: ValueError: boom" in log
        assert not (r.run_dir / S.CLAIM).exists()
    summary = S.status_summary(st)
    assert summary["counts"]["failed"] == 2 and summary["mean_seconds"] is not None
    assert "4/6 runs done" in S.format_status(summary)
    # without --retry-failed nothing happens; with it the failed runs run again
    monkeypatch.delenv("FAKE_FAIL_LOSS")
    assert S.run_study(st, run_fn=fake.run, adapt_fn=_fake_adapt, progress=False)["done"] == 0
    assert S.run_study(st, run_fn=fake.run, adapt_fn=_fake_adapt, progress=False, retry_failed=True)["done"] == 2
    assert all(S.run_state(r) == "done" for r in st.runs) and not any(st.runs_dir.glob("*/failed.json"))
    desc = json.loads((st.runs[0].run_dir / S.RUN_JSON).read_text())
    assert {k: desc[k] for k in ("dataset", "split", "loss", "seed")} == {
        "dataset": "glyphs",
        "split": 1,
        "loss": "margin",
        "seed": 0,
    }
    assert _marks(tmp_path) == {r.run_id: (2 if r.loss == "multisimilarity" else 1) for r in st.runs}

    res = S.collect(st)
    text = Path(res["csv"]).read_text()
    rows = list(csv.reader(text.splitlines()))
    assert tuple(rows[0]) == S.RESULT_COLUMNS
    # 6 runs x (2 zero-shot + 2 shots x 3 few-shot metrics)
    assert len(rows) == 1 + 6 * (2 + 6) and res["missing"] == []
    first = dict(zip(rows[0], rows[1]))
    assert first == {
        "study": "fake",
        "dataset": "glyphs",
        "split": "1",
        "fid": "0.1",
        "loss": "margin",
        "seed": "0",
        "selection": "val",
        "stage": "zero-shot",
        "metric": "recall@1",
        "value": "0.5",
        "ci95": "",
        "run_id": st.runs[0].run_id,
        "tuning": "default",
        "hparams": "{}",
    }
    stages = [r[S.RESULT_COLUMNS.index("stage")] for r in rows[1:9]]
    assert stages == ["zero-shot"] * 2 + ["few-shot-2"] * 3 + ["few-shot-5"] * 3
    assert [dict(zip(rows[0], r))["ci95"] for r in rows[3:4]] == ["0.05"]
    S.collect(st)
    assert Path(res["csv"]).read_text() == text  # byte-identical
    import pandas as pd

    df = pd.read_csv(st.runs_dir / "results.csv")
    assert list(df.columns) == list(S.RESULT_COLUMNS) and len(df) == 48
    assert df.groupby("run_id").size().eq(8).all()
    if res["parquet"]:
        assert len(pd.read_parquet(res["parquet"])) == 48


def test_adding_a_stage_reuses_training(tmp_path, fake):
    st = S.load_study(_study(tmp_path, FAKE_STUDY))
    assert S.run_study(st, run_fn=fake.run, progress=False)["done"] == 3
    st2 = S.load_study(_study(tmp_path, FAKE_STUDY + "adapt: [{mode: fewshot, shots: [2]}]\n", "b.yaml"))
    assert [r.run_id for r in st2.runs] == [r.run_id for r in st.runs]
    assert set(S.states(st2).values()) == {"pending"}
    assert S.run_study(st2, run_fn=fake.run, adapt_fn=_fake_adapt, progress=False)["done"] == 3
    assert set(_marks(tmp_path).values()) == {1}  # not trained again


# --------------------------------------------------------------------------------------------
