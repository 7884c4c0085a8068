"""oodml.executors.slurm through submitit's local cluster: parameters, submission, the task's
checkpoint (claim released, resubmitted with its RunSpec). A real cluster: tests/test_slurm_cluster.py."""

from __future__ import annotations

import pytest

from oodml import executors
from oodml import study as S
from oodml.errors import OodmlError
from oodml.testing.studies import FAKE_STUDY, fake_trainer
from oodml.testing.studies import marks as _marks
from oodml.testing.studies import study_file as _study


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return fake_trainer(tmp_path, monkeypatch)


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
