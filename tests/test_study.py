"""Tests of oodml.study / oodml.executors: validation, run ids, claims, crash safety, executors,
results table, and one real tiny study through oodml.train (and oodml.adapt)."""

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

from oodml import executors
from oodml import study as S
from oodml.errors import BadInputError, OodmlError

TINY_TRAIN = {
    "backbone": "resnet10t",
    "pretrained": False,
    "image_size": 32,
    "resize_size": 36,
    "embed_dim": 16,
    "batch_size": 32,
    "m_per_class": 4,
    "epochs": 1,
    "iterations_per_epoch": 2,
    "workers": 0,
    "tensorboard": False,
    "eval_batch_size": 512,
}

# A fake trainer: marks each invocation with a file, prints, sleeps, can fail, writes metrics.json.
FAKE = """
import os, time, uuid
from pathlib import Path
from oodml.io import write_json

def run(config, run_dir):
    run_dir = Path(run_dir)
    marks = Path(os.environ["FAKE_MARKS"])
    marks.mkdir(exist_ok=True)
    (marks / f"{run_dir.name}.{os.getpid()}.{uuid.uuid4().hex}").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
    print("fake training", run_dir.name, flush=True)
    end = time.time() + float(os.environ.get("FAKE_SLEEP", "0"))
    while time.time() < end:
        time.sleep(0.05)
    if config["loss"] == os.environ.get("FAKE_FAIL_LOSS"):
        raise ValueError("boom for " + config["loss"])
    write_json(run_dir / "metrics.json", {"run": config, "split": config["split"], "fid": None,
               "test": {"recall@1": 0.5 + config["seed"] / 10, "map@r": 0.25}, "seconds": 2.0})
"""


def _write_splits(path: Path, n: int = 3) -> Path:
    series = [
        {
            "id": i,
            "fid": 0.1 * i,
            "step": i,
            "phase": "easier",
            "standard": False,
            "train": [f"c{j}" for j in range(6)],
            "test": [f"t{j}" for j in range(4)],
            "val": ["c0"],
            "episodes": {},
        }
        for i in range(1, n + 1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": "oodml.splits/1", "series": series}))
    return path


def _study(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    d = tmp_path / "studies"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(textwrap.dedent(text))
    return p


FAKE_STUDY = """
name: fake
datasets: [glyphs]
losses: [margin, multisimilarity, proxyanchor]
seeds: [0]
train: {backbone: resnet10t, pretrained: false, epochs: 1}
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    (tmp_path / "fakerun.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("FAKE_MARKS", str(tmp_path / "marks"))
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    import importlib

    import fakerun

    importlib.reload(fakerun)
    return fakerun


def _marks(tmp_path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    d = tmp_path / "marks"
    for f in d.iterdir() if d.is_dir() else []:
        rid = f.name.split(".")[0]
        out[rid] = out.get(rid, 0) + 1
    return out


def _runner(study_path: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "oodml.study", "run", str(study_path), "--run-fn", "fakerun:run", "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def _all_json_valid(root: Path) -> None:
    for p in root.rglob("*.json"):
        json.loads(p.read_text())  # no corrupt file


# --------------------------------------------------------------------------------------------
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
# executors
# --------------------------------------------------------------------------------------------
def test_gpu_assignment_and_no_gpu_message(monkeypatch):
    assert executors.make_slots(["0", "1"], 2) == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    ids = [f"r{i}" for i in range(7)]
    own = executors.assign_runs(ids, executors.make_slots(["0", "1"], 2))
    assert own == [["r0", "r4"], ["r1", "r5"], ["r2", "r6"], ["r3"]]
    queues = executors.worker_queues(ids, ["a", "b", "c"])
    assert queues[1][:2] == ["r1", "r4"] and sorted(queues[1]) == sorted(ids)
    assert executors.choose_devices(1, ["3", "5"]) == ["3"]
    assert executors.choose_devices([5], ["3", "5"]) == ["5"]
    with pytest.raises(OodmlError, match="not among the visible GPUs"):
        executors.choose_devices([7], ["3", "5"])
    assert executors.worker_env("5", {})["CUDA_VISIBLE_DEVICES"] == "5"
    import torch

    if torch.cuda.device_count() == 0:
        with pytest.raises(OodmlError, match="needs at least one visible CUDA GPU"):
            executors.visible_gpus()


def test_gpus_executor_workers(tmp_path, fake):
    """Two worker processes on two (pretended) GPUs share the runs, each once, with the device set."""
    p = _study(tmp_path, FAKE_STUDY + "executor: {kind: gpus, runs_per_gpu: 1}\n")
    st = S.load_study(p)
    import torch

    if torch.cuda.device_count() == 0:
        with pytest.raises(OodmlError, match="needs at least one visible CUDA GPU"):
            S.run_study(st, progress=False, run_fn_spec="fakerun:run")
    counts = executors.run_gpus(st, S.select_runs(st), run_fn_spec="fakerun:run", progress=False, devices=["0", "1"])
    assert counts["done"] == 3
    assert {f.read_text() for f in (tmp_path / "marks").iterdir()} <= {"0", "1"}  # CUDA_VISIBLE_DEVICES per worker
    assert _marks(tmp_path) == {r.run_id: 1 for r in st.runs}


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
        while time.time() < deadline and len(workers) < 2:
            workers = _claim_pids(st)
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        assert len(workers) == 2, "the two workers did not start their runs"
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


def test_slurm_path_through_submitit_local(tmp_path, fake):
    p = _study(
        tmp_path,
        FAKE_STUDY.replace("[margin, multisimilarity, proxyanchor]", "[margin, proxyanchor]")
        + """
executor:
  kind: slurm
  slurm: {cluster: local, partition: gpu, time: "00:10:00", mem_gb: 4, cpus_per_task: 1, array_parallelism: 2}
""",
    )
    st = S.load_study(p)
    assert executors.slurm_parameters(st.executor["slurm"], "x") == {
        "name": "x",
        "timeout_min": 10,
        "slurm_partition": "gpu",
        "mem_gb": 4,
        "cpus_per_task": 1,
        "slurm_array_parallelism": 2,
    }
    counts = S.run_study(st, run_fn_spec="fakerun:run", progress=False, wait=True)
    assert counts["done"] == 2 and counts["submitted"] == 2
    assert all(S.run_state(r) == "done" for r in st.runs) and not list(st.runs_dir.glob("*/queued.json"))
    assert _marks(tmp_path) == {r.run_id: 1 for r in st.runs}
    # nothing pending: a second run submits nothing
    assert S.run_study(st, run_fn_spec="fakerun:run", progress=False)["done"] == 0


def test_slurm_task_checkpoint_releases_claim_and_resubmits(tmp_path, fake):
    import submitit

    st = S.load_study(_study(tmp_path, FAKE_STUDY))
    run = st.runs[0]
    task = executors.StudyTask(st.name, run_fn_spec="fakerun:run")  # the task carries its RunSpec
    claim = S.try_claim(run.run_dir)
    delayed = task.checkpoint(run)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is task and delayed.args == (run,)
    assert not (run.run_dir / S.CLAIM).exists()
    claim.release()
    assert delayed.result() == "done" and S.run_state(run) == "done"  # the resubmission runs the run
    import shutil

    if shutil.which("sbatch") is None:
        other = S.load_study(_study(tmp_path, FAKE_STUDY + "executor: slurm\n", "b.yaml"))
        with pytest.raises(OodmlError, match="needs Slurm's sbatch"):
            executors.run_slurm(other, other.runs, progress=False)


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
