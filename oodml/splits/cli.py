"""``python -m oodml.make_splits``: build, check or import a dataset's FID-graded split series.

Build (the search documented in :mod:`oodml.splits`)::

    python -m oodml.make_splits                                  # embedded glyphs, offline
    python -m oodml.make_splits --dataset cub --root ~/data      # resnet50 features (cached)
    python -m oodml.make_splits --features-file feats.npz --dataset mydata

writes ``splits/<dataset>.json`` (``--out``) and the trajectory figure
``figures/splits_<dataset>.png/.pdf`` (``--figure STEM``; ``--figure none`` to skip), then prints
a summary table (id, FID, phase, train/test classes, train/test images).

Check a file (validate it, replay its trajectory, recompute its FIDs from features of the same
extractor and level; exit status 2 with one line on any mismatch)::

    python -m oodml.make_splits --check splits/cub.json --root ~/data
    python -m oodml.make_splits --check splits/mine.json --features-file feats.npz

Import the published ooDML splits (the reference's ``datasplits/<dataset>_splits.pkl``, read
without executing anything)::

    python -m oodml.make_splits --import-oodml cub200_splits.pkl --dataset cub --root ~/data
    python -m oodml.make_splits --import-oodml cars196_splits.pkl --root ~/data    # dataset from the name
    python -m oodml.make_splits --import-oodml cars196_splits.pkl --names-only     # no images needed
    python -m oodml.make_splits --import-oodml cars196_splits.pkl --root ~/data --redraw-episodes
    python -m oodml.make_splits --check splits/cars.json --root ~/data --recompute-fid --features resnet50

Published episodes that the dataset's layout cannot map stop the import (one line naming the
first unmappable image and the layouts that work) unless ``--redraw-episodes``; see
:mod:`oodml.splits.published`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import threading
from pathlib import Path

import numpy as np

from oodml import figure_process
from oodml.cli import add_extractor, add_quiet, add_version, progress_disabled, run_cli
from oodml.datasets import canonical_name, load_dataset
from oodml.errors import BadInputError, OodmlError
from oodml.features.prefetch import load_features_file  # no torch; the table the entry point began to read
from oodml.splits.check import check_split_file
from oodml.splits.figure import plot_split_series  # matplotlib is imported when a figure is drawn
from oodml.splits.figure_worker import FigureWorker
from oodml.splits.file import load_splits, write_split_document
from oodml.splits.make import _table_from_featureset, make_splits
from oodml.splits.params import SearchParams
from oodml.splits.published import dataset_from_filename, import_published

__all__ = ["build_parser", "cli", "format_summary", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m oodml.make_splits",
        description="Build (or --check, or --import-oodml) a series of FID-graded train/test class splits.",
    )
    _add_feature_options(ap)
    _add_search_options(ap)
    _add_series_options(ap)
    _add_task_options(ap)
    add_quiet(ap)
    add_version(ap)
    return ap


def _add_feature_options(ap: argparse.ArgumentParser) -> None:
    """Where the features come from: a dataset (extracted, cached) or a features file."""
    ap.add_argument("--dataset", help="dataset name (default: the embedded 'glyphs')")
    ap.add_argument("--root", help="data root (or the folder/CSV for 'folder'/'csv')")
    ap.add_argument("--download", action="store_true", help="download the dataset if missing")
    add_extractor(ap, help="feature extractor (default: the dataset's default)")
    ap.add_argument("--weights", metavar="PATH", help="local weights file for the extractor")
    ap.add_argument("--features-file", metavar="FILE", help="use a feature table (.npz) instead of extracting")


def _add_search_options(ap: argparse.ArgumentParser) -> None:
    """The search (:class:`~oodml.splits.params.SearchParams`)."""
    ap.add_argument(
        "--level",
        choices=("class", "image"),
        default="class",
        help="FID over class means (reference) or over all images (default: class)",
    )
    ap.add_argument("--num-splits", type=int, default=9, metavar="K", help="splits to select (default 9)")
    ap.add_argument(
        "--swaps-per-iter",
        type=int,
        default=None,
        metavar="N",
        help="class swaps per iteration (default max(2, ceil(1%% of the smaller side)): 2 up to 200 "
        "classes a side, 114 for SOP)",
    )
    ap.add_argument(
        "--history",
        type=int,
        default=5,
        metavar="H",
        help="skip classes moved in the last H swaps (default 5; 0 = no history)",
    )
    ap.add_argument(
        "--patience",
        type=int,
        default=5,
        metavar="P",
        help="end a phase after P iterations without a new best FID (default 5; 0 = never)",
    )
    ap.add_argument(
        "--max-iters",
        type=int,
        default=None,
        metavar="N",
        help="iterations per swap phase (default: ceil(min(smaller side, 2000) / swaps-per-iter))",
    )
    ap.add_argument(
        "--min-classes",
        type=int,
        default=None,
        metavar="M",
        help="removal floor per side (default: max(10, MIN_FRACTION of the side's standard size))",
    )
    ap.add_argument(
        "--min-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="default removal floor as a fraction of each side's standard size (default 0.5)",
    )
    ap.add_argument(
        "--trajectory-stride",
        type=int,
        default=1,
        metavar="S",
        help="evaluate the FID every S search iterations (and at each phase's last step) instead "
        "of every one; the selected splits are evaluated steps, so their FIDs are exact. The "
        "moves need only class means, so they are unchanged; only where a phase stops can "
        "move (patience is checked at evaluated steps). For --level image on a laptop "
        "(default 1)",
    )
    ap.add_argument(
        "--swap-unit",
        choices=("class", "superclass"),
        default="class",
        help="move single classes (default) or whole superclasses (SOP's 12 categories; the dataset's "
        "or the features file's superclasses), as the ooDML reference's --super option",
    )


def _add_series_options(ap: argparse.ArgumentParser) -> None:
    """What every split carries (validation classes, episodes, controls) and where it is written."""
    ap.add_argument("--episodes", type=int, default=10, metavar="E", help="few-shot episodes per shot (default 10)")
    ap.add_argument("--val-fraction", type=float, default=0.15, help="validation classes per split (default 0.15)")
    ap.add_argument("--seed", type=int, default=0, help="seed of validation classes and episodes (default 0)")
    ap.add_argument(
        "--controls",
        type=int,
        default=0,
        metavar="N",
        help="also write N matched random-removal control splits per removal split (default 0)",
    )
    ap.add_argument("--out", metavar="FILE", help="split file to write (default splits/<dataset>.json)")
    ap.add_argument(
        "--figure",
        metavar="STEM",
        help="figure stem, writes STEM.png and STEM.pdf (default figures/splits_<dataset>; 'none' to skip)",
    )


def _add_task_options(ap: argparse.ArgumentParser) -> None:
    """The other tasks: --check a file, --import-oodml the published splits."""
    ap.add_argument("--check", metavar="FILE", help="verify a split file instead of building one")
    ap.add_argument(
        "--import-oodml",
        metavar="FILE",
        help="convert the ooDML study's published <dataset>_splits.pkl "
        "(dataset from the file name unless --dataset is given)",
    )
    ap.add_argument(
        "--names-only",
        action="store_true",
        help="with --import-oodml: keep the published class and image names, no images needed "
        "(resolved against the dataset when a run starts)",
    )
    ap.add_argument(
        "--redraw-episodes",
        action="store_true",
        help="with --import-oodml: draw new few-shot episodes where the published ones cannot be mapped "
        "onto the dataset's layout (recorded in the file; default: stop with an error)",
    )
    ap.add_argument(
        "--recompute-fid",
        action="store_true",
        help="with --check on an imported file: recompute its FIDs with --features and report the "
        "differences to the published ones",
    )


def _params(args) -> SearchParams:
    return SearchParams.from_dict(
        {
            "level": args.level,
            "num_splits": args.num_splits,
            "swaps_per_iter": args.swaps_per_iter,
            "history": args.history,
            "patience": None if args.patience == 0 else args.patience,
            "max_iters": args.max_iters,
            "min_classes": args.min_classes,
            "min_fraction": args.min_fraction,
            "episodes": args.episodes,
            "val_fraction": args.val_fraction,
            "trajectory_stride": args.trajectory_stride,
        },
        source="python -m oodml.make_splits",
    )


def format_summary(sf) -> str:
    """The summary table of a split file's series."""
    head = ("id", "FID", "phase", "train cls", "test cls", "val cls", "train img", "test img")
    rows = [
        (
            str(s.id),
            f"{s.fid:.4g}",
            s.phase + (" (std)" if s.standard else ""),
            str(len(s.train)),
            str(len(s.test)),
            str(len(s.val)),
            str(s.n_train_images),
            str(s.n_test_images),
        )
        for s in sf.series
    ]
    rows += [
        (
            str(c.id),
            f"{c.fid:.4g}",
            f"control of {c.control_of}",
            str(len(c.train)),
            str(len(c.test)),
            str(len(c.val)),
            str(c.n_train_images),
            str(c.n_test_images),
        )
        for c in getattr(sf, "controls", [])
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i != 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _figure_worker(args) -> FigureWorker | None:
    """A child process that imports matplotlib (≈ 0.7 s) on the other core while the search runs,
    when a figure will be drawn: the one :mod:`oodml.figure_process` started before this command's
    imports, or a new one (see :mod:`oodml.splits.figure_worker`: a thread would hold the GIL)."""
    if (args.figure or "").lower() == "none":
        figure_process.discard_early()
        return None
    try:
        return FigureWorker().start()
    except OSError:  # no child process here: the figure is drawn in this process
        return None


def _prefetch_search_modules() -> None:
    """Import the FID code (scipy.linalg ≈ 0.4 s) in a thread while the features file is read: the
    reading (file I/O, numpy's checks, the digests) releases the GIL; the search waits for the
    import through Python's module lock."""

    def _import() -> None:
        with contextlib.suppress(Exception):  # the search's own import reports any real problem
            importlib.import_module("oodml.shift.fid")

    threading.Thread(target=_import, name="oodml-prefetch-fid", daemon=True).start()


def _figure_stem(args, name: str) -> str:
    """``--figure``, else ``figures/splits_<name>`` (``none``: no figure)."""
    return args.figure or f"figures/splits_{name}"


def _figure(args, name: str, sf, quiet: bool, worker: FigureWorker | None = None) -> None:
    """Draw the figure (``worker``: wait for the one it was asked for and told to write)."""
    stem = _figure_stem(args, name)
    if stem.lower() == "none":
        return
    if worker is not None:
        worker.wait()
    else:
        plot_split_series(sf, stem)
    if not quiet:
        print(f"wrote {stem}.png and {stem}.pdf")


def _dataset_name(args, default: str | None = None) -> str:
    if args.dataset:
        return canonical_name(args.dataset)
    return default or canonical_name(None)


def _check(args, progress: bool) -> int:
    path = Path(args.check)
    sf = load_splits(path)  # structure first, without a dataset
    prov = sf.provenance
    source = prov.get("source")
    if args.features_file:
        fs = load_features_file(args.features_file)
        if source == "features-file" and prov.get("fingerprint") and prov["fingerprint"] != fs.fingerprint:
            raise BadInputError(
                f"split file {path} was made from other features (fingerprint {str(prov['fingerprint'])[:12]}…, "
                f"{args.features_file} has {fs.fingerprint[:12]}…)"
            )
        if len(fs) != sf.num_images:
            raise BadInputError(
                f"split file {path} counts {sf.num_images} images but {args.features_file} has {len(fs)} rows"
            )
    elif source == "features-file":
        raise BadInputError(
            f"split file {path} was made from a features file ({prov.get('features_file')}); "
            "pass it with --features-file to check it"
        )
    else:
        from oodml import features as feats  # torch ≈ 3.6 s: only when features are extracted

        ds = load_dataset(prov.get("dataset") or None, root=args.root, download=args.download)
        sf = load_splits(path, dataset=ds)
        if source == "oodml-import":
            parts = prov.get("parts") or {}
            print(
                f"{path}: valid ({len(sf.series)} imported ooDML splits on {ds.name}; FIDs "
                f"{parts.get('fids', 'published')}, validation classes {parts.get('validation', '?')}, "
                f"episodes {parts.get('episodes', '?')})"
            )
            if not args.recompute_fid:
                print("the FIDs are the published ones (the study's features); --recompute-fid recomputes them")
                return 0
            return _recompute_fid(args, path, sf, ds, progress)
        extractor = args.extractor or prov.get("extractor") or None
        fs = feats.extract_features(ds, extractor, weights=args.weights, progress=progress)
    x, lab, classes = _table_from_featureset(fs)
    report = check_split_file(sf, x, lab, classes, progress=progress)
    n_split = sum(r["what"] == "split" for r in report.rows)
    n_step = sum(r["what"] == "step" for r in report.rows)
    worst = max((abs(r["stored"] - r["recomputed"]) / max(abs(r["stored"]), 1e-12) for r in report.rows), default=0.0)
    n_ctrl = sum(r["what"] == "control" for r in report.rows)
    ctrl = f", {n_ctrl} control FIDs" if n_ctrl else ""
    print(
        f"{path}: recomputed {n_split} split FIDs{ctrl} and {n_step} trajectory FIDs "
        f"({prov.get('extractor')} features, {prov.get('level')} level); largest relative difference {worst:.2e}"
    )
    for r in report.rows:
        if not r["ok"]:
            print(f"  MISMATCH {r['what']} {r['id']}: stored {r['stored']!r}, recomputed {r['recomputed']!r}")
    if not report.ok:
        raise BadInputError(
            f"split file {path} does not match its features: {len(report.mismatches)} mismatch(es), "
            f"first: {report.mismatches[0]}; regenerate it with python -m oodml.make_splits"
        )
    print("OK")
    return 0


def _recompute_fid(args, path: Path, sf, ds, progress: bool) -> int:
    """Recompute an imported file's FIDs with an extractor and report the differences."""
    from oodml import features as feats  # torch ≈ 3.6 s: only when features are extracted

    extractor = args.extractor or feats.default_extractor(ds.name)
    fs = feats.extract_features(ds, extractor, weights=args.weights, progress=progress)
    x, lab, classes = _table_from_featureset(fs)
    report = check_split_file(sf, x, lab, classes, progress=progress)
    print(
        f"recomputed {len(report.rows)} split FIDs with {extractor} features (class level) against the published ones:"
    )
    print(f"{'split':>5}  {'published':>10}  {'recomputed':>10}  {'difference':>10}")
    for r in report.rows:
        print(f"{r['id']:>5}  {r['stored']:>10.4g}  {r['recomputed']:>10.4g}  {r['recomputed'] - r['stored']:>+10.4g}")
    pub = np.array([r["stored"] for r in report.rows])
    rec = np.array([r["recomputed"] for r in report.rows])
    same_order = bool(np.all(np.diff(rec[np.argsort(pub, kind="stable")]) >= 0))
    print(
        f"largest absolute difference {np.max(np.abs(rec - pub)):.4g}; the recomputed FIDs "
        f"{'keep' if same_order else 'do NOT keep'} the published order"
    )
    return 0


def _import(args, progress: bool) -> int:
    name = _dataset_name(args, dataset_from_filename(args.import_oodml))
    if args.names_only:
        doc = import_published(args.import_oodml, None, _params(args), seed=args.seed, dataset_name=name)
        ds = None
    else:
        ds = load_dataset(name, root=args.root, download=args.download)
        doc = import_published(
            args.import_oodml, ds, _params(args), seed=args.seed, redraw_episodes=args.redraw_episodes
        )
    out = Path(args.out or f"splits/{name}.json")
    write_split_document(out, doc)
    sf = load_splits(out, dataset=ds)
    parts = doc["provenance"]["parts"]
    print(
        f"imported {len(sf.series)} ooDML splits from {args.import_oodml} -> {out} "
        f"({'names only, resolved when a run starts' if ds is None else doc['provenance']['image_names']}; "
        f"FIDs {parts['fids']}, validation classes {parts['validation']}, episodes {parts['episodes']})"
    )
    if ds is not None:
        print(format_summary(sf))
        _figure(args, name, sf, args.quiet)
    return 0


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not progress_disabled(args.quiet)
    if args.check and args.import_oodml:
        raise OodmlError("--check and --import-oodml are separate tasks; give one of them")
    if (args.names_only or args.redraw_episodes) and not args.import_oodml:
        raise OodmlError("--names-only and --redraw-episodes go with --import-oodml FILE")
    if args.names_only and args.redraw_episodes:
        raise OodmlError("--redraw-episodes needs the dataset on disk; drop --names-only (or --redraw-episodes)")
    if args.recompute_fid and not args.check:
        raise OodmlError("--recompute-fid goes with --check FILE")
    if args.controls and (args.check or args.import_oodml):
        raise OodmlError("--controls is drawn while building a split file; give it without --check / --import-oodml")
    if args.check or args.import_oodml:
        figure_process.discard_early()  # these draw no figure through a child
        return _check(args, progress) if args.check else _import(args, progress)
    worker = _figure_worker(args)
    try:
        return _build(args, progress, worker)
    finally:
        if worker is not None:
            worker.close()


def _build(args, progress: bool, worker: FigureWorker | None) -> int:
    """Build the series (the default task), print its summary and draw its figure."""
    _prefetch_search_modules()
    if args.features_file:
        name = args.dataset or Path(args.features_file).stem
    else:
        name = _dataset_name(args)
    out = Path(args.out or f"splits/{name}.json")
    stem = _figure_stem(args, name)
    sf = make_splits(
        args.dataset if not args.features_file else name,
        root=args.root,
        download=args.download,
        extractor=args.extractor,
        weights=args.weights,
        features_file=args.features_file,
        params=_params(args),
        seed=args.seed,
        out=out,
        progress=progress,
        controls=args.controls,
        swap_unit=args.swap_unit,
        # the child renders the figure while the episodes are drawn and the file is written
        on_series=None if worker is None else (lambda view: worker.request_view(view, stem)),
    )
    if worker is not None and worker.requested:  # the split file is written: the child may write the figure
        worker.commit()
    elif worker is not None:
        worker.request(out, stem)
    n_steps = len(sf.trajectory)
    print(
        f"wrote {out}: {len(sf.series)} splits selected from {n_steps} search steps "
        f"({sf.provenance.get('extractor')} features, {sf.provenance.get('level')} level)"
    )
    print(format_summary(sf))
    _figure(args, name, sf, args.quiet, worker)
    return 0


cli = main  # the name tests and scripts used before main itself was wrapped by run_cli

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
