"""Run-folder checkpoints and the resume rule (oodml.training.checkpoints)."""

from __future__ import annotations

import pytest
import torch

from oodml.errors import BadInputError
from oodml.train import TrainConfig, load_run
from oodml.training.checkpoints import RUN_FILES, clean_run_dir, load_checkpoint, same_config, save


def test_save_load_and_clear_errors(tmp_path):
    save({"model": {"w": torch.ones(2)}, "epoch": 1}, tmp_path / "best.pt")
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.ones(2))
    with pytest.raises(BadInputError, match="does not exist; is this a training run folder"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="is not a readable oodml checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(BadInputError, match="is not a training run folder"):
        load_run(tmp_path)


def test_clean_run_dir_removes_only_run_files(tmp_path):
    for name in RUN_FILES:
        (tmp_path / name).write_text("x")
    (tmp_path / "tb").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    clean_run_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_resume_ignores_only_result_free_keys():
    now = TrainConfig().to_dict()
    assert same_config({**now, "device": "cuda", "workers": 4, "eval_batch_size": 8}, now) is None
    assert same_config({**now, "lr": 1.0}, now) == "lr"
