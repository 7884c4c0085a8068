"""``python -m oodml.demo``: the whole pipeline on the embedded dataset, offline, from nothing.

What ``make demo`` runs. Each step is the project's own command-line entry point, called with the
arguments a user would type, so the demo exercises exactly what the README documents:

1. **dataset** -- generate (first time) and summarise the embedded ``glyphs`` dataset, and save a
   grid of sample images as ``<out>/glyphs_samples.{png,pdf}``;
2. **splits** -- ``python -m oodml.make_splits``: the FID-graded split series of the embedded
   dataset into ``splits/glyphs.json``, with its trajectory figure ``<out>/splits_glyphs.{png,pdf}``;
3. **study** -- ``python -m oodml.study run studies/embedded_quick.yaml`` then ``collect``: a small
   shift study (3 losses x (4 splits + a class-count control) x 2 seeds, small backbone on small
   images, plus the frozen pixels reference), resumable: run the demo again and finished runs are kept;
4. **plot** -- ``python -m oodml.plot``: the generalization curves, summary scores, ranking
   stability and adaptation figures and tables of that study, into ``<out>``.

5. **search** (not run by default; ``--steps search``) -- ``python -m oodml.study run
   studies/embedded_search.yaml``, ``collect`` and ``plot`` into ``<out>/search/``: every one of two
   losses tuned by 4 seeded random trials on the standard split's validation classes, then trained
   on 4 splits with the chosen settings next to its defaults (24 runs of the quick study's size:
   about twice its CPU time), for the default-vs-tuned figure and the chosen-settings table.

``--steps`` selects steps (``--steps dataset,splits`` stops before training). Every file the demo
writes is deterministic: the same machine and inputs give byte-identical splits, tables and figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from oodml.cli import add_quiet, add_version, progress_disabled, run_cli
from oodml.datasets import load_dataset
from oodml.datasets.__main__ import main as datasets_main
from oodml.datasets.preview import save_sample_grid
from oodml.errors import OodmlError
from oodml.make_splits import main as make_splits_main
from oodml.plot import main as plot_main
from oodml.study import main as study_main

STEPS = ("dataset", "splits", "study", "plot", "search")
DEFAULT_STEPS = ("dataset", "splits", "study", "plot")  # the search step costs about twice the study


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.demo",
        description="Run the oodml pipeline on the embedded dataset: dataset -> splits -> study -> plots.",
    )
    p.add_argument("--out", default="figures", help="folder for figures and tables (default: figures)")
    p.add_argument("--root", default=None, help="data root (default: $OODML_DATA, else the oodml cache)")
    p.add_argument("--splits", default="splits/glyphs.json", help="split file to write (default: %(default)s)")
    p.add_argument("--study", default="studies/embedded_quick.yaml", help="study file (default: %(default)s)")
    p.add_argument(
        "--search-study",
        default="studies/embedded_search.yaml",
        help="study file of the search step (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        default=",".join(DEFAULT_STEPS),
        help=f"comma-separated subset of {', '.join(STEPS)} (default: {','.join(DEFAULT_STEPS)})",
    )
    add_quiet(p)
    add_version(p)
    return p


def _banner(i: int, n: int, text: str) -> None:
    print(f"\n[{i}/{n}] {text}", flush=True)


def _check(code: int, what: str) -> None:
    if code:
        raise OodmlError(f"demo step {what!r} failed (exit status {code}); see the message above")


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise OodmlError(f"--steps: unknown step {unknown[0]!r}; choose from {', '.join(STEPS)}")
    quiet = ["--quiet"] if progress_disabled(args.quiet) else []
    root = ["--root", args.root] if args.root else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = len(steps)

    for i, step in enumerate(steps, 1):
        if step == "dataset":
            _banner(i, n, "the embedded dataset")
            _check(datasets_main(root + quiet), "dataset")
            ds = load_dataset(None, root=args.root, progress=not quiet)
            for path in save_sample_grid(ds, out / "glyphs_samples", n_classes=12, per_class=8, seed=0):
                print(f"wrote {path}")
        elif step == "splits":
            _banner(i, n, "FID-graded split series (python -m oodml.make_splits)")
            _check(
                make_splits_main(
                    root + quiet + ["--out", args.splits, "--figure", str(out / "splits_glyphs"), "--controls", "1"]
                ),  # class-count controls (oodml.controls)
                "splits",
            )
        elif step == "study":
            _banner(i, n, f"shift study (python -m oodml.study run {args.study})")
            _check(study_main(["run", args.study] + quiet), "study run")
            _check(study_main(["collect", args.study] + quiet), "study collect")
        elif step == "plot":
            _banner(i, n, f"figures and tables (python -m oodml.plot {args.study})")
            _check(plot_main([args.study, "--out", str(out)] + quiet), "plot")
        elif step == "search":
            _banner(i, n, f"hyperparameter search (python -m oodml.study run {args.search_study})")
            _check(study_main(["run", args.search_study] + quiet), "search run")
            _check(study_main(["collect", args.search_study] + quiet), "search collect")
            _check(plot_main([args.search_study, "--out", str(out / "search")] + quiet), "search plot")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; figures and tables are in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
