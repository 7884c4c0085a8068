r"""Exact, fast Fréchet distances between feature sets (the "FID" that grades ooDML splits).

The quantity
------------
For two Gaussians :math:`\mathcal N(\mu_1,\Sigma_1)` and :math:`\mathcal N(\mu_2,\Sigma_2)` in
:math:`\mathbb R^d` the Fréchet (2-Wasserstein) distance squared is

.. math::

    \mathrm{FID} = \lVert\mu_1-\mu_2\rVert^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
                   - 2\,\operatorname{tr}\bigl(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}\bigr)^{1/2}.

Everything here is computed in float64; ``mu`` is the sample mean and ``sigma`` the *unbiased*
sample covariance (divisor ``n - 1``), as in pytorch-fid.

The trace term without ``sqrtm``
--------------------------------
pytorch-fid evaluates ``tr sqrtm(Σ1 Σ2)`` with a Schur-based square root of a *non-symmetric*
matrix (about 13 s at d = 2048 here).  Only the eigenvalues are needed: if ``Σ1 = F Fᵀ`` for any
factor ``F`` then ``Σ1^{1/2} Σ2 Σ1^{1/2}``, ``Σ1 Σ2`` and ``Fᵀ Σ2 F`` share their non-zero
eigenvalues (``XY`` and ``YX`` always do), and ``Fᵀ Σ2 F`` is symmetric positive semi-definite.
So

.. math::  \operatorname{tr}(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}
           = \sum_i \sqrt{\max(\lambda_i(F^\top\Sigma_2F),\,0)} .

The dense path (:func:`trace_sqrt_product`) takes ``F = L``, the Cholesky factor of ``Σ1``
(LAPACK ``potrf``), forms ``Lᵀ Σ2 L`` with LAPACK ``sygst`` (``itype=2``: one call that exploits
the symmetry, about half the flops of two triangular products) and takes its eigenvalues with a
values-only symmetric solver (``syevd``: tridiagonal reduction + ``sterf``; the reduction is the
dominant cost).  At d = 2048 on this project's 2-core machine: Cholesky ≈ 0.05 s, ``sygst``
≈ 0.17 s, eigenvalues ≈ 0.39 s, ≈ 0.7 s per call with the input checks and copies, against
≈ 13 s for pytorch-fid's ``sqrtm`` (``python -m benchmarks.bench_fid``).

Numerical choices
-----------------
* float64 everywhere; inputs of any real dtype are converted (float32 features stay float32 in
  :class:`FIDComputer`'s table and are converted block by block).
* Eigenvalues ``λ ≤ r · eps · λ_max`` of the ``r × r`` symmetric product (negative ones included)
  count as 0.  An exact zero eigenvalue comes out as rounding noise of order ``eps·λ_max``, which
  the square root would turn into ``√eps`` -- ``d`` of them would cost ~1e-6 relative accuracy
  whenever a covariance is singular.
* If ``Σ1`` is not numerically positive definite (``potrf`` fails, or a pivot is at rounding
  level) the roles of the two matrices are swapped; if neither is, ``Σ1`` is factored through a
  symmetric eigendecomposition, ``F = V₊ Λ₊^{1/2}`` keeping eigenvalues above ``d·eps·λ_max``, and
  the small ``r × r`` matrix ``Fᵀ Σ2 F`` is diagonalised.
* The result is not clipped at 0 (near-identical inputs can give ``-1e-13``-sized values).
* Each dense path keeps to one library and one thread pool: scipy's OpenBLAS (``potrf``,
  ``sygst``, ``syevd``; see the note above :func:`_lstore` on thread pools) or, for
  :class:`FIDComputer`'s image level by default, torch (Cholesky, a blocked congruence,
  ``eigvalsh``; CUDA when present; :func:`resolve_dense_backend`), equal to ~1e-15 relative.

The low-rank identity
---------------------
With centred, scaled data matrices ``A = (X1 - 1 μ1ᵀ)/√(n1-1)`` and ``B = (X2 - 1 μ2ᵀ)/√(n2-1)``
(so ``Σ1 = AᵀA`` and ``Σ2 = BᵀB``), take ``F = Aᵀ`` above: the non-zero eigenvalues of
``Σ1 Σ2 = Aᵀ(A BᵀB)`` are those of ``(A BᵀB) Aᵀ = (ABᵀ)(ABᵀ)ᵀ``, i.e. the squared singular
values of the ``n1 × n2`` matrix ``ABᵀ``.  Hence

.. math:: \operatorname{tr}(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2} = \lVert AB^\top\rVert_*
          = \sum_i \sqrt{\lambda_i(A\,\Sigma_2\,A^\top)},

and the cost depends on ``min(n, d)`` instead of ``d``.  :func:`frechet_distance_from_features`
uses it whenever a side has at most ``d`` points (its covariance then has rank ``n - 1 < d`` and the
dense formula would have to resolve ``d - n + 1`` zero eigenvalues, whose rounding noise of order
``eps`` becomes ``√eps`` after the square root): with ``ABᵀ`` and a singular-value decomposition
when both sides are small, with the small ``A Σ2 Aᵀ`` when only one side is.

Centring uses a Householder reflection instead of subtracting the mean: with ``u = 1/√n`` and the
reflection ``H`` that maps ``u`` to ``-e₁``, the centring projector is ``I - uuᵀ = H(I - e₁e₁ᵀ)H``,
so rows ``2..n`` of ``HX`` are an exact ``(n-1) × d`` factor of the scatter matrix.  It costs
``O(nd)``, is orthogonal (no loss of accuracy), and removes the structural zero singular value that
``X - 1μᵀ`` would carry.  Row ``i ≥ 1`` of ``HX`` is ``x_i - (x_0 + √n μ)/(√n + 1)``.

The two levels of :class:`FIDComputer`
--------------------------------------
* ``level="class"``: every class is one point, its mean feature (as in the ooDML reference code);
  the FID compares the two sides' sets of class means.  With ~100 classes per side in 2048-d
  this is the low-rank path on a ~99 × 99 matrix: a millisecond or two per call.
* ``level="image"``: every image is a point; the FID compares all train-side images with all
  test-side images.  With thousands of images per side this is the dense path, whose cost is one
  ``d × d`` Cholesky, one ``sygst`` and one ``d × d`` symmetric eigenvalue problem per call (see
  :class:`FIDComputer` for the incremental bookkeeping, measured costs, and why a swap of a few
  classes does not make that eigenvalue problem cheaper).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import blas, eigh, lapack, svd

__all__ = [
    "FIDComputer",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "trace_sqrt_product",
]

_EPS = np.finfo(np.float64).eps

#: LAPACK driver of the values-only symmetric eigensolver (``scipy.linalg.eigh``).  At d = 2048
#: "ev", "evd", "evr" and "evx" all take ≈ 0.35 s here (all reduce to tridiagonal form, which is
#: the cost, then dsterf).  MKL's ``torch.linalg.eigvalsh`` takes 0.24 s on its own, but called
#: between OpenBLAS steps it saved 0.015 s per image-level call (0.450 s against 0.468 s): the two
#: libraries' thread pools compete for the cores (see the conventions below and
#: ``python -m benchmarks.bench_splits``).
EIGH_DRIVER = "evd"

#: Calls whose estimated work is below this many flops run with single-threaded BLAS (see
#: :func:`_blas_threads`): threads buy nothing there, and on an oversubscribed machine a
#: multi-threaded OpenBLAS call can be 10-100× slower than a single-threaded one.
SMALL_WORK_FLOPS = 3e8

#: Singular values of cross products up to this size come from an SVD (accurate for small
#: singular values); larger ones from the eigenvalues of the smaller Gram matrix (faster).
SVD_MAX_DIM = 512


# ----------------------------------------------------------------------------- validation


def _as_float_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # e.g. a CUDA tensor
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to a numpy array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")


def _as_features(x, name: str, min_rows: int = 2) -> np.ndarray:
    arr = _as_float_array(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, dim), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: feature dimension is 0 (shape {arr.shape})")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: need at least {min_rows} samples for an unbiased covariance, got {arr.shape[0]}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    _check_finite(arr, name)
    return arr


def _as_vector(x, name: str) -> np.ndarray:
    arr = _as_float_array(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D mean vector, got shape {arr.shape}")
    arr = np.asarray(arr, dtype=np.float64)
    _check_finite(arr, name)
    return arr


def _as_covariance(x, name: str, d: int) -> np.ndarray:
    arr = _as_float_array(x, name)
    if arr.shape != (d, d):
        raise ValueError(f"{name}: expected shape ({d}, {d}) to match the mean, got {arr.shape}")
    arr = np.asarray(arr, dtype=np.float64)
    _check_finite(arr, name)
    scale = float(np.abs(arr).max()) if arr.size else 0.0
    if scale > 0 and float(np.abs(arr - arr.T).max()) > 1e-6 * scale:
        raise ValueError(f"{name}: is not symmetric (max |Σ - Σᵀ| > 1e-6 max |Σ|)")
    return arr


# ----------------------------------------------------------------------------- linear algebra
#
# Conventions.  Internal symmetric d × d matrices are in "L-storage": Fortran-contiguous float64
# whose *lower* triangle holds the matrix (the upper triangle is arbitrary), which is what LAPACK
# potrf/sygst/syev and BLAS syrk/syr/symm read and write.  All BLAS/LAPACK work of this module
# goes through one library (scipy's), never numpy's ``@`` (a second OpenBLAS) or torch (MKL):
# each pool's threads busy-wait for a while after a call, so on 2 cores alternating between two
# pools makes them compete (measured: MKL's eigvalsh at d = 2048 right after an OpenBLAS sygst
# took 0.57-0.64 s instead of 0.50 s).


_THREADPOOL_CONTROLLER = None


def _blas_threads(work: float | None = None, threads: int | None = None):
    """Context that limits the BLAS thread pools to ``threads`` (or to 1 for small ``work``).

    OpenBLAS threads synchronise at every call; when the machine is oversubscribed (other jobs on
    the same cores) a 2-thread call stalls until both threads get a core.  Measured on the
    2-core development machine with two busy processes: one d = 2048 dense FID 42 s with 2 threads
    vs 4.3 s with 1 (0.76 s vs 1.14 s when quiet), and a test of 40-d problems 21 s vs 0.3 s.
    Small problems therefore always run single-threaded; large ones keep the configured pools
    unless ``threads`` is given.  Uses threadpoolctl (a scikit-learn dependency) when available.
    """
    global _THREADPOOL_CONTROLLER
    if threads is None:
        if work is None or work >= SMALL_WORK_FLOPS:
            return contextlib.nullcontext()
        threads = 1
    if _THREADPOOL_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _THREADPOOL_CONTROLLER = ThreadpoolController()
        except Exception:  # pragma: no cover - threadpoolctl missing or broken
            _THREADPOOL_CONTROLLER = False
    if _THREADPOOL_CONTROLLER is False:  # pragma: no cover
        return contextlib.nullcontext()
    return _THREADPOOL_CONTROLLER.limit(limits=int(threads), user_api="blas")


def _work_estimate(n1: int, n2: int, d: int) -> float:
    """Rough flop count of one FID between point sets of sizes n1, n2 in d dimensions."""
    lo, hi = min(n1, n2), max(n1, n2)
    if lo > d:
        return float(hi) * d * d + 3.0 * d**3
    cross = 2.0 * lo * hi * d + 4.0 * lo * lo * hi
    via_cov = float(hi) * d * d + 2.0 * lo * d * d + 10.0 * lo**3
    return min(cross, via_cov)


def _lstore(a: np.ndarray) -> np.ndarray:
    """L-storage view of a full symmetric float64 matrix (its transpose if C-ordered; no copy)."""
    if a.flags.f_contiguous:
        return a
    if a.flags.c_contiguous:
        return a.T
    return np.asfortranarray(a)


def _syrk(x: np.ndarray, alpha: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """``alpha · xᵀx`` (L-storage) for a float64 (n, d) ``x``; accumulated into ``out`` if given."""
    xt = np.ascontiguousarray(x).T  # (d, n), Fortran-contiguous: no copy inside f2py
    if out is None:
        return blas.dsyrk(alpha, xt, trans=0, lower=1)
    res = blas.dsyrk(alpha, xt, beta=1.0, c=out, trans=0, lower=1, overwrite_c=1)
    assert res.ctypes.data == out.ctypes.data  # updated in place
    return out


def _abt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a bᵀ`` for float64 C-ordered (m, d) and (k, d) (Fortran-ordered (m, k) result)."""
    return blas.dgemm(1.0, np.ascontiguousarray(a).T, np.ascontiguousarray(b).T, trans_a=1)


