"""oodml.executors.gpus and .workers: slots, queues, devices, and the gpus executor's worker processes."""

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
