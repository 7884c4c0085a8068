"""The command python -m oodml.adapt (oodml.adapt.cli) and its errors."""

from __future__ import annotations

import json
import shutil

import pytest

from oodml import adapt as A
from oodml.errors import BadInputError

N_IMAGES = 12  # per class


def _fresh_copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    (dst / "adaptation.json").unlink(missing_ok=True)
    return dst


def test_cli_prints_tables_of_the_modes_it_ran(trained, tmp_path, capsys):
    run_dir = _fresh_copy(trained, tmp_path)
    code = A.main([str(run_dir), "--mode", "probe", "--shots", "2", "--episodes", "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "top1_backbone_2shot" in out and "few-shot" not in out
    code = A.main(
        [
            str(run_dir),
            "--mode",
            "fewshot",
            "--shots",
            "2",
            "--episodes",
            "1",
            "--iterations",
            "2=3",
            "--metrics",
            "recall",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "recall@1_gain" in out and "linear-probe" not in out
    record = json.loads((run_dir / "adaptation.json").read_text())
    assert set(record) >= {"fewshot", "probe"} and record["fewshot"]["options"]["iterations"] == {"2": 3}


def test_clear_errors(trained, tmp_path, capsys):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert A.main([str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "best.pt" in err and len(err.strip().splitlines()) == 1
    run_dir = _fresh_copy(trained, tmp_path)
    assert A.main([str(run_dir), "--shots", str(N_IMAGES + 3), "--quiet"]) == 2
    assert f"{N_IMAGES + 3} shots need at least" in capsys.readouterr().err
    assert A.main([str(run_dir), "--loss-param", "bogus=1", "--shots", "2", "--episodes", "1", "--quiet"]) == 2
    assert "unknown option 'bogus'" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="unknown adaptation option"):
        A.run_adaptation(run_dir, mode="probe", shots=[2], nonsense=1)
    with pytest.raises(BadInputError, match="mode must be"):
        A.run_adaptation(run_dir, mode="zero-shot")
    assert not (run_dir / "adaptation.json").exists()  # nothing half-written
