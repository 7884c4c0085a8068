"""The image pipeline (oodml.data): decoded-image cache, seeded class-balanced sampler, loaders."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from oodml.data import (
    ClassBalancedBatchSampler,
    ImageCache,
    eval_loader,
    eval_transform,
    image_cache,
    normalize_batch,
    resized_shape,
    train_loader,
)
from oodml.datasets import load_dataset
from oodml.errors import BadInputError

SIZES = [(50, 40), (40, 50), (37, 37), (90, 30)]  # (width, height): landscape, portrait, square, wide


@pytest.fixture()
def folder_ds(tmp_path, monkeypatch):
    """6 classes x 4 images of different aspect ratios, JPEG and PNG."""
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c in range(6):
        (root / f"c{c}").mkdir(parents=True)
        for k, (w, h) in enumerate(SIZES):
            arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            ext = "png" if k % 2 else "jpg"
            Image.fromarray(arr).save(root / f"c{c}" / f"{k}.{ext}")
    return load_dataset("folder", root=root)


def test_resized_shape_matches_torchvision_resize():
    from torchvision.transforms import v2

    for w, h in SIZES + [(500, 375), (375, 500), (333, 500)]:
        out = v2.Resize(24)(Image.new("RGB", (w, h)))
        assert resized_shape(h, w, 24) == (out.height, out.width)


def test_cache_holds_torchvision_resized_images_and_is_reused(folder_ds, tmp_path):
    from torchvision.transforms import v2

    cache = image_cache(folder_ds, 24, progress=False)
    assert len(cache) == len(folder_ds)
    base = tmp_path / "cache" / "images"
    assert [p.name for p in base.iterdir()] == [cache.folder.name]  # no temporary folder left
    for i in range(len(folder_ds)):
        expected = np.asarray(v2.Resize(24)(folder_ds.load_image(i)))
        np.testing.assert_array_equal(cache.image(i), expected)
    # the eval pipeline on the cache equals the PIL pipeline Resize + CenterCrop exactly
    pil_eval = v2.Compose([v2.Resize(24), v2.CenterCrop(20), v2.PILToTensor()])
    ours = eval_transform(20)
    for i in range(len(folder_ds)):
        assert torch.equal(ours(cache.tensor(i)), pil_eval(folder_ds.load_image(i)))
    # a second call opens the same files instead of rebuilding them
    mtime = (cache.folder / "pixels.npy").stat().st_mtime_ns
    again = image_cache(folder_ds, 24, progress=False)
    assert again.folder == cache.folder and (again.folder / "pixels.npy").stat().st_mtime_ns == mtime
    # a different size is another cache
    assert image_cache(folder_ds, 16, progress=False).folder != cache.folder


def test_cache_pickles_without_pixels(folder_ds):
    cache = image_cache(folder_ds, 24, progress=False)
    cache.image(0)  # open the memory map
    blob = pickle.dumps(cache)
    assert len(blob) < 10_000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.image(5), cache.image(5))


def test_cache_unreadable_is_a_clear_error(tmp_path):
    (tmp_path / "broken").mkdir()
    with pytest.raises(BadInputError, match="delete the folder"):
        ImageCache(tmp_path / "broken")


def _sampler(seed=0, n_classes=10, per_class=5, m=2, batch=8, batches=12):
    labels = np.repeat(np.arange(n_classes), per_class)
    ids = np.arange(len(labels)) + 100  # ids need not be 0..n-1
    return ClassBalancedBatchSampler(ids, labels, m, batch, batches, seed=seed), dict(zip(ids, labels))


def test_sampler_batches_are_class_balanced():
    sampler, label_of = _sampler()
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12
    seen = Counter()
    for batch in batches:
        assert len(batch) == 8
        counts = Counter(label_of[i] for i, _ in batch)
        assert len(counts) == 4 and set(counts.values()) == {2}
        seen.update(counts)
        # the m images of a class are distinct (every class has 5 >= m images)
        for c in counts:
            assert len({i for i, _ in batch if label_of[i] == c}) == 2
    # classes are cycled: 12 batches x 4 classes = 48 visits of 10 classes -> 4 or 5 each
    assert set(seen.values()) <= {8, 10}


def test_sampler_is_a_function_of_seed_and_epoch():
    a, _ = _sampler(seed=3)
    b, _ = _sampler(seed=3)
    a.set_epoch(2)
    first = list(a)
    for e in range(3):  # iterating other epochs first changes nothing
        b.set_epoch(e)
        list(b)
    assert list(b) == first
    a.set_epoch(3)
    assert list(a) != first
    c, _ = _sampler(seed=4)
    c.set_epoch(2)
    assert list(c) != first
    assert a.state_dict() == {"seed": 3, "epoch": 3}


def test_sampler_small_classes_repeat_and_bad_shapes_fail():
    labels = np.array([0, 1, 1, 2, 2, 2])
    s = ClassBalancedBatchSampler(np.arange(6), labels, m_per_class=2, batch_size=6, num_batches=3, seed=0)
    for batch in s:
        assert Counter(labels[i] for i, _ in batch) == {0: 2, 1: 2, 2: 2}
    with pytest.raises(BadInputError, match="needs 4 classes"):
        ClassBalancedBatchSampler(np.arange(6), labels, 2, 8, 1)
    with pytest.raises(BadInputError, match="multiple of m_per_class"):
        ClassBalancedBatchSampler(np.arange(6), labels, 4, 6, 1)


def test_train_loader_is_deterministic_across_worker_counts(folder_ds):
    cache = image_cache(folder_ds, 24, progress=False)
    ids = np.arange(len(folder_ds))
    labels = folder_ds.labels
    runs = []
    for workers in (0, 2):
        sampler = ClassBalancedBatchSampler(ids, labels, 2, 6, 3, seed=1)
        loader = train_loader(cache, labels, sampler, image_size=16, workers=workers)
        epochs = []
        for e in range(2):
            sampler.set_epoch(e)
            epochs.append([(x.clone(), y.clone()) for x, y in loader])
        runs.append(epochs)
    for e in range(2):
        for (x0, y0), (x2, y2) in zip(runs[0][e], runs[1][e]):
            assert x0.dtype == torch.uint8 and x0.shape == (6, 3, 16, 16)
            assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(runs[0][0][0][0], runs[0][1][0][0])  # another epoch, other batches
    # the main-process generator is untouched by the seeded augmentations
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    list(loader)
    assert torch.equal(torch.rand(3), expected)


def test_eval_loader_keeps_order_and_normalize(folder_ds):
    cache = image_cache(folder_ds, 24, progress=False)
    ids = np.array([7, 3, 11])
    x, _ = next(iter(eval_loader(cache, ids, image_size=20, batch_size=8)))
    for k, i in enumerate(ids):
        assert torch.equal(x[k], eval_transform(20)(cache.tensor(i)))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    z = normalize_batch(x, mean, std)
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert z.dtype == torch.float32 and torch.allclose(z, ref, atol=1e-5)
