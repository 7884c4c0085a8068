"""Selection of the series: from the distinct states of a search trajectory, the ``K`` whose FIDs
are most evenly spaced (:func:`select_series`, an exact dynamic programme)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oodml.errors import OodmlError

__all__ = ["select_series"]


def select_series(fids: Sequence[float], num_splits: int, required: int = 0) -> list[int]:
    """Pick ``num_splits`` indices of ``fids`` whose values are as evenly spaced as possible.

    "Evenly spaced" means: the picks, sorted by FID, minimise the sum of squared gaps between
    consecutive FIDs, ``Σ_j (fid[i_{j+1}] − fid[i_j])²`` -- for fixed end points that sum is smallest
    when all gaps are equal.  The pick always contains ``required`` (the standard split) and, when
    ``num_splits ≥ 3``, the lowest and highest FID.  Because the gaps are measured between the
    picks themselves (not against fixed targets), a standard split that happens to lie close to the
    easiest state costs one small gap and the other picks spread evenly over the rest of the range.
    Returns the picked indices sorted by (FID, index).  Exact dynamic programme, ``O(K·N²)``.
    """
    vals = np.asarray(fids, dtype=np.float64)
    N = len(vals)
    if N == 0:
        return []
    order = sorted(range(N), key=lambda i: (vals[i], i))
    K = min(int(num_splits), N)
    pos_req = order.index(required)
    if K == 1:
        return [required]
    v = vals[order]
    INF = float("inf")
    gap2 = (v[None, :] - v[:, None]) ** 2  # gap2[i', i] for i' < i
    allowed_first = np.zeros(N, bool)
    allowed_first[0 if K >= 3 else slice(None)] = True
    # cost[f, i]: best cost of a chain of j+1 picks ending at sorted candidate i; f = required used
    cost = np.full((2, N), INF)
    for i in np.flatnonzero(allowed_first):
        cost[1 if i == pos_req else 0, i] = 0.0
    back: list[np.ndarray] = []
    idx = np.arange(N)
    for j in range(1, K):
        new = np.full((2, N), INF)
        arg = np.full((2, N), -1, dtype=np.int64)
        for i in range(1, N):
            if j == K - 1 and K >= 3 and i != N - 1:
                continue
            is_req = i == pos_req
            for f_prev in (0, 1):
                if is_req and f_prev == 1:
                    continue
                cand = cost[f_prev, :i] + gap2[:i, i]
                ip = int(np.argmin(cand))  # first minimum: ties go to the lower FID / index
                c = cand[ip]
                if not np.isfinite(c):
                    continue
                f_new = 1 if (is_req or f_prev == 1) else 0
                if c < new[f_new, i]:
                    new[f_new, i] = c
                    arg[f_new, i] = int(idx[ip]) * 2 + f_prev
        back.append(arg)
        cost = new
    i = int(np.argmin(cost[1]))
    if not np.isfinite(cost[1, i]):  # pragma: no cover - infeasible only if N < K
        raise OodmlError("cannot select splits (too few distinct states)")
    picks = [i]
    f = 1
    for j in range(K - 1, 0, -1):
        code = int(back[j - 1][f, i])
        i, f = code // 2, code % 2
        picks.append(i)
    picks.reverse()
    return [order[i] for i in picks]
