"""Episodes (support sets per test class), their query sets, and the training batches of one episode."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from oodml.adapt.options import DEFAULT_EPISODES
from oodml.data import ClassBalancedBatchSampler
from oodml.errors import BadInputError
from oodml.splits import make_episodes

__all__ = [
    "check_episodes",
    "draw_episodes",
    "episode_sets",
    "ids_by_class",
    "resolve_episodes",
    "seed_int",
    "support_batches",
]


def seed_int(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across platforms and numpy versions)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def ids_by_class(dataset, classes: Sequence[str]) -> dict[str, np.ndarray]:
    by_class = dataset.indices_by_class()
    missing = [c for c in classes if c not in by_class]
    if missing:
        raise BadInputError(
            f"test class {missing[0]!r} is not in dataset {getattr(dataset, 'name', '?')!r}; "
            "the run's split does not match the dataset"
        )
    return {c: np.asarray(by_class[c], dtype=np.int64) for c in classes}


def _usable(k: int, ids_by_class: Mapping[str, np.ndarray]) -> list[str]:
    """Classes with at least ``k + 1`` images (a support set and a query image); error when
    fewer than two remain (no retrieval or classification is possible)."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise BadInputError(f"shots must be positive integers (got {k!r})")
    usable = [c for c, v in ids_by_class.items() if len(v) >= k + 1]
    if len(usable) < 2:
        largest = max((len(v) for v in ids_by_class.values()), default=0)
        raise BadInputError(
            f"{k} shots need at least {k + 1} images per test class (support + query), but "
            f"{'no' if not usable else 'only one'} test class has that many (the largest has {largest}); "
            "choose fewer --shots"
        )
    return usable


def draw_episodes(
    dataset, classes: Sequence[str], k: int, n_episodes: int, seed: int = 0
) -> list[dict[str, list[int]]]:
    """``n_episodes`` episodes of ``k`` support image ids per class, drawn from ``seed`` by
    :func:`oodml.splits.make_episodes` (the same rule as split files: classes with fewer than
    ``k + 1`` images are left out of the ``k``-shot episodes)."""
    ids = ids_by_class(dataset, classes)
    _usable(int(k), ids)
    eps = make_episodes(
        list(classes), {c: v.tolist() for c, v in ids.items()}, shots=[int(k)], episodes=int(n_episodes), seed=int(seed)
    )
    return eps[int(k)]


def check_episodes(
    dataset, classes: Sequence[str], k: int, episodes: Sequence[Mapping[str, Sequence[int]]], where: str = "episodes"
) -> list[dict[str, list[int]]]:
    """Validate episodes and return them as plain dicts in the order of ``classes``.

    An episode maps test classes to ``k`` distinct image ids of that class leaving at least one
    query image; classes may be left out (split files leave out classes with fewer than
    ``k + 1`` images), but at least two must remain."""
    ids = ids_by_class(dataset, classes)
    _usable(int(k), ids)
    sets = {c: set(v.tolist()) for c, v in ids.items()}
    out = []
    for e, ep in enumerate(episodes):
        if not isinstance(ep, Mapping):
            raise BadInputError(f"{where}: {k}-shot episode {e} is not a mapping of class -> image ids")
        extra = [c for c in ep if c not in sets]
        if extra:
            raise BadInputError(f"{where}: {k}-shot episode {e} names class {extra[0]!r}, which is not a test class")
        clean: dict[str, list[int]] = {}
        for c in classes:
            if c not in ep:
                continue
            support = [int(i) for i in ep[c]]
            if len(support) != k or len(set(support)) != k:
                raise BadInputError(
                    f"{where}: {k}-shot episode {e} gives class {c!r} {len(set(support))} distinct images, not {k}"
                )
            bad = [i for i in support if i not in sets[c]]
            if bad:
                raise BadInputError(
                    f"{where}: {k}-shot episode {e}: image {bad[0]} is not an image of class {c!r}; "
                    "the split file does not match the dataset (regenerate it)"
                )
            if len(sets[c]) <= k:
                raise BadInputError(f"{where}: {k}-shot episode {e} leaves class {c!r} no query image")
            clean[c] = support
        if len(clean) < 2:
            raise BadInputError(
                f"{where}: {k}-shot episode {e} covers {len(clean)} test class(es); at least 2 are needed"
            )
        out.append(clean)
    return out


