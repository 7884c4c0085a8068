"""Benchmark of oodml.shift's kernel measures (not a test): memory stays bounded on a CUB-sized table.

Run from the repository root::

    python -m benchmarks.bench_shift            # CUB-sized: 200 classes x ~59 images, d = 2048
    python -m benchmarks.bench_shift --quick    # 60 classes x ~30 images, d = 512

On the standard 100/100-class split of a synthetic CUB-like table (``benchmarks.bench_fid.cub_like``)
it measures, with ``tracemalloc`` (numpy reports its buffers to it), the peak memory allocated while
computing the RBF MMD over all images (median bandwidth included) and the KID (50 subsets of 1000),
next to the size of the dense ``n × n`` float64 kernel matrices a direct computation would build
(peer). Then, on a subsample small enough for the dense formula, the block-wise value against the
dense one (relative difference) and both times.  Timings are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy.spatial.distance import cdist, pdist

from benchmarks.bench_fid import cub_like
from oodml import shift


def _peak(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, peak, sec


def _dense_mmd(x, y, sigma):
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma * sigma))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    C, per, d = (60, 30, 512) if args.quick else (200, 59, 2048)
    x, labels = cub_like(rng, C, per, d)
    tr, te = x[labels < C // 2], x[labels >= C // 2]
    mib = 1 / 2**20
    print(f"table {x.shape[0]} x {d} float32 ({x.nbytes * mib:.0f} MiB); sides {len(tr)} / {len(te)} images")
    dense = (len(tr) ** 2 + len(te) ** 2 + len(tr) * len(te)) * 8
    (mmd, sigma), peak, sec = _peak(lambda: shift.mmd_rbf(tr, te))
    print(
        f"MMD (RBF, all images, median bandwidth): {mmd:.4e} in {sec:.1f} s; peak {peak * mib:.0f} MiB "
        f"vs {dense * mib:.0f} MiB for the dense kernel matrices ({dense / peak:.1f}x less)"
    )
    (kid, se), peak, sec = _peak(lambda: shift.kid(tr, te))
    print(f"KID (50 subsets of 1000): {kid:.4e} ± {se:.1e} in {sec:.1f} s; peak {peak * mib:.0f} MiB")
    n = 1500 if args.quick else 2500
    a, b = tr[:n].astype(np.float64), te[:n].astype(np.float64)
    s = float(np.median(pdist(np.concatenate([a, b]))))
    t = time.perf_counter()
    ref = _dense_mmd(a, b, s)
    t_dense = time.perf_counter() - t
    t = time.perf_counter()
    got = shift.mmd_rbf(a, b, sigma=s)[0]
    t_block = time.perf_counter() - t
    print(
        f"subsample {n}/{n}: block-wise {t_block:.2f} s vs dense (scipy cdist) {t_dense:.2f} s "
        f"({t_dense / t_block:.2f}x); relative difference {abs(got - ref) / abs(ref):.1e}"
    )


if __name__ == "__main__":
    main()
