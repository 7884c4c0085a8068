"""Tests of :mod:`oodml.features.cache`: the on-disk feature cache.

Every dataset here is a tiny folder tree of PNGs the test writes (fixtures in conftest.py); every
network gets random weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

from __future__ import annotations

import numpy as np
import pytest

from oodml.datasets import load_dataset
from oodml.features import (
    FeatureCacheWarning,
    extract_features,
    feature_cache_path,
    npz_bytes,
)


def test_cache_hit_reads_no_image(folder_ds, monkeypatch, tmp_path, forbid_image_reads):
    first = extract_features(folder_ds, "pixels", workers=0)
    path = feature_cache_path(folder_ds, "pixels")
    assert path.is_file() and path.parent == tmp_path / "cache" / "features"
    forbid_image_reads()
    again = extract_features(folder_ds, "pixels", workers=0)
    np.testing.assert_array_equal(first.features, again.features)
    assert again.labels == first.labels and again.fingerprint == first.fingerprint
    with pytest.raises(AssertionError, match="an image was read"):
        extract_features(folder_ds, "pixels", workers=0, cache=False)


def test_cache_file_is_byte_identical_and_plain(folder_ds):
    extract_features(folder_ds, "hog", workers=0)
    path = feature_cache_path(folder_ds, "hog")
    first = path.read_bytes()
    path.unlink()
    extract_features(folder_ds, "hog", workers=0, batch_size=3)
    assert path.read_bytes() == first
    with np.load(path, allow_pickle=False) as z:
        assert z["features"].shape == (12, 324)
    assert npz_bytes({"a": np.arange(3)}) == npz_bytes({"a": np.arange(3)})


def test_cache_key_follows_extractor_and_fingerprint(folder_ds, tmp_path, pattern_image):
    p_pix = feature_cache_path(folder_ds, "pixels")
    p_hog = feature_cache_path(folder_ds, "hog")
    assert p_pix != p_hog
    assert feature_cache_path(folder_ds, "pixels") == p_pix
    # same folder, one image replaced by a different-size file: new fingerprint, new key
    root = tmp_path / "imgs"
    pattern_image(0, 0, size=(30, 30)).save(root / "class0" / "00.png")
    changed = load_dataset("folder", root=root)
    assert changed.fingerprint() != folder_ds.fingerprint()
    assert feature_cache_path(changed, "pixels") != p_pix
    assert feature_cache_path(folder_ds.subset(folder_ds.classes[:2]), "pixels") != p_pix


def test_corrupt_cache_is_rebuilt_with_a_warning(folder_ds):
    good = extract_features(folder_ds, "pixels", workers=0)
    path = feature_cache_path(folder_ds, "pixels")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])  # truncated
    with pytest.warns(FeatureCacheWarning, match="cannot be read"):
        rebuilt = extract_features(folder_ds, "pixels", workers=0)
    np.testing.assert_array_equal(rebuilt.features, good.features)
    assert path.read_bytes() == content
    # a readable archive with the wrong table is not trusted either
    with np.load(path, allow_pickle=False) as z:
        meta = z["meta"]
    path.write_bytes(npz_bytes({"features": np.zeros((3, 256), np.float32), "meta": meta}))
    with pytest.warns(FeatureCacheWarning, match="shape"):
        extract_features(folder_ds, "pixels", workers=0)
    assert path.read_bytes() == content
