"""Benchmark of the split search (oodml.splits), not a test.

Run from the repository root::

    python -m benchmarks.bench_splits               # CUB-sized, d = 2048: class and image level
    python -m benchmarks.bench_splits --quick       # d = 512, class level only (seconds)
    python -m benchmarks.bench_splits --no-image    # skip the image level (about a minute)
    python -m benchmarks.bench_splits --no-peer     # skip the reference-style FID call (~13 s)
    python -m benchmarks.bench_splits --blas-threads 1   # image level on a busy shared machine

What it measures, from a feature table already in memory (as read from the feature cache):
the *whole* series -- easier, harder and removal phases, selection of 9 splits, validation
classes and 4 × 10 few-shot episodes per split, the assembled document -- for a CUB-sized
synthetic problem: 200 classes, ~59 images per class (~11,800 images), 2048-d float32 features
with superclass structure (20 groups of classes, mostly contiguous in class order, so the
standard first-half/second-half split is a moderate shift that the search can lower and raise).
Default search parameters (2 swaps per iteration, history 5, patience 5).

Peer, measured in the same run: one FID the way the ooDML reference computes it at every
iteration (``np.cov`` of the class means and ``scipy.linalg.sqrtm`` of the 2048 × 2048 product),
multiplied by the number of FID calls of our class-level search.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def structured_features(rng, num_classes=200, mean_per_class=59, d=2048, groups=20, rank=128, mix=0.3):
    """Synthetic CUB-like table with superclass structure (float32, ReLU-like)."""
    counts = rng.integers(mean_per_class - 12, mean_per_class + 13, num_classes)
    labels = np.repeat(np.arange(num_classes), counts)
    g = (np.arange(num_classes) * groups) // num_classes
    flip = rng.random(num_classes) < mix
    g[flip] = rng.integers(0, groups, int(flip.sum()))
    w = rng.standard_normal((d, rank)) / np.sqrt(rank)
    group_centres = 2.0 * rng.standard_normal((groups, rank)) @ w.T
    centres = group_centres[g] + 1.0 * rng.standard_normal((num_classes, rank)) @ w.T
    x = np.empty((labels.size, d), dtype=np.float32)
    for start in range(0, labels.size, 2048):
        lab = labels[start:start + 2048]
        z = rng.standard_normal((lab.size, rank)) @ w.T + 0.3 * rng.standard_normal((lab.size, d))
        x[start:start + lab.size] = np.maximum(centres[lab] + z + 0.5, 0.0)
    return x, labels


def _build(x, labels, classes, level, blas_threads=None):
    from oodml.splits import SearchParams, build_split_document

    half = len(classes) // 2
    p = SearchParams(level=level)
    t0 = time.perf_counter()
    doc = build_split_document(x, labels, classes, classes[:half], classes[half:], p, seed=0, dataset="synthetic",
                               blas_threads=blas_threads)
    total = time.perf_counter() - t0
    return doc, total


def _reference_fid_call(means_train, means_test):
    """One FID as the reference split_maker computes it (np.cov + scipy sqrtm), timed."""
    from scipy import linalg

    t0 = time.perf_counter()
    mu1, mu2 = means_train.mean(0), means_test.mean(0)
    c1, c2 = np.cov(means_train, rowvar=False), np.cov(means_test, rowvar=False)
    eps = np.eye(len(c1)) * 1e-8
    covmean = linalg.sqrtm((c1 + eps).dot(c2 + eps))
    covmean = (covmean[0] if isinstance(covmean, tuple) else covmean).real
    value = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))
    return time.perf_counter() - t0, value


def _phase_counts(doc):
    out = {}
    for r in doc["trajectory"]:
        out[r["phase"]] = out.get(r["phase"], 0) + 1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_splits", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 512, class level only")
    ap.add_argument("--no-image", action="store_true", help="skip the image level")
    ap.add_argument("--no-peer", action="store_true", help="skip the reference-style FID call")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="BLAS threads of the image-level FID (1 on a busy shared machine)")
    args = ap.parse_args(argv)
    d = 512 if args.quick else 2048
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    x, labels = structured_features(rng, d=d)
    classes = [f"class{i:03d}" for i in range(200)]
    print(f"synthetic table: {x.shape[0]} images, 200 classes, d = {d} (built in {time.perf_counter() - t0:.1f} s)")
    import oodml.fid  # noqa: F401  (import cost not part of the timing)
    import oodml.splits  # noqa: F401

    rows = []
    doc, total = _build(x, labels, classes, "class")
    n_calls = len(doc["trajectory"])
    rows.append(("class", total, n_calls, _phase_counts(doc), doc))
    levels = ["class"] if (args.quick or args.no_image) else ["class", "image"]
    if "image" in levels:
        print("image level: about 0.6 s per FID call at d = 2048 ...", flush=True)
        doc_i, total_i = _build(x, labels, classes, "image", args.blas_threads)
        rows.append(("image", total_i, len(doc_i["trajectory"]), _phase_counts(doc_i), doc_i))

    print()
    print(f"{'level':<6} {'whole series':>13} {'FID calls':>9} {'per call':>9}  {'phases (steps)':<27} "
          "FIDs of the 9 splits")
    for level, total, calls, phases, dd in rows:
        ph = ", ".join(f"{k} {v}" for k, v in phases.items())
        fids = " ".join(f"{s['fid']:.3g}" for s in dd["series"])
        print(f"{level:<6} {total:>11.2f} s {calls:>9d} {total / calls * 1e3:>7.0f} ms  {ph:<27} {fids}")
    goal = rows[0][1]
    print(f"\nclass level: whole series in {goal:.2f} s (goal ≤ 10 s: {'met' if goal <= 10 else 'NOT met'})")

    if not args.no_peer:
        from oodml.splits import class_means

        means = class_means(x, labels)
        secs, value = _reference_fid_call(means[:100], means[100:])
        ours = rows[0][4]["trajectory"][0]["fid"]
        proj = secs * n_calls
        print(f"peer: one reference-style FID (np.cov + scipy sqrtm, d = {d}) = {secs:.2f} s "
              f"(value {value:.6g}, ours {ours:.6g}, rel. diff {abs(value - ours) / abs(ours):.1e}); "
              f"× {n_calls} calls = {proj:.0f} s projected for the same class-level search "
              f"-> ours {proj / goal:.0f}× faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
