"""Tests of :mod:`oodml.shift.command` (``python -m oodml.shift``) on a features file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oodml import shift
from oodml.shift import cli


def synthetic_npz(path, C=40, per=6, d=16, seed=0):
    """A structured synthetic features file (the same helper as in the split-search tests; tests
    cannot import each other under ``--import-mode=importlib``)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d)) * 3
    g = (np.arange(C) * 5) // C
    flip = rng.random(C) < 0.5
    g[flip] = rng.integers(0, 5, flip.sum())
    means = centres[g] + rng.normal(size=(C, d))
    lab = np.repeat(np.arange(C), per)
    x = (means[lab] + 0.5 * rng.normal(size=(lab.size, d))).astype(np.float32)
    np.savez(path, features=x, labels=np.array([f"k{c:02d}" for c in lab]))
    return path


@pytest.mark.slow
def test_cli_on_a_features_file(tmp_path, capsys):
    from oodml.make_splits import cli as make_cli

    npz = synthetic_npz(tmp_path / "feats.npz", C=24, per=5, d=8)
    sp = tmp_path / "syn.json"
    assert (
        make_cli(
            [
                "--features-file",
                str(npz),
                "--dataset",
                "syn",
                "--out",
                str(sp),
                "--figure",
                "none",
                "--num-splits",
                "4",
                "--episodes",
                "1",
                "--min-classes",
                "4",
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    stem = tmp_path / "out" / "shift"
    args = [
        str(sp),
        "--features-file",
        str(npz),
        "--out",
        str(stem),
        "--attribution",
        "--kid-subset-size",
        "10",
        "--kid-subsets",
        "4",
        "-q",
    ]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "Kendall" in out and "feats/kid" in out
    table = pd.read_csv(f"{stem}.csv")
    assert set(table["measure"]) == set(shift.MEASURES) and len(table) == 4 * len(shift.MEASURES)
    assert table.loc[table["measure"] == "kid", "se"].notna().all()
    # the features file's class-level FID is the split file's own FID
    fc = table[table["measure"] == "fid_class"].sort_values("split")
    assert np.allclose(fc["value"], fc["fid"], rtol=1e-9)
    for name in ("shift.png", "shift.pdf", "shift_kendall.csv", "shift_attribution.csv", "shift_attribution.png"):
        assert (tmp_path / "out" / name).exists()
    first = [(tmp_path / "out" / n).read_bytes() for n in ("shift.csv", "shift.png")]
    assert cli(args) == 0
    assert [(tmp_path / "out" / n).read_bytes() for n in ("shift.csv", "shift.png")] == first
    res = pd.DataFrame(
        [
            {
                "study": "t",
                "dataset": "syn",
                "split": s,
                "fid": float(s),
                "loss": "margin",
                "seed": 0,
                "stage": "zero-shot",
                "metric": "recall@1",
                "value": 1.0 - s / 10,
                "ci95": np.nan,
                "run_id": f"r{s}",
            }
            for s in range(1, 5)
        ]
    )
    res.to_csv(tmp_path / "res.csv", index=False)
    assert (
        cli(
            args[:3]
            + ["--measures", "fid_class", "mean_dist", "--results", str(tmp_path / "res.csv"), "--out", str(stem), "-q"]
        )
        == 0
    )
    assert "Spearman" in capsys.readouterr().out
    pred = pd.read_csv(f"{stem}_predicts_recall1.csv")
    assert len(pred) == 2 and set(pred["measure"]) == {"fid_class", "mean_dist"}
    assert pred.loc[pred["measure"] == "fid_class", "spearman"].item() == -1.0  # recall falls in the FID order
    assert cli([str(sp), "--features-file", str(tmp_path / "missing.npz"), "-q"]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_shift_command_and_the_fid_import_without_torch():
    """``shift --features-file`` and the split search's FID (``oodml.fid``) must not pay for torch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, oodml.shift.command, oodml.fid, oodml.shift\n"
        "oodml.shift.kid, oodml.shift.FIDComputer\n"
        "bad = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
