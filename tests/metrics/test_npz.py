"""oodml.metrics.npz: reading an embeddings file (its errors are tested through the command in
tests/test_evaluate.py)."""

from __future__ import annotations

import numpy as np

from oodml.metrics.npz import load_embeddings_npz


def _write(tmp_path, name="emb.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_embeddings_npz_roundtrip(tmp_path, clustered):
    x, y = clustered(seed=12)
    emb, lab = load_embeddings_npz(_write(tmp_path, embeddings=x, labels=y))
    np.testing.assert_array_equal(emb, x)
    np.testing.assert_array_equal(lab, y)
