"""The embedded ``glyphs`` dataset: structure, determinism, caching and its CLI."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from oodml.datasets import load_dataset
from oodml.datasets.__main__ import main as datasets_main
from oodml.datasets.glyphs import GlyphsConfig, generate_glyphs, load_glyphs
from oodml.errors import BadInputError
from oodml.io import file_digest


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("glyphs-data")
    return load_glyphs(root=root, progress=False)


def test_default_dataset_has_the_structure_a_study_needs(glyphs):
    info = glyphs.summary()
    assert info["dataset"] == "glyphs"
    assert info["classes"] >= 300
    assert info["superclasses"] >= 8
    per_class = Counter(it.label for it in glyphs.items)
    assert min(per_class.values()) >= 12
    # the standard split is half of every superclass on each side
    sup = glyphs.class_superclass
    train_sups = Counter(sup[c] for c in glyphs.train_classes)
    test_sups = Counter(sup[c] for c in glyphs.test_classes)
    assert set(train_sups) == set(test_sups) == set(glyphs.superclasses)
    assert abs(len(glyphs.train_classes) - len(glyphs.test_classes)) <= len(glyphs.superclasses)


def test_images_vary_within_a_class_and_differ_between_classes(glyphs):
    by_class = glyphs.indices_by_class()
    rng = np.random.default_rng(0)
    within, between = [], []
    classes = list(by_class)
    for c in rng.choice(len(classes), size=12, replace=False):
        idx = by_class[classes[c]]
        imgs = [np.asarray(glyphs.load_image(i).convert("L"), dtype=np.float32) / 255 for i in idx[:4]]
        assert imgs[0].shape == (64, 64)
        for a in range(4):
            for b in range(a + 1, 4):
                within.append(np.abs(imgs[a] - imgs[b]).mean())
        other = by_class[classes[(c + 1) % len(classes)]][0]
        between.append(np.abs(imgs[0] - np.asarray(glyphs.load_image(other).convert("L"), np.float32) / 255).mean())
    assert min(within) > 0.0  # no two drawings of a character are identical
    assert np.mean(between) > np.mean(within) * 0.8  # but a class is not just noise


def test_generation_is_deterministic_and_cached(tmp_path):
    cfg = GlyphsConfig(classes_per_superclass=2, images_per_class=3, image_size=24)
    a = generate_glyphs(tmp_path / "a", cfg, progress=False)
    b = generate_glyphs(tmp_path / "b", cfg, progress=False)
    assert a == b
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 1 + 2 * 3 * len(a["superclasses"])
    for rel in files_a:
        assert file_digest(tmp_path / "a" / rel) == file_digest(tmp_path / "b" / rel), rel
    # a second load reads the manifest and does not render again
    ds1 = load_glyphs(root=tmp_path / "c", classes_per_superclass=2, images_per_class=3, image_size=24, progress=False)
    import oodml.datasets.glyphs as g

    def boom(*a, **k):  # pragma: no cover - only called on a cache miss
        raise AssertionError("regenerated although cached")

    orig = g.generate_glyphs
    g.generate_glyphs = boom
    try:
        ds2 = load_glyphs(
            root=tmp_path / "c", classes_per_superclass=2, images_per_class=3, image_size=24, progress=False
        )
    finally:
        g.generate_glyphs = orig
    assert ds1.fingerprint() == ds2.fingerprint()


def test_interrupted_folder_gives_a_clear_error(tmp_path):
    cfg = GlyphsConfig(classes_per_superclass=2, images_per_class=3, image_size=24)
    (tmp_path / cfg.key()).mkdir()
    with pytest.raises(BadInputError, match="no glyphs.json.*delete the folder"):
        load_glyphs(root=tmp_path, classes_per_superclass=2, images_per_class=3, image_size=24, progress=False)


def test_is_the_default_dataset_and_cli_reports_it(glyphs, capsys):
    root = glyphs.root.parent
    assert load_dataset(None, root=root).fingerprint() == glyphs.fingerprint()
    assert datasets_main(["--root", str(root), "--json", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {
        "dataset": "glyphs",
        "classes": len(glyphs.classes),
        "images": len(glyphs),
        "superclasses": len(glyphs.superclasses),
        "train_classes": len(glyphs.train_classes),
        "test_classes": len(glyphs.test_classes),
    }
