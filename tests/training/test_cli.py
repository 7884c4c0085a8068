"""The command line of training (oodml.training.cli, run as python -m oodml.train): flags over a
--config YAML over the defaults, and the objectives' listing."""

from __future__ import annotations

import pytest

import oodml
from oodml.train import build_parser, config_from_args, main


def test_cli_merges_yaml_and_flags_and_lists_losses(tmp_path, capsys):
    from oodml.losses import format_objectives_table

    assert main(["--list-losses"]) == 0
    assert capsys.readouterr().out.strip() == format_objectives_table().strip()
    yml = tmp_path / "c.yaml"
    yml.write_text("loss: margin\nepochs: 4\nlr: 1e-3\nloss_params: {margin: 0.3, beta_lr: 1e-3}\n")
    args = build_parser().parse_args(
        [
            "--config",
            str(yml),
            "--epochs",
            "7",
            "--loss-param",
            "margin=0.1",
            "--no-pretrained",
            "--set",
            "crop_scale_min=0.2",
            "--scheduler",
            "step",
            "--scheduler-param",
            "step_size=2",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.lr, cfg.pretrained, cfg.crop_scale_min) == (7, 1e-3, False, 0.2)
    assert cfg.loss_params == {"margin": 0.1, "beta_lr": 1e-3}
    assert (cfg.scheduler, cfg.scheduler_params) == ("step", {"step_size": 2})


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0 and f"oodml {oodml.__version__}" in capsys.readouterr().out
