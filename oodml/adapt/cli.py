"""The command ``python -m oodml.adapt RUN_DIR ...`` (also ``oodml adapt``): parse, call
:func:`~oodml.adapt.run_adaptation`, print the rows."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from oodml.adapt.options import (
    ADAPTED_PARTS,
    DEFAULT_EPISODES,
    DEFAULT_KS,
    DEFAULT_METRICS,
    DEFAULT_SHOTS,
    FULL_LR,
    HEAD_LR,
    MODES,
    PROBE_FRACTION,
    PROBE_ITERATIONS,
    PROBE_L2,
)
from oodml.adapt.record import adaptation_rows, format_rows
from oodml.adapt.run import run_adaptation
from oodml.cli import add_device, add_quiet, add_version, run_cli
from oodml.io import dumps_json
from oodml.losses import parse_overrides
from oodml.progress import progress_disabled

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.adapt",
        description="Few-shot adaptation and linear probes of a trained run on its test classes; "
        "writes RUN_DIR/adaptation.json and prints a table.",
    )
    p.add_argument("run_dir", help="folder of a trained run (holds best.pt and config.yaml)")
    p.add_argument(
        "--mode",
        nargs="+",
        default=["fewshot"],
        choices=MODES,
        help="fewshot, probe, or both (they share the frozen features); default fewshot",
    )
    p.add_argument("--shots", nargs="+", type=int, default=list(DEFAULT_SHOTS), help="k values (default 2 5)")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"episodes per k (default: all of the split file's; {DEFAULT_EPISODES} drawn without one)",
    )
    p.add_argument(
        "--adapt",
        choices=ADAPTED_PARTS,
        default="head",
        help="head: train only the embedding layer on frozen features (default); full: the whole network",
    )
    p.add_argument("--loss", default="margin", help="objective (python -m oodml.train --list-losses); default margin")
    p.add_argument(
        "--loss-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="objective option, repeatable (e.g. margin=0.1, miner=none)",
    )
    p.add_argument(
        "--iterations",
        nargs="+",
        default=None,
        metavar="K=N|N",
        help="training iterations per k (e.g. 2=1000 5=1500) or one number (default 1000 / 1500)",
    )
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {HEAD_LR:g} head, {FULL_LR:g} full)")
    p.add_argument(
        "--lr-mult",
        type=float,
        default=None,
        help="learning rate as a multiple of the run's training rate (the ooDML few-shot stage: 10)",
    )
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="support images per batch (default: the run's)")
    p.add_argument("--m-per-class", type=int, default=None, help="images per class in a batch (default: the run's)")
    p.add_argument("--ks", nargs="+", type=int, default=list(DEFAULT_KS), help="Recall@k values (default 1 2 4 8)")
    p.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=DEFAULT_METRICS,
        help="retrieval metrics of the few-shot evaluation (default: all)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=PROBE_FRACTION,
        help="probe: fraction of each class's images to fit on (default 0.5)",
    )
    p.add_argument("--probe-l2", type=float, default=PROBE_L2, help=f"probe: L2 weight (default {PROBE_L2:g})")
    p.add_argument(
        "--probe-iterations",
        type=int,
        default=PROBE_ITERATIONS,
        help=f"probe: maximum L-BFGS iterations (default {PROBE_ITERATIONS})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of drawn episodes, batches, miner (default 0)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    add_device(p)
    add_quiet(p)
    add_version(p)
    return p


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    result = run_adaptation(
        args.run_dir,
        mode=args.mode,
        shots=args.shots,
        episodes=args.episodes,
        adapt=args.adapt,
        loss=args.loss,
        loss_params=parse_overrides(args.loss_param),
        iterations=args.iterations,
        lr=args.lr,
        lr_mult=args.lr_mult,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        m_per_class=args.m_per_class,
        ks=args.ks,
        metrics=args.metrics,
        fraction=args.fraction,
        probe_l2=args.probe_l2,
        probe_iterations=args.probe_iterations,
        seed=args.seed,
        device=args.device,
        progress=not progress_disabled(args.quiet),
    )
    ran = {"fewshot": "few-shot-", "probe": "linear-probe"}
    rows = [r for r in adaptation_rows(result) if any(r["stage"].startswith(ran[m]) for m in args.mode)]
    if args.json:
        print(dumps_json(rows), end="")
    else:
        print(format_rows(rows))
        print(f"wrote {Path(args.run_dir) / 'adaptation.json'} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
