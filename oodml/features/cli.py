"""``python -m oodml.features`` (``oodml features``): extract (or read from the cache) the frozen
features of a dataset and print a summary; ``--out`` also writes them as a features file."""

from __future__ import annotations

import argparse
import sys

from oodml.cli import add_device, add_extractor, add_quiet, add_version, progress_disabled, run_cli
from oodml.datasets import DEFAULT_DATASET, dataset_names, load_dataset
from oodml.features.cache import extract_features, feature_cache_path
from oodml.features.extractors import default_extractor, describe_extractors, get_extractor
from oodml.features.files import save_features_file

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.features",
        description="Extract (or read from the cache) frozen features of a dataset.",
    )
    p.add_argument("--dataset", default=None, help=f"one of {', '.join(dataset_names())} (default: {DEFAULT_DATASET})")
    p.add_argument("--root", default=None, help="data root (for folder/csv: the folder or CSV file)")
    add_extractor(
        p,
        help="pixels, hog, inception, resnet50 or timm:<model> (default: pixels for glyphs/omniglot, else resnet50)",
    )
    p.add_argument("--weights", default=None, help="a local weights file for the extractor (never downloads)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(4, cpus))")
    add_device(p)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--out", default=None, help="also write the table as a features file (.npz)")
    p.add_argument("--list", action="store_true", help="list the extractors and exit")
    add_quiet(p)
    add_version(p)
    return p


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, text in describe_extractors().items():
            print(f"{name:14s} {text}")
        return 0
    ds = load_dataset(args.dataset, root=args.root)
    name = args.extractor or default_extractor(ds.name)
    ex = get_extractor(name, weights=args.weights)
    fs = extract_features(
        ds,
        ex,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        cache=not args.no_cache,
        progress=not progress_disabled(args.quiet),
    )
    print(f"dataset {ds.name}: {len(fs)} images, {len(fs.classes)} classes")
    print(f"extractor {ex.name}: {fs.dim}-d features ({ex.weights_source})")
    if not args.no_cache:
        print(f"cache {feature_cache_path(ds, ex)}")
    if args.out:
        print(f"wrote {save_features_file(fs, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
