"""Benchmark: oodml.evaluate vs pytorch-metric-learning's AccuracyCalculator at SOP scale.

    python -m benchmarks.bench_evaluate            # 60,502 x 512, 11,318 classes (minutes)
    python -m benchmarks.bench_evaluate --quick    # 10x smaller

Both get the same L2-normalised, structured embeddings (class centres + noise in a space with a
decaying spectrum, grouped under 12 super-classes like SOP's; class sizes 2..12, mean 5.35):

(a) ``AccuracyCalculator(include=("precision_at_1", "r_precision",
    "mean_average_precision_at_r", "NMI"), k="max_bin_count")`` with the query set as the
    reference (``ref_includes_query=True``): faiss k-NN + faiss k-means (20 iterations);
(b) ``evaluate_embeddings(x, y, ks="sop")``: Recall@1/10/100/1000, precision@1, R-precision,
    MAP@R and NMI (20 iterations at most).

Runs (a) and (b) in ``--rounds`` interleaved rounds (default 2; the order alternates so that a
change of machine load hits both), prints every wall time with the load average around it, the
ratio of every round, the median ratio and whether the goal (ratio <= 0.5) is met, then the
metrics side by side (P@1, R-precision and MAP@R must agree to 1e-6, else the exit status is 1;
NMI comes from different k-means initialisations, so it is only close).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def sop_like(
    n: int = 60502,
    n_classes: int = 11318,
    d: int = 512,
    seed: int = 0,
    noise: float = 0.9,
    decay: float = 1.0,
    n_super: int = 12,
    super_weight: float = 0.6,
):
    """SOP-shaped synthetic embeddings ``(n, d)`` float32 (L2-normalised) and labels ``(n,)``.

    Class sizes are 2 + Binomial(10, p) (mean n / n_classes), adjusted to sum to ``n``; class
    centres mix a super-class direction and a class direction; per-dimension scales decay like
    ``i ** (-decay / 2)`` so the data has a low effective dimension, as learned embeddings do.
    """
    rng = np.random.default_rng(seed)
    sizes = 2 + rng.binomial(10, (n / n_classes - 2) / 10, size=n_classes)
    diff = n - int(sizes.sum())
    while diff:
        i = rng.integers(n_classes)
        if diff > 0 and sizes[i] < 12:
            sizes[i] += 1
            diff -= 1
        elif diff < 0 and sizes[i] > 2:
            sizes[i] -= 1
            diff += 1
    labels = np.repeat(np.arange(n_classes), sizes)[rng.permutation(n)]
    scale = np.arange(1, d + 1, dtype=np.float32) ** (-decay / 2)
    scale /= np.linalg.norm(scale)
    sup = rng.standard_normal((n_super, d), dtype=np.float32) * scale
    centres = rng.standard_normal((n_classes, d), dtype=np.float32) * scale
    centres = super_weight * sup[rng.integers(n_super, size=n_classes)] + np.sqrt(1 - super_weight**2) * centres
    x = centres[labels] + noise * rng.standard_normal((n, d), dtype=np.float32) * scale
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, np.float32), labels


def run_pml(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    start = time.perf_counter()
    res = calc.get_accuracy(x, y, x, y, ref_includes_query=True)
    elapsed = time.perf_counter() - start
    return {
        "precision@1": res["precision_at_1"],
        "r_precision": res["r_precision"],
        "map@r": res["mean_average_precision_at_r"],
        "nmi": res["NMI"],
    }, elapsed


def run_ours(x: np.ndarray, y: np.ndarray, progress: bool) -> tuple[dict[str, float], float]:
    from oodml.metrics import evaluate_embeddings

    start = time.perf_counter()
    res = evaluate_embeddings(x, y, ks="sop", progress=progress)
    return res, time.perf_counter() - start


def _load() -> str:
    try:
        return f"load {os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - not Unix
        return "load ?"


def floors(x: np.ndarray, y: np.ndarray) -> None:
    """Issue 15's floors, same data, same run: (1) the leave-one-out neighbour pass against the
    blocked half similarity product it is built on (the same block pairs through the same GEMM,
    nothing else); (2) our exact k-means against faiss' k-means, per iteration (k = classes)."""
    import time

    from oodml.metrics.cluster import ExactKMeans, sgemm_nt
    from oodml.metrics.loo import _class_blocks, loo_neighbour_stats

    order = np.argsort(y, kind="stable")
    bounds = _class_blocks(y[order], 4096)
    t0 = time.perf_counter()
    blocks = [np.ascontiguousarray(x[order[bounds[i] : bounds[i + 1]]]) for i in range(len(bounds) - 1)]
    bmax = max(len(b) for b in blocks)
    buf = np.empty(bmax * bmax, np.float32)
    for i, bi in enumerate(blocks):
        for bj in blocks[i:]:
            sgemm_nt(bi, bj, buf[: len(bi) * len(bj)].reshape(len(bi), len(bj)))
    gemm = time.perf_counter() - t0
    before = _load()
    t0 = time.perf_counter()
    loo_neighbour_stats(x, y)
    knn = time.perf_counter() - t0
    print(
        f"floor 1: blocked half similarity product {gemm:.2f} s; leave-one-out neighbour pass {knn:.2f} s "
        f"= {knn / gemm:.2f}x the product (goal <= 1.3; {before} -> {_load()})",
        flush=True,
    )
    k = len(np.unique(y))
    km = ExactKMeans(x, k, seed=0)
    t0 = time.perf_counter()
    res = km.fit(20)
    ours = time.perf_counter() - t0
    iters = max(1, int(getattr(res, "n_iter", 20) or 20))
    try:
        import faiss

        fk = faiss.Kmeans(x.shape[1], k, niter=20, seed=0, verbose=False)
        t0 = time.perf_counter()
        fk.train(x)
        theirs = time.perf_counter() - t0
        print(
            f"floor 2: k-means (k = {k}) ours {ours:.2f} s for {iters} updates ({ours / (iters + 1):.3f} s per "
            f"assignment pass, the initial one included); faiss {theirs:.2f} s for 20 iterations "
            f"({theirs / 20:.3f} s per iteration); per iteration ours / faiss = "
            f"{(ours / (iters + 1)) / (theirs / 20):.2f} ({_load()})",
            flush=True,
        )
    except ImportError:  # pragma: no cover
        print(f"floor 2: k-means ours {ours:.2f} s ({iters} updates); faiss not installed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10x smaller problem (6,050 x 512, 1,132 classes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="interleaved rounds (ours then pml, then pml then ours, ...); the median ratio is the result",
    )
    p.add_argument("--skip-pml", action="store_true", help="time only oodml.evaluate")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--floors",
        action="store_true",
        help="also time the neighbour pass against its blocked half GEMM and k-means per iteration "
        "against faiss (issue 15)",
    )
    args = p.parse_args(argv)

    n, n_classes = (6050, 1132) if args.quick else (60502, 11318)
    x, y = sop_like(n, n_classes, seed=args.seed)
    import torch

    print(
        f"data: {n} x {x.shape[1]} float32, {len(np.unique(y))} classes (sizes {np.bincount(y).min()}-"
        f"{np.bincount(y).max()}); {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} threads={torch.get_num_threads()}",
        flush=True,
    )
    if args.floors:
        floors(x, y)
    ratios: list[float] = []
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    for rnd in range(max(1, args.rounds)):
        # alternate the order so that a load change hits both sides alike
        sides = ["ours", "pml"] if rnd % 2 == 0 else ["pml", "ours"]
        times: dict[str, float] = {}
        for side in sides:
            if side == "ours":
                before = _load()
                ours, times["ours"] = run_ours(x, y, progress=not args.quiet)
                print(f"round {rnd + 1}: oodml.evaluate   {times['ours']:8.1f} s  ({before} -> {_load()})", flush=True)
            elif not args.skip_pml:
                before = _load()
                theirs, times["pml"] = run_pml(x, y)
                print(f"round {rnd + 1}: pml AccuracyCalc {times['pml']:8.1f} s  ({before} -> {_load()})", flush=True)
        if "pml" in times:
            ratios.append(times["ours"] / times["pml"])
            print(f"round {rnd + 1}: ratio ours / pml {ratios[-1]:8.3f}", flush=True)
    if ratios:
        med = float(np.median(ratios))
        print(
            f"median ratio ours / pml over {len(ratios)} round(s): {med:.3f}  (goal <= 0.5: "
            f"{'met' if med <= 0.5 else 'NOT met'})"
        )
    print()
    print(f"{'metric':<12} {'oodml':>10} {'pml':>10}")
    for key, val in ours.items():
        other = theirs.get(key)
        print(f"{key:<12} {val:10.6f} {'' if other is None else f'{other:10.6f}'}")
    bad = 0
    for key in ("precision@1", "r_precision", "map@r"):
        if key in theirs and abs(theirs[key] - ours[key]) > 1e-6:
            bad += 1
            print(f"MISMATCH: {key} differs by {abs(theirs[key] - ours[key]):.2e}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
