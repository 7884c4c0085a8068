"""oodml.executors.local: CPU worker processes (executor.jobs), their end with a killed runner,
and the parent watchdog of oodml.executors.workers."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time

import pytest

from oodml import executors
from oodml import study as S
from oodml.errors import OodmlError
from oodml.testing.studies import FAKE_STUDY, fake_trainer
from oodml.testing.studies import marks as _marks
from oodml.testing.studies import runner as _runner
from oodml.testing.studies import study_file as _study


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return fake_trainer(tmp_path, monkeypatch)


def test_local_executor_with_parallel_cpu_jobs(tmp_path, fake):
    """executor.jobs > 1: CPU worker processes (GPUs hidden) share the runs, each trained once."""
    p = _study(tmp_path, FAKE_STUDY + "executor: {kind: local, jobs: 2}\n")
    st = S.load_study(p)
    assert executors.parallel_capacity(st) == 2
    counts = S.run_study(st, run_fn_spec="fakerun:run", progress=False)
    assert counts["done"] == 3
    assert {f.read_text() for f in (tmp_path / "marks").iterdir()} == {""}  # CUDA_VISIBLE_DEVICES=""
    assert _marks(tmp_path) == {r.run_id: 1 for r in st.runs}
    assert sorted(f.name for f in (st.runs_dir / ".workers").glob("*.log")) == ["cpu-0.log", "cpu-1.log"]
    with pytest.raises(OodmlError, match="jobs must be a positive integer"):
        S.load_study(_study(tmp_path, FAKE_STUDY + "executor: {kind: local, jobs: 0}\n"))


def _claim_pids(st) -> dict[str, int]:
    out = {}
    for r in st.runs:
        info = S._read_claim(r.run_dir / S.CLAIM)
        if info and "pid" in info:
            out[r.run_id] = int(info["pid"])
    return out


@pytest.mark.slow
def test_sigkill_of_parallel_runner_leaves_no_worker_and_restart_completes(tmp_path, fake, monkeypatch):
    """kill -9 of `study run` with jobs: 2 ends its workers (parent-death signal); a restart takes
    over, re-trains only the two interrupted runs, and every row is collected once."""
    p = _study(tmp_path, FAKE_STUDY.replace("seeds: [0]", "seeds: [0, 1]") + "executor: {kind: local, jobs: 2}\n")
    st = S.load_study(p)
    monkeypatch.setenv("FAKE_SLEEP", "60")
    proc = _runner(p)
    workers: dict[str, int] = {}
    try:
        deadline = time.time() + 90
        # both workers hold a claim and their runs have started training (a mark each)
        while time.time() < deadline and not (len(workers) == 2 and set(workers) <= set(_marks(tmp_path))):
            workers = _claim_pids(st)
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        assert len(workers) == 2 and set(workers) <= set(_marks(tmp_path)), "the two workers did not start their runs"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.pid not in workers.values()  # they are worker processes, not the runner
    deadline = time.time() + 30
    while time.time() < deadline and any(S.pid_alive(pid) for pid in workers.values()):
        time.sleep(0.1)
    assert not [pid for pid in workers.values() if S.pid_alive(pid)], "a worker outlived its runner"
    assert not list(st.runs_dir.glob("*/claim.json"))  # they left like Ctrl-C, releasing their claims
    assert all(S.run_state(r) == "pending" for r in st.runs)
    monkeypatch.setenv("FAKE_SLEEP", "0")
    proc = _runner(p)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert all(S.run_state(r) == "done" for r in st.runs)
    marks = _marks(tmp_path)
    assert {rid: marks[rid] for rid in workers} == {rid: 2 for rid in workers}
    assert {rid: n for rid, n in marks.items() if rid not in workers} == {
        r.run_id: 1 for r in st.runs if r.run_id not in workers
    }
    S.collect(st)
    rows = list(csv.DictReader((st.runs_dir / "results.csv").open()))
    assert sorted(r["run_id"] for r in rows) == sorted([r.run_id for r in st.runs] * 2)


ORPHAN = '''
import os, subprocess, sys, time
pidfile = sys.argv[1]
child = subprocess.Popen([sys.executable, "-c", """
import os, sys, time
from oodml.executors import start_parent_watchdog
assert start_parent_watchdog(every=0.1) is not None
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(60)
""", pidfile], env=dict(os.environ, OODML_PARENT_PID=str(os.getpid())))
while not os.path.exists(pidfile):
    time.sleep(0.05)
os._exit(0)
'''


def test_parent_watchdog_ends_an_orphaned_worker(tmp_path):
    """The portable watchdog (no prctl): a child whose parent dies gets SIGTERM within seconds."""
    pidfile = tmp_path / "child.pid"
    subprocess.run([sys.executable, "-c", ORPHAN, str(pidfile)], check=True, timeout=60)
    pid = int(pidfile.read_text())
    deadline = time.time() + 20
    while time.time() < deadline and S.pid_alive(pid):
        time.sleep(0.1)
    assert not S.pid_alive(pid)
    # a worker command started by hand (its named runner is alive but not its parent) watches nothing
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert executors.start_parent_watchdog(parent_pid=other.pid) is None
    finally:
        other.kill()
        other.wait()
