"""The image pipeline of training and embedding: a decoded-image cache, a seeded class-balanced
batch sampler, uint8 transforms and the data loaders built from them.

::

    cache = image_cache(dataset, resize_size=256)             # built once, shared by all runs
    sampler = ClassBalancedBatchSampler(ids, labels, m_per_class=2, batch_size=112,
                                        num_batches=50, seed=0)
    loader = train_loader(cache, ids, labels, sampler, image_size=224, workers=4, device="cuda")
    for epoch in range(epochs):
        sampler.set_epoch(epoch)                              # epoch e's batches = f(seed, e)
        for images, labels in loader:                         # uint8 (B, 3, S, S), int64 (B,)
            x = normalize_batch(images, mean, std, device)    # float on the device

Design decisions
----------------
* **Decoded-image cache.** Every image is decoded once and resized so that its *shorter side*
  equals ``resize_size`` (``torchvision.transforms.Resize(resize_size)`` semantics: bilinear,
  PIL's antialiasing, longer side ``int(resize_size * long / short)``), keeping its aspect ratio.
  The pixels of all images are stored back to back in one flat ``uint8`` ``.npy`` file (HWC per
  image) with an ``(n, 3)`` index of ``(offset, height, width)``, memory-mapped read-only by every
  run and every loader worker.  The cache folder is
  ``cache_dir("images")/<dataset>-<fingerprint[:16]>-s<resize_size>-v<version>``: built once
  (progress bar), in a temporary folder renamed into place, so readers never see half a cache
  and concurrent builders do not collide (the first rename wins).
* **Why keep the aspect ratio** (and not store centre-cropped squares): the evaluation transform
  ``Resize(resize_size) + CenterCrop(image_size)`` is then *exactly* the usual PIL pipeline (the
  cache holds the resized image; only the centre crop remains), and the training
  ``RandomResizedCrop`` samples its crop boxes from the whole picture as in the usual pipeline,
  not from a centre square (which would cut a quarter of a 4:3 CUB image away from every crop).
  The one difference to the PIL pipeline: ``RandomResizedCrop`` crops the image already resized
  to ``resize_size`` instead of the full-resolution file, so a small crop is upsampled from
  fewer pixels (the usual trade of cached DML loaders; invisible at the default 256 → 224).
* **Transforms on uint8 tensors** (``torchvision.transforms.v2``): train =
  ``RandomResizedCrop(image_size, scale=(0.08, 1), ratio=(3/4, 4/3), antialias=True)`` +
  ``RandomHorizontalFlip``; eval = ``CenterCrop(image_size)`` of the cached
  ``Resize(resize_size)`` image.  Loaders deliver ``uint8`` batches (4× less memory traffic than
  float, cheap to pin and copy); :func:`normalize_batch` converts and normalises on the device.
* **Determinism.** The batch sampler yields ``(image id, sample seed)`` pairs drawn from
  ``numpy.random.default_rng([seed, epoch])``; each sample's augmentation re-seeds the torch
  generator of the process that transforms it with its sample seed.  Epoch ``e``'s batches and
  augmentations therefore depend only on ``(seed, e)`` — not on the number of loader workers,
  their persistence, or anything that happened in earlier epochs — which is what makes resumed
  runs bit-for-bit identical to uninterrupted ones.
* pytorch-metric-learning's ``MPerClassSampler`` was not used: it draws from a module-level
  ``numpy.RandomState`` shared by the whole process and shuffles its class list in place from
  epoch to epoch, so an epoch's batches depend on global state and on all earlier epochs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from oodml.datasets.base import open_image_rgb
from oodml.errors import BadInputError
from oodml.io import read_json, write_json
from oodml.paths import cache_dir
from oodml.progress import progress_bar

#: Bump when the cache layout or the resizing recipe changes (it keys the cache folders).
CACHE_VERSION = 1

__all__ = [
    "CACHE_VERSION",
    "CachedImages",
    "ClassBalancedBatchSampler",
    "ImageCache",
    "eval_loader",
    "eval_transform",
    "image_cache",
    "normalize_batch",
    "resized_shape",
    "train_loader",
    "train_transform",
]


# --------------------------------------------------------------------------------------------
# Decoded-image cache
# --------------------------------------------------------------------------------------------
def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` after resizing the shorter side to ``size`` (torchvision's rule)."""
    if height <= width:
        return size, max(1, int(size * width / height))
    return max(1, int(size * height / width)), size


