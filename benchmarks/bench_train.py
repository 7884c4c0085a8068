"""Benchmark of the training loop (oodml.train) against a minimal hand-written loop, not a test.

Run from the repository root::

    python -m benchmarks.bench_train                   # small backbone (the demo's recipe) + ResNet-50
    python -m benchmarks.bench_train --quick           # small backbone only, fewer steps
    python -m benchmarks.bench_train --r50-steps 4     # more ResNet-50 steps (each is slow on a CPU)

What it measures, on the embedded ``glyphs`` dataset (generated into the oodml cache on first use),
for each configuration, in one run and alternating the two sides (framework, hand, framework,
hand, ...; the median over rounds is the result):

* **framework**: ``oodml.train.train`` for one epoch of ``N`` optimizer steps, stopped there (no
  validation, no final test, no TensorBoard), timed from the epoch's own clock in ``log.csv`` (the
  loop, the per-epoch ``checkpoint.pt`` and ``best.pt``), after one warm-up run of the same
  configuration;
* **hand-written loop**: the same timm-based model (``oodml.models.build_model``, same seed), the
  same batches (the same ``ClassBalancedBatchSampler`` and ``train_loader`` over the same decoded
  image cache), the same pytorch-metric-learning loss and miner with oodml's defaults
  (``MultiSimilarityLoss(alpha=2, beta=40, base=0.5)``, ``MultiSimilarityMiner(epsilon=0.1)``),
  Adam with the same learning rate and weight decay: ``normalize -> forward -> miner -> loss ->
  backward -> step``, nothing else.

The ratio framework-steps-per-second / hand-loop-steps-per-second is the result (goal >= 0.95).
Configurations: the demo's small backbone (``oodml_convnet_s``, 32 px, batch 64, threads 1) and
ResNet-50 (timm, random init) at 224 px, batch 32, for ``--r50-steps`` steps.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _load() -> str:
    try:
        return f"load {os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover
        return "load ?"


def configs(quick: bool, r50_steps: int):
    from oodml.train import TrainConfig

    common = dict(
        loss="multisimilarity",
        val_fraction=0.0,
        eval_every=0,
        tensorboard=False,
        workers=0,
        epochs=2,  # the run stops after its first epoch (stop_after_epoch=1): no final test embedding
        seed=0,
        amp="off",
        device="cpu",
    )
    small = TrainConfig(
        backbone="oodml_convnet_s",
        pretrained=False,
        image_size=32,
        resize_size=36,
        crop_scale_min=0.5,
        embed_dim=64,
        batch_size=64,
        m_per_class=4,
        lr=1e-3,
        weight_decay=4e-4,
        freeze_bn=False,
        threads=1,
        iterations_per_epoch=20 if quick else 60,
        **common,
    )
    out = [("small backbone (oodml_convnet_s, 32 px, batch 64, 1 thread)", small)]
    if not quick:
        r50 = TrainConfig(
            backbone="resnet50",
            pretrained=False,
            image_size=224,
            resize_size=256,
            embed_dim=512,
            batch_size=32,
            m_per_class=2,
            lr=1e-5,
            weight_decay=4e-4,
            freeze_bn=True,
            iterations_per_epoch=r50_steps,
            **common,
        )
        out.append((f"ResNet-50 (timm, 224 px, batch 32, {r50_steps} steps)", r50))
    return out


def framework_seconds(cfg, run_dir: Path) -> float:
    """Seconds of the one epoch of ``oodml.train.train`` (its own log)."""
    from oodml.train import train

    # stopped after the timed epoch: the final test (embedding every test image, minutes with
    # ResNet-50 on a CPU) is not part of the loop being compared
    train(cfg, run_dir, progress=False, resume=False, stop_after_epoch=1)
    with open(run_dir / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return float(rows[-1]["seconds"])


def hand_seconds(cfg) -> float:
    """The same steps in a minimal loop (see the module docstring)."""
    import numpy as np
    import torch
    from pytorch_metric_learning import losses, miners

    from oodml.data import ClassBalancedBatchSampler, image_cache, normalize_batch, train_loader
    from oodml.models import build_model
    from oodml.training.classes import resolve_classes
    from oodml.training.embedding import model_mean_std as _model_mean_std
    from oodml.training.runtime import seed_all as _seed_all

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rc = resolve_classes(cfg, progress=False)
    ds = rc.dataset
    cache = image_cache(ds, cfg.resize_size, progress=False)
    label_of = {c: i for i, c in enumerate(rc.fit_classes)}
    fit_ids = ds.indices_of(rc.fit_classes)
    labels_by_id = np.full(len(ds), -1, dtype=np.int64)
    names = ds.label_names
    labels_by_id[fit_ids] = [label_of[names[i]] for i in fit_ids]
    sampler = ClassBalancedBatchSampler(
        fit_ids, labels_by_id[fit_ids], cfg.m_per_class, cfg.batch_size, cfg.iterations_per_epoch, seed=cfg.seed
    )
    loader = train_loader(
        cache,
        labels_by_id,
        sampler,
        image_size=cfg.image_size,
        augment=cfg.augment,
        scale=(cfg.crop_scale_min, 1.0),
        workers=0,
        device="cpu",
    )
    _seed_all(cfg.seed, 0xB01D)
    model = build_model(
        cfg.backbone,
        pretrained=False,
        embed_dim=cfg.embed_dim,
        pooling=cfg.pooling,
        freeze_bn=cfg.freeze_bn,
        channels_last=cfg.channels_last,
        drop_path=cfg.drop_path,
    )
    mean, std = _model_mean_std(model)
    loss_fn = losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5)
    miner = miners.MultiSimilarityMiner(epsilon=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler.set_epoch(0)
    model.train()
    t0 = time.perf_counter()
    for images, labels in loader:
        x = normalize_batch(images, mean, std, "cpu")
        emb = model(x)
        loss = loss_fn(emb, labels, miner(emb, labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small backbone only, 20 steps")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per configuration (default 3)")
    ap.add_argument("--r50-steps", type=int, default=3, help="ResNet-50 optimizer steps per round (default 3)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OODML_QUIET", "1")
    import torch

    threads0 = torch.get_num_threads()
    for title, cfg in configs(args.quick, args.r50_steps):
        steps = cfg.iterations_per_epoch
        print(f"\n{title}: {steps} optimizer steps per round ({_load()})", flush=True)
        ratios = []
        with tempfile.TemporaryDirectory(prefix="oodml-bench-train-") as tmp:
            framework_seconds(cfg, Path(tmp) / "warmup")  # decoded-image cache, imports, first-call costs
            torch.set_num_threads(threads0)
            for r in range(args.rounds):
                order = ("framework", "hand") if r % 2 == 0 else ("hand", "framework")
                t = {}
                for side in order:
                    before = _load()
                    t[side] = framework_seconds(cfg, Path(tmp) / f"r{r}") if side == "framework" else hand_seconds(cfg)
                    torch.set_num_threads(threads0)
                    print(
                        f"  round {r + 1} {side:9s}: {steps / t[side]:.2f} steps/s ({t[side]:.1f} s; "
                        f"{before} -> {_load()})",
                        flush=True,
                    )
                ratios.append(t["hand"] / t["framework"])
        print(
            f"  framework / hand-written steps per second: median {statistics.median(ratios):.3f} "
            f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}); goal >= 0.95"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
