r"""``python -m oodml.shift``: several measures of train→test shift, side by side, on a split series.

A generalization curve orders the splits of a series by one number (the FID under one frozen
network).  This module rescores every split under several extractors and several measures so a
reader can see whether another network or another distance would have ordered them the same way,
and (with a results table) which measure predicts the drop of Recall@1 best::

    python -m oodml.shift splits/glyphs.json --features pixels hog
    python -m oodml.shift splits/cub.json --root ~/data --features resnet50 inception \
        --features-file clip.npz --results runs/oodml_cub/results.csv --out figures/shift_cub

Measures (``x`` = train-side points, ``y`` = test-side points, features in float64):

``fid_class``  Fréchet distance between the two sides' sets of class means (the ooDML grading);
``fid_image``  Fréchet distance between all train-side and all test-side images;
``kid``        kernel inception distance: the *unbiased* squared MMD with the cubic polynomial kernel
               :math:`k(a,b) = (a^\top b/d + 1)^3`, averaged over ``kid_subsets`` random subsets of
               ``kid_subset_size`` images per side (Bińkowski et al. 2018); ``kid_se`` is its standard
               error over the subsets (sample std / √subsets);
``mmd``        unbiased squared MMD with the Gaussian kernel :math:`\exp(-\lVert a-b\rVert^2/2\sigma^2)`,
               :math:`\sigma` the median pairwise distance of the pooled sample (computed exactly on
               up to ``median_points`` pooled points, a seeded subsample above that);
``mean_dist``  Euclidean distance between the two sides' mean features.

The FIDs come from :class:`oodml.shift.fid.FIDComputer` (exact float64).  Kernel sums are taken block by
block (``block`` rows at a time), so memory is ``O(block² + n d)``: no n × n matrix is ever built.

Per-class attribution (:func:`fid_attribution`) gives, for every class of a split, how much the FID
changes when that class is left out of its side (negative: the class carries shift), using the
incremental statistics of :class:`~oodml.shift.fid.FIDComputer`.

Layout
------
:mod:`~oodml.shift.dense` the dense linear algebra (LAPACK on scipy, or torch) and its tuning knobs;
:mod:`~oodml.shift.frechet` the Fréchet distance between two Gaussians or two feature sets;
:mod:`~oodml.shift.fid` :class:`FIDComputer`, repeated FIDs between class sets of one table (class
and image level), what grades ooDML splits (``oodml.fid`` is its old import path);
:mod:`~oodml.shift.measures` KID, MMD, mean distance and the registry of measures
(:data:`MEASURE_FUNCTIONS`: a new measure is one function and one entry there);
:mod:`~oodml.shift.tables` feature tables of a split file and the tables of measures;
:mod:`~oodml.shift.attribution` per-class FID attribution; :mod:`~oodml.shift.figures` the figures;
:mod:`~oodml.shift.command` the command.

The names below are loaded lazily (PEP 562 ``__getattr__``) on purpose: :mod:`oodml.shift.fid` is
imported by the split search (``make_splits --features-file``), which must not pay for pandas or
matplotlib, let alone torch, and importing a submodule runs this ``__init__`` first.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "DENSE_BACKENDS": "oodml.shift.dense",
    "EIGH_DRIVER": "oodml.shift.dense",
    "SMALL_WORK_FLOPS": "oodml.shift.dense",
    "SVD_MAX_DIM": "oodml.shift.dense",
    "resolve_dense_backend": "oodml.shift.dense",
    "trace_sqrt_product": "oodml.shift.dense",
    "frechet_distance": "oodml.shift.frechet",
    "frechet_distance_from_features": "oodml.shift.frechet",
    "gaussian_stats": "oodml.shift.frechet",
    "FIDComputer": "oodml.shift.fid",
    "BLOCK": "oodml.shift.measures",
    "MEASURES": "oodml.shift.measures",
    "MEASURE_FUNCTIONS": "oodml.shift.measures",
    "MeasureOptions": "oodml.shift.measures",
    "kid": "oodml.shift.measures",
    "mean_distance": "oodml.shift.measures",
    "median_bandwidth": "oodml.shift.measures",
    "mmd_rbf": "oodml.shift.measures",
    "_Table": "oodml.shift.tables",
    "_tables": "oodml.shift.tables",
    "_wide": "oodml.shift.tables",
    "kendall_table": "oodml.shift.tables",
    "predictive_table": "oodml.shift.tables",
    "shift_table": "oodml.shift.tables",
    "tau_matrix": "oodml.shift.tables",
    "attribution_table": "oodml.shift.attribution",
    "fid_attribution": "oodml.shift.attribution",
    "attribution_figure": "oodml.shift.figures",
    "shift_figure": "oodml.shift.figures",
    "build_parser": "oodml.shift.command",
    "cli": "oodml.shift.command",
    "main": "oodml.shift.command",
}

__all__ = [
    "BLOCK",
    "DENSE_BACKENDS",
    "EIGH_DRIVER",
    "FIDComputer",
    "MEASURES",
    "MEASURE_FUNCTIONS",
    "MeasureOptions",
    "SMALL_WORK_FLOPS",
    "SVD_MAX_DIM",
    "attribution_figure",
    "attribution_table",
    "build_parser",
    "cli",
    "fid_attribution",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "kendall_table",
    "kid",
    "main",
    "mean_distance",
    "median_bandwidth",
    "mmd_rbf",
    "predictive_table",
    "resolve_dense_backend",
    "shift_figure",
    "shift_table",
    "tau_matrix",
    "trace_sqrt_product",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
