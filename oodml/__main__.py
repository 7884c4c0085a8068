"""``oodml`` (the console script) and ``python -m oodml``: the version, and one door to every stage.

::

    oodml --version                     # "oodml 0.1.0"
    oodml                               # the list of commands
    oodml make_splits --num-splits 3    # the same as `python -m oodml.make_splits --num-splits 3`

Each command is the ``main(argv)`` of its stage's module, so ``oodml <command> ...`` and
``python -m oodml.<command> ...`` take the same arguments and behave the same. Nothing heavy is
imported until a command is chosen, so ``oodml --version`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from oodml import __version__

#: command -> (module whose ``main(argv)`` runs it, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "datasets": ("oodml.datasets.__main__", "inspect a dataset (summary, --json)"),
    "features": ("oodml.features", "extract and cache frozen features"),
    "make_splits": ("oodml.make_splits", "build, check or import an FID-graded split series"),
    "shift": ("oodml.shift", "shift measures side by side, FID attribution"),
    "train": ("oodml.train", "train one DML loss on one split"),
    "evaluate": ("oodml.evaluate", "Recall@k, MAP@R, NMI of an embeddings file"),
    "adapt": ("oodml.adapt", "few-shot adaptation and linear probes of a run"),
    "study": ("oodml.study", "plan, run, watch and collect a study grid"),
    "plot": ("oodml.plot", "figures and tables of a results table"),
    "score": ("oodml.score", "the citable score JSON: AUCs, intervals, protocol, digests"),
    "demo": ("oodml.demo", "the whole pipeline on the embedded dataset"),
}


def build_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<12} {desc}" for name, (_, desc) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="oodml",
        description="Deep metric learning under graded out-of-distribution shift.",
        epilog=f"commands (each also runs as `python -m oodml.<command>`):\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"oodml {__version__}")
    p.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND", help="the stage to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (see `oodml COMMAND --help`)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``oodml [--version] [COMMAND [ARGS...]]``; returns the exit status of the command."""
    process = argv is None  # this process runs the command (the `oodml` script), not a caller's code
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # the command's own options (even --version or --help) after COMMAND belong to the command
    if argv and argv[0] in COMMANDS:
        command, rest = argv[0], argv[1:]
    else:
        ns = parser.parse_args(argv)
        if ns.command is None:
            parser.print_help()
            return 0
        command, rest = ns.command, ns.args
    if command == "make_splits":  # its figure process imports while the command does (oodml.figure_process),
        from oodml.figure_process import start_early

        start_early(rest)
        if process:  # and its --features-file is read meanwhile (oodml.features.prefetch)
            from oodml.features import prefetch

            prefetch.start(rest)
    module = importlib.import_module(COMMANDS[command][0])
    code = int(module.main(rest) or 0)
    if process and command == "make_splits":  # nothing to tear down: end without the interpreter's ≈ 0.1 s of it
        from oodml.cli import exit_process

        exit_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