def resolve_episodes(
    dataset,
    classes: Sequence[str],
    shots: Iterable[int],
    split_episodes: Mapping[int, Sequence[Mapping[str, Sequence[int]]]] | None = None,
    n_episodes: int | None = None,
    seed: int = 0,
    where: str = "split file",
) -> tuple[dict[int, list[dict[str, list[int]]]], dict[int, str]]:
    """Episodes per ``k``: the first ``n_episodes`` of the split's (all when ``None``), or
    ``n_episodes`` (default :data:`DEFAULT_EPISODES`) drawn from ``seed`` when the split has none
    for ``k``. Returns ``(episodes, source)`` with ``source[k]`` ``"split"`` or ``"drawn"``."""
    if n_episodes is not None and (isinstance(n_episodes, bool) or int(n_episodes) != n_episodes or n_episodes < 1):
        raise BadInputError(f"episodes must be a positive integer (got {n_episodes!r})")
    split_episodes = {int(k): v for k, v in (split_episodes or {}).items()}
    episodes: dict[int, list[dict[str, list[int]]]] = {}
    source: dict[int, str] = {}
    for k in shots:
        k = int(k)
        given = split_episodes.get(k)
        if given:
            if n_episodes is not None and n_episodes > len(given):
                raise BadInputError(
                    f"{where} has {len(given)} episodes for {k} shots, {n_episodes} were asked for; "
                    f"use --episodes {len(given)} or fewer (or regenerate the split file with more)"
                )
            chosen = list(given)[: n_episodes or len(given)]
            episodes[k] = check_episodes(dataset, classes, k, chosen, where)
            source[k] = "split"
        else:
            episodes[k] = draw_episodes(dataset, classes, k, n_episodes or DEFAULT_EPISODES, seed)
            source[k] = "drawn"
    return episodes, source


def episode_sets(
    episode: Mapping[str, Sequence[int]], test_ids: np.ndarray, test_labels: np.ndarray, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows (positions in ``test_ids``) and labels of an episode's support and query sets.

    ``test_ids``: the image ids of all test images; ``test_labels`` their class index in
    ``classes``. The query set is every image of the episode's classes that is not in its support
    set (a class left out of the episode is left out of its query set too). Returns
    ``(support_rows, support_labels, query_rows, query_labels)``, rows sorted."""
    pos = {int(i): r for r, i in enumerate(test_ids.tolist())}
    index = {c: j for j, c in enumerate(classes)}
    support = []
    for c, members in episode.items():
        for i in members:
            r = pos.get(int(i))
            if r is None or c not in index or test_labels[r] != index[c]:
                raise BadInputError(f"support image {i} of class {c!r} is not one of that test class's images")
            support.append(r)
    s_rows = np.array(sorted(support), dtype=np.int64)
    in_episode = np.isin(test_labels, [index[c] for c in episode])
    in_episode[s_rows] = False
    q_rows = np.flatnonzero(in_episode).astype(np.int64)
    return s_rows, test_labels[s_rows], q_rows, test_labels[q_rows]


def support_batches(
    labels: np.ndarray, batch_size: int, m_per_class: int, iterations: int, seed: int
) -> list[list[tuple[int, int]]]:
    """The training batches of one episode: ``iterations`` lists of ``(position, sample seed)``
    pairs (positions into the support set ``labels``).

    All support images in every batch when they fit in ``batch_size``; otherwise the
    class-balanced batches of :class:`oodml.data.ClassBalancedBatchSampler` (``batch_size //
    m_per_class`` classes with ``m_per_class`` images each, at most all classes). Sample seeds
    drive the augmentation of full adaptation. Everything depends only on ``seed``."""
    labels = np.asarray(labels)
    n, iterations = len(labels), int(iterations)
    if iterations == 0:
        return []
    if n <= int(batch_size):
        rng = np.random.default_rng(seed_int(seed, 0xA11))
        seeds = rng.integers(0, 2**62, size=(iterations, n))
        return [list(zip(range(n), (int(s) for s in row))) for row in seeds]
    n_cls = len(np.unique(labels))
    m = max(1, int(m_per_class))
    per_batch = max(1, min(n_cls, int(batch_size) // m))
    sampler = ClassBalancedBatchSampler(
        np.arange(n), labels, m_per_class=m, batch_size=per_batch * m, num_batches=iterations, seed=int(seed)
    )
    return sampler.batches(0)
