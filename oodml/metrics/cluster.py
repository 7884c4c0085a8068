"""Exact, accelerated k-means (Lloyd's algorithm) and normalised mutual information.

:func:`kmeans` runs **plain Lloyd iterations** from a seeded random initialisation (``k``
distinct data points, like faiss' ``Kmeans``), but skips most of the distance computations
with Yinyang-style triangle-inequality bounds (Ding et al., ICML 2015):

* the centroids are split once into ``t`` groups of about ``group_size`` nearby centroids;
* each point keeps an *upper* bound on the distance to its assigned centroid and, for every
  group, a *lower* bound on the distance to every other centroid of that group;
* after a centroid update every bound is loosened by how far the centroids moved (triangle
  inequality); a group whose lower bound still exceeds the point's (re-tightened) upper bound
  cannot contain a closer centroid, so its distances are not computed.

Only the (point, group) pairs whose bounds are violated are recomputed, as float32 BLAS
products; points with many violated groups get a full dense row. The assignment is therefore
the one plain Lloyd would produce from the same initialisation (exact, not approximate; the
bounds are rounded conservatively so float32 rounding cannot prune a centroid that is closer).
The only differences can come from two centroids whose distances to a point agree to float32
rounding, where any implementation's choice is arbitrary. When an iteration changes no
assignment, Lloyd has converged (every further iteration would reproduce the same centroids
and assignment), so the loop stops early with the identical result.

Definitions (as faiss / pytorch-metric-learning):

* iteration ``i`` (``i = 1 .. n_iter``) = recompute every non-empty centroid as the mean of its
  points, then reassign every point to its nearest centroid (squared Euclidean distance);
  before the first iteration every point is assigned to its nearest initial centroid, so the
  result is the assignment to the centroids after ``n_iter`` updates;
* an empty cluster keeps its previous centroid (faiss instead splits a large cluster);
* ties between exactly equidistant centroids go to the lower centroid position.

:func:`nmi` is the normalised mutual information with arithmetic normalisation, the default of
``sklearn.metrics.normalized_mutual_info_score``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from oodml.threads import blas_threads, torch_threads

__all__ = ["ExactKMeans", "KMeansResult", "kmeans", "nmi"]

# Relative slack on squared distances from float32 GEMM rounding (dot products of length d of
# unit-scale vectors are accurate to ~sqrt(d)*6e-8; 1e-4 is a safe, cheap over-estimate).
_SQ_TOL = 1e-4
_REL_TOL = 1e-5
# Below this many violated (point, group) pairs the pruned step runs on one thread.
_PARALLEL_MIN_PAIRS = 20000
# A point with more than 1/_DENSE_FRACTION of its groups violated gets a full dense row.
_DENSE_FRACTION = 10


@dataclass
class KMeansResult:
    """Result of :func:`kmeans`.

    Attributes:
        labels: ``(n,)`` int64 cluster id of every point (ids index ``centroids``).
        centroids: ``(k, d)`` float32 final centroids.
        n_iter: number of centroid updates performed (``<= n_iter`` requested; fewer when Lloyd
            converged, which gives the identical result).
        converged: whether an iteration changed no assignment.
        distance_fraction: fraction of the point-centroid distances plain Lloyd would compute
            (``(n_iter + 1) * n * k``) that were actually computed.
    """

    labels: np.ndarray
    centroids: np.ndarray
    n_iter: int
    converged: bool
    distance_fraction: float


def _row_sqdist(x: np.ndarray, c: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """``||x_i - c_i||^2`` row by row (direct differences: no cancellation)."""
    out = np.empty(len(x), np.float32)
    for s in range(0, len(x), chunk):
        diff = x[s : s + chunk] - c[s : s + chunk]
        out[s : s + chunk] = np.einsum("ij,ij->i", diff, diff)
    return out


def _n_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _single_threaded_blas():
    """Context in which BLAS runs on one thread: the many small products of the bound-pruned
    steps are ~100x slower with a multi-threaded BLAS (thread hand-offs per tiny call)."""
    return blas_threads(1)


def sgemm_nt(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b.T`` in float32 through torch's BLAS (MKL), written into ``out`` if given: about
    1.3x numpy's OpenBLAS sgemm on the development machine's Xeon (benchmarks/README.md).
    Falls back to numpy when torch is missing."""
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    if out is None:
        out = np.empty((len(a), len(b)), np.float32)
    try:
        import torch  # lazy on purpose (~3.6 s): `import oodml.metrics` stays light
    except ImportError:  # pragma: no cover - torch is a dependency
        return np.matmul(a, b.T, out=out)
    torch.mm(torch.from_numpy(a), torch.from_numpy(b).T, out=torch.from_numpy(out))
    return out


