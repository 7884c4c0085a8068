"""Benchmark: images/second of the training loader (``oodml.data``) against a plain
torchvision ``ImageFolder`` + PIL pipeline over the same images, transforms and workers.

    python -m benchmarks.bench_data                 # 2000 JPEGs of 500x375, 2 workers
    python -m benchmarks.bench_data --images 600 --workers 1

Both pipelines deliver model-ready float batches of 112 images at 224 px (RandomResizedCrop +
horizontal flip, ImageNet normalisation):

* **plain**: ``torchvision.datasets.ImageFolder`` decoding each JPEG with PIL, the classic
  ``transforms`` (``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize``) in the workers, shuffled batches of 112.
* **oodml**: the decoded-image cache at 256 px (built once before timing; its build time is
  reported apart), class-balanced batches (2 per class), uint8 ``transforms.v2`` in the workers.
  Timed twice: up to the uint8 batch (what training hands to the GPU, where
  :func:`oodml.data.normalize_batch` costs next to nothing), and including ``normalize_batch`` on
  this CPU in the main process.

Each loader is timed over ``--epochs`` passes after one warm-up batch (worker start-up excluded);
``time.perf_counter``.  The image tree lives in a temporary folder and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_tree(root: Path, n_images: int, n_classes: int, seed: int = 0) -> None:
    """JPEGs of 500x375 (CUB-like): smooth colour fields with pixel noise, quality 90."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n_images):
        c = i % n_classes
        d = root / f"class{c:03d}"
        d.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)).resize(
            (500, 375), Image.BICUBIC
        )
        img = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, size=(375, 500, 3), dtype=np.int16)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i:05d}.jpg", quality=90)


def time_loader(batches, epochs: int, finish) -> tuple[float, int]:
    """Images/second over ``epochs`` passes of ``batches()`` after one warm-up batch."""
    it = iter(batches(0))
    finish(next(it))
    n, t0 = 0, time.perf_counter()
    for x in it:
        n += len(finish(x))
    for e in range(1, epochs):
        for x in batches(e):
            n += len(finish(x))
    return n / (time.perf_counter() - t0), n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_data", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from torchvision import datasets, transforms

    from oodml.data import ClassBalancedBatchSampler, image_cache, normalize_batch, train_loader
    from oodml.datasets import load_dataset

    tmp = Path(tempfile.mkdtemp(prefix="oodml-bench-data-"))
    os.environ["OODML_CACHE"] = str(tmp / "cache")
    try:
        t = time.perf_counter()
        make_tree(tmp / "tree", args.images, args.classes)
        print(
            f"wrote {args.images} JPEGs of 500x375 in {time.perf_counter() - t:.1f} s "
            f"({sum(f.stat().st_size for f in (tmp / 'tree').rglob('*.jpg')) / 1e6:.0f} MB)"
        )

        # ---- plain ImageFolder + PIL
        tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )
        folder = datasets.ImageFolder(str(tmp / "tree"), transform=tf)
        plain = torch.utils.data.DataLoader(
            folder,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            drop_last=True,
            persistent_workers=args.workers > 0,
            generator=torch.Generator().manual_seed(0),
        )
        plain_ips, n_plain = time_loader(lambda e: plain, args.epochs, lambda b: b[0])
        print(f"plain ImageFolder + PIL : {plain_ips:8.1f} images/s  ({n_plain} images, {args.workers} workers)")

        # ---- oodml: cache + sampler + uint8 v2 transforms + normalisation
        ds = load_dataset("folder", root=tmp / "tree")
        t = time.perf_counter()
        cache = image_cache(ds, 256, progress=False)
        build = time.perf_counter() - t
        print(
            f"oodml image cache built in {build:.1f} s ({cache.nbytes / 1e6:.0f} MB, "
            f"{len(ds) / build:.0f} images/s, once per dataset and size)"
        )
        labels = ds.labels
        sampler = ClassBalancedBatchSampler(
            np.arange(len(ds)), labels, 2, args.batch_size, len(ds) // args.batch_size, seed=0
        )
        loader = train_loader(cache, labels, sampler, image_size=224, workers=args.workers)

        def batches(e):
            sampler.set_epoch(e)
            return loader

        ours_u8, n_ours = time_loader(batches, args.epochs, lambda b: b[0])
        print(f"oodml train loader      : {ours_u8:8.1f} images/s  uint8 batches (normalised on the GPU in training)")
        ours_ips, _ = time_loader(batches, args.epochs, lambda b: normalize_batch(b[0], MEAN, STD))
        print(f"oodml train loader      : {ours_ips:8.1f} images/s  float batches normalised on this CPU (counted)")
        print(
            f"ratio oodml / plain     : {ours_u8 / plain_ips:8.2f}x uint8 batches, {ours_ips / plain_ips:.2f}x "
            "CPU-normalised (goal >= 3x)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
