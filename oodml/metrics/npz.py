"""Reading an embeddings file: ``EMB.npz`` with ``embeddings`` (n x d numbers) and ``labels`` (n class
ids or names), without pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from oodml.errors import BadInputError

__all__ = ["load_embeddings_npz"]


def load_embeddings_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``embeddings`` (n x d floats) and ``labels`` (n ids or names) from an ``.npz``.

    Raises :class:`~oodml.errors.BadInputError` (one line: which file, what is wrong, the fix)
    for a missing or unreadable file, missing arrays, wrong shapes or dtypes, and NaNs.
    """
    path = Path(path)
    fix = "save it with numpy.savez(PATH, embeddings=E, labels=y), E an (n, d) float array and y n labels"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist; check the path") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path} ({exc.strerror or exc}); check the path and permissions") from None
    if magic == b"\x93NUMPY":
        raise BadInputError(f"{path} is a single .npy array, not an .npz archive; {fix}")
    if not magic.startswith(b"PK"):
        raise BadInputError(f"{path} is not a readable .npz archive (is it truncated?); {fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            missing = [k for k in ("embeddings", "labels") if k not in names]
            if missing:
                raise BadInputError(
                    f"{path} has no {' or '.join(repr(k) for k in missing)} array (it has {names}); {fix}"
                )
            emb, lab = data["embeddings"], data["labels"]
    except BadInputError:
        raise
    except ValueError as exc:  # object arrays need pickle
        raise BadInputError(
            f"{path} cannot be read without pickle ({exc}); {fix} "
            "(labels as numbers or fixed-width strings, not Python objects)"
        ) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{path} is not a readable .npz archive ({exc}); {fix}") from None
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise BadInputError(f"{path}: 'embeddings' must be an (n, d) array, got shape {emb.shape}; {fix}")
    if not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
        raise BadInputError(f"{path}: 'embeddings' must be numbers, got dtype {emb.dtype}; {fix}")
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1 or len(lab) != len(emb):
        raise BadInputError(
            f"{path}: 'labels' must be {len(emb)} labels (one per embedding row), got shape {lab.shape}; {fix}"
        )
    bad = ~np.isfinite(emb).all(1)
    if bad.any():
        raise BadInputError(
            f"{path}: 'embeddings' has {int(bad.sum())} row(s) with NaN or infinite values "
            f"(first: row {int(np.flatnonzero(bad)[0])}); recompute or drop them"
        )
    if np.issubdtype(lab.dtype, np.floating) and not np.isfinite(lab).all():
        raise BadInputError(f"{path}: 'labels' contains NaN or infinite values; {fix}")
    return emb, lab