def _eigvalsh(m: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Eigenvalues of the symmetric matrix in the lower triangle of ``m`` (values only)."""
    if m.shape[0] == 0:
        return np.zeros(0)
    return eigh(m, lower=True, eigvals_only=True, overwrite_a=overwrite, check_finite=False, driver=EIGH_DRIVER)


def _sum_sqrt(w: np.ndarray) -> float:
    """``Σ sqrt(λ)`` over the eigenvalues of a PSD product, ignoring rounding-level ones.

    Eigenvalues ``≤ r · eps · λ_max`` (r = their number) are indistinguishable from the rounding
    noise of an exact zero, which the square root would blow up to ``√eps``; they count as 0
    (negative ones included).
    """
    if w.size == 0:
        return 0.0
    top = float(w.max())
    if not top > 0:
        return 0.0
    return float(np.sqrt(w[w > w.size * _EPS * top]).sum())


def _cholesky(s: np.ndarray, overwrite: bool = False) -> np.ndarray | None:
    """Lower Cholesky factor of an L-storage matrix (L-storage), or None if not PD.

    Also None when a pivot is at rounding level (``L_ii² ≤ d·eps·max S_jj``): the matrix is then
    singular for our purposes and the eigendecomposition fallback is more accurate.
    """
    d = s.shape[0]
    diag_max = float(np.max(np.diagonal(s))) if d else 0.0
    if not diag_max > 0:
        return None
    chol, info = lapack.dpotrf(s, lower=1, clean=0, overwrite_a=int(overwrite))
    if info != 0:
        return None
    piv = np.diagonal(chol)
    if float(np.min(piv * piv)) <= d * _EPS * diag_max:
        return None
    return chol


def _trace_sqrt_eigh_fallback(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrt via ``F = V₊Λ₊^{1/2}`` from an eigendecomposition of a singular ``s1`` (L-storage)."""
    w, v = eigh(s1, lower=True, check_finite=False)
    d = s1.shape[0]
    top = float(w[-1]) if d else 0.0
    if not top > 0:
        return 0.0  # s1 = 0 (or negative semi-definite garbage): the product is 0
    keep = w > d * _EPS * top
    f = np.asfortranarray(v[:, keep] * np.sqrt(w[keep]))  # d × r, s1 ≈ F Fᵀ
    y = blas.dsymm(1.0, s2, f, side=0, lower=1)  # s2 F
    m = blas.dgemm(1.0, f, y, trans_a=1)  # Fᵀ s2 F, r × r
    return _sum_sqrt(_eigvalsh(m, overwrite=True))


def _trace_sqrt_sym(s1, s2, chol1=None, chol2=None, overwrite=False) -> float:
    """``tr sqrt(S1^{1/2} S2 S1^{1/2})`` for two L-storage PSD matrices (module docstring).

    ``chol1``/``chol2``: optional precomputed Cholesky factors.  ``overwrite=True`` lets the
    computation destroy ``s1``/``s2`` (saves two d × d copies).
    """
    if chol1 is None and chol2 is None:
        s1, s2, restricted = _common_support(s1, s2)
        overwrite = overwrite or restricted
        chol1 = _cholesky(s1)
        if chol1 is None:
            chol2 = _cholesky(s2)
    if chol1 is not None:
        factor, other = chol1, s2
    elif chol2 is not None:
        factor, other = chol2, s1
    else:
        return _trace_sqrt_eigh_fallback(s1, s2)
    return _sum_sqrt(_eigvalsh(_sygst(other, factor, overwrite), overwrite=True))


def _full_support(diag1: np.ndarray, diag2: np.ndarray) -> np.ndarray | None:
    """Indices of the coordinates where both variances are non-zero, or None if all are."""
    top = max(float(np.max(diag1, initial=0.0)), float(np.max(diag2, initial=0.0)))
    keep = (diag1 > _EPS * _EPS * top) & (diag2 > _EPS * _EPS * top)
    return None if keep.all() else np.flatnonzero(keep)


def _common_support(s1: np.ndarray, s2: np.ndarray):
    """Drop coordinates with zero variance on either side (exact; returns copies if any).

    A PSD matrix with ``S_ii = 0`` has a zero row and column ``i``, so ``S1^{1/2}`` vanishes on
    that coordinate and ``S1^{1/2} S2 S1^{1/2}`` does not depend on ``S2``'s row/column ``i``
    either (and symmetrically).  Dead (always-zero) feature units would otherwise make both
    Cholesky factorisations fail and send the call to the slow eigendecomposition fallback.
    """
    idx = _full_support(np.diagonal(s1), np.diagonal(s2))
    if idx is None:
        return s1, s2, False
    sub = np.ix_(idx, idx)  # increasing indices: the lower triangle stays the lower triangle
    return np.asfortranarray(s1[sub]), np.asfortranarray(s2[sub]), True


def _sygst(s: np.ndarray, chol: np.ndarray, overwrite: bool) -> np.ndarray:
    """``Lᵀ S L`` (L-storage) with LAPACK sygst(itype=2) for ``S`` and ``chol = L`` in L-storage."""
    m, info = lapack.dsygst(s, chol, itype=2, lower=1, overwrite_a=int(overwrite))
    if info != 0:  # pragma: no cover - sygst only fails on bad arguments
        raise RuntimeError(f"LAPACK dsygst failed with info={info}")
    return m


# ------------------------------------------------------------------ dense path on torch (CPU or CUDA)
#: Backends of the dense (image-level) trace-sqrt term, see :class:`FIDComputer`.
DENSE_BACKENDS = ("auto", "torch", "scipy")


def resolve_dense_backend(backend: str = "auto", device=None) -> tuple[str, str | None]:
    """``(backend, device)`` of the dense path.

    ``"auto"`` and ``"torch"``: torch (its Cholesky, products and ``eigvalsh`` in one library and
    one thread pool) on ``device`` -- a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``);
    ``None`` picks CUDA when a GPU is visible, else the CPU.  ``"auto"`` falls back to scipy if
    torch cannot be imported.  ``"scipy"``: scipy's LAPACK (``potrf``, ``sygst``, ``syevd``), CPU.
    The environment variable ``OODML_FID_BACKEND`` (``torch`` or ``scipy``) overrides ``"auto"``,
    e.g. for ``python -m oodml.make_splits --level image`` (benchmarks compare the two this way).
    """
    if backend == "auto":
        import os

        backend = os.environ.get("OODML_FID_BACKEND", "").strip().lower() or "auto"
    if backend not in DENSE_BACKENDS:
        raise ValueError(
            f"dense backend must be one of {', '.join(DENSE_BACKENDS)}, got {backend!r} (argument or OODML_FID_BACKEND)"
        )
    if backend == "scipy":
        if device not in (None, "cpu"):
            raise ValueError(f"the scipy dense backend runs on the CPU only, got device={device!r}")
        return "scipy", None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the project
        if backend == "torch":
            raise
        return "scipy", None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested for the dense FID path but CUDA is not available")
    return "torch", str(dev)


def _torch_lower(s: np.ndarray, device: str):
    """An L-storage float64 numpy matrix as a torch tensor on ``device`` (no copy on the CPU)."""
    import torch

    t = torch.from_numpy(s)
    return t if device == "cpu" else t.to(device, non_blocking=False)


def _torch_full(t):
    """The full symmetric matrix of an L-storage (lower-triangle) square tensor."""
    import torch

    full = torch.tril(t)
    full += torch.tril(t, -1).mT
    return full


def _congruence_lower(chol, other):
    """Lower triangle (and diagonal blocks) of ``Lᵀ S L`` for lower-triangular ``L = chol`` and a
    full symmetric ``S = other`` (torch, any device): with ``L = [[A, 0], [B, C]]`` in 2 × 2
    blocks, only the products that reach the lower blocks are formed, ``9 (d/2)³ · 2`` flops
    instead of the ``4 d³`` of two full products (the role LAPACK's ``sygst`` plays on the
    scipy path, which torch does not expose).  The upper block is left as zeros: ``eigvalsh``
    reads the lower triangle only."""
    import torch

    d = chol.shape[0]
    h = d // 2
    if h < 64:
        return chol.mT @ (other @ chol)
    a, b, c = chol[:h, :h], chol[h:, :h], chol[h:, h:]
    s11, s21, s22 = other[:h, :h], other[h:, :h], other[h:, h:]
    y11 = torch.addmm(s11 @ a, s21.mT, b)
    y21 = torch.addmm(s21 @ a, s22, b)
    m = torch.zeros_like(other)
    m[:h, :h] = torch.addmm(a.mT @ y11, b.mT, y21)
    m[h:, :h] = c.mT @ y21
    m[h:, h:] = c.mT @ (s22 @ c)
    return m


def _trace_sqrt_dense_torch(s1: np.ndarray, s2: np.ndarray, device: str) -> float | None:
    """``tr sqrt(S1^{1/2} S2 S1^{1/2})`` of two L-storage PSD float64 matrices with torch on
    ``device``: Cholesky of one side (the other if it is not numerically PD, same rule as
    :func:`_cholesky`), the congruence ``Lᵀ S L`` and its eigenvalues, all float64 in one library.

    Returns ``None`` when neither matrix is numerically positive definite (the caller then takes
    the scipy eigendecomposition fallback).
    """
    import torch

    d = s1.shape[0]
    if d == 0:
        return 0.0
    t1, t2 = _torch_lower(s1, device), _torch_lower(s2, device)
    for factor, other in ((t1, t2), (t2, t1)):
        diag_max = float(torch.diagonal(factor).max())
        if not diag_max > 0:
            continue
        chol, info = torch.linalg.cholesky_ex(factor)
        if int(info) != 0:
            continue
        piv = torch.diagonal(chol)
        if float((piv * piv).min()) <= d * _EPS * diag_max:
            continue
        m = _congruence_lower(chol, _torch_full(other))
        w = torch.linalg.eigvalsh(m)
        return _sum_sqrt(w.cpu().numpy())
    return None


def trace_sqrt_product(sigma1, sigma2) -> float:
    """``tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}`` (= ``tr sqrtm(Σ1 Σ2)``) for two PSD (d, d) matrices.

    Computed through a Cholesky factor, LAPACK ``sygst`` and a values-only symmetric eigensolver
    (module docstring); rounding-level and negative eigenvalues count as 0.  float64.
    """
    s1 = _as_float_array(sigma1, "sigma1")
    if s1.ndim != 2 or s1.shape[0] != s1.shape[1]:
        raise ValueError(f"sigma1: expected a square 2-D matrix, got shape {s1.shape}")
    s1 = _as_covariance(s1, "sigma1", s1.shape[0])
    s2 = _as_covariance(sigma2, "sigma2", s1.shape[0])
    with _blas_threads(work=3.0 * s1.shape[0] ** 3):
        return _trace_sqrt_sym(_lstore(s1), _lstore(s2))


def _centered_factor(x: np.ndarray) -> np.ndarray:
    """``(n-1) × d`` matrix ``A`` with ``AᵀA = cov(x)`` (unbiased), via a Householder reflection.

    Row ``i`` of ``A`` is ``(x_{i+1} - c)/√(n-1)`` with ``c = (x_0 + √n μ)/(√n + 1)``: these are
    rows 2..n of ``H x`` where ``H`` is the reflection mapping ``1/√n`` to ``-e₁`` (module doc).
    """
    n = x.shape[0]
    rn = math.sqrt(n)
    c = (x[0] + x.sum(axis=0) / rn) / (rn + 1.0)
    a = x[1:] - c
    a *= 1.0 / math.sqrt(n - 1)
    return a


def _sum_singular_values(k: np.ndarray) -> float:
    """Nuclear norm of a (small) matrix: SVD values, or eig of the smaller Gram when large."""
    if k.size == 0:
        return 0.0
    if min(k.shape) <= SVD_MAX_DIM:
        return float(svd(k, compute_uv=False, overwrite_a=True, check_finite=False).sum())
    kk = k if k.shape[0] <= k.shape[1] else k.T
    g = blas.dsyrk(1.0, np.asfortranarray(kk), trans=0, lower=1)  # k kᵀ (the smaller side)
    return _sum_sqrt(_eigvalsh(g, overwrite=True))


def _trace_sqrt_factor_cov(a: np.ndarray, s: np.ndarray) -> float:
    """``Σ sqrt λ(A S Aᵀ)`` for a factor ``A`` (r × d, C-ordered) and an L-storage d × d ``S``."""
    if a.shape[0] == 0:
        return 0.0
    at = np.ascontiguousarray(a).T  # (d, r) Fortran
    y = blas.dsymm(1.0, s, at, side=0, lower=1)  # S Aᵀ
    m = blas.dgemm(1.0, at, y, trans_a=1)  # A S Aᵀ
    return _sum_sqrt(_eigvalsh(m, overwrite=True))


def _stats_lower(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (L-storage) of a float64 C-ordered (n, d) array."""
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, _syrk(xc, alpha=1.0 / (x.shape[0] - 1))


# ----------------------------------------------------------------------------- public functions


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature matrix.

    Parameters
    ----------
    features : array-like (n, d), n ≥ 2, rows are samples (any real dtype; numpy or CPU torch).

    Returns
    -------
    mu : (d,) float64
    sigma : (d, d) float64, ``(X - μ)ᵀ(X - μ) / (n - 1)``, exactly symmetric.
    """
    x = _as_features(features, "features")
    with _blas_threads(work=float(x.shape[0]) * x.shape[1] ** 2):
        mu, s = _stats_lower(x)
    return mu, _symmetrized(s)


def _symmetrized(s: np.ndarray) -> np.ndarray:
    """Full, exactly symmetric C-ordered copy of an L-storage matrix."""
    low = np.tril(s)
    low += np.tril(s, -1).T
    return np.ascontiguousarray(low)


def _sqnorm(v: np.ndarray) -> float:
    return float(np.einsum("i,i->", v, v))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance ``‖μ1-μ2‖² + tr Σ1 + tr Σ2 - 2 tr(Σ1^{1/2}Σ2Σ1^{1/2})^{1/2}``.

    Parameters
    ----------
    mu1, mu2 : (d,) means.   sigma1, sigma2 : (d, d) symmetric PSD covariances.
    All are converted to float64 and checked (shapes, finiteness, symmetry) with ValueError.

    The trace term uses symmetric eigendecompositions (Cholesky + ``sygst`` + ``eigvalsh``; an
    eigendecomposition fallback when both covariances are singular), never ``scipy.linalg.sqrtm``.
    Agrees with ``pytorch_fid.fid_score.calculate_frechet_distance`` to ~1e-10 relative on
    well-conditioned inputs.  The result is not clipped: for (near-)identical inputs it can be a
    tiny negative number (rounding).
    """
    m1 = _as_vector(mu1, "mu1")
    m2 = _as_vector(mu2, "mu2")
    if m1.shape != m2.shape:
        raise ValueError(f"mu1 and mu2 have different lengths: {m1.shape[0]} vs {m2.shape[0]}")
    d = m1.shape[0]
    if d == 0:
        raise ValueError("mu1: empty mean vector (dimension 0)")
    s1 = _as_covariance(sigma1, "sigma1", d)
    s2 = _as_covariance(sigma2, "sigma2", d)
    with _blas_threads(work=3.0 * d**3):
        tr_sqrt = _trace_sqrt_sym(_lstore(s1), _lstore(s2))
    return _sqnorm(m1 - m2) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * tr_sqrt


def frechet_distance_from_features(x1, x2) -> float:
    """FID between two feature sets (rows are samples), each modelled as a Gaussian.

    Parameters
    ----------
    x1 : (n1, d), x2 : (n2, d) real arrays, n1, n2 ≥ 2 (converted to float64).

    When ``min(n1, n2) ≤ d`` (a rank-deficient covariance) the trace term uses the low-rank
    identity ``‖ABᵀ‖_*`` (module docstring): an SVD of the ``(n1-1) × (n2-1)`` cross product when
    that is cheapest, else the eigenvalues of ``A Σ_other Aᵀ``.  Otherwise the dense path.
    """
    a_raw = _as_features(x1, "x1")
    b_raw = _as_features(x2, "x2")
    if a_raw.shape[1] != b_raw.shape[1]:
        raise ValueError(f"x1 and x2 have different feature dimensions: {a_raw.shape[1]} vs {b_raw.shape[1]}")
    with _blas_threads(work=_work_estimate(a_raw.shape[0], b_raw.shape[0], a_raw.shape[1])):
        return _fid_from_features(a_raw, b_raw)


def _fid_from_features(a_raw: np.ndarray, b_raw: np.ndarray) -> float:
    d = a_raw.shape[1]
    n1, n2 = a_raw.shape[0], b_raw.shape[0]
    if min(n1, n2) > d:
        mu1, s1 = _stats_lower(a_raw)
        mu2, s2 = _stats_lower(b_raw)
        traces = float(np.trace(s1)) + float(np.trace(s2))
        tr_sqrt = _trace_sqrt_sym(s1, s2, overwrite=True)
        return _sqnorm(mu1 - mu2) + traces - 2.0 * tr_sqrt

    # low-rank path; a common shift (translation invariance) reduces cancellation
    shift = (a_raw.sum(axis=0) + b_raw.sum(axis=0)) / (n1 + n2)
    xa, xb = a_raw - shift, b_raw - shift
    if n1 > n2:
        xa, xb = xb, xa
    ns, no = xa.shape[0], xb.shape[0]  # ns ≤ d
    a = _centered_factor(xa)
    diff = xa.mean(axis=0) - xb.mean(axis=0)
    tr_a = float(np.einsum("ij,ij->", a, a))
    if _prefer_cross(ns, no, d, cov_cost=no * d * d):
        b = _centered_factor(xb)
        tr_b = float(np.einsum("ij,ij->", b, b))
        tr_sqrt = _sum_singular_values(_abt(a, b))
    else:
        s_b = _stats_lower(xb)[1]
        tr_b = float(np.trace(s_b))
        tr_sqrt = _trace_sqrt_factor_cov(a, s_b)
    return _sqnorm(diff) + tr_a + tr_b - 2.0 * tr_sqrt


def _prefer_cross(ns: int, no: int, d: int, cov_cost: float) -> bool:
    """Low-rank path: ‖ABᵀ‖_* from the (ns-1)×(no-1) cross product, or eig(A Σ Aᵀ)?

    Rough flop counts; ``cov_cost`` is what it takes to have the other side's covariance.
    """
    r = min(ns, no)
    svd_cost = (4 if r <= SVD_MAX_DIM else 1) * r * r * max(ns, no) + 10 * r**3
    cross = 2.0 * ns * no * d + svd_cost
    via_cov = cov_cost + 2.0 * ns * d * d + 2.0 * ns * ns * d + 10 * ns**3
    return cross <= via_cov


# ----------------------------------------------------------------------------- FIDComputer


@dataclass
class _SideState:
    """Raw second moment ``T = Σ x xᵀ`` (rows centred by the global shift) of a class set."""

    classes: frozenset
    rows: int
    T: np.ndarray  # (d, d) float64
    updates: int = 0  # incremental updates since the last from-scratch computation
    chol: np.ndarray | None = field(default=None, repr=False)  # Cholesky of Σ for this set


class FIDComputer:
    """FID between two sets of classes of one fixed feature table, fast for repeated calls.

    ::

        fc = FIDComputer(features, labels, level="class")   # or level="image"
        fc(train_classes, test_classes) -> float

    Parameters
    ----------
    features : (n, d) real array (numpy or CPU torch), one row per image.  Kept in its own dtype
        (float32 stays float32; other dtypes become float64); every computation is float64.
    labels : (n,) integer class ids in ``0 .. C-1`` (ids with no image are allowed but cannot be
        used in a side).
    level : ``"class"`` -- each class is one point, its mean feature (ooDML reference); the FID
        compares the two sides' sets of class means.  ``"image"`` -- every image is a point.
    refresh_every : an incrementally maintained d × d statistic is recomputed from scratch after
        this many incremental updates (bounds rounding drift; it is ~1e-15 relative per update).
    cache_size : number of recent ``(side, side) -> FID`` results kept (the search often revisits
        a split); 0 disables.  The key is unordered: ``fc(a, b)`` and ``fc(b, a)`` share it.
    blas_threads : BLAS threads during a call.  None (default): 1 for small calls (class level),
        the configured pools otherwise.  On a machine shared with other jobs, ``blas_threads=1``
        avoids OpenBLAS's collapse under oversubscription (see :func:`_blas_threads`).  With the
        torch dense backend on the CPU it sets torch's thread count during a call.
    dense_backend, device : the library of the image-level dense path (:func:`resolve_dense_backend`).
        ``"auto"`` (default): torch -- Cholesky, congruence, ``eigvalsh`` and the ``T`` updates in
        one BLAS/LAPACK library and one thread pool (MKL on this project's CPUs), on CUDA when a
        GPU is visible (``device``) -- else scipy.  ``"scipy"``: LAPACK ``potrf``/``sygst``/``syevd``
        through scipy's OpenBLAS.  Both are float64 and agree to ~1e-15 relative.  Torch is
        imported only when the dense path runs (never at class level).

    How a call is computed
    ----------------------
    Per class the constructor stores the row count, the float64 sum of its rows and the sum of
    their squared norms (rows centred by one global shift, an exact translation).  The mean term
    and both traces of every call come straight from those tables (``O(|side| d)``, no drift).
    The trace-sqrt term takes one of three paths (``d`` = feature dim, ``n`` = points per side):

    * both sides ``≤ d`` points (class level; tiny image sets): the low-rank identity on the
      ``(n1-1) × (n2-1)`` cross product of Householder-centred factors, built from the rows of the
      two sides (no d × d work at all);
    * one side ``≤ d`` points: the same, or ``A Σ_other Aᵀ`` when the other side's covariance is
      cheaper to get than the cross product;
    * both sides ``> d`` points (image level): the dense path.  The two sides' raw second-moment
      matrices ``T = Σ x xᵀ`` (d × d, float64) are kept in up to two cached states and brought to
      the requested class sets from whichever state is closest, by in-place ``syrk`` updates
      ``T ± Zᵀ Z`` over the rows ``Z`` of the classes that entered/left (≈ 10 ms per moved class of
      ~59 images at d = 2048).  Per-class d × d scatters are never stored.  A state is rebuilt from
      scratch when that is cheaper (more rows moved than the side holds) or after
      ``refresh_every`` updates.  Then ``S = T - s sᵀ/n`` (BLAS ``syr``), Cholesky of ``S1``
      (cached while that side is unchanged), ``Lᵀ S2 L`` with ``sygst``, and its eigenvalues.
      Coordinates with zero variance on either side (dead units) are dropped exactly first.

    Cost (CUB-sized synthetic problem: 200 classes, ~59 images/class, d = 2048, float32 features,
    2 CPU cores; ``python -m benchmarks.bench_fid``): class level ≈ 3 ms per call (≈ 0.3 s per
    100-call search).  Image level ≈ 0.65 s per call (≈ 65 s per 100-call search; the ≤ 10 s goal
    is *not* met at this level): eigenvalues of the d × d symmetric product ≈ 0.39 s, ``sygst``
    ≈ 0.17 s, Cholesky ≈ 0.05 s, statistics update + scatter ≈ 0.05 s.  A from-scratch call costs
    ≈ 1.5 s (two 5800 × 2048 ``syrk``).

    Why a swap does not make the eigenvalue problem cheaper: moving one class of ``m`` images
    changes a side's covariance by a rank-``(m+1)`` matrix (≈ 60 for CUB), so consecutive
    matrices ``Lᵀ Σ2 L`` differ by a rank of several hundred, and every exact eigenvalue update
    scheme (secular equations, contour integrals of the resolvent) needs the previous
    eigenvectors, whose own update costs ``O(d³)``; with a *fixed* reference instead, the rank
    grows with every step.  The fixed union gives ``S1 + S2 + c δδᵀ = S_all``, but FID is not
    invariant under the whitening that would make the problem depend on one matrix only.  The
    only exact reduction found is dimensional: a side with ``n ≤ d`` points (class level, or
    image level after many removals) goes through the ``n × n`` low-rank path.

    Attributes
    ----------
    level, dim, num_classes : as given / inferred (``num_classes = max(labels) + 1``).
    image_counts : (num_classes,) int64, images per class id.
    counters : dict with ``calls``, ``cache_hits``, ``incremental_updates``, ``scratch_builds`` and
        the number of calls per path (``path_dense``, ``path_factor_cov``, ``path_cross``).

    Memory: the feature table (sorted by class, in its own dtype), (C, d) float64 per-class sums
    and, once the dense path has run, up to two states of two d × d float64 matrices each
    (128 MiB at d = 2048).  Not thread-safe (the states are updated in place).
    """

    def __init__(
        self,
        features,
        labels,
        level: str = "class",
        *,
        refresh_every: int = 50,
        cache_size: int = 256,
        blas_threads: int | None = None,
        dense_backend: str = "auto",
        device=None,
    ):
        if level not in ("class", "image"):
            raise ValueError(f"level must be 'class' or 'image', got {level!r}")
        x = _as_float_array(features, "features")
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"features: expected a non-empty 2-D array (n, d), got shape {x.shape}")
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != x.shape[0]:
            raise ValueError(f"labels: expected shape ({x.shape[0]},) to match features {x.shape}, got {lab.shape}")
        if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
            if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
                lab = lab.astype(np.int64)
            else:
                raise ValueError(f"labels: expected integer class ids, got dtype {lab.dtype}")
        lab = lab.astype(np.int64, copy=False)
        if lab.min() < 0:
            raise ValueError(f"labels: class ids must be ≥ 0, got {int(lab.min())}")
        if int(refresh_every) < 1:
            raise ValueError(f"refresh_every must be ≥ 1, got {refresh_every}")
        if int(cache_size) < 0:
            raise ValueError(f"cache_size must be ≥ 0, got {cache_size}")
        if blas_threads is not None and int(blas_threads) < 1:
            raise ValueError(f"blas_threads must be None or ≥ 1, got {blas_threads}")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        _check_finite(x, "features")

        self.level = level
        self.dense_backend, self.device = (
            resolve_dense_backend(dense_backend, device) if level == "image" else ("scipy", None)
        )
        self.refresh_every = int(refresh_every)
        self.cache_size = int(cache_size)
        self.blas_threads = None if blas_threads is None else int(blas_threads)
        self.num_classes = int(lab.max()) + 1
        self.dim = int(x.shape[1])
        d, C = self.dim, self.num_classes

        img_counts = np.bincount(lab, minlength=C)
        self.image_counts = img_counts  #: images per class id, (C,) int64
        order = np.argsort(lab, kind="stable")
        img_offsets = np.concatenate(([0], np.cumsum(img_counts)))

        if level == "image":
            self._rows = np.ascontiguousarray(x[order])  # original dtype, sorted by class
            self._shift = x.mean(axis=0, dtype=np.float64)
            self._offsets = img_offsets
            self._point_counts = img_counts.copy()
            sums = np.zeros((C, d))
            sqn = np.zeros(C)
            for c in np.flatnonzero(img_counts):
                blk = self._block(c)
                sums[c] = blk.sum(axis=0)
                sqn[c] = float(np.einsum("ij,ij->", blk, blk))
        else:
            sorted_already = lab.size < 2 or bool(np.all(lab[1:] >= lab[:-1]))
            xs = x if sorted_already else x[order]  # a table grouped by class needs no copy
            means = np.zeros((C, d))
            for c in np.flatnonzero(img_counts):
                means[c] = xs[img_offsets[c] : img_offsets[c + 1]].sum(axis=0, dtype=np.float64)
                means[c] /= img_counts[c]
            present = img_counts > 0
            self._shift = means[present].mean(axis=0)
            rows = means - self._shift
            rows[~present] = 0.0
            self._rows = rows  # float64, already centred, one row per class id
            self._offsets = np.arange(C + 1)
            self._point_counts = present.astype(np.int64)
            sums = rows.copy()
            sqn = np.einsum("ij,ij->i", rows, rows)
        self._sums = sums
        self._sqnorms = sqn
        self._states: list[_SideState] = []  # most recently used first, at most 2
        self._cache: OrderedDict = OrderedDict()
        self.counters = dict(
            calls=0,
            cache_hits=0,
            incremental_updates=0,
            scratch_builds=0,
            path_dense=0,
            path_factor_cov=0,
            path_cross=0,
        )

    # ------------------------------------------------------------------ helpers

    def _block(self, c: int) -> np.ndarray:
        """float64, centred rows (points) of class ``c``."""
        blk = self._rows[self._offsets[c] : self._offsets[c + 1]]
        if self.level == "image":
            return blk.astype(np.float64) - self._shift
        return blk

    def _gather(self, classes: np.ndarray) -> np.ndarray:
        """float64, centred points of the given classes, stacked in the given order."""
        if self.level == "class":
            return self._rows[classes]
        parts = [self._rows[self._offsets[c] : self._offsets[c + 1]] for c in classes]
        out = np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim), self._rows.dtype)
        out = out.astype(np.float64, copy=False)  # concatenate already made a new array
        out -= self._shift
        return out

    def _parse(self, classes, name: str) -> np.ndarray:
        if isinstance(classes, (str, bytes)):
            raise ValueError(f"{name}: expected an iterable of integer class ids, got {classes!r}")
        if isinstance(classes, (set, frozenset)) or not hasattr(classes, "__len__"):
            classes = list(classes)
        arr = np.asarray(classes)
        if arr.size == 0:
            raise ValueError(f"{name}: empty class set (each side needs at least 2 points)")
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a flat list of class ids, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"{name}: class ids must be integers, got {classes!r:.80}")
        arr = np.sort(arr.astype(np.int64))
        if np.any(arr[1:] == arr[:-1]):
            dup = np.unique(arr[1:][arr[1:] == arr[:-1]])
            raise ValueError(f"{name}: duplicate class id(s) {dup.tolist()[:10]}")
        unknown = arr[(arr < 0) | (arr >= self.num_classes)]
        if unknown.size:
            raise ValueError(
                f"{name}: unknown class id(s) {unknown.tolist()[:10]} (labels have ids 0..{self.num_classes - 1})"
            )
        empty = arr[self.image_counts[arr] == 0]
        if empty.size:
            raise ValueError(f"{name}: class id(s) {empty.tolist()[:10]} have no images")
        npts = int(self._point_counts[arr].sum())
        if npts < 2:
            what = "classes" if self.level == "class" else "images"
            raise ValueError(f"{name}: needs at least 2 {what} for a covariance (level={self.level!r}), got {npts}")
        return arr

    def _parse_pair(self, train_classes, test_classes):
        a = self._parse(train_classes, "train_classes")
        b = self._parse(test_classes, "test_classes")
        common = np.intersect1d(a, b)
        if common.size:
            raise ValueError(
                f"train_classes and test_classes overlap in {common.size} class id(s): {common.tolist()[:10]}"
            )
        return a, b

    def _side_moments(self, idx: np.ndarray):
        n = int(self._point_counts[idx].sum())
        s = self._sums[idx].sum(axis=0)
        q = float(self._sqnorms[idx].sum())
        return n, s, q

    # ------------------------------------------------------------------ public API

    def __call__(self, train_classes: Iterable[int], test_classes: Iterable[int]) -> float:
        """FID between the two sides (iterables of class ids; disjoint, non-empty)."""
        return self.compute(train_classes, test_classes)

    def compute(self, train_classes, test_classes, *, incremental: bool = True) -> float:
        """Same as calling the object.  ``incremental=False`` neither reads nor changes the result
        cache or the cached statistics: a from-scratch computation through the same formulas
        (for checks and benchmarks)."""
        a, b = self._parse_pair(train_classes, test_classes)
        if not incremental:
            with self._threads(a, b):
                return self._compute(a, b, use_state=False)
        self.counters["calls"] += 1
        key = None
        if self.cache_size:
            key = frozenset((frozenset(a.tolist()), frozenset(b.tolist())))
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.counters["cache_hits"] += 1
                return hit
        with self._threads(a, b):
            value = self._compute(a, b, use_state=True)
        if key is not None:
            self._cache[key] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value

    def _threads(self, a: np.ndarray, b: np.ndarray):
        if self.dense_backend == "torch" and self._dense_sides(a, b):
            return self._torch_threads(3.0 * self.dim**3)
        if self.blas_threads is not None:
            return _blas_threads(threads=self.blas_threads)
        n1, n2 = int(self._point_counts[a].sum()), int(self._point_counts[b].sum())
        return _blas_threads(work=_work_estimate(n1, n2, self.dim))

    def _dense_sides(self, a: np.ndarray, b: np.ndarray) -> bool:
        return min(int(self._point_counts[a].sum()), int(self._point_counts[b].sum())) > self.dim

    @contextlib.contextmanager
    def _torch_threads(self, work: float):
        """One thread pool for a dense call on the torch backend: scipy's OpenBLAS (left with
        the O(d²) scatter updates) pinned to one thread so that its idle workers do not spin
        against torch's; torch at ``blas_threads`` threads when given, at one thread for small
        problems (below :data:`SMALL_WORK_FLOPS`, as on scipy's path: threads buy nothing there
        and collapse on an oversubscribed machine), else at its own default."""
        from oodml.threads import torch_threads

        threads = self.blas_threads if self.blas_threads is not None else (1 if work < SMALL_WORK_FLOPS else None)
        with _blas_threads(threads=1), torch_threads(threads or 1, enabled=threads is not None):
            yield

    def from_scratch(self, train_classes, test_classes) -> float:
        """Reference value: :func:`frechet_distance_from_features` on the two sides' points."""
        a, b = self._parse_pair(train_classes, test_classes)
        return frechet_distance_from_features(self._gather(a), self._gather(b))

    def points(self, classes) -> np.ndarray:
        """The (n, d) float64 points of a class set: class means (class level) or images, with
        one common shift subtracted (FID is translation invariant)."""
        return self._gather(self._parse(classes, "classes"))

    def stats(self, classes, *, factor: bool = False):
        """Gaussian statistics of one side.

        Returns ``(mu, sigma, n)``: mean (d,) float64, unbiased covariance (d, d) float64 and the
        number of points; with ``factor=True`` returns ``(mu, A, n)`` where ``A`` is the
        ``(n-1, d)`` float64 factor with ``AᵀA = sigma`` (cheap when ``n ≪ d``, e.g. class level).
        ``mu`` is in the original feature coordinates.
        """
        idx = self._parse(classes, "classes")
        pts = self._gather(idx)
        if factor:
            return pts.mean(axis=0) + self._shift, _centered_factor(pts), pts.shape[0]
        with _blas_threads(work=float(pts.shape[0]) * pts.shape[1] ** 2):
            mu, sigma = _stats_lower(pts)
        return mu + self._shift, _symmetrized(sigma), pts.shape[0]

    def clear(self) -> None:
        """Drop cached results and incremental states (frees up to ~4 d × d float64 arrays)."""
        self._states.clear()
        self._cache.clear()

    # ------------------------------------------------------------------ computation

    def _compute(self, a: np.ndarray, b: np.ndarray, use_state: bool) -> float:
        d = self.dim
        n1, s1, q1 = self._side_moments(a)
        n2, s2, q2 = self._side_moments(b)
        diff = s1 / n1 - s2 / n2
        tr1 = (q1 - _sqnorm(s1) / n1) / (n1 - 1)
        tr2 = (q2 - _sqnorm(s2) / n2) / (n2 - 1)

        if min(n1, n2) > d:
            self.counters["path_dense"] += use_state
            tr_sqrt = self._dense_term(a, n1, s1, b, n2, s2, use_state)
        else:
            if n1 > n2:
                a, b, n1, n2, s1, s2 = b, a, n2, n1, s2, s1
            # a: small side (≤ d points)
            fa = _centered_factor(self._gather(a))
            if n2 <= d:
                cov_cost = float("inf")
            elif use_state:
                cov_cost = self._state_cost_estimate(b, n2) + 2.0 * d * d
            else:
                cov_cost = float(n2) * d * d
            if _prefer_cross(n1, n2, d, cov_cost):
                self.counters["path_cross"] += use_state
                fb = _centered_factor(self._gather(b))
                tr_sqrt = _sum_singular_values(_abt(fa, fb))
            else:
                self.counters["path_factor_cov"] += use_state
                sig_b = self._sigma(b, n2, s2, use_state)
                tr_sqrt = _trace_sqrt_factor_cov(fa, sig_b)
        return _sqnorm(diff) + tr1 + tr2 - 2.0 * tr_sqrt

    def _dense_term(self, a, n1, s1, b, n2, s2, use_state) -> float:
        """Dense trace-sqrt term from the two sides' scatter matrices ``S = T - s sᵀ/n``.

        The ``1/(n-1)`` scalings are folded into the result (``Σ1Σ2 = S1S2/((n1-1)(n2-1))``);
        the Cholesky factorisation runs in place on the scatter buffer and is cached with the
        side's state, so an unchanged side is not factored again.
        """
        scale = 1.0 / math.sqrt((n1 - 1.0) * (n2 - 1.0))
        if self.dense_backend == "torch":
            if use_state:
                st1, st2 = self._acquire_states([a, b])
                sc1, sc2 = self._scatter_from_T(st1.T, n1, s1), self._scatter_from_T(st2.T, n2, s2)
            else:
                sc1, sc2 = self._scatter_scratch(a, n1, s1), self._scatter_scratch(b, n2, s2)
            sc1, sc2, _ = _common_support(sc1, sc2)  # dead units: dropped exactly, as on scipy's path
            value = _trace_sqrt_dense_torch(sc1, sc2, self.device)
            if value is None:  # neither side numerically PD: the eigendecomposition fallback
                with _blas_threads(threads=self.blas_threads) if self.blas_threads else contextlib.nullcontext():
                    value = _trace_sqrt_eigh_fallback(sc1, sc2)
            return value * scale
        if not use_state:
            sc1, sc2 = self._scatter_scratch(a, n1, s1), self._scatter_scratch(b, n2, s2)
            return _trace_sqrt_sym(sc1, sc2, overwrite=True) * scale
        st1, st2 = self._acquire_states([a, b])
        make1 = lambda: self._scatter_from_T(st1.T, n1, s1)  # noqa: E731
        make2 = lambda: self._scatter_from_T(st2.T, n2, s2)  # noqa: E731
        # zero-variance coordinates (dead units): restrict them away, without the Cholesky cache
        diag1 = np.diagonal(st1.T) - s1 * s1 / n1
        diag2 = np.diagonal(st2.T) - s2 * s2 / n2
        if _full_support(diag1, diag2) is not None:
            return _trace_sqrt_sym(make1(), make2(), overwrite=True) * scale
        if st1.chol is not None:
            factor, other = st1.chol, make2()
        elif st2.chol is not None:
            factor, other = st2.chol, make1()
        else:
            factor = _cholesky(make1(), overwrite=True)
            if factor is not None:
                st1.chol = factor
                other = make2()
            else:
                factor = _cholesky(make2(), overwrite=True)
                if factor is None:
                    return _trace_sqrt_eigh_fallback(make1(), make2()) * scale
                st2.chol = factor
                other = make1()
        m = _sygst(other, factor, overwrite=True)
        return _sum_sqrt(_eigvalsh(m, overwrite=True)) * scale

    def _sigma(self, idx, n, s, use_state):
        """Unbiased covariance (L-storage) of side ``idx`` (from a cached state if ``use_state``)."""
        if use_state:
            (st,) = self._acquire_states([idx])
            sig = self._scatter_from_T(st.T, n, s)
        else:
            sig = self._scatter_scratch(idx, n, s)
        sig *= 1.0 / (n - 1)
        return sig

    def _syrk(self, x: np.ndarray, alpha: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        """``alpha · xᵀx`` (valid in the lower triangle), accumulated into ``out`` if given: BLAS
        ``syrk`` on scipy's backend, torch's ``addmm`` (same library as the rest of the dense
        path) on the torch backend."""
        if self.dense_backend != "torch":
            return _syrk(x, alpha, out)
        import torch

        xt = torch.from_numpy(np.ascontiguousarray(x))
        if out is None:
            res = torch.mm(xt.mT, xt)
            if alpha != 1.0:
                res *= alpha
            return res.numpy().T  # symmetric: the Fortran-ordered view of the same matrix
        torch.from_numpy(out).addmm_(xt.mT, xt, alpha=alpha)  # in place on the numpy buffer
        return out

    @staticmethod
    def _scatter_from_T(t: np.ndarray, n: int, s: np.ndarray, copy: bool = True) -> np.ndarray:
        """Scatter ``T - s sᵀ/n`` (L-storage; in a new buffer unless ``copy=False``)."""
        out = np.array(t, order="F", copy=True) if copy else t
        res = blas.dsyr(-1.0 / n, s, lower=1, a=out, overwrite_a=1)  # rank-1 update, in place
        assert res.ctypes.data == out.ctypes.data  # updated in place
        return out

    def _scatter_scratch(self, idx, n, s) -> np.ndarray:
        return self._scatter_from_T(self._syrk(self._gather(idx)), n, s, copy=False)

    # ------------------------------------------------------------------ incremental states

    def _rows_of(self, classes) -> int:
        if not classes:
            return 0
        return int(self._point_counts[np.fromiter(classes, dtype=np.int64)].sum())

    def _update_cost(self, st: _SideState | None, target: frozenset, n_target: int) -> tuple[int, bool]:
        """(rows to process, incremental?) to bring ``st`` to ``target``."""
        if st is None:
            return n_target, False
        if st.classes == target:
            return 0, True
        moved = self._rows_of(st.classes ^ target)
        if moved >= n_target or st.updates >= self.refresh_every:
            return n_target, False
        return moved, True

    def _state_cost_estimate(self, idx: np.ndarray, n: int) -> float:
        """Flops to have the covariance of side ``idx`` from the cached states."""
        target = frozenset(idx.tolist())
        best = min([self._update_cost(st, target, n)[0] for st in self._states] + [n])
        return float(best) * self.dim * self.dim

    def _acquire_states(self, sides: list[np.ndarray]) -> list[_SideState]:
        """States holding T for each side (distinct objects), updated from the cached ones."""
        targets = [frozenset(idx.tolist()) for idx in sides]
        ns = [int(self._point_counts[idx].sum()) for idx in sides]
        old = list(self._states)
        slots = old + [None] * len(sides)  # None = a new state
        best = None
        # tiny assignment problem: sides -> distinct slots (at most 2 sides, 4 slots)
        for perm in itertools.permutations(range(len(slots)), len(sides)):
            cost = sum(self._update_cost(slots[p], t, n)[0] for p, t, n in zip(perm, targets, ns))
            if best is None or cost < best[0]:
                best = (cost, perm)
        perm = best[1]
        out = []
        for p, idx, t, n in zip(perm, sides, targets, ns):
            st = slots[p]
            rows, incremental = self._update_cost(st, t, n)
            if st is None or not incremental:
                tmat = self._syrk(self._gather(idx))
                if st is None:
                    st = _SideState(classes=t, rows=n, T=tmat)
                else:
                    st.T = tmat
                    st.classes, st.rows, st.updates, st.chol = t, n, 0, None
                self.counters["scratch_builds"] += 1
            elif rows:
                added = np.array(sorted(t - st.classes), dtype=np.int64)
                removed = np.array(sorted(st.classes - t), dtype=np.int64)
                if added.size:  # T += Σ x xᵀ over the entering rows (syrk, in place)
                    self._syrk(self._gather(added), 1.0, out=st.T)
                if removed.size:  # T -= Σ x xᵀ over the leaving rows
                    self._syrk(self._gather(removed), -1.0, out=st.T)
                st.classes, st.rows, st.chol = t, n, None
                st.updates += 1
                self.counters["incremental_updates"] += 1
            out.append(st)
        # keep the used states first, then any untouched old one; at most 2
        keep = out + [st for st in old if all(st is not o for o in out)]
        self._states = keep[:2]
        return out
