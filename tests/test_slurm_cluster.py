"""Studies on a real, private single-node Slurm cluster (oodml.testing.slurm), through the CLI a
user types: job array submission, status from the scheduler, exactly-once results, requeue
(preemption) with resume from the checkpoint, time limits, scancel and --retry-failed.

The cluster (munged, slurmctld, slurmd on 127.0.0.1 with their own ports) is started once for
this module and stopped afterwards; Slurm and munge are installed with apt when missing and the
user is root, and the module is skipped with the reason otherwise.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oodml import study as S
from oodml.testing.slurm import SlurmCluster, SlurmUnavailable, ensure_slurm

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Short deterministic CPU runs on the embedded dataset (a few seconds of training each).
TRAIN = (
    "{backbone: oodml_convnet, pretrained: false, image_size: 32, resize_size: 36, embed_dim: 32, "
    "batch_size: 64, m_per_class: 4, epochs: EPOCHS, iterations_per_epoch: 3, lr: 1.0e-3, workers: 0, "
    "threads: 1, deterministic: true, tensorboard: false}"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        ensure_slurm()
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm cluster can be started here: {exc}")
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    c.start()
    try:
        yield c
    finally:
        pids = dict(c.pids)
        c.stop()
        for name, pid in pids.items():  # exactly the daemons it started, and they are gone
            assert not S.pid_alive(pid), f"{name} (pid {pid}) still runs"
        assert not c.job_processes(), "a job process of the cluster outlived it"


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    """The environment of a user on the cluster: SLURM_CONF, this worktree's oodml, a data cache."""
    e = cluster.env()
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["OODML_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    e["OODML_QUIET"] = "1"
    e.pop("SUBMITIT_LOG_LEVEL", None)
    return e


def _study(folder: Path, name: str, *, splits="[1, 9]", losses="[margin]", epochs=2, slurm="") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.yaml"
    p.write_text(
        textwrap.dedent(f"""\
        name: {name}
        datasets:
          - {{name: glyphs, splits: {REPO / "splits" / "glyphs.json"}}}
        splits: {splits}
        losses: {losses}
        seeds: [0]
        train: {TRAIN.replace("EPOCHS", str(epochs))}
        executor:
          kind: slurm
          slurm: {{time: 10, cpus_per_task: 1, array_parallelism: 2{slurm}}}
        runs_dir: {folder / "runs" / name}
        """)
    )
    return p


def _cli(env, *args, timeout=300) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "oodml.study", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
    )
    return res


def _wait(cond, timeout: float, what: str, poll: float = 1.0):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


#: Slurm holds a requeued task for this long (its BeginTime is set this far ahead).
REQUEUE_HOLD_S = 120
#: How long a requeued task stays held before a test releases it: released within the same second,
#: a task was started while slurmd was still revoking its last allocation's credential ("Killing
#: non-startable batch job: Job credential revoked"), which ends the job for good.
RELEASE_AFTER_S = 5


def _release_requeued(cluster) -> None:
    """Slurm holds a requeued task for 120 s (BeginTime); release it after a few seconds instead,
    to keep tests short."""
    out = cluster.run("squeue", "-h", "-r", "-t", "PENDING", "-o", "%i %r %S", check=False).stdout
    for line in out.splitlines():
        jid, reason, begin = (line.split() + ["", ""])[:3]
        if reason != "BeginTime":
            continue
        try:
            held = REQUEUE_HOLD_S - (datetime.datetime.fromisoformat(begin).timestamp() - time.time())
        except ValueError:
            held = RELEASE_AFTER_S  # no readable begin time: release as before
        if held >= RELEASE_AFTER_S:
            cluster.run("scontrol", "update", f"JobId={jid}", "StartTime=now", check=False)


def _tasks(cluster) -> list[str]:
    return cluster.run("squeue", "-h", "-r", "-o", "%i").stdout.split()


def _job_of(st) -> str:
    """The Slurm job id of the study's (single-run) array, from submitit's job folders."""
    return sorted(d.name for d in (st.runs_dir / ".submitit").iterdir() if d.is_dir())[-1]


