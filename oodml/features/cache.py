"""Feature tables of a dataset: run an extractor over its images and cache the ``(n, d)`` float32
table on disk (see "Cache" in :mod:`oodml.features`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as _TorchDataset

from oodml.device import resolve_device
from oodml.errors import BadInputError
from oodml.features.base import Extractor
from oodml.features.extractors import default_extractor, get_extractor
from oodml.features.files import FeatureSet, PathLike, _write_npz
from oodml.io import dumps_json
from oodml.paths import cache_dir
from oodml.progress import progress_bar

__all__ = [
    "CACHE_VERSION",
    "FeatureCacheWarning",
    "default_workers",
    "extract_features",
    "feature_cache_path",
    "resolve_device",
    "run_extractor",
]

#: Bump when the cache file layout or the meaning of a preprocessing id changes.
CACHE_VERSION = 1


class FeatureCacheWarning(UserWarning):
    """A cached feature file was unreadable or inconsistent and is being rebuilt."""


def _safe_part(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)
    return out.strip("._") or "x"


def _cache_meta(dataset, extractor: Extractor) -> dict[str, Any]:
    return {
        "schema": f"oodml.features.cache/{CACHE_VERSION}",
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint(),
        **extractor.identity(),
        "n": len(dataset),
        "dim": extractor.dim,
    }


def feature_cache_path(dataset, extractor: Extractor | str, *, weights: PathLike | None = None) -> Path:
    """Where :func:`extract_features` caches ``dataset``'s features for ``extractor``."""
    ex = extractor if isinstance(extractor, Extractor) else get_extractor(extractor, weights=weights)
    meta = _cache_meta(dataset, ex)
    key = hashlib.sha256(dumps_json(meta, indent=None).encode("utf-8")).hexdigest()[:20]
    return cache_dir("features") / f"{_safe_part(dataset.name)}-{_safe_part(ex.name)}-{key}.npz"


def _read_cache(path: Path, meta: dict[str, Any]) -> np.ndarray | None:
    """The cached features, or ``None`` (with a warning) if the file is unusable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["meta"][()]))
            feats = np.array(z["features"])
        problem = None
        if stored != meta:
            problem = "its contents belong to other inputs"
        elif feats.dtype != np.float32 or feats.shape != (meta["n"], meta["dim"]):
            problem = f"it holds a {feats.dtype} array of shape {feats.shape}, expected ({meta['n']}, {meta['dim']})"
        elif not np.isfinite(feats).all():
            problem = "it holds non-finite values"
    except Exception as exc:  # truncated zip, missing member, bad header, bad JSON, ...
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        feats = None
    if problem is None:
        return feats
    warnings.warn(
        f"ignoring cached features {path}: {problem}; extracting them again", FeatureCacheWarning, stacklevel=3
    )
    return None


# ---- extraction ----------------------------------------------------------------------------
class _TransformedImages(_TorchDataset):
    def __init__(self, dataset, transform: Callable[[Any], torch.Tensor]):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.dataset.load_image(i))


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def run_extractor(
    extractor: Extractor,
    dataset,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Run ``extractor`` over every image of ``dataset`` (no cache): ``(n, dim)`` float32 in
    item order.  Batched through a DataLoader with ``workers`` processes, on ``device``, in eval
    mode under ``torch.inference_mode()``."""
    if int(batch_size) < 1:
        raise BadInputError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise BadInputError(f"workers must be 0 or more, got {workers}")
    n = len(dataset)
    workers = min(workers, math.ceil(n / int(batch_size)))
    dev = resolve_device(device)
    model = extractor.model.to(dev).eval()
    loader = DataLoader(
        _TransformedImages(dataset, extractor.transform),
        batch_size=int(batch_size),
        shuffle=False,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        drop_last=False,
    )
    out = np.empty((n, extractor.dim), dtype=np.float32)
    pos = 0
    name = getattr(dataset, "name", "dataset")
    with (
        torch.inference_mode(),
        progress_bar(total=n, unit="img", desc=f"features {extractor.name} ({name})", enabled=progress) as bar,
    ):
        for batch in loader:
            feats = model(batch.to(dev, non_blocking=dev.type == "cuda"))
            b = int(feats.shape[0])
            if feats.ndim != 2 or feats.shape[1] != extractor.dim:
                raise RuntimeError(
                    f"extractor {extractor.name} returned shape {tuple(feats.shape)}, expected (B, {extractor.dim})"
                )
            out[pos : pos + b] = feats.float().cpu().numpy()
            pos += b
            bar.update(b)
    if pos != n:  # pragma: no cover - DataLoader contract
        raise RuntimeError(f"extracted {pos} feature rows for {n} images")
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"extractor {extractor.name} ({extractor.weights_source}) gave non-finite features for "
            f"{int(bad.sum())} images (first: {dataset.items[first].path}); are its weights broken?"
        )
    return out


def _dataset_featureset(dataset, extractor: Extractor, features: np.ndarray) -> FeatureSet:
    sups = [it.superclass for it in dataset.items]
    return FeatureSet(
        features=features,
        labels=[it.label for it in dataset.items],
        superclasses=sups if any(s is not None for s in sups) else None,
        classes=list(dataset.classes),
        extractor=extractor.name,
        source=f"dataset:{dataset.name}",
        fingerprint=dataset.fingerprint(),
    )


def extract_features(
    dataset,
    extractor: str | Extractor | None = None,
    *,
    weights: PathLike | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    cache: bool = True,
    progress: bool = True,
) -> FeatureSet:
    """Features of every image of ``dataset`` (an :class:`~oodml.datasets.ImageDataset`).

    ``extractor``: a name (default :func:`default_extractor` of the dataset) or an
    :class:`Extractor`; ``weights``: a local weights file (with a name only).  ``workers``
    defaults to ``min(4, cpu count)``; ``device`` to CUDA when available.  With ``cache`` the
    table is read from / written to :func:`feature_cache_path` (a hit reads no image).

    Returns a :class:`FeatureSet` whose rows follow ``dataset.items``.
    """
    if extractor is None:
        extractor = default_extractor(getattr(dataset, "name", None))
    if isinstance(extractor, Extractor):
        if weights is not None:
            raise BadInputError("pass weights= to get_extractor(), not with an Extractor object")
        ex = extractor
    else:
        ex = get_extractor(extractor, weights=weights)
    path = None
    meta = _cache_meta(dataset, ex)
    if cache:
        path = feature_cache_path(dataset, ex)
        if path.exists():
            feats = _read_cache(path, meta)
            if feats is not None:
                return _dataset_featureset(dataset, ex, feats)
    feats = run_extractor(ex, dataset, batch_size=batch_size, workers=workers, device=device, progress=progress)
    if path is not None:
        try:
            _write_npz(path, {"features": feats, "meta": np.array(dumps_json(meta, indent=None).strip())})
        except OSError as exc:  # a read-only or full cache must not cost the extraction
            warnings.warn(
                f"could not write the feature cache {path} ({exc}); continuing without it",
                FeatureCacheWarning,
                stacklevel=2,
            )
    return _dataset_featureset(dataset, ex, feats)
