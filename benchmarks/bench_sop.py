"""Benchmark: Stanford Online Products scale, end to end on features (not a test).

    python -m benchmarks.bench_sop                 # SOP-sized: 22,634 classes, 104,489 images, d = 2048
    python -m benchmarks.bench_sop --quick         # 10x fewer classes and images, d = 512 (seconds)
    python -m benchmarks.bench_sop --table F.npz   # reuse (or write) the synthetic table at F.npz

Every stage runs in its own child process, timed with a wall clock and measured by its peak
resident memory (``ru_maxrss`` of the finished child), so one stage's memory does not hide
another's:

1. ``table``: generates the synthetic SOP-sized feature table (float32 ReLU-like features with the
   structure of SOP: 12 superclasses, classes of 2-12 images, the standard split = first 11,318
   classes / the other 11,316, every superclass on both sides) and writes it as an ``.npz`` with
   ``features``, ``labels``, ``superclasses`` (0.86 GB at d = 2048);
2. ``splits (SOP)``: ``python -m oodml.make_splits --features-file F --level class`` with the
   default, class-count-scaled search parameters (see :mod:`oodml.splits`): the full class-level
   series (easier, harder, removal phases, selection, validation classes, few-shot episodes);
3. ``splits (CUB)``: the same command on a CUB-sized table (200 classes, ~59 images each), the
   peer measured in the same run;
4. ``evaluate``: :func:`oodml.evaluate.evaluate_embeddings` on 60,502 × 512 embeddings of 11,316
   classes (SOP's test side), Recall@1/10/100/1000, P@1, R-precision, MAP@R, NMI;
5. ``train step``: the class-balanced sampler over 59,551 images of 11,318 classes, then one
   forward/backward step of each proxy/classifier objective (``proxyanchor``, ``proxynca``,
   ``normsoftmax``, ``arcface``) with 11,318 classes on a batch of 112 × 512 embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SOP = dict(classes=22634, images=104489, train_classes=11318, supers=12, d=2048)
QUICK = dict(classes=2264, images=10449, train_classes=1132, supers=12, d=512)


# --------------------------------------------------------------------------------------------
# stages (each runs in a child process: python -m benchmarks.bench_sop --stage NAME ...)
# --------------------------------------------------------------------------------------------
def class_counts(rng: np.random.Generator, classes: int, images: int) -> np.ndarray:
    """Images per class: 2..12 (SOP's range), summing exactly to ``images``."""
    counts = rng.integers(2, 13, classes)
    diff = images - int(counts.sum())
    step = 1 if diff > 0 else -1
    i = 0
    while diff:
        c = i % classes
        if 2 <= counts[c] + step <= 12:
            counts[c] += step
            diff -= step
        i += 1
    return counts


def write_table(path: Path, classes: int, images: int, train_classes: int, supers: int, d: int, seed: int = 0) -> None:
    """The synthetic SOP-like table (see the module docstring), written with ``np.savez``."""
    rng = np.random.default_rng(seed)
    counts = class_counts(rng, classes, images)
    labels = np.repeat(np.arange(classes), counts)
    # superclass of a class: contiguous blocks within each side, like SOP's class numbering
    side_pos = np.where(
        np.arange(classes) < train_classes,
        np.arange(classes) / train_classes,
        (np.arange(classes) - train_classes) / (classes - train_classes),
    )
    sup = np.minimum((side_pos * supers).astype(np.int64), supers - 1)
    rank = 128
    w = (rng.standard_normal((d, rank)) / np.sqrt(rank)).astype(np.float32)
    sup_centres = 2.0 * rng.standard_normal((supers, rank)).astype(np.float32)
    side_shift = 0.6 * rng.standard_normal(rank).astype(np.float32)  # a moderate standard shift
    centres = sup_centres[sup] + rng.standard_normal((classes, rank)).astype(np.float32)
    centres[train_classes:] += side_shift
    x = np.empty((labels.size, d), dtype=np.float32)
    for start in range(0, labels.size, 8192):
        lab = labels[start : start + 8192]
        z = centres[lab] + 0.8 * rng.standard_normal((lab.size, rank)).astype(np.float32)
        x[start : start + lab.size] = np.maximum(
            z @ w.T + 0.3 * rng.standard_normal((lab.size, d), dtype=np.float32) + 0.5, 0.0
        )
    names = np.array([f"c{c:05d}" for c in range(classes)])
    super_names = np.array([f"s{s:02d}" for s in range(supers)])
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=x, labels=names[labels], superclasses=super_names[sup[labels]])
    os.replace(tmp, path)


def stage_evaluate(n: int, n_classes: int, d: int) -> dict:
    from oodml.metrics import evaluate_embeddings

    rng = np.random.default_rng(1)
    counts = class_counts(rng, n_classes, n)
    y = np.repeat(np.arange(n_classes), counts)
    centres = rng.standard_normal((n_classes, d)).astype(np.float32)
    x = centres[y] + 0.9 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t0 = time.perf_counter()
    res = evaluate_embeddings(x, y, ks="sop")
    return {"seconds": time.perf_counter() - t0, "recall@1": res.get("recall@1")}