def _cluster_sums(x: np.ndarray, a: np.ndarray, which: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 sums and sizes of the clusters ``which``, each summed over its points in
    increasing index order (so a cluster's mean does not depend on what else is computed)."""
    import scipy.sparse as sp  # lazy on purpose (~0.2 s): only k-means needs it

    row = np.full(k, -1, np.int64)
    row[which] = np.arange(len(which))
    r = row[a]
    sel = np.flatnonzero(r >= 0)
    m = sp.csr_matrix((np.ones(len(sel)), (r[sel], np.arange(len(sel)))), shape=(len(which), len(sel)))
    sums = np.asarray(m @ x[sel].astype(np.float64))
    cnt = np.bincount(r[sel], minlength=len(which))
    return sums, cnt


def _lower(d2: np.ndarray, tol: float) -> np.ndarray:
    """A guaranteed lower bound on a distance from a float32 squared distance."""
    return np.sqrt(np.maximum(d2 - tol, 0.0)).astype(np.float32, copy=False)


def _group_centroids(c: np.ndarray, t: int, seed: int) -> np.ndarray:
    """Group ids ``(k,)`` for the centroids: a few plain k-means iterations on the centroids."""
    k = len(c)
    if t <= 1:
        return np.zeros(k, np.int64)
    rng = np.random.default_rng(seed)
    gc = c[np.sort(rng.choice(k, t, replace=False))].astype(np.float32)
    ga = np.zeros(k, np.int64)
    every = np.arange(t)
    for _ in range(5):
        ga = (0.5 * np.einsum("ij,ij->i", gc, gc)[None, :] - c @ gc.T).argmin(1)
        sums, cnt = _cluster_sums(c, ga, every, t)
        ne = cnt > 0
        gc[ne] = (sums[ne] / cnt[ne, None]).astype(np.float32)
    _, ga = np.unique(ga, return_inverse=True)  # drop empty groups
    return ga.reshape(-1)


def _sparse_pass(
    x, xx, c, cc2, a, agrp, viol, gstart, gend, lb, best, barg, bsec, tol, part: slice = slice(None)
) -> int:
    """Distances of the violated (point, group) pairs of the points ``part`` only; updates
    bounds and best candidates of those points in place, returns how many distances were
    computed. Calls on disjoint ``part`` touch disjoint data (safe in parallel threads)."""
    computed = 0
    offset = part.start or 0
    viol = viol[:, part]
    for g in np.flatnonzero(viol.any(1)):
        pts = np.flatnonzero(viol[g]) + offset
        g0, g1 = gstart[g], gend[g]
        vals = cc2[g0:g1][None, :] - x[pts] @ c[g0:g1].T  # (|pts|, |g|)
        computed += vals.size
        own = np.flatnonzero(agrp[pts] == g)
        if len(own):
            vals[own, a[pts[own]] - g0] = np.inf
        am = vals.argmin(1)
        r = np.arange(len(pts))
        d1 = xx[pts] + 2.0 * vals[r, am]
        vals[r, am] = np.inf
        d2 = xx[pts] + 2.0 * vals.min(1) if vals.shape[1] > 1 else np.full(len(pts), np.inf, np.float32)
        lb[g, pts] = _lower(d1, tol)
        better = d1 < best[pts]
        pb = pts[better]
        best[pb] = d1[better]
        barg[pb] = am[better] + g0
        bsec[pb] = _lower(d2[better], tol)
    return computed


class ExactKMeans:
    """Exact Lloyd k-means with Yinyang bounds, in two steps so that the initial assignment can
    reuse dot products computed elsewhere (see :func:`kmeans` for the parameters).

    ``init_points`` are the indices of the data points that are the initial centroids, in the
    internal (grouped) centroid order. Whoever already computed similarities
    ``x[rows] @ x[init_points].T`` may hand them to :meth:`absorb_initial_products`; points not
    absorbed that way get their initial assignment computed by :meth:`fit`.
    """

    def __init__(self, x, k: int, *, seed: int = 0, group_size: int = 16, chunk_size: int | None = None):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"kmeans expects an (n, d) array, got shape {x.shape}")
        n = len(x)
        if not 1 <= k <= n:
            raise ValueError(f"kmeans needs 1 <= k <= n, got k={k}, n={n}")
        self.x, self.n, self.k = x, n, k
        init = np.random.default_rng(seed).choice(n, k, replace=False)
        self.xx = np.einsum("ij,ij->i", x, x).astype(np.float32)
        self.tol = _SQ_TOL * float(2.0 * self.xx.max() + 1e-30)
        # Centroids are stored grouped: position p holds original centroid perm[p]; group g owns
        # positions gstart[g]:gend[g].
        t = max(1, min(k, int(round(k / max(1, group_size)))))
        ga = _group_centroids(x[init], t, seed)
        self.perm = np.argsort(ga, kind="stable")
        self.grp = ga[self.perm]
        self.t = int(self.grp.max()) + 1
        self.gstart = np.searchsorted(self.grp, np.arange(self.t))
        self.gend = np.append(self.gstart[1:], k)
        self.init_points = init[self.perm]
        self._set_centroids(np.ascontiguousarray(x[self.init_points]))
        self.chunk_size = chunk_size or max(64, min(8192, (8 << 20) // k))
        self.a = np.empty(n, np.int64)
        # lb[g, i] <= distance of x_i to any other centroid of group g; (t, n) so that the
        # per-iteration passes over all bounds and the violated-pair masks run along rows
        self.lb = np.empty((self.t, n), np.float32)
        self.gsize = int((self.gend - self.gstart).max())
        self.granges = list(zip(self.gstart.tolist(), self.gend.tolist()))
        self.done = np.zeros(n, bool)  # initial assignment known
        self._tls = threading.local()  # per-thread dense block buffers
        self.computed = 0

    def _set_centroids(self, c: np.ndarray) -> None:
        self.c = c
        self.cc2 = 0.5 * np.einsum("ij,ij->i", c, c)
        # [-c, ||c||^2 / 2, 0...] (width rounded up to 16 floats): one product with [x, 1, 0...]
        # gives the dense rows (||c||^2 - 2 x.c) / 2 without a second pass over them
        d = c.shape[1]
        self.c_aug = np.zeros((self.k, -(-(d + 1) // 16) * 16), np.float32)
        np.negative(c, out=self.c_aug[:, :d])
        self.c_aug[:, d] = self.cc2

    # -- dense assignment --------------------------------------------------------------------
    def _assign_rows(self, rows, dt: np.ndarray) -> None:
        """Assignment and exact group bounds of ``rows`` from
        ``dt = (||c||^2 - 2 c @ x[rows].T) / 2`` (k, b), which is overwritten.

        Centroid-major so that the per-group minima are element-wise minima of whole rows (fast)
        rather than many 16-long reductions; the nearest centroid is then looked up inside the
        group with the smallest minimum (the lowest such group and the lowest position in it:
        the same tie rule as one argmin over all ``k``)."""
        b = dt.shape[1]
        # dt = (||x - c||^2 - ||x||^2) / 2
        gmin = np.empty((self.t, b), np.float32)
        for g, (g0, g1) in enumerate(self.granges):  # (numpy's reduceat along axis 0 is slow)
            np.minimum.reduce(dt[g0:g1], axis=0, out=gmin[g])
        cols = np.arange(b)
        gbest = gmin.argmin(0)
        g0 = self.gstart[gbest]
        pos = g0[None, :] + np.arange(self.gsize)[:, None]  # (gsize, b)
        inside = pos < self.gend[gbest][None, :]
        vals = np.where(inside, dt[np.minimum(pos, self.k - 1), cols[None, :]], np.inf)
        w = vals.argmin(0)
        self.a[rows] = g0 + w
        vals[w, cols] = np.inf
        gmin[gbest, cols] = vals.min(0)  # own group: the other centroids only
        self.lb[:, rows] = _lower(self.xx[rows][None, :] + 2.0 * gmin, self.tol)

    def _dense_chunk(self, rows: np.ndarray) -> None:
        d, b = self.x.shape[1], len(rows)
        xa = np.zeros((b, self.c_aug.shape[1]), np.float32)
        xa[:, :d] = self.x[rows]
        xa[:, d] = 1.0
        # a buffer per thread, reused: a fresh block would be page-faulted in on every chunk
        buf = getattr(self._tls, "buf", None)
        if buf is None or len(buf) < self.k * b:
            buf = self._tls.buf = np.empty(self.k * self.chunk_size, np.float32)
        self._assign_rows(rows, sgemm_nt(self.c_aug, xa, buf[: self.k * b].reshape(self.k, b)))

    def _dense(self, points: np.ndarray) -> None:
        """Full rows of ``points``. With several CPUs, chunks run in parallel threads, each with
        a one-thread GEMM: then the (single-threaded) numpy work after each product overlaps
        the other thread's product instead of leaving cores idle."""
        chunks = [points[s : s + self.chunk_size] for s in range(0, len(points), self.chunk_size)]
        workers = min(_n_cpus(), len(chunks))
        if workers > 1:
            with torch_threads(1), ThreadPoolExecutor(workers) as pool:
                list(pool.map(self._dense_chunk, chunks))
        else:
            for rows in chunks:
                self._dense_chunk(rows)
        self.computed += len(points) * self.k

    def absorb_initial_products(self, rows, products: np.ndarray) -> None:
        """Initial assignment of the points ``rows`` from ``products = x[rows] @ x[init_points].T``
        (b, k) float32, computed by the caller."""
        self._assign_rows(rows, self.cc2[:, None] - np.asarray(products, np.float32).T)
        self.done[rows] = True

    # -- Lloyd iterations --------------------------------------------------------------------
    def fit(self, n_iter: int = 20, progress: Callable[[int], None] | None = None) -> KMeansResult:
        """Run (at most) ``n_iter`` exact Lloyd iterations; see :func:`kmeans`."""
        x, xx, n, k, t, tol = self.x, self.xx, self.n, self.k, self.t, self.tol
        grp, gstart, gend, lb, a = self.grp, self.gstart, self.gend, self.lb, self.a
        tick = progress or (lambda _n: None)
        workers = _n_cpus()
        self._dense(np.flatnonzero(~self.done))
        self.done[:] = True
        tick(1)
        c, cc2 = self.c, self.cc2
        converged = False
        it = 0
        changed = np.arange(k)  # clusters whose membership changed
        for it in range(1, n_iter + 1):
            # ---- update step: means of the clusters that gained or lost points (the others,
            # and empty clusters, keep their centroid bit for bit)
            sums, cnt = _cluster_sums(x, a, changed, k)
            ne = cnt > 0
            upd = changed[ne]
            c_new = c.copy()
            c_new[upd] = (sums[ne] / cnt[ne, None]).astype(np.float32)
            drift = np.zeros(k, np.float32)
            drift[upd] = np.sqrt(_row_sqdist(c_new[upd], c[upd]))
            if not drift.any():
                converged = True
                it -= 1
                tick(1)
                break
            gdrift = np.maximum.reduceat(drift, gstart) * (1.0 + _REL_TOL) + 1e-7
            self._set_centroids(c_new)
            c, cc2 = self.c, self.cc2

            # ---- bounds: loosen by the drift, re-tighten the upper bound exactly
            lb -= gdrift[:, None].astype(np.float32)
            u2 = _row_sqdist(x, c[a])
            u = np.sqrt(u2)
            viol = lb <= (u * (1.0 + _REL_TOL) + _REL_TOL)[None, :]  # (t, n) groups to examine
            a_old = a.copy()
            # points with many violated groups: one dense row each (BLAS-efficient)
            dense_pts = np.flatnonzero(viol.sum(0) > max(1, t // _DENSE_FRACTION))
            if len(dense_pts):
                self._dense(dense_pts)
                viol[:, dense_pts] = False
            # the rest: only the violated (point, group) pairs
            best = u2.copy()
            barg = a.copy()
            bsec = np.zeros(n, np.float32)
            agrp = grp[a]
            args = (x, xx, c, cc2, a, agrp, viol, gstart, gend, lb, best, barg, bsec, tol)
            with _single_threaded_blas():
                if workers > 1 and viol.sum() > _PARALLEL_MIN_PAIRS:
                    bounds = np.linspace(0, n, workers + 1).astype(int)
                    parts = [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
                    with ThreadPoolExecutor(workers) as pool:
                        self.computed += sum(pool.map(lambda p, args=args: _sparse_pass(*args, part=p), parts))
                else:
                    self.computed += _sparse_pass(*args)
            moved = np.flatnonzero(barg != a)
            if len(moved):
                lb[grp[barg[moved]], moved] = bsec[moved]
                gold = agrp[moved]
                lb[gold, moved] = np.minimum(lb[gold, moved], (u[moved] * (1.0 - _REL_TOL)).astype(np.float32))
                a[moved] = barg[moved]
            tick(1)
            moved = np.flatnonzero(a != a_old)
            if len(moved) == 0:
                converged = True
                break
            changed = np.unique(np.concatenate([a[moved], a_old[moved]]))

        centroids = np.empty_like(c)
        centroids[self.perm] = c
        return KMeansResult(
            labels=self.perm[a],
            centroids=centroids,
            n_iter=it,
            converged=converged,
            distance_fraction=self.computed / float((n_iter + 1) * n * k),
        )


def kmeans(
    x,
    k: int,
    *,
    n_iter: int = 20,
    seed: int = 0,
    group_size: int = 16,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> KMeansResult:
    """Exact Lloyd k-means with Yinyang bounds (see the module docstring).

    Args:
        x: ``(n, d)`` float array (converted to float32).
        k: number of clusters, ``1 <= k <= n``.
        n_iter: maximum number of centroid updates (faiss' ``niter``; pytorch-metric-learning's
            ``AccuracyCalculator`` uses 20).
        seed: the initial centroids are ``k`` distinct points drawn by
            ``numpy.random.default_rng(seed).choice(n, k, replace=False)``.
        group_size: about how many centroids share one lower bound (speed only, not the result).
        chunk_size: points per dense block (memory ``~ 4 * k * chunk_size`` bytes per CPU: blocks
            run in parallel threads); default keeps
            a block near 32 MB.
        progress: called with 1 after the initial assignment and after every iteration.

    Returns:
        :class:`KMeansResult`.
    """
    return ExactKMeans(x, k, seed=seed, group_size=group_size, chunk_size=chunk_size).fit(n_iter, progress)


def nmi(labels, clusters) -> float:
    """Normalised mutual information ``I(Y; C) / ((H(Y) + H(C)) / 2)`` (natural log).

    ``labels`` and ``clusters`` are ``(n,)`` arrays of hashable ids. Equals
    ``sklearn.metrics.normalized_mutual_info_score(labels, clusters)`` (arithmetic mean); 1.0
    when both partitions are a single class (sklearn's convention).
    """
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    _, z = np.unique(np.asarray(clusters), return_inverse=True)
    y, z = y.reshape(-1), z.reshape(-1)
    n = len(y)
    if n == 0:
        return float("nan")
    ny, nz = int(y.max()) + 1, int(z.max()) + 1
    if ny == nz == 1:
        return 1.0
    cells, nij = np.unique(y.astype(np.int64) * nz + z, return_counts=True)
    ni = np.bincount(y).astype(np.float64)
    nj = np.bincount(z).astype(np.float64)
    nij = nij.astype(np.float64)
    mi = float(np.sum(nij / n * (np.log(nij) + np.log(n) - np.log(ni[cells // nz]) - np.log(nj[cells % nz]))))
    if mi <= 0.0:
        return 0.0

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / n
        return float(-(p * np.log(p)).sum())

    return float(mi / (0.5 * (entropy(ni) + entropy(nj))))
