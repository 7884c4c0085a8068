"""``python -m oodml.evaluate EMB.npz``: the metrics of an embeddings file (the command; the
library is :mod:`oodml.metrics`, where the definitions are).

Command line::

    python -m oodml.evaluate EMB.npz [--json] [--ks 1 2 4 8 | --ks sop] [--metrics ...]
                             [--device auto] [--backend auto] [--quiet]

``EMB.npz`` holds ``embeddings`` (n x d floats) and ``labels`` (n class ids or names).

The names this module has always offered (``evaluate_embeddings``, ``load_embeddings_npz``,
``EvaluationInputError``, ``DEFAULT_METRICS``, ``STUDY_METRICS``, ``ALL_METRICS``,
``KS_PRESETS``) are re-exported from :mod:`oodml.metrics`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import numpy as np

from oodml.cli import add_device, add_quiet, add_version, progress_disabled, run_cli
from oodml.errors import BadInputError
from oodml.io import dumps_json
from oodml.metrics.evaluate import evaluate_embeddings
from oodml.metrics.knn import BACKENDS
from oodml.metrics.npz import load_embeddings_npz
from oodml.metrics.options import KS_PRESETS, EvaluationInputError
from oodml.metrics.registry import ALL_METRICS, DEFAULT_METRICS, METRICS, STUDY_METRICS

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "STUDY_METRICS",
    "KS_PRESETS",
    "EvaluationInputError",
    "build_parser",
    "evaluate_embeddings",
    "load_embeddings_npz",
    "main",
]


def _format_table(results: dict[str, float], info: str) -> str:
    width = max(len(k) for k in results) if results else 6
    lines = [info, f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, val in results.items():
        metric = METRICS.get(key) or METRICS.get(key.split("@")[0])  # "recall@4" -> "recall"
        if val is None or (isinstance(val, float) and math.isnan(val)):
            text = "nan"
        elif metric is not None and not metric.fraction:  # rho_spectrum, intra_inter_ratio
            text = f"{val:7.4f}"
        else:
            text = f"{100 * val:6.2f}%"
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command's flags (also read by the README test)."""
    p = argparse.ArgumentParser(
        prog="python -m oodml.evaluate",
        description=(
            "Recall@k, precision@1, R-precision, MAP@R and NMI of embeddings (leave-one-out, "
            "cosine similarity). EMB.npz holds 'embeddings' (n x d) and 'labels' (n)."
        ),
    )
    p.add_argument("npz", metavar="EMB.npz", help="file with arrays 'embeddings' and 'labels'")
    p.add_argument("--json", action="store_true", help="print one JSON object {metric: value}")
    p.add_argument(
        "--ks",
        nargs="+",
        default=None,
        metavar="K",
        help="k of Recall@k: integers, or a preset (sop = 1 10 100 1000; cub, cars = 1 2 4 8; inshop)",
    )
    others = [m for m in METRICS if m not in DEFAULT_METRICS]
    p.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=list(METRICS),
        metavar="M",
        help=f"metrics to compute (default: {' '.join(DEFAULT_METRICS)}; also {' '.join(others)})",
    )
    add_device(p)
    p.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS, help="neighbour search backend")
    p.add_argument("--chunk-size", type=int, default=None, help="queries per similarity block")
    p.add_argument("--nmi-seed", type=int, default=0, help="k-means seed (default 0)")
    p.add_argument("--nmi-iters", type=int, default=20, help="k-means iterations (default 20)")
    p.add_argument("--rho-skip", type=int, default=0, help="singular values dropped before rho_spectrum (default 0)")
    add_quiet(p)
    add_version(p)
    return p


def _cli_ks(values: list[str] | None) -> Any:
    if values is None:
        return None
    if len(values) == 1 and not values[0].lstrip("-").isdigit():
        return values[0]
    try:
        return [int(v) for v in values]
    except ValueError:
        raise BadInputError(
            f"--ks takes integers or one preset name ({', '.join(KS_PRESETS)}), got {' '.join(values)}"
        ) from None


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emb, lab = load_embeddings_npz(args.npz)
    start = time.perf_counter()
    try:
        results = evaluate_embeddings(
            emb,
            lab,
            ks=_cli_ks(args.ks),
            metrics=args.metrics,
            device=args.device,
            backend=args.backend,
            chunk_size=args.chunk_size,
            nmi_seed=args.nmi_seed,
            nmi_iters=args.nmi_iters,
            rho_skip=args.rho_skip,
            progress=not progress_disabled(args.quiet),
        )
    except EvaluationInputError as exc:
        raise BadInputError(f"{args.npz}: {exc}") from None
    if args.json:
        sys.stdout.write(dumps_json(results, indent=None))
    else:
        info = (
            f"{args.npz}: {len(emb)} embeddings x {emb.shape[1]} dims, {len(np.unique(lab))} classes, "
            f"leave-one-out, {time.perf_counter() - start:.1f}s"
        )
        print(_format_table(results, info))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