def _rows(csv_path: Path) -> list[dict]:
    with csv_path.open() as fh:
        return list(csv.DictReader(fh))


def test_array_status_cancel_retry_and_collect(cluster, env, tmp_path):
    """run submits one array; a second run submits nothing; status reads the scheduler; a cancelled
    task shows as failed and --retry-failed resubmits only it; collect has every row once."""
    p = _study(tmp_path, "arr", splits="[1, 5, 9]", epochs=1)
    st = S.load_study(p)
    ids = [r.run_id for r in S.select_runs(st)]
    res = _cli(env, "run", str(p), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "submitted 3 runs" in res.stderr
    tasks = _tasks(cluster)
    assert len(tasks) == 3 and len({t.split("_")[0] for t in tasks}) == 1, tasks  # one job array
    # the last task waits for a CPU (array_parallelism 2); hold it there so that it is still pending when it is
    # cancelled below, however fast the first two runs finish on this machine
    last = json.loads((st.get(ids[-1]).run_dir / S.QUEUED).read_text())["job_id"]
    cluster.run("scontrol", "hold", last, check=False)
    res2 = _cli(env, "run", str(p), "--quiet")  # while queued: nothing submitted twice
    assert res2.returncode == 0, res2.stderr
    # no new task: what is still queued or running is a subset of the first array (finished tasks leave squeue)
    assert "submitted" not in res2.stderr and set(_tasks(cluster)) <= set(tasks) and last in _tasks(cluster)
    cluster.run("scancel", last)
    status = _cli(env, "status", str(p))
    assert status.returncode == 0, status.stderr
    assert "sacct" not in status.stdout + status.stderr  # no accounting noise on the terminal
    assert "squeue" in status.stdout
    _wait(lambda: all(S.run_state(st.get(i)) == "done" for i in ids[:2]), 240, "the first two runs")
    status = _cli(env, "status", str(p))
    assert "2/3 runs done" in status.stdout and "1 failed" in status.stdout, status.stdout
    assert S.run_state(st.get(ids[-1])) == "failed"
    assert "CANCELLED" in json.loads((st.get(ids[-1]).run_dir / S.FAILED).read_text())["error"]
    res3 = _cli(env, "run", str(p), "--quiet")  # a failed run is not resubmitted without the flag
    assert "submitted" not in res3.stderr
    res4 = _cli(env, "run", str(p), "--retry-failed", "--wait", "--quiet")
    assert res4.returncode == 0, res4.stderr
    assert "submitted 1 runs" in res4.stderr
    assert res4.stderr.count("sacct") == 0 and res4.stderr.count("squeue") == 1
    assert all(S.run_state(r) == "done" for r in st.runs)
    res5 = _cli(env, "collect", str(p))
    assert res5.returncode == 0, res5.stderr
    rows = _rows(st.runs_dir / "results.csv")
    per_run = {rid: [r["metric"] for r in rows if r["run_id"] == rid] for rid in ids}
    assert all(per_run[rid] and len(per_run[rid]) == len(set(per_run[rid])) for rid in ids)
    assert len({r["run_id"] for r in rows}) == 3


def test_requeued_task_resumes_from_checkpoint_with_the_same_result(cluster, env, tmp_path):
    """scontrol requeue (what preemption does) mid-run: the task restarts, resumes from
    checkpoint.pt and ends with exactly the metrics of an uninterrupted run of the same config."""
    # Slurm's requeue sends SIGTERM, which submitit bypasses, and kills the task KillWait (5 s) later: the run must
    # still be training then, so it gets many short epochs (a few seconds of work left after the first checkpoint)
    epochs = 16
    p = _study(tmp_path, "rq", splits="[1]", epochs=epochs)
    ref = tmp_path / "ref_runs"
    st = S.load_study(p)
    run = st.runs[0]
    assert _cli(env, "run", str(p), "--quiet").returncode == 0
    res = _cli(env, "run", str(p), "--runs-dir", str(ref), "--quiet")  # the uninterrupted twin
    assert res.returncode == 0, res.stderr
    job = json.loads((run.run_dir / S.QUEUED).read_text())["job_id"]
    _wait(
        lambda: (run.run_dir / "checkpoint.pt").exists() and not (run.run_dir / "metrics.json").exists(),
        240,
        "the first checkpoint",
        poll=0.2,
    )
    cluster.run("scontrol", "requeue", job)
    _wait(lambda: (_release_requeued(cluster), S.run_state(run) == "done")[1], 300, "the requeued run")
    _wait(lambda: (ref / run.run_id / "metrics.json").exists(), 240, "the uninterrupted run")
    ref_metrics = json.loads((ref / run.run_id / "metrics.json").read_text())
    got = json.loads((run.run_dir / "metrics.json").read_text())
    assert got["test"] == ref_metrics["test"]
    log = (run.run_dir / "log.txt").read_text()
    assert log.count(f"=== oodml.study rq run {run.run_id}") == 2  # two attempts
    logged = [int(r["epoch"]) for r in _rows(run.run_dir / "log.csv")]
    assert logged == list(range(1, epochs + 1))  # resumed, not restarted: every epoch logged once


# A resumable stand-in for the trainer that starts in a fraction of a second (the real one needs
# longer than the first warning signal of a one-minute limit on a loaded 2-core machine): one
# "epoch" a second, its progress checkpointed after each, resumed from the checkpoint.
SLOWRUN = """
import json, os, time
from pathlib import Path
from oodml.io import write_json

def run(config, run_dir):
    run_dir = Path(run_dir)
    ckpt = run_dir / "fake_checkpoint.json"
    done = json.loads(ckpt.read_text())["epoch"] if ckpt.exists() else 0
    with open(run_dir / "epochs.txt", "a") as fh:
        fh.write(f"start {done} pid {os.getpid()}\\n")
    for epoch in range(done + 1, 71):
        time.sleep(1.0)
        write_json(ckpt, {"epoch": epoch})
    write_json(run_dir / "metrics.json", {"run": config, "test": {"recall@1": 0.5}, "seconds": 70.0})
"""


def test_task_at_its_time_limit_is_checkpointed_requeued_and_finishes(cluster, env, tmp_path):
    """A one-minute time limit (the least Slurm has) on a 70-second run (more than one allocation
    can hold, whenever in the minute Slurm sends the warning): submitit's warning signal comes
    first, the task checkpoints, requeues itself, resumes from its checkpoint and finishes."""
    (tmp_path / "slowrun.py").write_text(SLOWRUN)
    env = dict(env, PYTHONPATH=str(tmp_path) + os.pathsep + env["PYTHONPATH"])
    p = _study(tmp_path, "tl", splits="[1]", slurm=", signal_delay_s: 15, max_num_timeout: 10")
    p.write_text(p.read_text().replace("time: 10", "time: 1"))
    st = S.load_study(p)
    run = st.runs[0]
    res = _cli(env, "run", str(p), "--run-fn", "slowrun:run", "--quiet")
    assert res.returncode == 0, res.stderr
    _wait(lambda: (_release_requeued(cluster), S.run_state(run) == "done")[1], 360, "the time-limited run", poll=2)
    starts = (run.run_dir / "epochs.txt").read_text().splitlines()
    assert len(starts) >= 2 and starts[0].startswith("start 0 ")  # more than one allocation...
    assert all(not line.startswith("start 0 ") for line in starts[1:])  # ...each resuming, none from scratch
    job = _job_of(st)
    info = cluster.run("scontrol", "show", "job", job).stdout  # the controller still knows it (MinJobAge)
    restarts = int(re.search(r"Restarts=(\d+)", info).group(1))
    assert restarts == len(starts) - 1 >= 1  # requeued by submitit at each warning signal
    status = _cli(env, "status", str(p))
    assert "1/1 runs done" in status.stdout, status.stdout
