"""Tests of :mod:`oodml.features.files`: a user's own features file.

Every dataset here is a tiny folder tree of PNGs the test writes (fixtures in conftest.py); every
network gets random weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oodml.errors import BadInputError
from oodml.features import (
    load_features_file,
    save_features_file,
    standard_split_for_features,
)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_features_file_roundtrip_and_split(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(7, 5))
    labels = np.array(["b", "a", "c", "b", "a", "d", "c"])
    sups = np.array(["x", "y", "y", "x", "y", "", "y"])
    fs = load_features_file(_npz(tmp_path / "f.npz", features=feats, labels=labels, superclasses=sups))
    assert fs.features.dtype == np.float32 and fs.features.shape == (7, 5)
    assert fs.classes == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(fs.class_ids(), [1, 0, 2, 1, 0, 3, 2])
    assert fs.superclasses == ["x", "y", "y", "x", "y", None, "y"]
    assert fs.source == str(tmp_path / "f.npz") and fs.extractor == "file" and len(fs.fingerprint) == 64
    assert standard_split_for_features(fs) == (["a", "b"], ["c", "d"])
    out = save_features_file(fs, tmp_path / "g.npz")
    back = load_features_file(out)
    np.testing.assert_array_equal(back.features, fs.features)
    assert back.labels == fs.labels and back.superclasses == fs.superclasses
    assert back.fingerprint == fs.fingerprint
    first = out.read_bytes()
    save_features_file(back, out)
    assert out.read_bytes() == first
    # integer labels are class names too; the fingerprint follows the content
    ints = load_features_file(_npz(tmp_path / "i.npz", features=feats, labels=np.array([3, 1, 2, 3, 1, 2, 2])))
    assert ints.classes == ["1", "2", "3"] and ints.superclasses is None
    assert ints.fingerprint != fs.fingerprint


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"labels": np.array(["a", "b"])}, "has no 'features' array"),
        ({"features": np.ones((2, 3))}, "has no 'labels' array"),
        ({"features": np.ones(4), "labels": np.array(["a", "b", "a", "b"])}, r"shape \(4,\)"),
        ({"features": np.ones((3, 2)), "labels": np.array(["a", "b"])}, r"expected \(3,\)"),
        ({"features": np.array([[1.0, np.nan], [0, 1]]), "labels": np.array(["a", "b"])}, "NaN/inf.*first row 0"),
        ({"features": np.array([[1.0, 1e300], [0, 1]]), "labels": np.array(["a", "b"])}, "beyond float32"),
        ({"features": np.ones((3, 2)), "labels": np.array(["a", "a", "a"])}, "at least 2 classes"),
        ({"features": np.ones((2, 2)), "labels": np.array(["a", "b"], dtype=object)}, "Python objects"),
        ({"features": np.array([["x", "y"], ["z", "w"]]), "labels": np.array(["a", "b"])}, "dtype <U1"),
        ({"features": np.ones((2, 2)), "labels": np.array([0.5, 1.5])}, "expected strings"),
        ({"features": np.ones((2, 2)), "labels": np.array(["a", ""])}, "row 1 is empty"),
        (
            {
                "features": np.ones((3, 2)),
                "labels": np.array(["a", "a", "b"]),
                "superclasses": np.array(["x", "y", "z"]),
            },
            "class 'a' is listed under two superclasses",
        ),
    ],
)
def test_features_file_errors(tmp_path, arrays, pattern):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BadInputError, match=pattern) as err:
        load_features_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_features_file_unreadable(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_features_file(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(BadInputError, match="not a readable .npz"):
        load_features_file(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.ones((2, 2)))
    with pytest.raises(BadInputError, match="single array"):
        load_features_file(tmp_path / "single.npy")


@pytest.mark.parametrize(
    "save, features",
    [
        (np.savez, np.arange(24, dtype=np.float32).reshape(6, 4)),  # the one-read path
        (np.savez, np.arange(24, dtype=">f8").reshape(6, 4)),  # big-endian: the same path, converted
        (np.savez, np.asfortranarray(np.arange(24, dtype=np.float64).reshape(6, 4))),  # np.load's path
        (np.savez_compressed, np.arange(24, dtype=np.float32).reshape(6, 4)),  # np.load's path
    ],
)
def test_every_npz_layout_reads_the_same_table(tmp_path, save, features):
    """Uncompressed C-ordered members are read into the array with one read; the others go through
    np.load. Either way the table, and so its fingerprint, is the same."""
    from oodml.features.files import _open_npz, _stored_member

    path = tmp_path / "f.npz"
    save(path, features=features, labels=np.array(list("aabbcc")))
    with _open_npz(path) as loaded:
        fast = _stored_member(path, loaded, "features")
    one_read = save is np.savez and features.flags.c_contiguous
    assert (fast is not None) == one_read
    if one_read:
        assert fast.dtype == features.dtype and np.array_equal(fast, features)
    fs = load_features_file(path)
    np.testing.assert_array_equal(fs.features, features.astype(np.float32))
    plain = _npz(tmp_path / "plain.npz", features=np.ascontiguousarray(features, dtype=np.float32), labels=fs.labels)
    assert fs.fingerprint == load_features_file(plain).fingerprint


def test_a_corrupt_features_member_is_one_clear_error(tmp_path):
    """The one-read path checks the member's CRC-32, as zipfile does for np.load."""
    path = _npz(tmp_path / "f.npz", features=np.ones((64, 8), dtype=np.float32), labels=np.array(["a", "b"] * 32))
    data = bytearray(path.read_bytes())
    at = data.index(np.ones(8, dtype=np.float32).tobytes())  # inside the features' bytes
    data[at + 1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match=r"'features' is corrupt \(its CRC-32 does not match\); write") as err:
        load_features_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_reading_a_features_file_never_imports_torch(tmp_path):
    """The features-file reader (new and old path, and the lazy package itself) stays torch-free."""
    import os
    import subprocess
    import sys

    path = _npz(tmp_path / "f.npz", features=np.eye(4, dtype=np.float32), labels=np.array(["a", "a", "b", "b"]))
    code = (
        "import sys, oodml.features, oodml.feature_files\n"
        "from oodml.features import load_features_file\n"
        f"assert len(load_features_file({str(path)!r})) == 4\n"
        "bad = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
