"""Benchmark of ``python -m oodml.make_splits`` as a user runs it (whole process), not a test.

Run from the repository root::

    python -m benchmarks.bench_cli                 # CUB-sized table (200 classes, ~12k images, 2048-d)
    python -m benchmarks.bench_cli --quick         # 512-d, fewer repeats
    python -m benchmarks.bench_cli --image         # also the image-level series (minutes at 2048-d)
    python -m benchmarks.bench_cli --stride 5      # image level with --trajectory-stride 5
    python -m benchmarks.bench_cli --image --stride 5 --backends scipy,torch   # both dense backends

What it measures, in one run so that every figure is a ratio against a floor taken under the same
load: a synthetic CUB-sized feature table is written as a ``.npz`` (what ``--features-file`` reads),
then

1. **the command**, timed from the shell as a user runs it (``subprocess``, wall clock, interpreter
   start, imports, reading, search, document, JSON and figure): ``make_splits --features-file F
   --level class`` with its figure, and with ``--figure none``; the median of ``--repeats`` runs;
2. **its floor**, in this process after warm imports: reading the file
   (``load_features_file``) plus the library's search and document (``build_split_document``);
3. ``python -c "import numpy"``: the interpreter's own share of any command;
4. with ``--image``: ``--level image`` (with ``--stride S``: ``--trajectory-stride S``) against
   the eigensolver floor measured in the same run: the number of FID evaluations in the written
   file times one ``d × d`` values-only eigenvalue solve (the faster of torch's ``eigvalsh`` and
   scipy's ``eigh(driver="evd")``, best of 3); ``--backends scipy,torch`` runs it once per dense
   backend (``OODML_FID_BACKEND``) against that one floor and checks that their split files are
   byte-identical.

Each line prints the load average around it; the ratios, not the seconds, are the result on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    try:
        return f"load {os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover
        return "load ?"


def write_table(path: Path, d: int, seed: int = 0) -> tuple[int, int]:
    from benchmarks.bench_splits import structured_features

    x, labels = structured_features(np.random.default_rng(seed), d=d)
    np.savez(path, features=x, labels=np.array([f"class{c:03d}" for c in labels]))
    return x.shape


def run_command(args: list[str], cwd: Path, **extra_env: str) -> float:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        OODML_QUIET="1",
        **extra_env,
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(args)}\n{res.stderr}")
    return dt


def timed(label: str, fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        before = _load()
        times.append(fn())
        print(f"  {label}: {times[-1]:.2f} s ({before} -> {_load()})", flush=True)
    return statistics.median(times)


def library_floor(npz: Path, level: str, stride: int = 1) -> float:
    """Reading the file + the library's search and document, in this process (imports warm)."""
    from oodml.feature_files import load_features_file, standard_split_for_features
    from oodml.splits import SearchParams, _table_from_featureset, build_split_document

    t0 = time.perf_counter()
    fs = load_features_file(npz)
    x, lab, classes = _table_from_featureset(fs)
    tr, te = standard_split_for_features(fs)
    build_split_document(
        x,
        lab,
        classes,
        tr,
        te,
        SearchParams(level=level, trajectory_stride=stride),
        dataset="bench",
        fingerprint=fs.fingerprint,
        extractor="file",
        source="features-file",
    )
    return time.perf_counter() - t0


def eigensolver_floor(npz: Path) -> tuple[float, str]:
    """Best of 3 values-only symmetric eigenvalue solves at the table's d (torch and scipy)."""
    import torch
    from scipy.linalg import eigh

    x = np.load(npz)["features"][:4000].astype(np.float64)
    m = np.cov(x, rowvar=False)
    best = {}
    for name, fn in (
        ("torch eigvalsh", lambda: torch.linalg.eigvalsh(torch.from_numpy(m))),
        ("scipy eigh evd", lambda: eigh(m, eigvals_only=True, driver="evd", check_finite=False)),
    ):
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        best[name] = min(ts)
    name = min(best, key=best.get)
    print("  one eigenvalue solve: " + ", ".join(f"{k} {v:.3f} s" for k, v in best.items()), flush=True)
    return best[name], name


