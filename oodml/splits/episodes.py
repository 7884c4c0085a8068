"""What every split carries besides its sides: the class-disjoint validation classes
(:func:`validation_classes`) and the few-shot episodes (:func:`make_episodes`), both drawn
deterministically from a seed and the split's classes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from oodml.io import stable_hash
from oodml.splits.params import DEFAULT_SHOTS

__all__ = ["make_episodes", "validation_classes"]


def _content_seed(seed: int, names: Iterable[str], tag: int) -> np.random.Generator:

    h = int(stable_hash(sorted(names)), 16)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, h & 0xFFFFFFFF, h >> 32, int(tag)])


def validation_classes(train: Sequence[str], seed: int = 0, fraction: float = 0.15) -> list[str]:
    """A class-disjoint validation subset of ``train`` (in ``train``'s order).

    ``round(fraction · n)`` classes, at least 2, leaving at least 2 to fit on; empty if
    ``fraction == 0`` or ``n < 4``.  Deterministic from ``seed`` and the set of train classes.
    """
    n = len(train)
    if fraction <= 0 or n < 4:
        return []
    m = min(max(2, int(round(fraction * n))), n - 2)
    rng = _content_seed(seed, train, 0x7A1)
    pick = set(rng.choice(n, size=m, replace=False).tolist())
    return [c for i, c in enumerate(train) if i in pick]


def make_episodes(
    test: Sequence[str],
    images_by_class: dict[str, Sequence[int]],
    *,
    shots: Sequence[int] = DEFAULT_SHOTS,
    episodes: int = 10,
    seed: int = 0,
) -> dict[int, list[dict[str, list[int]]]]:
    """Few-shot episodes: ``{k: [ {class: sorted k support image ids}, … episodes ]}``.

    A class with fewer than ``k + 1`` images is left out of the ``k``-shot episodes (it would have
    no query image).  Deterministic from ``seed``, ``k`` and the set of test classes.
    """
    out: dict[int, list[dict[str, list[int]]]] = {}
    test = list(test)
    groups = [np.asarray(images_by_class[c], dtype=np.int64) for c in test]
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    ids = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(test) else sizes
    n_eps = int(episodes)
    owner = np.repeat(np.arange(len(test)), sizes)
    for k in shots:
        k = int(k)
        rng = _content_seed(seed, test, 1000 + k)
        usable = np.flatnonzero(sizes >= k + 1)
        # a uniform random k-subset per class: the k smallest of i.i.d. uniform keys.  All episodes
        # at once: row e of the (episodes, n) draw is the e-th of `episodes` draws of n keys.
        keys = rng.random((n_eps, ids.size))
        order = _grouped_order(keys, owner)  # per episode: grouped by class, random order inside
        picks = ids[order[:, starts[usable, None] + np.arange(k)[None, :]]]
        picks.sort(axis=-1)
        names = [test[c] for c in usable.tolist()]
        out[k] = [dict(zip(names, ep)) for ep in picks.tolist()]
    return out


def _grouped_order(keys: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per row of ``keys``: ``np.lexsort((row, owner))`` (by ``owner``, then by key, ties by index).

    The keys are ``Generator.random`` doubles, multiples of 2⁻⁵³ in [0, 1), so with fewer than 2¹¹
    owners ``owner · 2⁵³ + key · 2⁵³`` is an exact uint64 with the same order, and one stable
    argsort of it is about 3× faster than ``lexsort``."""
    if owner.size == 0 or int(owner.max()) >= 1 << 11:
        return np.lexsort((keys, np.broadcast_to(owner, keys.shape)), axis=-1)
    composite = (owner.astype(np.uint64) << np.uint64(53)) | (keys * 2.0**53).astype(np.uint64)
    return np.argsort(composite, axis=-1, kind="stable")
