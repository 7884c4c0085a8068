"""The training protocol as an explicit choice (oodml.train ``protocol``/``selection``), its
``selection`` column in the study's results table, and how figures mark the rule."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from oodml import study as S
from oodml.errors import BadInputError
from oodml.train import TrainConfig, _same_config, build_parser, config_from_args, main, train

BACKBONE = "test_resnet"


GLYPHS = dict(classes_per_superclass=4, images_per_class=8, image_size=32)  # a small set: quick to draw


@pytest.fixture(scope="module")
def glyph_root(tmp_path_factory):
    from oodml.datasets.glyphs import load_glyphs

    root = tmp_path_factory.mktemp("data")
    load_glyphs(root, progress=False, **GLYPHS)
    return root


@pytest.fixture()
def small(glyph_root, tmp_path, monkeypatch):
    """12 train classes (2 of them validation under the default protocol) and 10 test classes."""
    from oodml.datasets.glyphs import load_glyphs

    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    ds = load_glyphs(glyph_root, progress=False, **GLYPHS)
    return ds.subset(ds.train_classes[:12] + ds.test_classes[:10])


SMALL = dict(embed_dim=16, iterations_per_epoch=4)  # on top of conftest's tiny config


@pytest.mark.slow
def test_oodml_protocol_fits_all_train_classes_and_chooses_on_test(small, glyph_root, tmp_path, make_cfg, read_log):
    cfg = make_cfg(glyph_root, **SMALL, protocol="oodml")
    assert cfg.selection_rule == "test"
    metrics = train(cfg, tmp_path / "run", dataset=small)
    prov = json.loads((tmp_path / "run" / "run.json").read_text())
    assert prov["val_classes"] == [] and len(prov["fit_classes"]) == 12  # no class held out
    assert metrics["protocol"] == "oodml" and metrics["selection"] == "test" and metrics["oracle"] is True
    log = read_log(tmp_path / "run")
    r1 = [float(r["oracle_test_recall@1"]) for r in log]
    assert len(r1) == 3 and not any(k.startswith("val_") for k in log[0])
    assert metrics["best_epoch"] == 1 + int(np.argmax(r1))  # best test Recall@1, earliest on ties
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["epoch"] == metrics["best_epoch"]
    # the final test metrics are those of the chosen checkpoint (same model, same evaluation)
    assert metrics["test"]["recall@1"] == pytest.approx(max(r1), abs=1e-7)
    assert metrics["val"]["oracle_test_recall@1"] == pytest.approx(max(r1), abs=1e-7)
    # and the study's metrics are part of the test metrics
    assert {"map@1000", "f1", "rho_spectrum", "intra_inter_ratio", "nmi", "map@r"} <= set(metrics["test"])


def test_default_protocol_with_last_selection(small, glyph_root, tmp_path, capsys, make_cfg, read_log):
    cfg = make_cfg(glyph_root, **SMALL, selection="last", epochs=2)
    metrics = train(cfg, tmp_path / "run", dataset=small)
    prov = json.loads((tmp_path / "run" / "run.json").read_text())
    assert len(prov["val_classes"]) == 2 and len(prov["fit_classes"]) == 10  # still held out
    assert metrics["best_epoch"] == 2 and metrics["selection"] == "last" and metrics["oracle"] is False
    assert "val_recall@1" in read_log(tmp_path / "run")[0]  # validation still logged, not used
    # the default rule is val, recorded as such
    args = build_parser().parse_args(["--dataset", "glyphs", "--protocol", "oodml", "--selection", "last"])
    c = config_from_args(args)
    assert (c.protocol, c.selection, c.selection_rule) == ("oodml", "last", "last")
    assert TrainConfig().selection_rule == "val"


def test_cli_labels_the_oracle(small, glyph_root, tmp_path, capsys, monkeypatch):
    import oodml.training.cli as T  # main() calls the train() of the module that defines it

    monkeypatch.setattr(
        T,
        "train",
        lambda cfg, out, **kw: {"best_epoch": 2, "epochs": 3, "selection": "test", "test": {"recall@1": 0.5}},
    )
    assert main(["--dataset", "glyphs", "--protocol", "oodml", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "ORACLE" in capsys.readouterr().out


def test_protocol_config_errors_and_old_configs_resume():
    with pytest.raises(BadInputError, match="protocol must be one of default, oodml"):
        TrainConfig.from_dict({"protocol": "study"})
    with pytest.raises(BadInputError, match="selection must be null or one of val, last, test"):
        TrainConfig.from_dict({"selection": "best"})
    with pytest.raises(BadInputError, match="no validation classes to select on"):
        TrainConfig.from_dict({"protocol": "oodml", "selection": "val"})
    now = TrainConfig().to_dict()
    old = {k: v for k, v in now.items() if k not in ("protocol", "selection")}  # written before the keys existed
    assert _same_config(old, now) is None
    assert _same_config(old, TrainConfig(protocol="oodml").to_dict()) == "protocol"


def _study(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    d = tmp_path / "studies"
    d.mkdir(exist_ok=True)
    (tmp_path / "pyproject.toml").touch()
    p = d / name
    p.write_text(textwrap.dedent(text))
    return p


BASE = """
name: p
datasets: [glyphs]
losses: [margin]
seeds: [0]
train: {backbone: resnet10t, pretrained: false, epochs: 1%s}
%s
"""


def test_study_protocol_keys_ids_and_plan(tmp_path):
    plain = S.load_study(_study(tmp_path, BASE % ("", ""), "a.yaml"))
    same = S.load_study(_study(tmp_path, BASE % (", protocol: default", ""), "b.yaml"))
    assert plain.runs[0].run_id == same.runs[0].run_id  # the default protocol keeps today's run ids
    top = S.load_study(_study(tmp_path, BASE % ("", "protocol: oodml"), "c.yaml"))
    under = S.load_study(_study(tmp_path, BASE % (", protocol: oodml", ""), "d.yaml"))
    assert top.runs[0].run_id == under.runs[0].run_id != plain.runs[0].run_id
    assert top.runs[0].config["protocol"] == "oodml" and S.selection_of(top.runs[0].config) == "test"
    plan = S.plan_table(top)
    assert "protocol: oodml; checkpoint selection: test (ORACLE" in plan
    assert "protocol: default; checkpoint selection: val" in S.plan_table(plain)
    with pytest.raises(BadInputError, match="at the top level but 'default' under train"):
        S.load_study(_study(tmp_path, BASE % (", protocol: default", "protocol: oodml"), "e.yaml"))
    with pytest.raises(BadInputError, match="no validation classes"):
        S.load_study(_study(tmp_path, BASE % ("", "protocol: oodml\nselection: val"), "f.yaml"))


def test_results_selection_column(tmp_path):
    from oodml.io import write_json

    st = S.load_study(_study(tmp_path, BASE % ("", "protocol: oodml"), "c.yaml"))
    r = st.runs[0]
    r.run_dir.mkdir(parents=True)
    write_json(
        r.run_dir / "metrics.json",
        {
            "run": r.config,
            "split": None,
            "fid": None,
            "selection": "test",
            "test": {"recall@1": 0.5, "map@1000": 0.25},
            "seconds": 1.0,
        },
    )
    rows, missing = S.collect_rows(st)
    assert not missing and [x["selection"] for x in rows] == ["test", "test"]
    assert [x["metric"] for x in rows] == ["recall@1", "map@1000"]
    # a metrics.json from before the key: the rule comes from the run's config
    write_json(
        r.run_dir / "metrics.json",
        {"run": r.config, "split": None, "fid": None, "test": {"recall@1": 0.5}, "seconds": 1.0},
    )
    assert S.collect_rows(st)[0][0]["selection"] == "test"
    assert S.RESULT_COLUMNS.index("selection") == S.RESULT_COLUMNS.index("seed") + 1


def _table(selection):
    rows = []
    for loss in ("margin", "arcface"):
        for sid, fid in ((1, 0.0), (2, 1.0), (3, 2.0)):
            for seed in (0, 1):
                rows.append(
                    dict(
                        study="x",
                        dataset="toy",
                        split=sid,
                        fid=fid,
                        loss=loss,
                        seed=seed,
                        selection=selection if isinstance(selection, str) else selection[seed],
                        stage="zero-shot",
                        metric="recall@1",
                        value=0.8 - 0.1 * sid + 0.01 * seed,
                        ci95=None,
                        run_id=f"{loss}{sid}{seed}",
                    )
                )
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_figures_and_tables_say_the_rule(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from oodml.plot import make_all

    monkeypatch.setenv("OODML_QUIET", "1")
    make_all(_table("test"), tmp_path / "oracle")
    assert "ORACLE" in (tmp_path / "oracle" / "index.md").read_text()
    assert "test (oracle)" in (tmp_path / "oracle" / "toy_curve_recall1.md").read_text()
    assert "test (oracle)" in (tmp_path / "oracle" / "toy_curve_recall1.csv").read_text()
    assert "ORACLE" in (tmp_path / "oracle" / "toy_curve_recall1.tex").read_text()
    make_all(_table("val"), tmp_path / "val")  # val (oodml's default) is unmarked: as a table without the column
    assert "selection" not in (tmp_path / "val" / "index.md").read_text()
    assert "selection" not in (tmp_path / "val" / "toy_curve_recall1.csv").read_text()
    png = "toy_curve_recall1.png"  # same numbers: only the title's rule line differs
    assert (tmp_path / "oracle" / png).read_bytes() != (tmp_path / "val" / png).read_bytes()
    with pytest.raises(BadInputError, match="mixes checkpoint rules"):
        make_all(_table(["val", "test"]), tmp_path / "mixed")