def stage_train_step(n: int, n_classes: int, d: int) -> dict:
    import torch

    from oodml.data import ClassBalancedBatchSampler
    from oodml.losses import make_objective

    rng = np.random.default_rng(2)
    counts = class_counts(rng, n_classes, n)
    labels = np.repeat(np.arange(n_classes), counts)
    t0 = time.perf_counter()
    sampler = ClassBalancedBatchSampler(
        np.arange(n), labels, m_per_class=2, batch_size=112, num_batches=n // 112, seed=0
    )
    sampler.set_epoch(0)
    batches = list(sampler)
    t_sampler = time.perf_counter() - t0
    out = {"sampler_seconds": t_sampler, "batches": len(batches)}
    torch.manual_seed(0)
    for name in ("proxyanchor", "proxynca", "normsoftmax", "arcface"):
        obj = make_objective(name, num_classes=n_classes, embed_dim=d)
        emb = torch.randn(112, d, requires_grad=True)
        ids = [i for i, _ in batches[0]]
        y = torch.as_tensor(labels[ids])
        t1 = time.perf_counter()
        loss = obj(emb, y)
        loss.backward()
        out[f"{name}_step_seconds"] = time.perf_counter() - t1
    return out


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def _child(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``python -m benchmarks.bench_sop --stage peak -- args`` (``args`` under a wrapper that
    reports its own peak RSS) to completion; (wall seconds, peak RSS in GiB, stdout)."""
    with tempfile.NamedTemporaryFile(suffix=".peak", delete=False) as fh:
        peak_file = fh.name
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_sop", "--stage", "peak", "--peak-file", peak_file, "--", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"stage {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    peak_kib = float(Path(peak_file).read_text() or "nan")
    os.unlink(peak_file)
    return wall, peak_kib / 2**20, res.stdout


def _run_measured(argv: list[str], peak_file: str) -> int:
    """Run ``-m module args`` in this process (runpy) and write its peak RSS (KiB) to ``peak_file``."""
    import runpy

    assert argv[0] == "-m", argv
    sys.argv = [argv[1], *argv[2:]]
    code = 0
    try:
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        Path(peak_file).write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    return code


def _load() -> str:
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as fh:
        return " ".join(fh.read().split()[:3]) or "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sop", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10x smaller, d = 512")
    ap.add_argument("--table", default=None, help="the synthetic SOP table (.npz); written when missing")
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--peak-file", default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1 :]
    args = ap.parse_args(argv)
    if args.stage == "peak":
        return _run_measured(rest, args.peak_file)
    size = QUICK if args.quick else SOP
    if args.stage:  # inside a child process
        if args.stage == "table":
            write_table(Path(args.table), **size)
            return 0
        n_test = size["images"] * 60502 // 104489
        if args.stage == "evaluate":
            print(json.dumps(stage_evaluate(n_test, size["classes"] - size["train_classes"], 512)))
        elif args.stage == "train":
            print(json.dumps(stage_train_step(size["images"] - n_test, size["train_classes"], 512)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="oodml-bench-sop-"))
    table = Path(args.table) if args.table else work / "sop_synthetic.npz"
    quick = ["--quick"] if args.quick else []
    rows = []
    print(f"load average before: {_load()} (other jobs on this machine slow every figure below)")
    if not table.exists():
        wall, peak, _ = _child(["-m", "benchmarks.bench_sop", "--stage", "table", "--table", str(table), *quick])
        rows.append(("table", f"{wall:.1f} s", f"{peak:.2f} GiB", f"{table.stat().st_size / 2**30:.2f} GiB file"))
    env = dict(os.environ, OODML_QUIET="1")
    wall, peak, _ = _child(
        [
            "-m",
            "oodml.make_splits",
            "--features-file",
            str(table),
            "--level",
            "class",
            "--out",
            str(work / "sop.json"),
            "--figure",
            "none",
            "--quiet",
        ],
        env,
    )
    doc = json.loads((work / "sop.json").read_text())
    prov = doc["provenance"]["params"]
    steps = len(doc["trajectory"])
    rows.append(
        (
            "splits (SOP)",
            f"{wall:.1f} s",
            f"{peak:.2f} GiB",
            f"{steps} steps, S = {prov['swaps_per_iter']}, max_iters = {prov['resolved_max_iters']}, "
            f"{len(doc['series'])} splits",
        )
    )
    # the CUB-sized peer, same command
    from benchmarks.bench_splits import structured_features

    x, lab = structured_features(np.random.default_rng(0), d=size["d"])
    names = np.array([f"c{c:03d}" for c in range(200)])
    cub = work / "cub_synthetic.npz"
    np.savez(cub, features=x, labels=names[lab])
    del x
    wall, peak_cub, _ = _child(
        [
            "-m",
            "oodml.make_splits",
            "--features-file",
            str(cub),
            "--level",
            "class",
            "--out",
            str(work / "cub.json"),
            "--figure",
            "none",
            "--quiet",
        ],
        env,
    )
    rows.append(
        (
            "splits (CUB)",
            f"{wall:.1f} s",
            f"{peak_cub:.2f} GiB",
            f"{len(json.loads((work / 'cub.json').read_text())['trajectory'])} steps",
        )
    )
    wall, peak, out = _child(["-m", "benchmarks.bench_sop", "--stage", "evaluate", *quick], env)
    r = json.loads(out.strip().splitlines()[-1])
    rows.append(
        (
            "evaluate 60,502 x 512" if not args.quick else "evaluate (quick)",
            f"{wall:.1f} s",
            f"{peak:.2f} GiB",
            f"metrics {r['seconds']:.1f} s",
        )
    )
    wall, peak, out = _child(["-m", "benchmarks.bench_sop", "--stage", "train", *quick], env)
    r = json.loads(out.strip().splitlines()[-1])
    rows.append(
        (
            "sampler + proxy losses",
            f"{wall:.1f} s",
            f"{peak:.2f} GiB",
            f"sampler {r['sampler_seconds']:.2f} s; steps "
            + ", ".join(f"{k.split('_')[0]} {v:.2f} s" for k, v in r.items() if k.endswith("step_seconds")),
        )
    )
    print(f"load average after: {_load()}")
    print("| stage | wall time | peak memory | notes |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("(peak memory: ru_maxrss of the stage's own process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
