"""The kernel and moment measures of train→test shift between two point sets (``kid``, ``mmd``,
``mean_dist``), block-wise so that no n × n matrix is ever built, and the registry of every
measure :func:`oodml.shift.tables.shift_table` reports (:data:`MEASURE_FUNCTIONS`: a new measure
is one function and one entry there).  The definitions are in :mod:`oodml.shift`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from oodml.config import Config
from oodml.errors import BadInputError

__all__ = [
    "BLOCK",
    "MEASURES",
    "MEASURE_FUNCTIONS",
    "MeasureOptions",
    "kid",
    "mean_distance",
    "median_bandwidth",
    "mmd_rbf",
]

BLOCK = 1024


# ============================================================================================
# Block-wise kernel sums
# ============================================================================================
def _f64(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty (n, d) array, got shape {a.shape}")
    return a


def _kernel_sum(
    x: np.ndarray, y: np.ndarray | None, kernel: Callable[[np.ndarray, np.ndarray], np.ndarray], block: int = BLOCK
) -> float:
    """Sum of ``kernel(x_i, y_j)`` over all pairs, off-diagonal pairs only when ``y is None``
    (then ``y = x``); computed ``block`` rows at a time (at most ``block²`` values in memory).
    Over x itself only the blocks on or above the diagonal are evaluated (the kernel is symmetric)."""
    total = 0.0
    if y is None:
        n = x.shape[0]
        for i in range(0, n, block):
            a = np.asarray(x[i : i + block], dtype=np.float64)
            for j in range(i, n, block):
                b = a if j == i else np.asarray(x[j : j + block], dtype=np.float64)
                k = kernel(a, b)
                if j == i:
                    total += float(k.sum() - np.trace(k))
                else:
                    total += 2.0 * float(k.sum())
        return total
    for i in range(0, x.shape[0], block):
        a = np.asarray(x[i : i + block], dtype=np.float64)
        for j in range(0, y.shape[0], block):
            total += float(kernel(a, np.asarray(y[j : j + block], dtype=np.float64)).sum())
    return total


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, kernel, block: int) -> float:
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per side, got {m} and {n}")
    kxx = _kernel_sum(x, None, kernel, block) / (m * (m - 1))
    kyy = _kernel_sum(y, None, kernel, block) / (n * (n - 1))
    kxy = _kernel_sum(x, y, kernel, block) / (m * n)
    return kxx + kyy - 2.0 * kxy


def _poly_kernel(d: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        g = a @ b.T
        g /= d
        g += 1.0
        return g * g * g

    return k


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    g = a @ b.T
    g *= -2.0
    g += np.einsum("ij,ij->i", a, a)[:, None]
    g += np.einsum("ij,ij->i", b, b)[None, :]
    np.maximum(g, 0.0, out=g)
    return g


def _rbf_kernel(sigma: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    scale = -1.0 / (2.0 * sigma * sigma)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        g = _sqdist(a, b)
        g *= scale
        return np.exp(g, out=g)

    return k


# ============================================================================================
# Measures
# ============================================================================================
def kid(x, y, *, subsets: int = 50, subset_size: int = 1000, seed: int = 0, block: int = BLOCK) -> tuple[float, float]:
    """Kernel inception distance between point sets ``x`` (m, d) and ``y`` (n, d).

    The unbiased squared MMD with the kernel ``(a·b/d + 1)³``, averaged over ``subsets`` draws of
    ``min(subset_size, m, n)`` points per side without replacement (seeded).  When ``subset_size``
    covers both sides completely, the estimate on all points is exact and used.  Returns ``(kid, se)`` with
    ``se`` the standard error over the draws (``std(ddof=1)/√subsets``; NaN for one draw).
    """
    x, y = _f64(x, "x"), _f64(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have different dimensions: {x.shape[1]} and {y.shape[1]}")
    kern = _poly_kernel(x.shape[1])
    if subset_size >= x.shape[0] and subset_size >= y.shape[0]:
        return _unbiased_mmd2(x, y, kern, block), float("nan")
    size = int(min(subset_size, x.shape[0], y.shape[0]))
    rng = np.random.default_rng(seed)
    vals = np.empty(int(subsets))
    for s in range(int(subsets)):
        ix = np.sort(rng.choice(x.shape[0], size, replace=False))
        iy = np.sort(rng.choice(y.shape[0], size, replace=False))
        vals[s] = _unbiased_mmd2(x[ix], y[iy], kern, block)
    se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan")
    return float(vals.mean()), se


def median_bandwidth(x, y, *, max_points: int = 2000, seed: int = 0, block: int = BLOCK) -> float:
    """Median Euclidean distance between distinct points of the pooled sample ``x ∪ y``.

    Exact when the pooled sample has at most ``max_points`` points; otherwise taken on a seeded
    subsample of ``max_points`` of them (the distances are gathered block by block; their number
    is ``max_points²/2``).
    """
    x, y = _f64(x, "x"), _f64(y, "y")
    n = x.shape[0] + y.shape[0]
    if n > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        ix, iy = pick[pick < x.shape[0]], pick[pick >= x.shape[0]] - x.shape[0]
        z = np.concatenate([np.asarray(x[ix], np.float64), np.asarray(y[iy], np.float64)])
    else:
        z = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    parts = []
    for i in range(0, z.shape[0], block):
        a = z[i : i + block]
        for j in range(i, z.shape[0], block):
            d2 = _sqdist(a, z[j : j + block])
            if j == i:
                d2 = d2[np.triu_indices(d2.shape[0], k=1)]
            parts.append(d2.ravel())
    d2 = np.concatenate(parts)
    return float(np.sqrt(np.median(d2)))


def mmd_rbf(
    x, y, *, sigma: float | None = None, median_points: int = 2000, seed: int = 0, block: int = BLOCK
) -> tuple[float, float]:
    """Unbiased squared MMD with a Gaussian kernel between ``x`` (m, d) and ``y`` (n, d), over all
    points, block-wise.  ``sigma`` defaults to :func:`median_bandwidth`.  Returns ``(mmd2, sigma)``."""
    x, y = _f64(x, "x"), _f64(y, "y")
    if sigma is None:
        sigma = median_bandwidth(x, y, max_points=median_points, seed=seed, block=block)
    if not sigma > 0:
        return 0.0, float(sigma)
    return _unbiased_mmd2(x, y, _rbf_kernel(sigma), block), float(sigma)


def mean_distance(x, y) -> float:
    """Euclidean distance between the mean rows of ``x`` (m, d) and ``y`` (n, d), in float64."""
    x, y = _f64(x, "x"), _f64(y, "y")
    return float(np.linalg.norm(x.mean(axis=0, dtype=np.float64) - y.mean(axis=0, dtype=np.float64)))


# ============================================================================================
# The registry of measures
# ============================================================================================
@dataclass
class MeasureOptions(Config):
    """The knobs of the measures (``--kid-subsets``, ``--kid-subset-size``, ``--median-points``,
    ``--seed``) and the block size of the kernel sums; :meth:`from_dict` checks them."""

    kid_subsets: int = 50
    kid_subset_size: int = 1000
    median_points: int = 2000
    seed: int = 0
    block: int = BLOCK

    def validate(self, source: str) -> None:
        if self.kid_subsets < 1 or self.kid_subset_size < 2 or self.median_points < 2:
            raise BadInputError("--kid-subsets must be ≥ 1, --kid-subset-size and --median-points ≥ 2")
        if self.block < 1:
            raise BadInputError(f"{source}: block must be ≥ 1, got {self.block}")


@dataclass(frozen=True)
class Measure:
    """One measure: ``fn(table, train_ids, test_ids, x, y, options) -> (value,) or (value, se)``;
    ``points``: whether it needs the two sides' points ``x``, ``y`` (else they are ``None``)."""

    fn: Callable[..., tuple[float, ...]]
    points: bool


def _fid_level(level: str) -> Measure:
    return Measure(lambda t, tr, te, x, y, o: (t.fid(level)(tr, te),), points=False)


def _kid(t: Any, tr, te, x, y, o: MeasureOptions) -> tuple[float, float]:
    return kid(x, y, subsets=o.kid_subsets, subset_size=o.kid_subset_size, seed=o.seed, block=o.block)


def _mmd(t: Any, tr, te, x, y, o: MeasureOptions) -> tuple[float]:
    return (mmd_rbf(x, y, median_points=o.median_points, seed=o.seed, block=o.block)[0],)


def _mean_dist(t: Any, tr, te, x, y, o: MeasureOptions) -> tuple[float]:
    return (mean_distance(x, y),)


#: Every measure by name, in report order (the one place to add a measure).
MEASURE_FUNCTIONS: dict[str, Measure] = {
    "fid_class": _fid_level("class"),
    "fid_image": _fid_level("image"),
    "kid": Measure(_kid, points=True),
    "mmd": Measure(_mmd, points=True),
    "mean_dist": Measure(_mean_dist, points=True),
}
MEASURES = tuple(MEASURE_FUNCTIONS)
