"""Tests of oodml.estimate (study plan --estimate)."""

from __future__ import annotations

import textwrap

import pytest

from oodml import study as S
from oodml.errors import BadInputError
from oodml.estimate import estimate_study, format_estimate, steps_per_epoch

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


MEASURED = """
name: est-measured
datasets: [glyphs]
losses: [margin]
seeds: [0]
train: {backbone: oodml_convnet, pretrained: false, image_size: 32, resize_size: 36, embed_dim: 16,
        batch_size: 16, m_per_class: 4, epochs: 10, workers: 0, threads: 1, device: cpu}
"""


def test_estimate_measures_steps_on_this_machine(tmp_path):
    d = tmp_path / "studies"
    d.mkdir()
    p = d / "m.yaml"
    p.write_text(textwrap.dedent(MEASURED))
    st = S.load_study(p)
    est = estimate_study(st, steps=2)
    # steps per epoch from the standard split: fit images (train classes minus validation) // batch
    per_epoch = steps_per_epoch(st.runs[0].config)
    assert per_epoch > 1 and est["steps"] == 10 * per_epoch
    assert est["device"] == "cpu" and est["unit"] == "CPU-hours"
    assert est["seconds_per_step"] > 0 and est["source"].startswith("measured over 2 steps of run ")
    assert est["hours"] == pytest.approx(est["steps"] * est["seconds_per_step"] / 3600)
    with pytest.raises(BadInputError, match="estimate-steps must be at least 1"):
        estimate_study(st, steps=0)
