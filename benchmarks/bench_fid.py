"""Benchmark of oodml.fid (not a test).

Run from the repository root::

    python -m benchmarks.bench_fid            # d = 2048, CUB-sized problem (~1 min)
    python -m benchmarks.bench_fid --quick    # d = 512, smaller problem (a few seconds)

1. pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``) against our
   ``frechet_distance`` on the same (μ, Σ) pairs (features from a low-rank-plus-noise model),
   timed in the same run: times, ratio and relative difference of the values; plus the cost of
   the three LAPACK steps of our dense path.
2. ``FIDComputer`` per-call time at class level and image level on a CUB-sized synthetic problem
   (200 classes, ~59 images per class, 2048-d float32 features) along a simulated split search
   (one-class swaps, then removals): incremental calls vs from-scratch calls
   (``compute(..., incremental=False)``), with the largest relative difference between the two.

Timings use ``time.perf_counter`` after one warm-up call.  On a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

from oodml import fid


def _features(rng, n, d, rank, shift=0.0, noise=0.3):
    """Low-rank-plus-noise features (float64): a rank-``rank`` signal plus isotropic noise."""
    w = rng.standard_normal((d, rank)) / np.sqrt(rank)
    return rng.standard_normal((n, rank)) @ w.T + noise * rng.standard_normal((n, d)) + shift


def cub_like(rng, num_classes, mean_per_class, d, rank=128):
    """Synthetic CUB-like table: class means + within-class low-rank-plus-noise, float32."""
    counts = rng.integers(mean_per_class - 12, mean_per_class + 12, num_classes)
    labels = np.repeat(np.arange(num_classes), counts)
    w = rng.standard_normal((d, rank)) / np.sqrt(rank)
    centers = 2.0 * rng.standard_normal((num_classes, rank)) @ w.T
    x = np.empty((labels.size, d), dtype=np.float32)
    for start in range(0, labels.size, 2048):  # in chunks to bound memory
        lab = labels[start : start + 2048]
        z = rng.standard_normal((lab.size, rank)) @ w.T + 0.3 * rng.standard_normal((lab.size, d))
        x[start : start + lab.size] = np.maximum(centers[lab] + z + 0.5, 0.0)  # ReLU-like features
    return x, labels


def search_sequence(rng, num_classes, calls):
    """A split-search-like sequence: default split, one-class swaps, then one-class removals."""
    train = list(range(num_classes // 2))
    test = list(range(num_classes // 2, num_classes))
    seq = [(sorted(train), sorted(test))]
    n_swaps = int(0.8 * (calls - 1))
    for i in range(calls - 1):
        if i < n_swaps:
            a = train.pop(int(rng.integers(len(train))))
            b = test.pop(int(rng.integers(len(test))))
            train.append(b)
            test.append(a)
        else:
            side = train if i % 2 else test
            side.pop(int(rng.integers(len(side))))
        seq.append((sorted(train), sorted(test)))
    return seq


def _time(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _fmt(seconds):
    if seconds >= 1.0:
        return f"{seconds:8.2f} s "
    return f"{seconds * 1e3:8.1f} ms"


def _threads():
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(
            f"{i['internal_api']}:{i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas"
        )
    except Exception:  # pragma: no cover - threadpoolctl is optional
        return "unknown"


def bench_dense(d, n, rng, repeat, rows):
    from pytorch_fid.fid_score import calculate_frechet_distance

    x1 = _features(rng, n, d, rank=d // 16)
    x2 = _features(rng, n, d, rank=d // 16, shift=0.05)
    mu1, s1 = fid.gaussian_stats(x1)
    mu2, s2 = fid.gaussian_stats(x2)

    ours_t = _time(lambda: fid.frechet_distance(mu1, s1, mu2, s2), repeat)
    ours = fid.frechet_distance(mu1, s1, mu2, s2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm(disp=...) inside pytorch-fid
        calculate_frechet_distance(mu1[:8], s1[:8, :8], mu2[:8], s2[:8, :8])  # warm-up (tiny)
        t0 = time.perf_counter()
        ref = float(calculate_frechet_distance(mu1, s1, mu2, s2))
        ref_t = time.perf_counter() - t0
    ours_med = statistics.median(ours_t)
    rows.append((f"pytorch-fid calculate_frechet_distance (d={d})", _fmt(ref_t), f"FID {ref:.6f}"))
    rows.append((f"oodml frechet_distance (d={d}, median of {repeat})", _fmt(ours_med), f"FID {ours:.6f}"))
    rows.append(("  speed-up vs pytorch-fid", f"{ref_t / ours_med:8.1f} x ", "goal >= 5x"))
    rows.append(("  relative difference of the values", f"{abs(ours - ref) / abs(ref):10.1e}", ""))

    # the three LAPACK steps of the dense path, on the same matrices
    from scipy.linalg import lapack

    s1f, s2f = fid._lstore(s1), fid._lstore(s2)
    chol = fid._cholesky(s1f)
    m = fid._sygst(s2f, chol, overwrite=False)
    steps = [
        ("  potrf (Cholesky of Σ1)", lambda: lapack.dpotrf(s1f, lower=1, clean=0)),
        ("  sygst (Lᵀ Σ2 L)", lambda: fid._sygst(s2f, chol, overwrite=False)),
        (f"  eigenvalues ({fid.EIGH_DRIVER}, values only)", lambda: fid._eigvalsh(m)),
    ]
    for name, fn in steps:
        rows.append((name, _fmt(min(_time(fn, repeat))), "min"))
    return ref_t / ours_med


def bench_computer(level, x, labels, seq, n_scratch, rows):
    fc = fid.FIDComputer(x, labels, level=level, cache_size=0)
    fc.compute(*seq[0], incremental=False)  # warm-up of the code paths (no state kept)
    t0 = time.perf_counter()
    values = [fc(*seq[0])]  # first call: builds the statistics from scratch
    first = time.perf_counter() - t0
    per_call = []
    for train, test in seq[1:]:
        t0 = time.perf_counter()
        values.append(fc(train, test))
        per_call.append(time.perf_counter() - t0)
    scratch_t, worst = [], 0.0
    picks = np.linspace(1, len(seq) - 1, n_scratch).astype(int)
    for i in picks:
        t0 = time.perf_counter()
        ref = fc.compute(*seq[i], incremental=False)
        scratch_t.append(time.perf_counter() - t0)
        worst = max(worst, abs(values[i] - ref) / abs(ref))
    med = statistics.median(per_call)
    total = first + sum(per_call)
    projected = first + 99 * med
    n1, n2 = (
        (sum(int((labels == c).sum()) for c in side) for side in seq[0])
        if level == "image"
        else (len(seq[0][0]), len(seq[0][1]))
    )
    rows.append((f"FIDComputer level={level!r}: first call ({n1} vs {n2} points)", _fmt(first), ""))
    rows.append((f"  incremental call (median of {len(per_call)})", _fmt(med), f"{len(seq)} calls took {total:.2f} s"))
    rows.append(
        (
            f"  from-scratch call (median of {len(scratch_t)})",
            _fmt(statistics.median(scratch_t)),
            f"max rel diff incr/scratch {worst:.1e}",
        )
    )
    rows.append(("  projected 100-call search (first + 99 incremental)", _fmt(projected), "goal <= 10 s"))
    rows.append(("  counters", "", " ".join(f"{k}={v}" for k, v in fc.counters.items() if v)))
    return med, projected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 512 and a smaller problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-calls", type=int, default=None, help="number of image-level calls to time (default 16, quick 10)"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit every BLAS pool to this many threads for the whole run (try 1 when other jobs share the cores)",
    )
    args = parser.parse_args(argv)
    if args.blas_threads:
        with fid._blas_threads(threads=args.blas_threads):
            return _run(args)
    return _run(args)


def _run(args):

    rng = np.random.default_rng(args.seed)
    if args.quick:
        d, n_side, repeat = 512, 1500, 3
        num_classes, per_class, image_calls = 60, 40, 10
    else:
        d, n_side, repeat = 2048, 6000, 3
        num_classes, per_class, image_calls = 200, 59, 16
    if args.image_calls:
        image_calls = args.image_calls

    print(
        f"oodml.fid benchmark  (d={d}, cpus={os.cpu_count()}, BLAS threads {_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}, "
        f"numpy {np.__version__})",
        flush=True,
    )
    rows: list[tuple[str, str, str]] = []
    bench_dense(d, n_side, rng, repeat, rows)

    x, labels = cub_like(rng, num_classes, per_class, d)
    seq = search_sequence(rng, num_classes, 100)
    bench_computer("class", x, labels, seq, n_scratch=20, rows=rows)
    bench_computer("image", x, labels, seq[:image_calls], n_scratch=3, rows=rows)

    print(
        f"synthetic table: {num_classes} classes, {labels.size} images, {d}-d float32; "
        f"search = default split, swaps of one class, then removals"
    )
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'':{width}}{'time':>11}   notes")
    for name, t, note in rows:
        print(f"{name:{width}}{t:>11}   {note}")


if __name__ == "__main__":
    main()
