"""Helpers for tests of studies and executors: a fake trainer (``fakerun:run``) that marks each
invocation, small split files and study files, and a study runner subprocess. Not used by oodml
itself; shared by ``tests/test_runs.py``, ``tests/study/`` and ``tests/executors/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = [
    "FAKE",
    "FAKE_STUDY",
    "TINY_TRAIN",
    "all_json_valid",
    "fake_trainer",
    "marks",
    "runner",
    "study_file",
    "write_splits",
]

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


def write_splits(path: Path, n: int = 3) -> Path:
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


def study_file(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
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


def fake_trainer(tmp_path: Path, monkeypatch: Any) -> Any:
    """Set up the fake trainer ``fakerun:run`` (importable here and in subprocesses); returns the module."""
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


def marks(tmp_path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    d = tmp_path / "marks"
    for f in d.iterdir() if d.is_dir() else []:
        rid = f.name.split(".")[0]
        out[rid] = out.get(rid, 0) + 1
    return out


def runner(study_path: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "oodml.study", "run", str(study_path), "--run-fn", "fakerun:run", "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def all_json_valid(root: Path) -> None:
    for p in root.rglob("*.json"):
        json.loads(p.read_text())  # no corrupt file
