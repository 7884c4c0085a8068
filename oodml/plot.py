"""Publication figures and tables of a study's results: how losses generalize under graded shift.

Command line::

    python -m oodml.plot RESULTS_OR_STUDY [--metric recall@1] [--out figures/] [--splits FILE ...] [--quiet]

``RESULTS_OR_STUDY`` is a results table (``.csv``/``.parquet``, see :mod:`oodml.analysis`) or a
study YAML (its table is ``<runs_dir>/results.csv``, ``runs_dir`` defaulting to
``runs/<name>``; its ``datasets: [{name, splits}]`` name the split files). ``--splits`` adds
split files (their dataset is read from the file's provenance).

Python (notebooks)::

    from oodml.plot import load_results, generalization_curve, relative_view, auc_figure, \
        ranking_figure, adaptation_figures, split_series_figure, make_all
    df = load_results("runs/my-study/results.csv")
    fig = generalization_curve(df, "glyphs", "recall@1")          # matplotlib Figure
    outputs = make_all(df, "figures", "recall@1", ["splits/glyphs.json"])   # {file name: path}

Every figure function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
global figure state; the CLI selects the Agg backend); the numbers it draws come from the
table functions of :mod:`oodml.analysis`, re-exported here. This module is the command; the code
lives in the package :mod:`oodml.analysis` (figures in ``figures.py``, the registry of what
``make_all`` writes in ``report.py``, the shared style in ``style.py``).

Files (``<out>/<dataset>_<name>``, names passed through :func:`oodml.analysis.sanitize`, ``<m>``
= the metric, e.g. ``recall1``); figures as ``.png`` (300 dpi) and vector ``.pdf``, tables as
``.csv``, ``.md`` and ``.tex`` (booktabs):

=============================  ==============================================================
``curve_<m>``                  figure + table: metric vs FID per loss, mean and 95 % CI over seeds
``relative_<m>``               figure + table: difference from the mean of all losses per split,
                               with a least-squares line per loss
``slopes_<m>``                 table: slopes of those lines (and of the raw curves)
``auc_<m>``                    figure + table: normalized area under the metric-vs-FID curve,
                               mean, std, CI and per-seed values
``ranks_<m>``                  figure (bump chart + Kendall's τ) + table: rank of every loss per split
``kendall_<m>``                table: Kendall's τ between the easiest split's ranking and each other
``fewshot_gain_<m>``           figure + table: few-shot gain over zero-shot vs FID, one panel per k
``linear_probe``               figure + table: linear-probe top-1 accuracy vs FID
``split_series``               figure: the split search's FID trajectory and the selected splits
=============================  ==============================================================

plus ``<out>/index.md`` listing what was written and why anything was skipped.

**Checkpoint rule.** A results table with a ``selection`` column (:mod:`oodml.study`) says how
each run's checkpoint was chosen. Figures and tables of one table use one rule (a table mixing
rules is refused: filter it first). Numbers chosen on validation classes (``val``, oodml's
default, also a table without the column) are unmarked; ``last`` and ``test`` put the rule into
every figure title, LaTeX caption and ``index.md`` and add a ``selection`` column to every table
(``test``: *ORACLE* / ``test (oracle)``, the checkpoint was chosen on the test classes, as the
ooDML study did). Identical inputs
give byte-identical files (fixed styles, no timestamps in PNG/PDF metadata, atomic writes).

Style: seaborn ``whitegrid`` / ``paper``, single-column width (3.5 in), fonts 7–8 pt, one fixed
colour (seaborn ``colorblind``), marker and line style per loss (:func:`oodml.analysis.loss_style`,
registry order), legends below the axes naming the losses.
"""

from __future__ import annotations

import argparse
import sys

from oodml.analysis import (  # noqa: F401  (re-exported for notebooks)
    REQUIRED_COLUMNS,
    auc_per_seed,
    auc_table,
    control_table,
    curve_table,
    datasets,
    fewshot_table,
    fid_label,
    is_percent_metric,
    load_results,
    loss_order,
    loss_style,
    metric_label,
    metric_name,
    probe_table,
    ranking_stability,
    relative_slopes,
    relative_table,
    sanitize,
    setting_label,
    setting_order,
    validate_results,
    write_table,
)
from oodml.analysis.figures import (  # noqa: F401  (re-exported: the figure functions)
    _key,
    _split_series_fn,
    adaptation_figures,
    auc_figure,
    cd_diagram,
    fewshot_figure,
    generalization_curve,
    probe_figure,
    ranking_figure,
    relative_view,
    split_series_figure,
)
from oodml.analysis.report import (  # noqa: F401  (re-exported: make_all and its helpers)
    SECTIONS,
    SELECTION_MARKS,
    Outputs,
    Report,
    _file_table,
    _selection_rule,
    _wide_ranks,
    make_all,
    section,
)
from oodml.analysis.results import (  # noqa: F401  (re-exported: the input resolution)
    _split_file_info,
    _study_base,
    _study_path,
    resolve_input,
)
from oodml.analysis.score import write_score
from oodml.analysis.style import (  # noqa: F401  (re-exported: the shared style, used by oodml.shift)
    DPI,
    PDF_METADATA,
    PNG_METADATA,
    RC,
    WIDTH,
    _draw_lines,
    _fid_axis,
    _figure,
    _legend_handles,
    _legend_height,
    _loss_legend,
    _require,
    paper_style,
    save_figure,
)
from oodml.cli import add_quiet, add_version, progress_disabled, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.plot",
        description="Figures (PNG + PDF) and tables (CSV, Markdown, LaTeX) of a study's results.",
    )
    p.add_argument(
        "results",
        metavar="RESULTS_OR_STUDY",
        help="results table (.csv/.parquet) or study YAML (its runs_dir/results.csv)",
    )
    p.add_argument("--metric", default="recall@1", help="zero-shot metric to analyse (default: recall@1)")
    p.add_argument("--out", default="figures", help="output folder (default: figures/)")
    p.add_argument(
        "--splits",
        nargs="+",
        default=None,
        metavar="FILE",
        help="split files for the split-series figure (dataset read from each file)",
    )
    p.add_argument(
        "--score",
        metavar="FILE",
        default=None,
        help="also write the citable score JSON (oodml.score: AUCs, intervals, protocol, digests)",
    )
    add_quiet(p)
    add_version(p)
    return p


_build_parser = build_parser  # the former name


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # lazy on purpose: matplotlib costs seconds at startup; parsing (--help, the README test) needs none
    import matplotlib

    matplotlib.use("Agg")
    out = make_all(args.results, args.out, args.metric, args.splits, progress=not progress_disabled(args.quiet))
    n_fig = sum(1 for k in out if k.endswith(".pdf"))
    n_tab = sum(1 for k in out if k.endswith(".csv"))
    print(f"wrote {n_fig} figures (.png + .pdf) and {n_tab} tables (.csv + .md + .tex) to {args.out}")
    for note in out.notes:
        print(f"note: {note}")
    if args.score:
        print(f"wrote {write_score(args.score, args.results, args.metric, args.splits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