class ImageCache:
    """A read-only, memory-mapped store of decoded images (see the module docstring).

    ``cache.image(i)`` is image ``i`` of the dataset as a ``(h, w, 3)`` ``uint8`` array (a view
    into the memory map; copy it before writing).  Picklable: a worker process re-opens the
    memory map itself instead of receiving the pixels.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.meta = read_json(self.folder / "meta.json", "image cache manifest")
            self.index = np.load(self.folder / "index.npy", allow_pickle=False)
        except (OSError, ValueError, BadInputError) as exc:
            raise BadInputError(
                f"image cache {self.folder} is unreadable ({exc}); delete the folder to rebuild it"
            ) from None
        self.resize_size = int(self.meta["resize_size"])
        self._pixels: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pixels"] = None
        return state

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.load(self.folder / "pixels.npy", mmap_mode="r", allow_pickle=False)
        return self._pixels

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def image(self, i: int) -> np.ndarray:
        off, h, w = (int(v) for v in self.index[i])
        return self.pixels[off : off + h * w * 3].reshape(h, w, 3)

    def tensor(self, i: int) -> torch.Tensor:
        """Image ``i`` as a fresh ``(3, h, w)`` ``uint8`` tensor."""
        return torch.from_numpy(np.array(self.image(i))).permute(2, 0, 1)

    @property
    def nbytes(self) -> int:
        return int(self.index[:, 1].astype(np.int64) @ self.index[:, 2].astype(np.int64)) * 3

    def __repr__(self) -> str:
        return f"ImageCache({str(self.folder)!r}, images={len(self)}, resize_size={self.resize_size})"


def _cache_key(dataset, resize_size: int) -> str:
    return f"{dataset.name}-{dataset.fingerprint()[:16]}-s{int(resize_size)}-v{CACHE_VERSION}"


def image_cache(
    dataset,
    resize_size: int,
    *,
    folder: str | os.PathLike | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> ImageCache:
    """The decoded-image cache of ``dataset`` at ``resize_size``, building it on first use.

    Args:
        dataset: an :class:`oodml.datasets.ImageDataset` (image ids = item indices).
        resize_size: shorter side of the stored images, in pixels.
        folder: where caches live (default ``oodml.paths.cache_dir("images")``).
        progress: show a progress bar while building.
        threads: decoding threads while building (default: the CPU count, at most 8).
    """
    resize_size = int(resize_size)
    if resize_size < 1:
        raise BadInputError(f"resize_size must be a positive number of pixels (got {resize_size})")
    base = Path(folder) if folder is not None else cache_dir("images")
    target = base / _cache_key(dataset, resize_size)
    if (target / "meta.json").is_file():
        cache = ImageCache(target)
        if len(cache) != len(dataset):
            raise BadInputError(
                f"image cache {target} holds {len(cache)} images but the dataset has {len(dataset)}; "
                "delete the folder to rebuild it"
            )
        return cache
    _build_cache(dataset, resize_size, base, target, progress=progress, threads=threads)
    return ImageCache(target)


def _build_cache(dataset, size: int, base: Path, target: Path, *, progress: bool, threads: int | None) -> None:
    base.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    shapes = np.zeros((n, 2), dtype=np.int64)
    for i, it in enumerate(dataset.items):  # headers only: fast
        try:
            with Image.open(it.path) as img:
                w, h = img.size
        except Exception:  # let the decoder below raise the clear error
            w, h = open_image_rgb(it.path).size
        shapes[i] = resized_shape(h, w, size)
    sizes = shapes[:, 0] * shapes[:, 1] * 3
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    index = np.stack([offsets, shapes[:, 0], shapes[:, 1]], axis=1).astype(np.int64)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=base))
    try:
        pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8, shape=(int(sizes.sum()),))

        def fill(i: int, out: np.ndarray = pixels) -> None:
            img = open_image_rgb(dataset.items[i].path)
            h, w = int(shapes[i, 0]), int(shapes[i, 1])
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
            out[offsets[i] : offsets[i] + sizes[i]] = arr.reshape(-1)

        threads = int(threads or min(8, os.cpu_count() or 1))
        bar = progress_bar(total=n, enabled=progress, desc=f"caching {dataset.name} images at {size}px", unit="img")
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for _ in pool.map(fill, range(n), chunksize=64):
                bar.update(1)
        bar.close()
        pixels.flush()
        del fill, pixels  # close the memmap before the folder is renamed
        np.save(tmp / "index.npy", index, allow_pickle=False)
        write_json(
            tmp / "meta.json",
            {
                "schema": "oodml.image-cache/1",
                "dataset": dataset.name,
                "fingerprint": dataset.fingerprint(),
                "resize_size": size,
                "images": n,
                "layout": "flat uint8 HWC per image; index rows (offset, height, width)",
                "resize": "shorter side to resize_size, PIL bilinear (torchvision Resize)",
            },
        )
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "meta.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Class-balanced batch sampler
# --------------------------------------------------------------------------------------------
class ClassBalancedBatchSampler(torch.utils.data.Sampler):
    """Batches of ``batch_size // m_per_class`` distinct classes × ``m_per_class`` images each.

    Yields ``num_batches`` lists of ``(image id, sample seed)`` per epoch.  Classes are visited
    in a fresh random order, cycling (no class twice in a batch); a class's images are drawn
    without replacement, cycling through shuffles of them (a class with fewer than
    ``m_per_class`` images repeats some).  Everything is drawn from
    ``numpy.random.default_rng([seed, epoch])``: call :meth:`set_epoch` before each epoch.

    Args:
        ids: image ids (any integers, e.g. dataset item indices), shape ``(n,)``.
        labels: class of each id, shape ``(n,)``.
        m_per_class: images per class in a batch.
        batch_size: images per batch, a multiple of ``m_per_class``.
        num_batches: batches per epoch.
        seed: the run's seed.
    """

    def __init__(
        self,
        ids: Sequence[int] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        m_per_class: int,
        batch_size: int,
        num_batches: int,
        seed: int = 0,
    ):
        ids = np.asarray(ids, dtype=np.int64)
        labels = np.asarray(labels)
        if ids.shape != labels.shape or ids.ndim != 1:
            raise BadInputError(f"sampler: ids {ids.shape} and labels {labels.shape} must be 1-d of equal length")
        m, b = int(m_per_class), int(batch_size)
        if m < 1 or b < 1 or b % m:
            raise BadInputError(
                f"batch_size ({b}) must be a positive multiple of m_per_class ({m}); "
                "change --batch-size or --m-per-class"
            )
        classes = np.unique(labels)
        per_batch = b // m
        if per_batch > len(classes):
            raise BadInputError(
                f"a batch of {b} images with {m} per class needs {per_batch} classes but training has only "
                f"{len(classes)}; lower --batch-size or raise --m-per-class"
            )
        if int(num_batches) < 1:
            raise BadInputError(f"num_batches must be at least 1 (got {num_batches})")
        self.m_per_class, self.batch_size, self.num_batches = m, b, int(num_batches)
        self.classes_per_batch = per_batch
        self.seed = int(seed)
        self.epoch = 0
        self._members = [ids[labels == c] for c in classes]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def __len__(self) -> int:
        return self.num_batches

    def batches(self, epoch: int | None = None) -> list[list[tuple[int, int]]]:
        """All batches of ``epoch`` (default: the current one)."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch)])
        n_cls, p, m = len(self._members), self.classes_per_batch, self.m_per_class
        order = rng.permutation(n_cls)
        pos = 0
        queues: list[np.ndarray | None] = [None] * n_cls
        qpos = np.zeros(n_cls, dtype=np.int64)
        out = []
        for _ in range(self.num_batches):
            if pos + p <= n_cls:
                chosen = order[pos : pos + p]
                pos += p
            else:  # take the rest, then start a new shuffle without repeating a class in this batch
                rest = order[pos:]
                fresh = rng.permutation(n_cls)
                fresh = np.concatenate([fresh[~np.isin(fresh, rest)], fresh[np.isin(fresh, rest)]])
                need = p - len(rest)
                chosen = np.concatenate([rest, fresh[:need]])
                order, pos = fresh, need
            ids = []
            for c in chosen:
                members = self._members[c]
                for _ in range(m):
                    q = queues[c]
                    if q is None or qpos[c] >= len(q):
                        q = queues[c] = members[rng.permutation(len(members))]
                        qpos[c] = 0
                    ids.append(int(q[qpos[c]]))
                    qpos[c] += 1
            seeds = rng.integers(0, 2**62, size=len(ids))
            out.append(list(zip(ids, (int(s) for s in seeds))))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches())


