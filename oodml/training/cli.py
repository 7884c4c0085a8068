"""The ``python -m oodml.train`` command (also ``oodml train``): flags over a ``--config`` YAML
over the defaults, into one :class:`TrainConfig`, then :func:`oodml.training.loop.train`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from oodml.cli import add_device, add_quiet, add_version, run_cli
from oodml.device import DEVICE_HELP
from oodml.errors import BadInputError
from oodml.io import load_yaml
from oodml.losses import format_objectives_table, format_search_spaces, load_plugins, parse_overrides, parse_value
from oodml.progress import progress_disabled
from oodml.training.config import AMP_MODES, PROTOCOLS, SCHEDULERS, SELECTIONS, TrainConfig, default_run_dir
from oodml.training.loop import train

__all__ = ["build_parser", "config_from_args", "main"]

#: TrainConfig keys that have their own flag (``--set KEY=VALUE`` reaches every other key).
_FLAG_KEYS = (
    "dataset",
    "root",
    "splits",
    "split",
    "loss",
    "seed",
    "backbone",
    "pretrained",
    "weights",
    "embed_dim",
    "pooling",
    "image_size",
    "resize_size",
    "batch_size",
    "m_per_class",
    "epochs",
    "iterations_per_epoch",
    "lr",
    "weight_decay",
    "scheduler",
    "eval_every",
    "device",
    "workers",
    "amp",
    "threads",
    "deterministic",
    "test_curve",
    "protocol",
    "selection",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.train",
        description="Train a deep-metric-learning model on one split (resumable; writes a run folder).",
        epilog="Precedence: defaults < --config YAML < command-line flags.",
    )
    a = p.add_argument
    a("--config", help="YAML file of TrainConfig keys")
    _add_data_flags(a)
    _add_model_flags(a)
    _add_optimisation_flags(a)
    add_device(p, default=None, help=f"{DEVICE_HELP} (default: the --config file's device, else auto)")
    a("--workers", help="loader processes or auto")
    a("--amp", choices=list(AMP_MODES))
    a("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    a("--out", help="run folder (default runs/train/<dataset>-split<id>-<loss>-s<seed>)")
    a("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    a("--deterministic", action="store_true", default=None, help="torch deterministic algorithms")
    _add_protocol_flags(a)
    a("--set", action="append", metavar="KEY=VALUE", help="any other TrainConfig key (repeatable)")
    _add_objective_listing_flags(a)
    add_quiet(p)
    add_version(p)
    return p


def _add_data_flags(a) -> None:
    a("--dataset", help="dataset name (default: the embedded glyphs)")
    a("--root", help="data root")
    a("--splits", help="split file (default splits/<dataset>.json when --split is given)")
    a("--split", type=int, help="series id in the split file (default: the dataset's standard split)")
    a("--loss", help="objective (see --list-losses; default margin)")
    a("--loss-param", action="append", metavar="KEY=VALUE", help="objective hyperparameter (repeatable)")
    a("--seed", type=int)


def _add_model_flags(a) -> None:
    a("--backbone", help="timm model name (default resnet50)")
    a("--no-pretrained", dest="pretrained", action="store_false", default=None, help="random initialisation")
    a("--weights", help="local backbone weights file")
    a("--embed-dim", type=int)
    a("--pooling", choices=["avg", "max", "avg+max", "token"])
    a("--image-size", type=int)
    a("--resize-size", type=int)


def _add_optimisation_flags(a) -> None:
    a("--batch-size", type=int)
    a("--m-per-class", type=int)
    a("--epochs", type=int)
    a("--iterations-per-epoch", type=int)
    a("--lr", type=float)
    a("--weight-decay", type=float)
    a("--scheduler", choices=list(SCHEDULERS) + ["none"])
    a("--scheduler-param", action="append", metavar="KEY=VALUE", help="scheduler parameter (repeatable)")
    a("--eval-every", type=int)


def _add_protocol_flags(a) -> None:
    a(
        "--test-curve",
        action="store_true",
        default=None,
        help="also score the test classes every epoch (test_curve.csv)",
    )
    a(
        "--protocol",
        choices=list(PROTOCOLS),
        help="default (validation classes held out) or oodml (the study's: "
        "all train classes, checkpoint by test Recall@1)",
    )
    a(
        "--selection",
        choices=list(SELECTIONS),
        help="checkpoint rule: val, last, or test (an ORACLE; the study's); default: the protocol's",
    )


def _add_objective_listing_flags(a) -> None:
    a("--list-losses", action="store_true", help="print the objectives and their defaults, then exit")
    a(
        "--search-space",
        action="store_true",
        help="with --list-losses: print each objective's tunable hyperparameters (ranges, scales, defaults)",
    )
    a(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first: it registers objectives with oodml.losses.register_objective (repeatable; "
        "for studies set OODML_PLUGINS=MODULE[,MODULE] or declare an 'oodml.objectives' entry point)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the ``--config`` YAML and the flags (flags win)."""
    d: dict[str, Any] = {}
    source = "command line"
    if args.config:
        loaded = load_yaml(args.config, "training config")
        if loaded is not None and not isinstance(loaded, dict):
            raise BadInputError(f"training config {args.config} must be a mapping of TrainConfig keys")
        d.update(loaded or {})
        TrainConfig.from_dict(d, source=f"training config {args.config}")  # report YAML errors as such
        source = f"training config {args.config} with command-line flags"
    for item in args.set or ():
        key, sep, value = str(item).partition("=")
        if not sep:
            raise BadInputError(f"--set {item!r} is not KEY=VALUE")
        d[key.strip().replace("-", "_")] = parse_value(value.strip())
    for key in _FLAG_KEYS:
        value = getattr(args, key)
        if value is not None:
            d[key] = None if (key == "scheduler" and value == "none") else value
    if args.loss_param:
        d["loss_params"] = {**dict(d.get("loss_params") or {}), **parse_overrides(args.loss_param)}
    if args.scheduler_param:
        d["scheduler_params"] = {**dict(d.get("scheduler_params") or {}), **parse_overrides(args.scheduler_param)}
    return TrainConfig.from_dict(d, source=source)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plugin:
        load_plugins(args.plugin)
    if args.list_losses:
        print(format_search_spaces() if args.search_space else format_objectives_table())
        return 0
    if args.search_space:
        raise BadInputError(
            "--search-space goes with --list-losses (python -m oodml.train --list-losses --search-space)"
        )
    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_run_dir(cfg)
    quiet = progress_disabled(args.quiet)
    metrics = train(cfg, out, resume=not args.no_resume, progress=not quiet)
    test = metrics["test"]
    shown = "  ".join(f"{k} {v:.4f}" for k, v in test.items() if v is not None)
    rule = metrics.get("selection", "val")
    chosen = f" (selection: {rule}{', ORACLE: chosen on the test classes' if rule == 'test' else ''})"
    print(
        f"{out}: best epoch {metrics['best_epoch']}/{metrics['epochs']}{chosen if rule != 'val' else ''}, test {shown}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
