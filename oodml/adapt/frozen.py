"""What stays frozen during adaptation, computed once per run: the test images' pooled backbone
features and zero-shot embeddings (:class:`FrozenFeatures`), and the run's image pipeline
(:class:`RunImages`: eval-transform embeddings, augmented training batches)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from oodml.adapt.episodes import ids_by_class
from oodml.data import CachedImages, image_cache, normalize_batch, train_transform
from oodml.train import embed as embed_images

__all__ = ["FrozenFeatures", "RunImages", "compute_frozen", "model_device"]


class FrozenFeatures:
    """The frozen quantities of the test images, computed once and reused by every episode,
    every ``k`` and the probe: ``ids`` (image ids, sorted), ``labels`` (class index in
    ``classes``), ``features`` (pooled backbone features, float32 tensor on the model's device)
    and ``embeddings`` (the zero-shot model's embeddings = its head on ``features``)."""

    def __init__(self, classes, ids, labels, features, embeddings):
        self.classes = list(classes)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.features = features
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.ids)


def model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def compute_frozen(model, dataset, classes: Sequence[str], images: RunImages) -> FrozenFeatures:
    """One backbone pass over all images of ``classes`` (eval transforms): pooled features and
    zero-shot embeddings (the model's head applied to them)."""
    by_class = ids_by_class(dataset, classes)
    ids = np.sort(np.concatenate([by_class[c] for c in classes]))
    label_of = np.full(len(dataset), -1, dtype=np.int64)
    for j, c in enumerate(classes):
        label_of[by_class[c]] = j
    device = model_device(model)
    feats = np.asarray(images.embed(model, ids, features=True), dtype=np.float32)
    if feats.shape != (len(ids), model.feature_dim):
        raise RuntimeError(
            f"embed(features=True) returned shape {feats.shape}, expected {(len(ids), model.feature_dim)}"
        )
    f = torch.from_numpy(np.ascontiguousarray(feats)).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        emb = model.embed_from_features(f).float()
    model.train(was_training)
    return FrozenFeatures(classes, ids, label_of[ids], f, emb)


class RunImages:
    """Images of a dataset through a run's pipeline: eval-transform embeddings
    (:func:`oodml.train.embed`) and augmented training batches (:mod:`oodml.data`)."""

    def __init__(self, dataset, config, model=None, device=None, batch_size: int = 256, progress: bool = False):
        self.dataset = dataset
        self.model = model
        self.config = config
        self.device = device
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self._train_images = None

    def embed(self, model, ids: np.ndarray, features: bool = False) -> np.ndarray:
        return embed_images(
            model,
            self.dataset,
            np.asarray(ids, dtype=np.int64),
            self.config,
            device=self.device if self.device is not None else model_device(model),
            batch_size=self.batch_size,
            features=features,
            progress=self.progress,
        )

    def augmented(self, keys: Sequence[tuple[int, int]], device) -> torch.Tensor:
        """Training-transformed images ``[(image id, sample seed), ...]`` (the augmentation of
        each image seeded by its sample seed, as in training), normalised, on ``device``."""
        if self._train_images is None:
            cfg = self.config
            cache = image_cache(self.dataset, int(cfg.resize_size), progress=False)
            scale = (float(getattr(cfg, "crop_scale_min", 0.08)), 1.0)
            self._train_images = CachedImages(cache, train_transform(int(cfg.image_size), bool(cfg.augment), scale))
        x = torch.stack([self._train_images[key][0] for key in keys])
        data_config = self.model.data_config
        return normalize_batch(x, data_config["mean"], data_config["std"], device)
