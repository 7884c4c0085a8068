"""``python -m oodml.datasets``: load a dataset and print what it holds.

Usage::

    python -m oodml.datasets                                   # the embedded default dataset
    python -m oodml.datasets --dataset cub --root ~/data       # a benchmark already on disk
    python -m oodml.datasets --dataset omniglot --download     # fetch it first if missing
    python -m oodml.datasets --dataset sop --json              # one JSON object on stdout

Prints the dataset's name, number of classes, images and superclasses and the class counts of
its standard train/test split. ``--json`` prints exactly one JSON object with the keys
``dataset``, ``classes``, ``images``, ``superclasses``, ``train_classes`` and ``test_classes``.
A problem you can fix (missing dataset, bad layout, failed download) is one ``error: ...`` line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from oodml.cli import add_quiet, add_version, progress_disabled, run_cli
from oodml.datasets import DEFAULT_DATASET, canonical_name, dataset_names, load_dataset
from oodml.io import dumps_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.datasets",
        description="Load a dataset and print its size and standard class split.",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help=f"one of {', '.join(dataset_names())} (default: {DEFAULT_DATASET}, the embedded dataset)",
    )
    p.add_argument(
        "--root",
        default=None,
        help="data root (default: $OODML_DATA, else ~/.cache/oodml/data); for folder/csv the folder or CSV file",
    )
    p.add_argument("--download", action="store_true", help="download the official files if the dataset is missing")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_quiet(p)
    add_version(p)
    return p


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = canonical_name(args.dataset)
    quiet = progress_disabled(args.quiet)
    ds = load_dataset(name, root=args.root, download=args.download, progress=not quiet)
    info = ds.summary()
    if args.json:
        print(dumps_json(info, indent=None), end="")
        return 0
    print(f"dataset:        {info['dataset']}")
    print(f"root:           {ds.root}")
    print(f"classes:        {info['classes']}")
    print(f"images:         {info['images']}")
    print(f"superclasses:   {info['superclasses']}")
    print(f"standard split: {info['train_classes']} train classes, {info['test_classes']} test classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
