"""The dense linear algebra under :mod:`oodml.shift.frechet` and :class:`~oodml.shift.fid.FIDComputer`:
input checks, BLAS thread control, LAPACK kernels (``potrf``, ``sygst``, ``syevd``) on scipy's
OpenBLAS, the same dense path on torch (CPU or CUDA), and the low-rank helpers.  The numerical
choices are explained in :mod:`oodml.shift.frechet`.

The tuning knobs (:data:`EIGH_DRIVER`, :data:`SMALL_WORK_FLOPS`, :data:`SVD_MAX_DIM`) and the
kernels are read as ``dense.<name>`` by the modules above, so a test or a benchmark patches them
here, once.  ``torch`` is imported inside the torch functions on purpose (about 3.6 s of startup):
the class level and scipy's path never need it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

import numpy as np
from scipy.linalg import blas, eigh, lapack, svd

from oodml.threads import blas_threads

__all__ = [
    "DENSE_BACKENDS",
    "EIGH_DRIVER",
    "SMALL_WORK_FLOPS",
    "SVD_MAX_DIM",
    "resolve_dense_backend",
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


def _blas_threads(work: float | None = None, threads: int | None = None):
    """Context that limits the BLAS thread pools to ``threads`` (or to 1 for small ``work``).

    OpenBLAS threads synchronise at every call; when the machine is oversubscribed (other jobs on
    the same cores) a 2-thread call stalls until both threads get a core.  Measured on the
    2-core development machine with two busy processes: one d = 2048 dense FID 42 s with 2 threads
    vs 4.3 s with 1 (0.76 s vs 1.14 s when quiet), and a test of 40-d problems 21 s vs 0.3 s.
    Small problems therefore always run single-threaded; large ones keep the configured pools
    unless ``threads`` is given (:func:`oodml.threads.blas_threads`).
    """
    if threads is None:
        if work is None or work >= SMALL_WORK_FLOPS:
            return contextlib.nullcontext()
        threads = 1
    return blas_threads(int(threads))


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


def _gpu_may_be_visible() -> bool:
    """Whether a CUDA (or ROCm) GPU may be visible, without importing torch (≈ 2.5 s) on a machine
    that has none: torch's own answer once torch is imported, else the GPU driver's device files."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/kfd")


def resolve_dense_backend(backend: str = "auto", device=None) -> tuple[str, str | None]:
    """``(backend, device)`` of the dense path.

    ``"auto"``: torch on CUDA when a GPU is visible (or ``device`` names one), else scipy's LAPACK
    on the CPU, which is the faster of the two there: on the 2-core development machine a
    CUB-sized image-level step took 0.80 s against torch's 1.24 s (torch has no ``sygst``: its
    congruence costs 2.25 d³ flops against LAPACK's d³), and a whole ``--trajectory-stride 5``
    series 14-16 s against 22-27 s, with byte-identical split files (the two agree to ≈ 1e-13
    relative: with every step evaluated, 4 of 72 FIDs differed in their 12th stored digit;
    ``benchmarks/README.md``).
    ``"torch"``: torch (its Cholesky, products and ``eigvalsh`` in one library and one thread pool)
    on ``device`` -- a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``); ``None`` picks
    CUDA when a GPU is visible, else the CPU.  ``"scipy"``: scipy's LAPACK (``potrf``, ``sygst``,
    ``syevd``), CPU.  The environment variable ``OODML_FID_BACKEND`` (``torch`` or ``scipy``)
    overrides ``"auto"``, e.g. for ``python -m oodml.make_splits --level image``: on a CPU shared
    with other jobs, ``torch`` degrades less than OpenBLAS's spinning threads (see
    :func:`_blas_threads`; or set ``OPENBLAS_NUM_THREADS=1``).
    """
    if backend == "auto":
        backend = os.environ.get("OODML_FID_BACKEND", "").strip().lower() or "auto"
    if backend not in DENSE_BACKENDS:
        raise ValueError(
            f"dense backend must be one of {', '.join(DENSE_BACKENDS)}, got {backend!r} (argument or OODML_FID_BACKEND)"
        )
    if backend == "scipy":
        if device not in (None, "cpu"):
            raise ValueError(f"the scipy dense backend runs on the CPU only, got device={device!r}")
        return "scipy", None
    if backend == "auto" and (device == "cpu" or (device is None and not _gpu_may_be_visible())):
        return "scipy", None
    try:
        import torch  # lazy on purpose: see the module docstring
    except ImportError:  # pragma: no cover - torch is a dependency of the project
        if backend == "torch":
            raise
        return "scipy", None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested for the dense FID path but CUDA is not available")
    if backend == "auto" and dev.type != "cuda":
        return "scipy", None
    return "torch", str(dev)


def _torch_lower(s: np.ndarray, device: str):
    """An L-storage float64 numpy matrix as a torch tensor on ``device`` (no copy on the CPU)."""
    import torch  # lazy on purpose: see the module docstring

    t = torch.from_numpy(s)
    return t if device == "cpu" else t.to(device, non_blocking=False)


def _torch_full(t):
    """The full symmetric matrix of an L-storage (lower-triangle) square tensor."""
    import torch  # lazy on purpose: see the module docstring

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
    import torch  # lazy on purpose: see the module docstring

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
    import torch  # lazy on purpose: see the module docstring

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


def _prefer_cross(ns: int, no: int, d: int, cov_cost: float) -> bool:
    """Low-rank path: ‖ABᵀ‖_* from the (ns-1)×(no-1) cross product, or eig(A Σ Aᵀ)?

    Rough flop counts; ``cov_cost`` is what it takes to have the other side's covariance.
    """
    r = min(ns, no)
    svd_cost = (4 if r <= SVD_MAX_DIM else 1) * r * r * max(ns, no) + 10 * r**3
    cross = 2.0 * ns * no * d + svd_cost
    via_cov = cov_cost + 2.0 * ns * d * d + 2.0 * ns * ns * d + 10 * ns**3
    return cross <= via_cov
