"""oodml.runs: claims (exclusive, stale), crash safety and exactly-once execution with real
subprocess runners (SIGKILL and restart, concurrent runners)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from oodml import study as S
from oodml.testing.studies import FAKE_STUDY, fake_trainer
from oodml.testing.studies import all_json_valid as _all_json_valid
from oodml.testing.studies import marks as _marks
from oodml.testing.studies import runner as _runner
from oodml.testing.studies import study_file as _study


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return fake_trainer(tmp_path, monkeypatch)


# claims
# --------------------------------------------------------------------------------------------
def test_claims_exclusive_and_stale(tmp_path):
    d = tmp_path / "r"
    c = S.try_claim(d, heartbeat=0.05)
    assert c is not None and S.try_claim(d) is None
    c.release()
    assert not (d / S.CLAIM).exists()
    # a dead process on this host: reclaimed at once
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (d / S.CLAIM).write_text(json.dumps({"pid": p.pid, "host": S._HOST, "token": "x"}))
    c = S.try_claim(d)
    assert c is not None and c.held()
    c.release()
    # another host: stale only when the heartbeat is old
    info = {"pid": 1, "host": "elsewhere", "token": "y"}
    assert not S.claim_is_stale(info, time.time() - 10, stale_after=60)
    assert S.claim_is_stale(info, time.time() - 120, stale_after=60)
    (d / S.CLAIM).write_text(json.dumps(info))
    assert S.try_claim(d, stale_after=60) is None
    old = time.time() - 3600
    os.utime(d / S.CLAIM, (old, old))
    c = S.try_claim(d, stale_after=60, heartbeat=0.05)
    assert c is not None
    # heartbeat keeps our own claim fresh
    os.utime(d / S.CLAIM, (old, old))
    time.sleep(0.3)
    assert time.time() - (d / S.CLAIM).stat().st_mtime < 5
    c.release()


# --------------------------------------------------------------------------------------------


# crash safety and concurrency (real subprocess runners)
# --------------------------------------------------------------------------------------------
def test_sigkill_and_restart_exactly_once(tmp_path, fake, monkeypatch):
    p = _study(tmp_path, FAKE_STUDY)
    st = S.load_study(p)
    order = S.select_runs(st)
    monkeypatch.setenv("FAKE_SLEEP", "3.0")  # long enough to be killed inside the second run
    proc = _runner(p)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if (order[0].run_dir / "metrics.json").exists() and _marks(tmp_path).get(order[1].run_id):
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the runner did not reach the second run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert S.run_state(order[0]) == "done" and S.run_state(order[1]) == "pending"  # dead claim
    assert S.run_state(order[2]) == "pending"
    monkeypatch.setenv("FAKE_SLEEP", "0")
    proc = _runner(p)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert all(S.run_state(r) == "done" for r in st.runs)
    marks = _marks(tmp_path)
    assert marks[order[0].run_id] == 1 and marks[order[1].run_id] == 2 and marks[order[2].run_id] == 1
    _all_json_valid(st.runs_dir)
    assert not list(st.runs_dir.glob("*/claim.json"))
    S.collect(st)
    rows = list(csv.DictReader((st.runs_dir / "results.csv").open()))
    assert sorted(r["run_id"] for r in rows) == sorted([r.run_id for r in st.runs] * 2)


def test_two_concurrent_runners_never_train_a_run_twice(tmp_path, fake, monkeypatch):
    p = _study(tmp_path, FAKE_STUDY.replace("seeds: [0]", "seeds: [0, 1]"))
    monkeypatch.setenv("FAKE_SLEEP", "1.0")  # runs overlap even if one runner starts seconds later
    procs = [_runner(p), _runner(p)]
    outs = [pr.communicate(timeout=120)[0].decode() for pr in procs]
    assert [pr.returncode for pr in procs] == [0, 0], outs
    st = S.load_study(p)
    assert all(S.run_state(r) == "done" for r in st.runs)
    assert _marks(tmp_path) == {r.run_id: 1 for r in st.runs}


# --------------------------------------------------------------------------------------------
