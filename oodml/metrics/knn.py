"""Exact, chunked nearest-neighbour statistics for retrieval metrics.

For every query :func:`neighbour_stats` returns just what Recall@k, precision@1, R-precision
and MAP@R need, without ever holding the full ``n_query x n_gallery`` similarity matrix:

* ``first_rank``: how many gallery items are ranked before the query's first same-class item
  (0 when the nearest neighbour is a positive). Recall@k is ``first_rank < k``; this needs no
  top-k list, only a count per query of the items strictly more similar than its most similar
  positive, so Recall@1000 costs the same as Recall@1.
* ``hits``: for the ``depth`` nearest neighbours (``depth`` = the largest R), whether each is
  a positive. MAP@R and R-precision read the first R of them.

**Ranking.** Items are ranked by decreasing similarity (inner product of the given rows; the
caller L2-normalises, so this is cosine similarity and the same order as Euclidean distance).
**Ties** are broken by the lower gallery index first, in every backend and in the tests'
brute-force reference. A query is never its own neighbour: it is removed *by index*
(``query_self``), not by distance, so duplicates of the query still count. Similarities are
float32: items whose similarities differ only by float32 rounding may be ordered differently by
different BLAS libraries (that is the only way backends can disagree).

Backends (all exact and equal):

``numpy``  float32 BLAS on the CPU, top-k with ``torch.topk`` on the same memory. For
           leave-one-out (the gallery is the query set),
           :func:`oodml.metrics.loo.loo_neighbour_stats` computes only half of the symmetric
           similarity matrix (see there); the product runs through
           torch's BLAS (MKL), ~1.3x numpy's OpenBLAS on the development machine's Xeon.
``torch``  ``torch.matmul`` + ``torch.topk`` on any device (used on CUDA).
``faiss``  ``IndexFlatIP`` search (on GPUs when faiss has any); ranks are read from the
           top-``max(k)`` lists instead of counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BACKENDS",
    "FAISS_INSTALL_HINT",
    "NeighbourStats",
    "default_chunk_size",
    "faiss_num_gpus",
    "neighbour_stats",
]

BACKENDS = ("numpy", "torch", "faiss")

#: what a user installs to get faiss (one of the two builds, never both)
FAISS_INSTALL_HINT = "pip install 'oodml[cpu]' (faiss-cpu) or 'oodml[gpu]' (faiss-gpu, Linux x86-64, CUDA 12)"


def faiss_num_gpus() -> int:
    """GPUs faiss may use: 0 unless faiss imports, is a GPU build, torch sees CUDA, and
    ``faiss.get_num_gpus() > 0``.

    The GPU code paths (``IndexFlatIP`` moved to all GPUs, ``faiss.Kmeans(gpu=True)``) are taken
    only when this is positive, so ``faiss-cpu``, a missing faiss, or a GPU build on a machine
    without a usable CUDA device all give the same CPU path. torch is asked first so that a GPU
    build is never made to initialise a CUDA runtime that is not there.
    """
    try:
        import faiss  # lazy on purpose: optional, only its backend needs it
    except ImportError:
        return 0
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "get_num_gpus"):
        return 0  # faiss-cpu
    import torch  # lazy on purpose (~3.6 s): `import oodml.metrics` stays light

    if not torch.cuda.is_available():
        return 0
    try:
        return max(int(faiss.get_num_gpus()), 0)
    except Exception:  # a broken CUDA setup: the CPU path still works
        return 0


@dataclass
class NeighbourStats:
    """Per-query retrieval statistics (see the module docstring).

    Attributes:
        first_rank: ``(nq,)`` int64, number of gallery items ranked before the first positive;
            ``n_gallery`` when the query has no positive.
        hits: ``(nq, depth)`` bool, ``hits[i, j]``: the ``j``-th nearest neighbour (0-based) of
            query ``i`` has the query's label, for ``j < n_pos[i]`` (what R-precision and
            MAP@R read); later columns are False.
        n_pos: ``(nq,)`` int64, number of positives R (gallery items with the query's label,
            the query itself excluded).
    """

    first_rank: np.ndarray
    hits: np.ndarray
    n_pos: np.ndarray


def default_chunk_size(n_gallery: int, depth: int = 1, budget: int = 1 << 26) -> int:
    """Queries per block so that a block's similarities take about ``4 * budget`` bytes."""
    return int(max(16, min(8192, budget // max(1, n_gallery, depth))))


class _Positives:
    """Gallery indices of each label, sorted, for building padded per-query positive lists."""

    def __init__(self, g_lab: np.ndarray, n_labels: int):
        self.order = np.argsort(g_lab, kind="stable")
        counts = np.bincount(g_lab, minlength=n_labels)
        self.start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.count = counts.astype(np.int64)
        self.width = int(max(1, counts.max(initial=0)))

    def padded(self, q_lab: np.ndarray, q_self: np.ndarray) -> np.ndarray:
        """``(b, width)`` gallery indices of the queries' positives, self and padding = -1."""
        cols = np.arange(self.width)
        valid = cols[None, :] < self.count[q_lab][:, None]
        pos = np.where(valid, self.start[q_lab][:, None] + cols[None, :], 0)
        idx = np.where(valid, self.order[pos], -1)
        idx[idx == q_self[:, None]] = -1
        return idx


def _lex_topk_rows(vals: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (decreasing value, increasing index)."""
    order = np.lexsort((idx, -vals), axis=-1)
    return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)


def _exact_row_topk(row: np.ndarray, depth: int) -> np.ndarray:
    """Gallery indices of the ``depth`` first items of one similarity row (ties: lower index)."""
    order = np.lexsort((np.arange(len(row)), -row))
    return order[:depth]


def _count_before(s: np.ndarray, thr: np.ndarray, pstar: np.ndarray, tile: int = 4096) -> np.ndarray:
    """Per row ``r``: columns ``c`` ranked before column ``pstar[r]`` whose similarity is
    ``thr[r]``, i.e. ``s > thr``, or ``s == thr`` and ``c < pstar`` (lower index first).

    One comparison pass: in a tile of columns entirely left of ``pstar`` the test ``s >= thr``
    is ``s > nextafter(thr, -inf)``; right of it, ``s > thr``; the one tile holding ``pstar``
    gets the equality correction on its few rows.
    """
    b, m = s.shape
    lo = np.nextafter(thr, np.float32(-np.inf))
    counts = np.zeros(b, np.int64)
    buf = np.empty((b, min(tile, m)), bool)
    for j0 in range(0, m, tile):
        j1 = min(j0 + tile, m)
        view = buf[:, : j1 - j0]
        np.greater(s[:, j0:j1], np.where(pstar >= j1, lo, thr)[:, None], out=view)
        counts += np.count_nonzero(view, axis=1)
        split = np.flatnonzero((pstar >= j0) & (pstar < j1))
        if len(split):
            sub = s[split, j0:j1]
            left = np.arange(j0, j1)[None, :] < pstar[split, None]
            counts[split] += np.count_nonzero((sub == thr[split, None]) & left, axis=1)
    return counts


def _first_rank_from_row(row: np.ndarray, thr: float, pstar: int) -> int:
    """Items ranked before the item ``pstar`` with similarity ``thr`` (exact tie rule)."""
    return int(np.count_nonzero(row > thr) + np.count_nonzero(row[:pstar] == thr))


# ----------------------------------------------------------------------------------------------
# numpy / torch blocks: full similarity rows, counts and top-k
# ----------------------------------------------------------------------------------------------
def _block_numpy(s: np.ndarray, pos: np.ndarray, self_col: np.ndarray, depth: int):
    """Statistics of one block of similarity rows ``s`` (b, m), float32, modified in place."""
    import torch  # lazy on purpose (~3.6 s): `import oodml.metrics` stays light

    b, m = s.shape
    rows = np.arange(b)
    has_self = self_col >= 0
    s[rows[has_self], self_col[has_self]] = -np.inf
    valid = pos >= 0
    pv = s[rows[:, None], np.where(valid, pos, 0)]
    pv[~valid] = -np.inf
    thr = pv.max(1)
    has = valid.any(1)
    big = np.iinfo(np.int64).max
    pstar = np.where((pv == thr[:, None]) & valid, pos, big).min(1)
    rank = np.where(has, _count_before(s, thr, pstar), m).astype(np.int64)
    top = None
    if depth > 0:
        width = min(depth + 1, m)
        tv, ti = torch.topk(torch.from_numpy(s), width, dim=1, largest=True, sorted=True)
        tv, ti = _lex_topk_rows(tv.numpy(), ti.numpy())
        top = ti[:, :depth]
        if width > depth:
            for r in np.flatnonzero(tv[:, depth] == tv[:, depth - 1]):  # tie across the cut
                top[r] = _exact_row_topk(s[r], depth)
    return rank, top


def _block_torch(s, pos_t, self_col_t, depth: int):
    """Same as :func:`_block_numpy` for a torch tensor block (any device)."""
    import torch  # lazy on purpose (~3.6 s): `import oodml.metrics` stays light

    b, m = s.shape
    dev = s.device
    rows = torch.arange(b, device=dev)
    has_self = self_col_t >= 0
    s[rows[has_self], self_col_t[has_self]] = float("-inf")
    valid = pos_t >= 0
    pv = s.gather(1, pos_t.clamp(min=0))
    pv = pv.masked_fill(~valid, float("-inf"))
    thr = pv.max(1).values
    has = valid.any(1)
    eq = (pv == thr[:, None]) & valid
    big = torch.iinfo(torch.int64).max
    pstar = torch.where(eq, pos_t, torch.full_like(pos_t, big)).min(1).values
    tied_pos = eq.sum(1)
    c_gt = (s > thr[:, None]).sum(1)
    c_ge = (s >= thr[:, None]).sum(1)
    rank = torch.where(has, c_gt, torch.full_like(c_gt, m))
    fix = torch.nonzero(has & (c_ge - c_gt > tied_pos)).flatten().tolist()
    rank = rank.cpu().numpy().astype(np.int64)
    for r in fix:
        row = s[r].float().cpu().numpy()
        rank[r] = _first_rank_from_row(row, float(thr[r]), int(pstar[r]))
    top = None
    if depth > 0:
        width = min(depth + 1, m)
        tv, ti = torch.topk(s, width, dim=1, largest=True, sorted=True)
        # lexicographic (value desc, index asc): stable sort by index, then by value
        o = torch.argsort(ti, dim=1, stable=True)
        tv, ti = tv.gather(1, o), ti.gather(1, o)
        o = torch.argsort(-tv, dim=1, stable=True)
        tv, ti = tv.gather(1, o).cpu().numpy(), ti.gather(1, o).cpu().numpy()
        top = ti[:, :depth]
        if width > depth:
            for r in np.flatnonzero(tv[:, depth] == tv[:, depth - 1]):
                top[r] = _exact_row_topk(s[r].float().cpu().numpy(), depth)
    return rank, top


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def neighbour_stats(
    query: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    query_self: np.ndarray | None = None,
    *,
    depth: int | None = None,
    max_k: int = 1,
    backend: str = "numpy",
    device=None,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    clip_to_r: bool = True,
) -> NeighbourStats:
    """Exact per-query retrieval statistics, computed block by block of queries.

    Args:
        query: ``(nq, d)`` float32 array (rows already L2-normalised by the caller).
        query_labels: ``(nq,)`` int64 label codes (``0 .. L-1``).
        gallery: ``(m, d)`` float32 array.
        gallery_labels: ``(m,)`` int64 label codes (same coding as ``query_labels``).
        query_self: ``(nq,)`` int64 gallery index of each query itself (excluded from its
            neighbours), or -1; ``None`` when no query is in the gallery.
        depth: how many nearest neighbours to report in ``hits``; default: the largest R.
        max_k: largest k of Recall@k (only the ``faiss`` backend, which reads ranks from
            top-k lists, needs it).
        backend: ``"numpy"``, ``"torch"`` or ``"faiss"`` (see the module docstring).
        device: torch device for the ``torch`` backend.
        chunk_size: queries per block (memory ``~ 4 * chunk_size * m`` bytes).
        progress: called with the number of queries finished after every block.
        clip_to_r: keep ``hits`` only within each query's first ``R`` places (what R-precision
            and MAP@R read); ``False`` reports every one of the ``depth`` places (mAP@1000).

    Returns:
        :class:`NeighbourStats`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    nq, m = len(query), len(gallery)
    query_labels = np.asarray(query_labels, np.int64)
    gallery_labels = np.asarray(gallery_labels, np.int64)
    if query_self is None:
        query_self = np.full(nq, -1, np.int64)
    query_self = np.asarray(query_self, np.int64)
    n_labels = int(max(query_labels.max(initial=-1), gallery_labels.max(initial=-1))) + 1
    positives = _Positives(gallery_labels, n_labels)
    n_pos = positives.count[query_labels] - (
        (query_self >= 0) & (gallery_labels[np.maximum(query_self, 0)] == query_labels)
    )
    if depth is None:
        depth = int(n_pos.max(initial=0))
    depth = int(min(depth, m))
    tick = progress or (lambda _n: None)
    first_rank = np.empty(nq, np.int64)
    hits = np.zeros((nq, depth), bool)

    data = (query, query_labels, gallery, gallery_labels, query_self, positives, depth)
    if backend == "faiss":
        _faiss_stats(*data, max_k, chunk_size, first_rank, hits, tick)
    else:
        _dense_stats(*data, backend, device, chunk_size, first_rank, hits, tick)
    if clip_to_r:
        hits &= np.arange(depth)[None, :] < n_pos[:, None]
    return NeighbourStats(first_rank, hits, n_pos.astype(np.int64))


def _dense_stats(
    query, q_lab, gallery, g_lab, q_self, positives, depth, backend, device, chunk_size, first_rank, hits, tick
) -> None:
    """numpy and torch backends: full similarity rows, block by block of queries."""
    nq, m = len(query), len(gallery)
    if chunk_size is None:
        chunk_size = default_chunk_size(m, depth)
    if backend == "torch":
        import torch  # lazy on purpose (~3.6 s): only the torch backend needs it here

        dev = torch.device(device) if device is not None else torch.device("cpu")
        g_t = torch.from_numpy(np.ascontiguousarray(gallery)).to(dev)
        q_all = torch.from_numpy(np.ascontiguousarray(query)).to(dev)
    for s0 in range(0, nq, chunk_size):
        sl = slice(s0, min(s0 + chunk_size, nq))
        pos = positives.padded(q_lab[sl], q_self[sl])
        if backend == "numpy":
            s = query[sl] @ gallery.T
            rank, top = _block_numpy(s, pos, q_self[sl], depth)
        else:
            s = q_all[sl] @ g_t.T
            rank, top = _block_torch(s, torch.from_numpy(pos).to(dev), torch.from_numpy(q_self[sl]).to(dev), depth)
        del s
        first_rank[sl] = rank
        if depth > 0:
            hits[sl] = (g_lab[top] == q_lab[sl][:, None]) & (top != q_self[sl][:, None])
        tick(sl.stop - sl.start)


def _faiss_stats(
    query, q_lab, gallery, g_lab, q_self, positives, depth, max_k, chunk_size, first_rank, hits, tick
) -> None:
    """faiss backend: exact top lists; a first positive beyond ``max(max_k, depth)`` places is
    reported as ``n_gallery`` (Recall@k for ``k <= max_k`` only needs ``rank < k``)."""
    import faiss  # lazy on purpose: optional, only its backend needs it

    nq, m = len(query), len(gallery)
    index = faiss.IndexFlatIP(gallery.shape[1])
    if faiss_num_gpus() > 0:  # pragma: no cover - no GPU here
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(gallery, np.float32))
    any_self = int(bool((q_self >= 0).any()))
    need = max(max_k, depth)
    width = min(m, need + 2 + any_self)
    complete = width == m
    if chunk_size is None:
        chunk_size = default_chunk_size(width * 8)
    for s0 in range(0, nq, chunk_size):
        sl = slice(s0, min(s0 + chunk_size, nq))
        q = np.ascontiguousarray(query[sl], np.float32)
        raw_vals, idx = index.search(q, width)
        selfc = q_self[sl]
        vmin = raw_vals[:, -1:].copy()
        vals = np.where(idx == selfc[:, None], -np.inf, raw_vals).astype(np.float32)
        vals, idx = _lex_topk_rows(vals, idx)
        # the query itself (-inf) now sits last. Entries ranked exactly: all when the list is
        # the whole gallery, else those strictly above the smallest value faiss returned (items
        # equal to it may have been cut arbitrarily)
        keep = width
        exact = np.full(len(q), keep) if complete else np.count_nonzero(vals > vmin, axis=1)
        lab = (g_lab[idx] == q_lab[sl][:, None]) & (idx != selfc[:, None])
        first = np.where(lab.any(1), lab.argmax(1), m)
        rank = np.where(first < exact, first, m).astype(np.int64)
        top = idx[:, :depth].copy()
        for r in np.flatnonzero(exact < min(need, keep)):
            row = (gallery @ q[r]).astype(np.float32)
            if selfc[r] >= 0:
                row[selfc[r]] = -np.inf
            order = np.lexsort((np.arange(m), -row))
            top[r] = order[:depth]
            p = np.flatnonzero((g_lab[order] == q_lab[s0 + r]) & (order != selfc[r]))
            rank[r] = int(p[0]) if len(p) else m
        first_rank[sl] = rank
        if depth > 0:
            hits[sl] = (g_lab[top] == q_lab[sl][:, None]) & (top != selfc[:, None])
        tick(len(q))
