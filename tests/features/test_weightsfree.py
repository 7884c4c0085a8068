"""Tests of :mod:`oodml.features.weightsfree`: ``pixels`` and ``hog``.

Every dataset here is a tiny folder tree of PNGs the test writes (fixtures in conftest.py); every
network gets random weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from oodml.features import (
    HOG,
    extract_features,
)


def test_pixels_features_are_grayscale_thumbnails(folder_ds):
    fs = extract_features(folder_ds, "pixels", workers=0, cache=False)
    assert fs.features.shape == (12, 256) and fs.features.dtype == np.float32
    expected = (
        np.asarray(
            folder_ds.load_image(5).convert("L").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32
        ).ravel()
        / 255
    )
    np.testing.assert_allclose(fs.features[5], expected, rtol=0, atol=1e-7)
    assert fs.labels == [it.label for it in folder_ds.items]
    assert fs.classes == folder_ds.classes and fs.superclasses is None
    np.testing.assert_array_equal(fs.class_ids(), folder_ds.labels)
    assert fs.extractor == "pixels" and fs.source == "dataset:folder"
    assert fs.fingerprint == folder_ds.fingerprint()
    assert [len(v) for v in fs.indices_by_class().values()] == [3, 3, 3, 3]


def test_hog_known_answers():
    hog = HOG()
    assert hog.dim == 324
    x = torch.zeros(2, 1, 32, 32)
    x[0, :, :, 16:] = 1.0  # vertical edge: gradient along x, angle 0 -> split between bins 8 and 0
    x[1, :, 16:, :] = 1.0  # horizontal edge: gradient along y, angle pi/2 -> bin 4 alone
    out = hog(x).reshape(2, 9, 9, 4)  # (image, block, bin, cell in block)
    per_bin = out.sum(dim=(1, 3))
    assert torch.allclose(per_bin[0, 0], per_bin[0, 8]) and per_bin[0, 0] > 0
    assert per_bin[0, 1:8].abs().max() == 0
    assert per_bin[1, 4] > 0 and per_bin[1].sum() == pytest.approx(float(per_bin[1, 4]))
    # L2-Hys blocks: unit norm where there is an edge, zero on flat regions
    norms = out.reshape(2, 9, 36).norm(dim=-1).flatten().tolist()
    assert all(abs(n - 1) < 1e-4 or n == 0 for n in norms) and max(norms) > 0.99
    # contrast- and brightness-invariant
    rng = torch.Generator().manual_seed(0)
    img = torch.rand(1, 1, 32, 32, generator=rng)
    torch.testing.assert_close(hog(img * 0.5 + 0.25), hog(img), atol=2e-3, rtol=0)


def test_hog_on_dataset_deterministic_and_worker_independent(folder_ds):
    a = extract_features(folder_ds, "hog", workers=0, batch_size=5, cache=False)
    b = extract_features(folder_ds, "hog", workers=2, batch_size=4, cache=False)
    assert a.features.shape == (12, 324) and np.isfinite(a.features).all()
    np.testing.assert_array_equal(a.features, b.features)
    # images of one class are closer to each other than to other classes' images
    f = a.features
    d = ((f[:, None] - f[None]) ** 2).sum(-1)
    ids = a.class_ids()
    same = d[(ids[:, None] == ids[None]) & ~np.eye(12, dtype=bool)].mean()
    assert same < d[ids[:, None] != ids[None]].mean()
