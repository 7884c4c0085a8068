"""Tests of the layout of :mod:`oodml.analysis`: the former modules keep their names, the table side
never imports the figures (nor matplotlib or torch), and make_all's sections are one registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FORMER = {
    "oodml.analysis": [
        "REQUIRED_COLUMNS",
        "load_results",
        "validate_results",
        "datasets",
        "metrics",
        "sanitize",
        "is_percent_metric",
        "metric_name",
        "metric_label",
        "fid_label",
        "registry_losses",
        "loss_order",
        "loss_index",
        "loss_style",
        "loss_palette",
        "t_ci95",
        "zero_shot",
        "curve_table",
        "control_table",
        "relative_table",
        "relative_slopes",
        "normalized_auc",
        "auc_per_seed",
        "auc_table",
        "ranking_stability",
        "fewshot_table",
        "probe_table",
        "setting_label",
        "setting_order",
        "to_markdown",
        "to_latex",
        "to_csv",
        "write_table",
    ],
    "oodml.plot": [
        "load_results",
        "generalization_curve",
        "relative_view",
        "auc_figure",
        "ranking_figure",
        "fewshot_figure",
        "probe_figure",
        "adaptation_figures",
        "split_series_figure",
        "make_all",
        "resolve_input",
        "save_figure",
        "paper_style",
        "_figure",
        "_fid_axis",
        "_legend_height",
        "_loss_legend",
        "_study_base",
        "_study_path",
        "_split_file_info",
        "Outputs",
        "SELECTION_MARKS",
        "WIDTH",
        "RC",
        "build_parser",
        "_build_parser",
        "main",
    ],
    "oodml.stats": [
        "auc_intervals",
        "bootstrap_ci",
        "cd_diagram",
        "curve_intervals",
        "friedman_nemenyi",
        "nemenyi_cd",
        "paired_bootstrap",
        "pairwise_auc_tests",
        "_cliques",
    ],
    "oodml.score": ["SCHEMA", "score_document", "write_score", "build_parser", "main", "cli"],
    "oodml.tuning_plot": [
        "TUNING_STYLE",
        "chosen_settings_table",
        "default_vs_tuned_figure",
        "has_tuning",
        "main_rows",
        "transfer_gap_figure",
        "transfer_gap_table",
        "tuning_curve_table",
    ],
}


@pytest.mark.parametrize("module", sorted(FORMER))
def test_former_import_paths_keep_their_names(module):
    mod = __import__(module, fromlist=["_"])
    missing = [name for name in FORMER[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


def _loaded_after(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tables_and_statistics_do_not_import_the_figures():
    loaded = set(_loaded_after("oodml.analysis.stats")) | set(_loaded_after("oodml.analysis"))
    for name in ("oodml.analysis.figures", "oodml.analysis.report", "oodml.plot", "matplotlib", "torch"):
        assert name not in loaded, f"{name} is imported by the table side"


def test_make_all_runs_one_registry_of_sections():
    from oodml.analysis import report

    assert [fn.__name__ for fn in report.SECTIONS] == [
        "_curve",
        "_relative",
        "_auc",
        "_friedman",
        "_ranks",
        "_fewshot",
        "_linear_probe",
        "_tuning_curves",
        "_transfer_gap",
        "_chosen_settings",
        "_split_series",
    ]
