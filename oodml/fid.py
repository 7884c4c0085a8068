"""Compatibility path: the FID now lives in the shift-measures package, :mod:`oodml.shift.fid`
(:class:`FIDComputer`), :mod:`oodml.shift.frechet` (the Fréchet distance) and :mod:`oodml.shift.dense`
(the dense linear algebra; patch its tuning knobs there, e.g. ``oodml.shift.dense.EIGH_DRIVER``).
Every name that was importable from here still is."""

from oodml.shift.dense import (  # noqa: F401 - re-exported under the old path (benchmarks use the private ones)
    DENSE_BACKENDS,
    EIGH_DRIVER,
    SMALL_WORK_FLOPS,
    SVD_MAX_DIM,
    _blas_threads,
    _centered_factor,
    _cholesky,
    _eigvalsh,
    _lstore,
    _prefer_cross,
    _sygst,
    _trace_sqrt_dense_torch,
    _trace_sqrt_eigh_fallback,
    _trace_sqrt_sym,
    resolve_dense_backend,
    trace_sqrt_product,
)
from oodml.shift.fid import FIDComputer
from oodml.shift.frechet import frechet_distance, frechet_distance_from_features, gaussian_stats

__all__ = [
    "FIDComputer",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "trace_sqrt_product",
]