def image_level(npz: Path, tmp: Path, stride: int, backends: list[str]) -> None:
    """``--level image --trajectory-stride S`` once per dense backend (``OODML_FID_BACKEND``),
    each against the same eigensolver floor; the split files of all backends must be identical."""
    print(f"\nimage level (--trajectory-stride {stride}):")
    times, files = {}, {}
    for backend in backends:
        out = tmp / f"img-{backend}.json"
        args = ["-m", "oodml.make_splits", "--features-file", str(npz), "--out", str(out), "-q", "--figure", "none"]
        args += ["--level", "image", "--trajectory-stride", str(stride)]
        env = {} if backend == "auto" else {"OODML_FID_BACKEND": backend}
        times[backend] = run_command(args, tmp, **env)
        files[backend] = out.read_bytes()
        print(f"  {backend}: {times[backend]:.1f} s ({_load()})", flush=True)
    doc = json.loads(next(iter(files.values())))
    evaluated = sum(r["fid"] is not None for r in doc["trajectory"])
    solve, solver = eigensolver_floor(npz)
    floor = evaluated * solve
    print(
        f"  {len(doc['trajectory'])} steps, {evaluated} FID evaluations; eigensolver floor {evaluated} x "
        f"{solve:.3f} s ({solver}) = {floor:.1f} s"
    )
    for backend, t in times.items():
        print(f"  command, dense backend {backend}: {t:.1f} s, ratio {t / floor:.2f}")
    same = len(set(files.values())) == 1
    print(f"  split files of {', '.join(files)}: {'byte-identical' if same else 'DIFFERENT'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_cli", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="512-d table, 2 repeats")
    ap.add_argument("--repeats", type=int, default=None, help="runs of each command (default 3; 2 with --quick)")
    ap.add_argument("--image", action="store_true", help="also the image-level series")
    ap.add_argument("--stride", type=int, default=1, help="--trajectory-stride of the image-level run")
    ap.add_argument(
        "--backends",
        default="auto",
        help="comma-separated dense backends of the image-level run (auto, scipy, torch; default: auto)",
    )
    args = ap.parse_args(argv)
    d = 512 if args.quick else 2048
    repeats = args.repeats or (2 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="oodml-bench-cli-") as tmp:
        tmp = Path(tmp)
        npz = tmp / "cub_sized.npz"
        n, dim = write_table(npz, d)
        print(f"feature table: {n} x {dim} float32, 200 classes ({npz.stat().st_size / 1e6:.0f} MB .npz); {_load()}")
        base = ["-m", "oodml.make_splits", "--features-file", str(npz), "--out", str(tmp / "s.json"), "-q"]
        interp = timed("python -c 'import numpy'", lambda: run_command(["-c", "import numpy"], tmp), repeats)
        with_fig = timed(
            "make_splits --level class (with figure)",
            lambda: run_command(base + ["--figure", str(tmp / "fig")], tmp),
            repeats,
        )
        no_fig = timed(
            "make_splits --level class --figure none", lambda: run_command(base + ["--figure", "none"], tmp), repeats
        )
        library_floor(npz, "class")  # warm the imports once
        floor = timed(
            "floor: read file + library search and document (in process)", lambda: library_floor(npz, "class"), repeats
        )
        print(f"\nclass level, median of {repeats}:")
        print(
            f"  command with figure {with_fig:.2f} s = {with_fig / floor:.2f}x the floor ({floor:.2f} s); "
            f"without figure {no_fig:.2f} s = {no_fig / floor:.2f}x; interpreter + numpy {interp:.2f} s"
        )
        if args.image:
            image_level(npz, tmp, args.stride, [b.strip() for b in args.backends.split(",") if b.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
