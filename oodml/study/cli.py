"""``python -m oodml.study plan|run|status|collect FILE``: the study's command line (thin: each
command is one call of :mod:`oodml.study`'s Python API)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from oodml.cli import add_quiet, add_version, progress_disabled, run_cli
from oodml.errors import BadInputError
from oodml.estimate import estimate_study, format_estimate
from oodml.executors import EXECUTOR_KINDS, STATUS_SOURCE, start_parent_watchdog
from oodml.runs import DEFAULT_STALE_AFTER
from oodml.study.collect import collect
from oodml.study.execute import run_study
from oodml.study.load import load_study
from oodml.study.status import format_status, plan_table, status_summary

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.study",
        description="Plan, run, monitor and collect a study (a grid of training runs described by a YAML file).",
    )
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("file", help="study YAML file (e.g. studies/embedded_quick.yaml)")
        sp.add_argument("--runs-dir", default=None, help="runs folder (default: the file's runs_dir or runs/<name>)")
        add_quiet(sp)

    sp = sub.add_parser("plan", help="print the grid: run id, dataset, split, FID, loss, seed, state")
    common(sp)
    sp.add_argument(
        "--estimate",
        action="store_true",
        help="also estimate the study's training compute (GPU- or CPU-hours; see oodml.estimate)",
    )
    sp.add_argument(
        "--estimate-steps",
        type=int,
        default=5,
        metavar="N",
        help="training steps timed on this machine's device for --estimate (default 5)",
    )
    sp.add_argument(
        "--seconds-per-step",
        type=float,
        default=None,
        metavar="S",
        help="use this recorded time per training step instead of timing one here",
    )
    sp = sub.add_parser("run", help="execute the pending runs")
    common(sp)
    sp.add_argument("--executor", choices=EXECUTOR_KINDS, default=None, help="override executor.kind")
    sp.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="local executor: runs trained at once on the CPU (default: executor.jobs, else 1)",
    )
    sp.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    sp.add_argument("--max-runs", type=int, default=None, help="execute at most N runs")
    sp.add_argument(
        "--stale-after",
        type=float,
        default=None,
        help=f"seconds without heartbeat before another host's claim is stale (default {DEFAULT_STALE_AFTER:g})",
    )
    sp.add_argument("--only", default=None, help="comma-separated run ids (or @file with one id a line), in this order")
    sp.add_argument("--run-fn", default=None, help="module:function replacing oodml.train.train (fn(config, run_dir))")
    sp.add_argument("--wait", action="store_true", help="slurm: wait for the jobs with a progress bar")
    sp.add_argument("--no-check-data", action="store_true", help="skip the dataset/split-file check before running")
    sp = sub.add_parser("status", help="counts per state and an ETA")
    common(sp)
    sp = sub.add_parser("collect", help="write <runs_dir>/results.csv (+ .parquet)")
    common(sp)
    sp.add_argument("--out", default=None, help="CSV path (default <runs_dir>/results.csv)")
    return p


def _parse_only(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").split()
        except OSError as exc:
            raise BadInputError(f"--only {text}: cannot read {path} ({exc})") from None
        return [x for x in lines if x]
    return [x for x in text.split(",") if x]


def _terminate(signum, frame):  # noqa: ARG001
    raise SystemExit(128 + signum)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    study = load_study(args.file, runs_dir=args.runs_dir)
    if args.command == "plan":
        print(plan_table(study))
        if args.estimate:
            print(
                format_estimate(
                    estimate_study(study, steps=args.estimate_steps, seconds_per_step=args.seconds_per_step)
                )
            )
    elif args.command == "status":
        print(format_status(status_summary(study)))
        if (
            study.executor.get("kind") == "slurm"
            and (study.executor.get("slurm") or {}).get("cluster", "slurm") == "slurm"
        ):
            print(STATUS_SOURCE)
    elif args.command == "collect":
        res = collect(study, out=args.out)
        extra = f" and {res['parquet']}" if res["parquet"] else ""
        print(
            f"wrote {res['rows']} rows from {res['runs']} runs to {res['csv']}{extra}"
            + (f"; {len(res['missing'])} runs have no results yet" if res["missing"] else "")
        )
    elif args.command == "run":
        if threading.current_thread() is threading.main_thread():
            # `kill` / Slurm cancel: leave like Ctrl-C, releasing the claim of the run in progress
            signal.signal(signal.SIGTERM, _terminate)
            # a worker of a runner (executor.jobs > 1, gpus) ends with it, even when it is SIGKILLed
            start_parent_watchdog()
        counts = run_study(
            study,
            executor=args.executor,
            retry_failed=args.retry_failed,
            max_runs=args.max_runs,
            only=_parse_only(args.only),
            stale_after=args.stale_after,
            run_fn_spec=args.run_fn,
            progress=not progress_disabled(args.quiet),
            wait=args.wait,
            check_data=not args.no_check_data,
            jobs=args.jobs,
        )
        print(", ".join(f"{v} {k}" for k, v in counts.items()))
        summary = status_summary(study)
        print(format_status(summary))
        if summary["counts"].get("waiting"):
            print(
                f"{summary['counts']['waiting']} tuned runs wait for their search's trials; "
                "run this command again once the trials have finished"
            )
        return 1 if counts.get("failed") else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
