"""``python -m oodml.score``: one JSON file to cite -- each loss's AUC over a split series with its
interval, the protocol, and the digests of the split files and dataset it came from.

Two papers' numbers are comparable only when they come from the same splits of the same data
under the same protocol.  This file carries what is needed to check that::

    python -m oodml.score studies/embedded_quick.yaml --out figures/glyphs_score.json
    python -m oodml.score runs/x/results.csv --splits splits/cub.json --metric map@r
    python -m oodml.plot studies/embedded_quick.yaml --score figures/score.json   # the same, with the figures

Document (schema ``oodml.score/1``; keys in a fixed order, NaN written as null, byte-identical
for identical inputs)::

    {"schema", "oodml_version", "metric", "results": {"name", "sha256"},
     "protocol": {study name, train settings, losses with their parameters, seeds, splits} | null,
     "datasets": {<name>: {"split_file": {"name", "sha256", "dataset_fingerprint", "extractor",
                                          "level", "splits": [{"id", "fid"}, ...]} | null,
                           "scores": [{"loss", "rank", "auc", "auc_low", "auc_high", "ci95",
                                       "n_seeds", "n_splits", "fid_min", "fid_max"}, ...],
                           "pairwise": [{"loss_a", "loss_b", "diff", "low", "high", "p_value"}, ...]}}}

The AUC is :func:`oodml.analysis.normalized_auc` (the mean level of the metric-vs-FID curve over
the series' FID range); its interval and the pairwise tests are those of :mod:`oodml.stats`.
This module is the command; :func:`score_document` lives in :mod:`oodml.analysis.score`.
"""

from __future__ import annotations

import argparse
import sys

from oodml.analysis.score import SCHEMA, _protocol, _split_info, score_document, write_score  # noqa: F401
from oodml.cli import add_quiet, add_version, run_cli
from oodml.io import read_json

__all__ = ["SCHEMA", "score_document", "write_score"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m oodml.score",
        description="Write one citable JSON: each loss's AUC over the split series, its "
        "interval, the protocol and the digests of the inputs.",
    )
    ap.add_argument("results", metavar="RESULTS_OR_STUDY", help="results table (.csv/.parquet) or study YAML")
    ap.add_argument("--metric", default="recall@1", help="zero-shot metric (default recall@1)")
    ap.add_argument("--splits", nargs="+", default=None, metavar="FILE", help="split files (digests and FIDs)")
    ap.add_argument("--out", default="score.json", help="output file (default score.json)")
    add_quiet(ap)
    add_version(ap)
    return ap


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = write_score(args.out, args.results, args.metric, args.splits)
    doc = read_json(path)
    for ds, entry in doc["datasets"].items():
        for s in entry["scores"]:
            lo, hi = s["auc_low"], s["auc_high"]
            iv = f" [{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else ""
            print(
                f"{ds}: {s['rank']}. {s['loss']}: AUC {s['auc']:.4g}{iv} "
                f"({s['n_seeds']} seed(s), {s['n_splits']} splits)"
            )
    if not args.quiet:
        print(f"wrote {path}")
    return 0


cli = main  # the former name of the wrapped command

if __name__ == "__main__":
    sys.exit(main())
