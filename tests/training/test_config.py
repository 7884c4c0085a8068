"""The training config (oodml.training.config): clear errors, the type hints as schema, no torch,
and the old import paths of oodml.train."""

from __future__ import annotations

import subprocess
import sys

import pytest

from oodml.errors import BadInputError
from oodml.train import TrainConfig, main


def test_config_errors_are_clear(tmp_path, capsys):
    with pytest.raises(BadInputError, match="unknown key 'lrr'"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(BadInputError, match="lr must be a number"):
        TrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(BadInputError, match="multiple of m_per_class"):
        TrainConfig.from_dict({"batch_size": 15, "m_per_class": 2})
    with pytest.raises(BadInputError, match="unknown objective"):
        TrainConfig.from_dict({"loss": "nope"})
    assert TrainConfig.from_dict({"lr": "5e-4"}).lr == 5e-4  # YAML 1.1 leaves 5e-4 as text
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nbatchsize: 8\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "batchsize" in err and str(bad) in err


def test_special_keys_coerce_as_before():
    cfg = TrainConfig.from_dict(
        {
            "loss": " MultiSimilarity ",
            "optimizer": "AdamW",
            "scheduler": "none",
            "pooling": "MAX",
            "workers": "3",
            "amp": "half",
            "ks": (1, 2),
            "loss_params": {"margin": "1e-3", "name": "x"},
        }
    )
    assert (cfg.loss, cfg.optimizer, cfg.scheduler, cfg.pooling) == ("multisimilarity", "adamw", None, "max")
    assert (cfg.workers, cfg.amp, cfg.ks, cfg.loss_params) == (3, "fp16", [1, 2], {"margin": 1e-3, "name": "x"})
    assert TrainConfig.from_dict({"loss": "PML: ArcFaceLoss"}).loss == "pml:ArcFaceLoss"  # the class keeps its case
    assert TrainConfig.from_dict({"workers": None, "amp": None}).to_dict()["workers"] == "auto"
    with pytest.raises(BadInputError, match="ks must be a list of positive integers or a preset name"):
        TrainConfig.from_dict({"ks": [0]})
    with pytest.raises(BadInputError, match="workers must be 'auto' or a number >= 0"):
        TrainConfig.from_dict({"workers": -1})
    with pytest.raises(BadInputError, match="protocol must be one of default, oodml"):
        TrainConfig.from_dict({"protocol": "OODML"})  # choices are exact, as before


def test_to_dict_is_the_hashed_run_config():
    d = TrainConfig().to_dict()
    assert list(d) == TrainConfig.keys() and d["loss_params"] == {} and d["workers"] == "auto"
    assert TrainConfig.from_dict(d) == TrainConfig()


def test_config_and_classes_do_not_import_torch():
    code = "import sys, oodml.training.config, oodml.training.classes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_old_import_paths_keep_working():
    import oodml.train as T
    from oodml.device import resolve_device
    from oodml.training.loop import train

    assert T.train is train and T._resolve_device is resolve_device
    for name in ("_same_config", "_model_mean_std", "_seed_all", "resolve_classes", "default_run_dir", "ADDED_KEYS"):
        assert hasattr(T, name)
    assert T.ADDED_KEYS == {"protocol": "default", "selection": None}
