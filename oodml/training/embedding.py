"""Embedding images with a trained model, and scoring a class set with :mod:`oodml.evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from oodml.data import eval_loader, image_cache, normalize_batch
from oodml.evaluate import evaluate_embeddings
from oodml.progress import progress_bar
from oodml.training.classes import RunClasses
from oodml.training.config import TrainConfig
from oodml.training.runtime import resolve_workers

__all__ = ["embed", "evaluate_classes", "model_mean_std", "recall_ks"]


def model_mean_std(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation (mean, std) of the model's backbone."""
    dc = model.data_config
    return tuple(float(v) for v in dc["mean"]), tuple(float(v) for v in dc["std"])


def recall_ks(cfg: TrainConfig) -> Any:
    """The Recall@k list of the test metrics: ``cfg.ks``, else the ``sop`` preset for SOP."""
    if cfg.ks is not None:
        return cfg.ks
    return "sop" if cfg.dataset_name == "sop" else "default"


def embed(
    model,
    dataset,
    indices: Sequence[int] | np.ndarray,
    config: TrainConfig | Mapping[str, Any],
    *,
    device: Any = None,
    batch_size: int = 256,
    features: bool = False,
    progress: bool = False,
    cache=None,
    workers: int | None = None,
) -> np.ndarray:
    """Embeddings of images ``indices`` of ``dataset``: ``(len(indices), embed_dim)`` float32
    (``features=True``: the pooled backbone features, ``(n, feature_dim)``).

    Uses the evaluation transform of ``config`` (``Resize(resize_size)`` + ``CenterCrop(image_size)``
    through the decoded-image cache) and the model's normalisation; ``device`` defaults to the
    model's.  The model's train/eval mode is restored afterwards.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    indices = np.asarray(indices, dtype=np.int64)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    dim = model.feature_dim if features else model.embed_dim
    if len(indices) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    cache = cache if cache is not None else image_cache(dataset, cfg.resize_size, progress=progress)
    n_workers = resolve_workers(cfg.workers, dev) if workers is None else int(workers)
    loader = eval_loader(
        cache, indices, image_size=cfg.image_size, batch_size=batch_size, workers=n_workers, device=dev
    )
    mean, std = model_mean_std(model)
    was_training = model.training
    model.eval()
    out = np.empty((len(indices), dim), dtype=np.float32)
    pos = 0
    try:
        with torch.inference_mode():
            for images, _ in progress_bar(loader, enabled=progress, desc="embedding", unit="batch"):
                x = normalize_batch(images, mean, std, dev)
                z = model.forward_features(x) if features else model(x)
                out[pos : pos + len(z)] = z.float().cpu().numpy()
                pos += len(z)
    finally:
        model.train(was_training)
    return out


def evaluate_classes(
    model, rc: RunClasses, classes: Sequence[str], cfg: TrainConfig, cache, device, ks, metrics, workers
) -> dict[str, float]:
    """Embed the images of ``classes`` and score them (:func:`oodml.evaluate.evaluate_embeddings`)."""
    ids = rc.dataset.indices_of(classes)
    emb = embed(
        model, rc.dataset, ids, cfg, device=device, batch_size=cfg.eval_batch_size, cache=cache, workers=workers
    )
    return evaluate_embeddings(emb, rc.dataset.labels[ids], ks=ks, metrics=metrics)
