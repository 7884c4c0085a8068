"""``python -m oodml.shift`` (``oodml shift``): rescore a split series under several extractors and
shift measures, write the tables and figures, print the orderings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from oodml import analysis, plot
from oodml.cli import add_quiet, add_version, progress_disabled, run_cli
from oodml.errors import OodmlError
from oodml.shift.attribution import attribution_table
from oodml.shift.figures import attribution_figure, shift_figure
from oodml.shift.measures import MEASURES, MeasureOptions
from oodml.shift.tables import _tables, _wide, kendall_table, predictive_table, shift_table, tau_matrix
from oodml.splits import load_splits

__all__ = ["build_parser", "cli", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m oodml.shift", description="Rescore a split series under several extractors and shift measures."
    )
    ap.add_argument("splits", help="split file (python -m oodml.make_splits)")
    ap.add_argument(  # the --extractor flag of every command (oodml.cli.add_extractor), several names here
        "--extractor",
        "--features",
        dest="extractor",
        nargs="*",
        default=None,
        metavar="NAME",
        help="extractors (inception, resnet50, pixels, hog, timm:NAME); default: the split file's own",
    )
    ap.add_argument(
        "--features-file",
        nargs="*",
        default=[],
        metavar="FILE",
        help="feature tables (.npz: features, labels) computed elsewhere, e.g. CLIP or DINOv2",
    )
    ap.add_argument("--root", help="data root of the split file's dataset")
    ap.add_argument("--weights", metavar="PATH", help="local weights file for the extractors")
    ap.add_argument(
        "--measures",
        nargs="+",
        default=list(MEASURES),
        choices=MEASURES,
        metavar="M",
        help=f"measures (default all: {' '.join(MEASURES)})",
    )
    ap.add_argument("--kid-subsets", type=int, default=50, help="KID subsets (default 50)")
    ap.add_argument("--kid-subset-size", type=int, default=1000, help="KID points per side and subset (default 1000)")
    ap.add_argument(
        "--median-points", type=int, default=2000, help="pooled points for the RBF median bandwidth (default 2000)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", metavar="FILE", help="results table: Spearman of each measure vs Recall@1 per loss")
    ap.add_argument("--metric", default="recall@1", help="metric predicted with --results (default recall@1)")
    ap.add_argument(
        "--attribution",
        action="store_true",
        help="also per-class leave-one-out FID attribution (first extractor, the split file's level)",
    )
    ap.add_argument("--top", type=int, default=10, help="classes in the attribution figure (default 10)")
    ap.add_argument("--out", metavar="STEM", help="output stem (default figures/shift_<dataset>)")
    add_quiet(ap)
    add_version(ap)
    return ap


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not progress_disabled(args.quiet)
    opts = MeasureOptions.from_dict(
        {
            "kid_subsets": args.kid_subsets,
            "kid_subset_size": args.kid_subset_size,
            "median_points": args.median_points,
            "seed": args.seed,
        },
        source="command line",
    )
    sf = load_splits(args.splits)
    features = args.extractor
    if features is None:
        features = [] if args.features_file else [sf.provenance.get("extractor") or "pixels"]
    if not features and not args.features_file:
        raise OodmlError("give at least one extractor (--features) or feature table (--features-file)")
    tables = _tables(sf, features, args.features_file, root=args.root, weights=args.weights, progress=progress)
    table = shift_table(
        sf,
        tables,
        measures=args.measures,
        kid_subsets=opts.kid_subsets,
        kid_subset_size=opts.kid_subset_size,
        median_points=opts.median_points,
        seed=opts.seed,
        progress=progress,
    )
    stem = Path(args.out or f"figures/shift_{analysis.sanitize(sf.dataset or Path(args.splits).stem)}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = analysis.write_table(table, stem)
    tau = kendall_table(table)
    written += analysis.write_table(tau, Path(f"{stem}_kendall"))
    fig = shift_figure(table)
    written += plot.save_figure(fig, stem)
    wide = _wide(table)
    with pd.option_context("display.width", 160, "display.max_columns", 40):
        print(wide.to_string(float_format=lambda v: f"{v:.4g}"))
        print()
        print("Kendall's tau between orderings of the splits:")
        print(tau_matrix(tau).to_string(float_format=lambda v: f"{v:.2f}"))
    if args.results:
        res = analysis.load_results(args.results)
        pred = predictive_table(table, res, dataset=sf.dataset or None, metric=args.metric)
        written += analysis.write_table(pred, Path(f"{stem}_predicts_{analysis.sanitize(args.metric)}"))
        print()
        print(f"Spearman of each measure vs {args.metric} across splits (per loss; -1 = predicts the drop):")
        wide = pred.assign(key=pred["extractor"] + "/" + pred["measure"]).pivot_table(
            index="key", columns="loss", values="spearman", sort=False
        )
        print(wide.to_string(float_format=lambda v: f"{v:.2f}"))
    if args.attribution:
        attr = attribution_table(sf, tables[0], progress=progress)
        written += analysis.write_table(attr, Path(f"{stem}_attribution"))
        hardest = int(sf.series[-1].id)
        written += plot.save_figure(attribution_figure(attr, hardest, args.top), Path(f"{stem}_attribution"))
        print()
        print(f"split {hardest}: top classes carrying the FID ({tables[0].name})")
        print(attr[attr["split"] == hardest].head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if not args.quiet:
        print()
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


#: The name this command's entry point had before ``main`` itself was wrapped by :func:`run_cli`.
cli = main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
