"""Tests of oodml.estimate (study plan --estimate)."""

from __future__ import annotations

import textwrap

import pytest

from oodml import study as S
from oodml.errors import BadInputError
from oodml.estimate import estimate_study, format_estimate

STUDY = """
name: est
datasets: [glyphs]
losses: [margin, multisimilarity, proxyanchor]
seeds: [0, 1]
train: {backbone: oodml_convnet, pretrained: false, image_size: 32, epochs: 200, iterations_per_epoch: 7}
"""


def _study(tmp_path):
    d = tmp_path / "studies"
    d.mkdir()
    p = d / "est.yaml"
    p.write_text(textwrap.dedent(STUDY))
    return S.load_study(p)


def test_estimate_with_a_recorded_step_time(tmp_path):
    st = _study(tmp_path)
    est = estimate_study(st, seconds_per_step=0.5)
    assert est["runs"] == 6 and est["steps"] == 6 * 200 * 7
    assert est["hours"] == pytest.approx(6 * 200 * 7 * 0.5 / 3600)
    assert est["unit"] == "GPU-hours"
    assert "1.2 GPU-hours" in format_estimate(est) and "8,400 training steps" in format_estimate(est)
    assert estimate_study(st, seconds_per_step=2.0, device_kind="cpu")["unit"] == "CPU-hours"
    with pytest.raises(BadInputError, match="seconds-per-step"):
        estimate_study(st, seconds_per_step=0.0)


def test_plan_estimate_cli(tmp_path, capsys):
    st = _study(tmp_path)
    assert S.main(["plan", str(st.path), "--estimate", "--seconds-per-step", "0.25", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "estimate for study est: 6 runs, 8,400 training steps" in out and "0.6 GPU-hours" in out
