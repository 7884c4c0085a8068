"""Leave-one-out neighbour statistics from half of the similarity matrix.

:func:`loo_neighbour_stats` gives exactly what :func:`oodml.metrics.knn.neighbour_stats` gives
when the gallery is the query set (every item queries all the others), but computes each
block pair of the symmetric similarity matrix once and serves the queries of both blocks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from oodml.metrics.cluster import sgemm_nt
from oodml.metrics.knn import NeighbourStats

__all__ = ["LOO_MAX_CLASS", "loo_neighbour_stats"]

# Largest class the leave-one-out path accepts (a class never spans two blocks).
LOO_MAX_CLASS = 8192


def _class_blocks(lab_sorted: np.ndarray, block: int) -> np.ndarray:
    """Block boundaries over label-sorted items: about ``block`` items each, cut only between
    classes (a class larger than ``block`` is a block of its own)."""
    n = len(lab_sorted)
    starts = np.flatnonzero(np.r_[True, lab_sorted[1:] != lab_sorted[:-1]]) if n else np.zeros(0, np.int64)
    bounds = [0]
    for s, e in zip(starts.tolist(), starts[1:].tolist() + [n]):
        if e - bounds[-1] > block and s > bounds[-1]:
            bounds.append(s)
    bounds.append(n)
    return np.asarray(bounds, np.int64)


class _Block:
    """State of one block of items (label-sorted); ``is_a`` marks the type A items (top list needed)."""

    def __init__(self, ids, x, t, thr, pstar, is_a):
        self.ids, self.x, self.t, self.thr, self.pstar, self.is_a = ids, x, t, thr, pstar, is_a
        self.n_a = int(is_a.sum())
        # what _scan compares with: t for type A, and for type B thr one ulp down (entries >= thr)
        self.t_scan = np.where(is_a, t, np.nextafter(thr, np.float32(-np.inf))).astype(np.float32)


def _scan(s: np.ndarray, blk: _Block, other_ids: np.ndarray, axis: int, buf: np.ndarray):
    """One side of a similarity block ``s``: the items of ``blk`` are the rows of ``s``
    (``axis=1``) or its columns (``axis=0``); ``other_ids`` are the items along the other axis.

    Returns per item of ``blk`` the count of entries ``> t`` plus, for type B items, the entries
    equal to ``thr`` with a lower index than ``pstar`` (so that for them the count is the
    number of items ranked before the first positive), and the type A candidates
    ``(item, other, value)`` (entries ``>= L``; ``t`` is ``L`` rounded down by one ulp).

    One comparison pass against ``blk.t_scan`` (``t`` for type A items, ``thr`` rounded down by one
    ulp for type B, so that their entries ``>= thr`` pass) and one walk over the hits, which counts them:
    type A hits are the candidates; type B hits equal to ``thr`` at an index ``>= pstar`` (ties the
    rule does not count, the positive itself included) are taken off the count.
    """
    r, c = s.shape
    na = blk.n_a
    m = buf[: r * c].reshape(r, c)
    if axis == 1:
        np.greater(s, blk.t_scan[:, None], out=m)
    else:
        np.greater(s, blk.t_scan[None, :], out=m)
    # the hits' positions through the 1-d flatnonzero, in the same (row-major) order as np.nonzero
    # on the 2-d mask, which walks it ~10x slower (≈ 50 ms for a 4096² block); the counts are
    # those of the hits (a few per query), not a second pass over the mask
    flat = np.flatnonzero(m.ravel())
    rows, cols = np.divmod(flat, c)
    ii, oo = (rows, cols) if axis == 1 else (cols, rows)  # item of blk, item along the other axis
    cnt = np.bincount(ii, minlength=len(blk.ids))
    vals = s.ravel()[flat]
    is_a = blk.is_a[ii]
    cand = (blk.ids[ii[is_a]], other_ids[oo[is_a]], vals[is_a]) if na else None
    b_hit = ~is_a
    tie = b_hit & (vals == blk.thr[ii])
    if tie.any():
        drop = tie & (other_ids[oo] >= blk.pstar[ii])
        np.subtract.at(cnt, ii[drop], 1)
    return cnt, cand


def _default_workers() -> int:
    try:
        return min(2, max(1, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return 1


class _AreaProgress:
    """Reports queries in proportion to the block products done (they sum to ``n``)."""

    def __init__(self, n: int, sizes: np.ndarray, report: Callable[[int], None] | None):
        self.n = n
        self.total = float(sizes.sum()) ** 2 / 2 or 1.0  # Σ b_i²/2 (own blocks) + Σ_{i<j} b_i b_j (pairs)
        self.area, self.reported = 0.0, 0
        self.report = report or (lambda _n: None)

    def __call__(self, area: float) -> None:
        self.area += area
        target = self.n if self.area >= self.total * (1 - 1e-9) else int(self.n * self.area / self.total)
        if target > self.reported:
            self.report(target - self.reported)
            self.reported = target


class _Counts:
    """Per-item counts of items ranked before the first positive, and type A candidates."""

    def __init__(self, n: int):
        self.rank = np.zeros(n, np.int64)
        self.cands: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, cnt: np.ndarray, cand, ids: np.ndarray) -> None:
        self.rank[ids] += cnt
        if cand is not None and len(cand[0]):
            self.cands.append(cand)


def _own_block(x: np.ndarray, labels: np.ndarray, ids: np.ndarray, depth: int, s_buf: np.ndarray):
    """Block ``ids`` (label-sorted) against itself: each query's best positive (``thr``, ``pstar``),
    its type (A: ``L <= thr``) and threshold ``t``. Returns the :class:`_Block` and its own
    similarities."""
    import torch  # lazy on purpose: ~3.6 s, and `import oodml.metrics` must stay light

    b = len(ids)
    xi = x[ids]
    s = sgemm_nt(xi, xi, s_buf[: b * b].reshape(b, b))
    rows = np.arange(b)
    s[rows, rows] = -np.inf
    # the query's positives: the other items of its class, a contiguous run here
    lab = labels[ids]
    seg0 = np.searchsorted(lab, lab, "left")
    seg1 = np.searchsorted(lab, lab, "right")
    r_cnt = seg1 - seg0 - 1
    w = int((seg1 - seg0).max())
    cols = seg0[:, None] + np.arange(w)[None, :]
    valid = (cols < seg1[:, None]) & (cols != rows[:, None])
    cols = np.where(valid, cols, 0)
    pv = np.where(valid, s[rows[:, None], cols], -np.inf)
    has = r_cnt > 0
    thr = np.where(has, pv.max(1), np.inf).astype(np.float32)
    pstar = np.where(valid & (pv == thr[:, None]), ids[cols], np.iinfo(np.int64).max).min(1)
    a = np.zeros(b, bool)
    t = thr.copy()
    if depth > 0 and has.any():
        kmax = int(r_cnt.max())
        top = torch.topk(torch.from_numpy(s), kmax, dim=1, sorted=True).values.numpy()
        lo = top[rows, np.maximum(r_cnt - 1, 0)]
        a = has & (lo <= thr)
        t = np.where(a, np.nextafter(lo, np.float32(-np.inf)), thr).astype(np.float32)
    return _Block(ids, xi, t, thr, pstar, a), s


def _block_pair(blk: _Block, oth: _Block, s_buf, m_bufs, pool, counts: _Counts) -> None:
    """One product ``x_i @ x_j.T`` serving the queries of both blocks (rows and columns)."""
    b, c = len(blk.ids), len(oth.ids)
    sj = sgemm_nt(blk.x, oth.x, s_buf[: b * c].reshape(b, c))
    if pool is not None:
        f_rows = pool.submit(_scan, sj, blk, oth.ids, 1, m_bufs[0])
        f_cols = pool.submit(_scan, sj, oth, blk.ids, 0, m_bufs[1])
        counts.add(*f_rows.result(), blk.ids)
        counts.add(*f_cols.result(), oth.ids)
    else:
        counts.add(*_scan(sj, blk, oth.ids, 1, m_bufs[0]), blk.ids)
        counts.add(*_scan(sj, oth, blk.ids, 0, m_bufs[1]), oth.ids)


def _scan_blocks(x, labels, order, bounds, depth, workers, tick: _AreaProgress) -> _Counts:
    """Every block against itself and every later block, from the last block to the first."""
    nblk = len(bounds) - 1
    bmax = int(np.diff(bounds).max(initial=1))
    s_buf = np.empty(bmax * bmax, np.float32)
    m_bufs = [np.empty(bmax * bmax, bool) for _ in range(2)]
    counts = _Counts(len(x))
    blocks: list[_Block | None] = [None] * nblk
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        for i in range(nblk - 1, -1, -1):
            ids = order[bounds[i] : bounds[i + 1]]  # label-sorted
            blk, s_own = _own_block(x, labels, ids, depth, s_buf)
            blocks[i] = blk
            counts.add(*_scan(s_own, blk, ids, 1, m_bufs[0]), blk.ids)
            tick(len(ids) * len(ids) / 2)
            for j in range(i + 1, nblk):  # every later block j, once for the queries of both
                _block_pair(blk, blocks[j], s_buf, m_bufs, pool, counts)
                tick(len(ids) * len(blocks[j].ids))
    finally:
        if pool is not None:
            pool.shutdown()
    return counts


def _candidate_order(q: np.ndarray, v: np.ndarray, it: np.ndarray, n: int) -> np.ndarray:
    """``np.lexsort((it, -v, q))``: by query, similarity descending, then item index.

    Below 2¹⁶ items the three keys fit one uint64, ``q · 2⁴⁸ + key(-v) · 2¹⁶ + it`` (``key`` maps a
    float32 to a uint32 in the same order; ``-0.0`` is made ``0.0`` first, as the comparison sees
    them), and sorting it is several times faster than ``lexsort`` (≈ 1.4 M candidates at SOP's
    size). The keys are distinct (one candidate per query and item), so the order is the same."""
    if n > 1 << 16:
        return np.lexsort((it, -v, q))
    u = (np.negative(v, dtype=np.float32) + np.float32(0.0)).view(np.uint32).astype(np.uint64)
    key = np.where(u >> np.uint64(31), ~u & np.uint64(0xFFFFFFFF), u | np.uint64(0x80000000))
    composite = (q.astype(np.uint64) << np.uint64(48)) | (key << np.uint64(16)) | it.astype(np.uint64)
    return np.argsort(composite)


def _rank_and_hits(counts: _Counts, labels: np.ndarray, n_pos: np.ndarray, depth: int):
    """``first_rank`` (``n`` without positives) and the top-R ``hits`` of the type A queries,
    from their candidates sorted by (similarity desc, index asc)."""
    n = len(labels)
    first_rank = np.where(n_pos > 0, counts.rank, n).astype(np.int64)
    hits = np.zeros((n, depth), bool)
    if counts.cands:
        q = np.concatenate([c[0] for c in counts.cands])
        it = np.concatenate([c[1] for c in counts.cands])
        v = np.concatenate([c[2] for c in counts.cands])
        o = _candidate_order(q, v, it, n)
        q, it = q[o], it[o]
        starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        pos = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))
        is_pos = labels[it] == labels[q]
        qp, first = np.unique(q[is_pos], return_index=True)
        first_rank[qp] = pos[is_pos][first]
        sel = pos < np.minimum(n_pos[q], depth)
        hits[q[sel], pos[sel]] = is_pos[sel]
    return first_rank, hits


def loo_neighbour_stats(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    depth: int | None = None,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> NeighbourStats:
    """:func:`neighbour_stats` for leave-one-out (every item queries all the others), computing
    only half of the symmetric similarity matrix, with the same results.

    Items are grouped by label into blocks of about ``chunk_size`` (default 4096) whole classes,
    so a query's positives all lie in its own block. Blocks are processed from the last; block
    ``i`` first meets itself (``x_i @ x_i.T``): that gives each of its queries the similarity
    of its best positive (``thr``) and ``L``, the R-th largest similarity within the block, a
    lower bound of the R-th largest overall. A query is of **type A** when ``L <= thr`` (a
    positive may be among its R nearest) and **type B** otherwise (at least R items beat every
    positive, so its R-precision and AP@R are 0). Then every pair of blocks ``i < j`` is
    computed once (``x_i @ x_j.T``) and serves the queries of both blocks, rows and columns:

    * type A queries keep the items with similarity ``>= L`` as candidates (a few R per query
      on average): sorted by (similarity desc, index asc) they give the exact top-R list and the
      exact rank of the first positive, which is ranked before the R-th item;
    * type B queries count the items with similarity ``> thr`` and those equal to it with a
      lower index than the first positive (the tie rule): that count is the rank of the first
      positive.

    Only ``hits[:, :R]`` (what R-precision and MAP@R read) is filled: later columns are False.

    Args:
        x: ``(n, d)`` float32 rows (L2-normalised by the caller).
        labels: ``(n,)`` int64 label codes.
        depth: columns of ``hits``; default the largest R.
        chunk_size: items per block (memory ``~ 10 * chunk_size**2`` bytes); results do not
            depend on it.
        progress: called after every block product with a number of queries, in proportion to
            the products done (they sum to ``n``): block ``k`` from the end meets ``k + 1`` blocks,
            so counting its queries only when it is finished made the bar's rate fall steadily
            over the run (≈ 7,000 queries/s at the start, ≈ 1,800 on average at SOP's size) while
            the products ran at a constant speed.
        workers: threads for the per-block scans (default: CPUs, at most 2).

    Returns:
        :class:`NeighbourStats` (``first_rank`` is ``n`` for queries without positives).
    """
    x = np.ascontiguousarray(x, np.float32)
    labels = np.asarray(labels, np.int64)
    n = len(x)
    counts = np.bincount(labels) if n else np.zeros(0, np.int64)
    n_pos = (counts[labels] - 1).astype(np.int64)
    if depth is None:
        depth = int(n_pos.max(initial=0))
    depth = int(max(0, min(depth, n - 1)))
    order = np.argsort(labels, kind="stable")
    bounds = _class_blocks(labels[order], int(chunk_size or 4096))
    tick = _AreaProgress(n, np.diff(bounds), progress)
    workers = _default_workers() if workers is None else workers
    found = _scan_blocks(x, labels, order, bounds, depth, workers, tick)
    first_rank, hits = _rank_and_hits(found, labels, n_pos, depth)
    return NeighbourStats(first_rank, hits, n_pos)
