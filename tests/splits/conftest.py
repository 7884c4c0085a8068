"""Helpers shared by the tests of oodml.splits: synthetic structured features, class names, a
small dataset without files and a small split document (as fixtures returning the helper)."""

from __future__ import annotations

import numpy as np
import pytest

from oodml.datasets import ImageDataset, Item
from oodml.splits import SearchParams, build_split_document


def _structured(C=60, per=8, d=24, groups=6, mix=0.3, seed=0):
    """Class means around group centres; groups mostly contiguous in class order (so the
    standard first-half/second-half split is a moderate shift), a fraction ``mix`` reassigned."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, d)) * 3.0
    g = (np.arange(C) * groups) // C
    flip = rng.random(C) < mix
    g[flip] = rng.integers(0, groups, flip.sum())
    means = centres[g] + rng.normal(size=(C, d))
    lab = np.repeat(np.arange(C), per)
    x = means[lab] + 0.5 * rng.normal(size=(lab.size, d))
    return x.astype(np.float32), lab


def _names(C):
    return [f"cls{i:03d}" for i in range(C)]


def _make_dataset(cls, per=6):
    items = [Item(f"/nonexistent/{c}/{i}.png", c) for c in cls for i in range(per)]
    return ImageDataset("synthetic", "/nonexistent", items, classes=cls, check_files=False)


def _small_doc(seed=0, C=40, **kw):
    x, lab = _structured(C=C, per=6, d=16, seed=1, mix=0.5)
    cls = _names(C)
    p = SearchParams(num_splits=5, patience=3, min_classes=6, episodes=3, **kw)
    return (
        build_split_document(
            x,
            lab,
            cls,
            cls[: C // 2],
            cls[C // 2 :],
            p,
            seed=seed,
            dataset="synthetic",
            fingerprint=_make_dataset(cls).fingerprint(),
            extractor="none",
        ),
        x,
        lab,
        cls,
    )


@pytest.fixture(scope="session")
def structured():
    """``structured(C, per, d, groups, mix, seed) -> (features float32 (C·per, d), labels)``."""
    return _structured


@pytest.fixture(scope="session")
def names():
    """``names(C) -> ["cls000", …]``."""
    return _names


@pytest.fixture(scope="session")
def make_dataset():
    """``make_dataset(classes, per=6)``: an ImageDataset of ``per`` (absent) images per class."""
    return _make_dataset


@pytest.fixture(scope="session")
def small_doc():
    """``small_doc(seed=0, C=40, **search params) -> (doc, features, labels, classes)``."""
    return _small_doc


@pytest.fixture(scope="module")
def doc40():
    return _small_doc()
