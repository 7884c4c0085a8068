"""Benchmark of the split search (oodml.splits), not a test.

Run from the repository root::

    python -m benchmarks.bench_splits               # CUB-sized, d = 2048: class and image level
    python -m benchmarks.bench_splits --quick       # d = 512, class level only (seconds)
    python -m benchmarks.bench_splits --no-image    # skip the image level (about a minute)
    python -m benchmarks.bench_splits --no-peer     # skip the reference-style FID call (~13 s)
    python -m benchmarks.bench_splits --blas-threads 1   # image level on a busy shared machine

After an image-level run it also times every values-only symmetric eigensolver at hand at d = 2048
(scipy's LAPACK drivers, LAPACK's two-stage solver, torch's MKL ``eigvalsh``): the fastest, times
the number of recorded steps, is a floor for the image-level series on the machine it runs on.

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
        lab = labels[start : start + 2048]
        z = rng.standard_normal((lab.size, rank)) @ w.T + 0.3 * rng.standard_normal((lab.size, d))
        x[start : start + lab.size] = np.maximum(centres[lab] + z + 0.5, 0.0)
    return x, labels


def _build(x, labels, classes, level, blas_threads=None):
    from oodml.splits import SearchParams, build_split_document

    half = len(classes) // 2
    p = SearchParams(level=level)
    t0 = time.perf_counter()
    doc = build_split_document(
        x, labels, classes, classes[:half], classes[half:], p, seed=0, dataset="synthetic", blas_threads=blas_threads
    )
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


def _eigen_solver_times(x, repeats=3):
    """Best-of-``repeats`` time of every values-only symmetric eigensolver at hand, at d = x.shape[1].

    The image-level FID needs the eigenvalues of one dense d × d symmetric matrix per recorded step,
    so the fastest of these solvers times the number of steps is a floor for the whole series.  The
    matrix is the covariance of 6000 rows of the table (the solvers' cost does not depend on the
    values).  Solvers: scipy's LAPACK drivers (ev, evd, evr, evx: OpenBLAS), LAPACK's two-stage
    ``dsyevd_2stage`` from the same library when it exports it, and torch's ``eigvalsh`` (MKL).
    """
    from scipy.linalg import eigh

    from oodml.fid import gaussian_stats

    sigma = np.asfortranarray(gaussian_stats(x[:6000].astype(np.float64))[1])
    solvers = {
        f"scipy {drv}": (lambda m, drv=drv: eigh(m, lower=True, eigvals_only=True, driver=drv, check_finite=False))
        for drv in ("ev", "evd", "evr", "evx")
    }
    two_stage = _lapacke_two_stage()
    if two_stage is not None:
        solvers["LAPACK dsyevd_2stage"] = two_stage
    try:
        import torch

        solvers[f"torch eigvalsh ({torch.get_num_threads()} threads)"] = lambda m: torch.linalg.eigvalsh(
            torch.from_numpy(m)
        )
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    out = {}
    for name, fn in solvers.items():
        fn(sigma)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(sigma)
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


def _lapacke_two_stage():
    """``LAPACKE_dsyevd_2stage`` (values only) from scipy's OpenBLAS, or None if not exported."""
    import ctypes
    import glob
    import os

    import scipy

    libs = glob.glob(
        os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs", "libscipy_openblas*.so")
    )
    for path in libs:
        try:
            fn = ctypes.CDLL(path).scipy_LAPACKE_dsyevd_2stage
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = [
            ctypes.c_int,
            ctypes.c_char,
            ctypes.c_char,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
        ]

        def solve(m, fn=fn):
            a = np.array(m, order="F", copy=True)
            w = np.empty(a.shape[0])
            info = fn(102, b"N", b"L", a.shape[0], a.ctypes.data, a.shape[0], w.ctypes.data)
            if info != 0:
                raise RuntimeError(f"dsyevd_2stage failed with info={info}")
            return w

        return solve
    return None


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
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="BLAS threads of the image-level FID (1 on a busy shared machine)",
    )
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
    print(
        f"{'level':<6} {'whole series':>13} {'FID calls':>9} {'per call':>9}  {'phases (steps)':<27} "
        "FIDs of the 9 splits"
    )
    for level, total, calls, phases, dd in rows:
        ph = ", ".join(f"{k} {v}" for k, v in phases.items())
        fids = " ".join(f"{s['fid']:.3g}" for s in dd["series"])
        print(f"{level:<6} {total:>11.2f} s {calls:>9d} {total / calls * 1e3:>7.0f} ms  {ph:<27} {fids}")
    goal = rows[0][1]
    print(f"\nclass level: whole series in {goal:.2f} s (goal ≤ 10 s: {'met' if goal <= 10 else 'NOT met'})")
    if "image" in levels:
        total_i, calls_i = rows[1][1], rows[1][2]
        print(f"image level: whole series in {total_i:.1f} s (goal ≤ 10 s: {'met' if total_i <= 10 else 'NOT met'})")
        times = _eigen_solver_times(x)
        print(
            f"\nfloor of the image level: one d × d eigenvalue problem per recorded step ({calls_i} steps); "
            f"values-only solvers at d = {d}, best of 3:"
        )
        for name, secs in sorted(times.items(), key=lambda kv: kv[1]):
            print(f"  {name:<28} {secs:.3f} s   × {calls_i} steps = {secs * calls_i:5.1f} s")
        best = min(times.values())
        print(
            "  -> no solver here can do the eigenvalue work alone in ≤ 10 s"
            if best * calls_i > 10
            else "  -> the eigenvalue work alone fits in 10 s"
        )

    if not args.no_peer:
        from oodml.splits import class_means

        means = class_means(x, labels)
        secs, value = _reference_fid_call(means[:100], means[100:])
        ours = rows[0][4]["trajectory"][0]["fid"]
        proj = secs * n_calls
        print(
            f"peer: one reference-style FID (np.cov + scipy sqrtm, d = {d}) = {secs:.2f} s "
            f"(value {value:.6g}, ours {ours:.6g}, rel. diff {abs(value - ours) / abs(ours):.1e}); "
            f"× {n_calls} calls = {proj:.0f} s projected for the same class-level search "
            f"-> ours {proj / goal:.0f}× faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