# --------------------------------------------------------------------------------------------
# Transforms and datasets
# --------------------------------------------------------------------------------------------
def train_transform(image_size: int, augment: bool = True, scale: tuple[float, float] = (0.08, 1.0)):
    """Training transform on a cached ``uint8`` image: ``RandomResizedCrop`` + horizontal flip
    (``augment=False``: the evaluation centre crop)."""
    # torchvision's transforms cost seconds to import (about 80 % of torch's own import, measured on
    # the 2-core machine): commands that only list objectives or parse flags must not pay them.
    from torchvision.transforms import v2

    if not augment:
        return eval_transform(image_size)
    return v2.Compose(
        [
            v2.RandomResizedCrop(int(image_size), scale=tuple(scale), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )


def eval_transform(image_size: int):
    """Evaluation transform on a cached image (already ``Resize(resize_size)``-d): ``CenterCrop``."""
    from torchvision.transforms import v2  # lazy: see train_transform

    return v2.CenterCrop(int(image_size))


class CachedImages(torch.utils.data.Dataset):
    """Items ``(uint8 image (3, S, S), label)`` from an :class:`ImageCache`.

    A key is an image id, or an ``(image id, sample seed)`` pair from
    :class:`ClassBalancedBatchSampler`: then the transform's randomness is seeded with the sample
    seed (in the main process the torch generator's state is restored afterwards).
    ``labels`` maps image ids to the labels returned (``None``: every label is -1).
    """

    def __init__(self, cache: ImageCache, transform, labels: dict[int, int] | np.ndarray | None = None):
        self.cache = cache
        self.transform = transform
        self.labels = labels

    def __len__(self) -> int:
        return len(self.cache)

    def _label(self, i: int) -> int:
        if self.labels is None:
            return -1
        return int(self.labels[i])

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        if isinstance(key, (tuple, list)):
            i, seed = int(key[0]), int(key[1])
            img = self.cache.tensor(i)
            main = torch.utils.data.get_worker_info() is None
            state = torch.default_generator.get_state() if main else None
            torch.default_generator.manual_seed(seed)
            try:
                img = self.transform(img)
            finally:
                if state is not None:
                    torch.default_generator.set_state(state)
        else:
            i = int(key)
            img = self.transform(self.cache.tensor(i))
        return img.contiguous(), self._label(i)


class _Subset(torch.utils.data.Dataset):
    def __init__(self, base: CachedImages, ids: np.ndarray):
        self.base, self.ids = base, np.asarray(ids, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int):
        return self.base[int(self.ids[k])]


def _loader_kwargs(workers: int, device: Any) -> dict[str, Any]:
    workers = max(0, int(workers))
    kwargs: dict[str, Any] = {"num_workers": workers, "pin_memory": torch.device(device).type == "cuda"}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    return kwargs


def train_loader(
    cache: ImageCache,
    labels_by_id: dict[int, int] | np.ndarray,
    sampler: ClassBalancedBatchSampler,
    *,
    image_size: int,
    augment: bool = True,
    scale: tuple[float, float] = (0.08, 1.0),
    workers: int = 0,
    device: Any = "cpu",
) -> torch.utils.data.DataLoader:
    """A loader of class-balanced ``uint8`` training batches (pinned memory only on CUDA,
    persistent workers).  ``labels_by_id[i]`` is the training label of image id ``i``;
    ``scale`` is the ``RandomResizedCrop`` area range."""
    ds = CachedImages(cache, train_transform(image_size, augment, scale=scale), labels_by_id)
    return torch.utils.data.DataLoader(
        ds,
        batch_sampler=sampler,
        generator=torch.Generator().manual_seed(sampler.seed),
        **_loader_kwargs(workers, device),
    )


def eval_loader(
    cache: ImageCache,
    ids: Sequence[int] | np.ndarray,
    *,
    image_size: int,
    batch_size: int = 256,
    workers: int = 0,
    device: Any = "cpu",
) -> torch.utils.data.DataLoader:
    """A loader of ``uint8`` centre crops of images ``ids``, in order (labels are -1)."""
    ds = _Subset(CachedImages(cache, eval_transform(image_size)), np.asarray(ids))
    kwargs = _loader_kwargs(workers, device)
    kwargs.pop("persistent_workers", None)
    return torch.utils.data.DataLoader(
        ds, batch_size=int(batch_size), shuffle=False, generator=torch.Generator().manual_seed(0), **kwargs
    )


def normalize_batch(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: Any = None
) -> torch.Tensor:
    """``uint8 (B, 3, H, W)`` → normalised ``float32`` on ``device``.

    The uint8 batch is moved first (4× fewer bytes), then converted there.  The memory format is
    left alone: the model converts to channels-last itself (on a CPU converting the uint8 batch
    here would cost three times the normalisation).
    """
    device = torch.device(device) if device is not None else images.device
    x = images.to(device, non_blocking=True).float()
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
    return x.sub_(m).div_(s)
