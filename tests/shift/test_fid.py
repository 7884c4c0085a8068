"""Tests of the FID (oodml.shift.fid, .frechet and .dense; old path oodml.fid): exactness against
direct formulas and pytorch-fid, the low-rank path, the incremental FIDComputer, and input errors.
All CPU, small sizes (a few seconds in total)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.linalg import sqrtm

from oodml.shift import dense
from oodml.shift.dense import trace_sqrt_product
from oodml.shift.fid import FIDComputer
from oodml.shift.frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
)


def _features(rng, n, d, rank=6, shift=0.0, noise=0.5):
    """Low-rank-plus-noise features (well conditioned when n > d)."""
    w = rng.standard_normal((d, rank))
    return rng.standard_normal((n, rank)) @ w.T + noise * rng.standard_normal((n, d)) + shift


def _direct_fid(mu1, s1, mu2, s2):
    """The textbook formula with scipy.linalg.sqrtm of the symmetric Σ1^{1/2} Σ2 Σ1^{1/2}."""
    r = sqrtm(s1).real
    inner = sqrtm(r @ s2 @ r).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(inner))


def _rel(a, b):
    return abs(a - b) / abs(b)


# --------------------------------------------------------------------------- basic statistics


def test_gaussian_stats_matches_numpy():
    rng = np.random.default_rng(0)
    x = _features(rng, 50, 8).astype(np.float32)
    mu, sigma = gaussian_stats(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    assert mu.shape == (8,) and sigma.shape == (8, 8)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12, atol=1e-13)
    assert np.array_equal(sigma, sigma.T)


# --------------------------------------------------------------------------- dense formula


@pytest.mark.parametrize("d", [16, 64])
def test_frechet_distance_matches_direct_sqrtm_formula(d):
    rng = np.random.default_rng(d)
    mu1, s1 = gaussian_stats(_features(rng, 4 * d, d))
    mu2, s2 = gaussian_stats(_features(rng, 5 * d, d, shift=0.3))
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert _rel(ours, _direct_fid(mu1, s1, mu2, s2)) < 1e-10
    r = sqrtm(s1).real
    assert _rel(trace_sqrt_product(s1, s2), np.trace(sqrtm(r @ s2 @ r).real)) < 1e-10


@pytest.mark.parametrize("d", [32, 256])
def test_frechet_distance_matches_pytorch_fid(d):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(100 + d)
    mu1, s1 = gaussian_stats(_features(rng, 3 * d, d, rank=d // 8))
    mu2, s2 = gaussian_stats(_features(rng, 3 * d, d, rank=d // 8, shift=0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy deprecation of sqrtm(disp=...) used by pytorch-fid
        ref = float(fid_score.calculate_frechet_distance(mu1, s1, mu2, s2))
    assert _rel(frechet_distance(mu1, s1, mu2, s2), ref) < 1e-6


@pytest.mark.parametrize("driver", ["ev", "evr"])
def test_eigensolver_drivers_agree(monkeypatch, driver):
    rng = np.random.default_rng(3)
    mu1, s1 = gaussian_stats(_features(rng, 200, 40))
    mu2, s2 = gaussian_stats(_features(rng, 200, 40, shift=1.0))
    a = frechet_distance(mu1, s1, mu2, s2)
    monkeypatch.setattr(dense, "EIGH_DRIVER", driver)
    assert _rel(frechet_distance(mu1, s1, mu2, s2), a) < 1e-12


def test_singular_covariances_use_the_eigh_fallback():
    # both covariances rank-deficient (n <= d): Cholesky fails, the eigh factor path is exact
    rng = np.random.default_rng(4)
    x1, x2 = _features(rng, 12, 30), _features(rng, 20, 30, shift=0.5)
    mu1, s1 = gaussian_stats(x1)
    mu2, s2 = gaussian_stats(x2)
    dense = frechet_distance(mu1, s1, mu2, s2)
    assert _rel(dense, frechet_distance_from_features(x1, x2)) < 1e-9
    # one singular, one regular: the rounding-level eigenvalues are ignored
    x3 = _features(rng, 200, 30, shift=0.5)
    mu3, s3 = gaussian_stats(x3)
    assert _rel(frechet_distance(mu1, s1, mu3, s3), frechet_distance_from_features(x1, x3)) < 1e-9
    assert _rel(frechet_distance(mu3, s3, mu1, s1), frechet_distance_from_features(x1, x3)) < 1e-9
    # a zero covariance: FID = |Δμ|² + tr Σ
    z = np.zeros((30, 30))
    assert _rel(frechet_distance(mu1, z, mu3, s3), float((mu1 - mu3) @ (mu1 - mu3) + np.trace(s3))) < 1e-12


def test_dead_units_are_restricted_away_exactly(monkeypatch):
    # always-zero coordinates (dead ReLU units) make both covariances singular; the zero
    # rows/columns are dropped exactly, so the fast Cholesky path still applies
    rng = np.random.default_rng(11)
    x1, x2 = _features(rng, 300, 30), _features(rng, 250, 30, shift=0.5)
    dead = [0, 7, 29]
    x1[:, dead] = 0.0
    x2[:, dead] = 0.0
    x2[:, 3] = 1.5  # constant on one side only
    mu1, s1 = gaussian_stats(x1)
    mu2, s2 = gaussian_stats(x2)
    alive = [i for i in range(30) if i not in dead]
    expected = frechet_distance(mu1[alive], s1[np.ix_(alive, alive)], mu2[alive], s2[np.ix_(alive, alive)])

    def no_fallback(*args, **kwargs):
        raise AssertionError("eigendecomposition fallback used")

    monkeypatch.setattr(dense, "_trace_sqrt_eigh_fallback", no_fallback)
    assert _rel(frechet_distance(mu1, s1, mu2, s2), expected) < 1e-12
    assert _rel(frechet_distance_from_features(x1, x2), expected) < 1e-10
    labels = np.concatenate([np.repeat(np.arange(6), 50), np.repeat(np.arange(6, 11), 50)])
    fc = FIDComputer(np.concatenate([x1, x2]), labels, level="image")
    assert _rel(fc(range(6), range(6, 11)), expected) < 1e-10
    assert _rel(fc([0, 1, 2, 3, 4, 6], [5, 7, 8, 9, 10]), fc.from_scratch([0, 1, 2, 3, 4, 6], [5, 7, 8, 9, 10])) < 1e-10


# --------------------------------------------------------------------------- low-rank path


@pytest.mark.parametrize(
    "n1,n2,d",
    [(10, 14, 40), (25, 25, 40), (40, 41, 40), (12, 300, 40), (300, 9, 40), (2, 2, 5), (30, 80, 64)],
)
def test_low_rank_path_matches_dense_path(n1, n2, d):
    rng = np.random.default_rng(n1 * 1000 + n2)
    x1, x2 = _features(rng, n1, d, shift=3.0), _features(rng, n2, d, shift=3.2)
    mu1, s1 = gaussian_stats(x1)
    mu2, s2 = gaussian_stats(x2)
    low = frechet_distance_from_features(x1, x2)
    dense = frechet_distance(mu1, s1, mu2, s2)
    assert _rel(low, dense) < 1e-8
    # a direct check of the identity tr sqrt(Σ1^{1/2}Σ2Σ1^{1/2}) = ‖A Bᵀ‖_*
    a = (x1 - mu1) / np.sqrt(n1 - 1)
    b = (x2 - mu2) / np.sqrt(n2 - 1)
    nuc = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    assert _rel(low, float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * nuc)) < 1e-9


def test_low_rank_path_with_both_strategies(monkeypatch):
    # the "one small side" case can go through ‖ABᵀ‖_* or eig(A Σ2 Aᵀ); both exact
    rng = np.random.default_rng(5)
    x1, x2 = _features(rng, 15, 50), _features(rng, 400, 50, shift=0.4)
    values = []
    for prefer in (True, False):
        monkeypatch.setattr(dense, "_prefer_cross", lambda *a, _p=prefer, **k: _p)
        values.append(frechet_distance_from_features(x1, x2))
    assert _rel(values[0], values[1]) < 1e-10
    monkeypatch.setattr(dense, "SVD_MAX_DIM", 0)  # eigenvalues of the Gram instead of an SVD
    monkeypatch.setattr(dense, "_prefer_cross", lambda *a, **k: True)
    assert _rel(frechet_distance_from_features(x1, x2), values[0]) < 1e-9


def test_centered_factor_is_an_exact_factor():
    rng = np.random.default_rng(6)
    for n in (2, 3, 17):
        x = rng.standard_normal((n, 7)) + 10.0
        a = dense._centered_factor(x)
        assert a.shape == (n - 1, 7)
        np.testing.assert_allclose(a.T @ a, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("n,d", [(300, 20), (15, 20)])  # dense and low-rank paths
def test_identical_distributions_give_zero(n, d):
    rng = np.random.default_rng(7)
    x = _features(rng, n, d, shift=2.0)
    mu, s = gaussian_stats(x)
    scale = np.trace(s)
    assert abs(frechet_distance_from_features(x, x)) < 1e-9 * scale
    assert abs(frechet_distance_from_features(x, x[::-1].copy())) < 1e-9 * scale
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9 * scale


@pytest.mark.parametrize("n1,n2,d", [(200, 150, 20), (12, 150, 20), (12, 9, 20)])
def test_symmetry_and_translation(n1, n2, d):
    rng = np.random.default_rng(8)
    x1, x2 = _features(rng, n1, d), _features(rng, n2, d, shift=0.5)
    f12 = frechet_distance_from_features(x1, x2)
    assert _rel(frechet_distance_from_features(x2, x1), f12) < 1e-12
    v = rng.standard_normal(d)
    # a common translation changes nothing
    assert _rel(frechet_distance_from_features(x1 + v, x2 + v), f12) < 1e-10
    # translating one side adds |v|² + 2 v·(μ1 - μ2); for identical sets exactly |v|²
    mu1, mu2 = x1.mean(0), x2.mean(0)
    expected = f12 + v @ v + 2 * v @ (mu1 - mu2)
    assert _rel(frechet_distance_from_features(x1 + v, x2), expected) < 1e-10
    assert _rel(frechet_distance_from_features(x1, x1 + v), float(v @ v)) < 1e-9
    m, s = gaussian_stats(x1)
    assert _rel(frechet_distance(m, s, m + v, s), float(v @ v)) < 1e-9


# --------------------------------------------------------------------------- input checks


def test_function_input_errors():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((10, 4))
    mu, s = gaussian_stats(x)
    with pytest.raises(ValueError, match="2-D"):
        gaussian_stats(np.ones(5))
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_stats(np.ones((1, 5)))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_stats(bad)
    with pytest.raises(ValueError, match="different feature dimensions"):
        frechet_distance_from_features(x, rng.standard_normal((10, 5)))
    with pytest.raises(ValueError, match="x2: need at least 2 samples"):
        frechet_distance_from_features(x, x[:1])
    with pytest.raises(ValueError, match="different lengths"):
        frechet_distance(mu, s, mu[:3], s[:3, :3])
    with pytest.raises(ValueError, match=r"sigma2: expected shape \(4, 4\)"):
        frechet_distance(mu, s, mu, s[:3, :3])
    with pytest.raises(ValueError, match="mu1: expected a 1-D"):
        frechet_distance(s, s, mu, s)
    with pytest.raises(ValueError, match="sigma1: contains 1 non-finite"):
        s_bad = s.copy()
        s_bad[0, 0] = np.inf
        frechet_distance(mu, s_bad, mu, s)
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(mu, s + np.triu(np.ones((4, 4)), 1), mu, s)
    with pytest.raises(ValueError, match="numeric"):
        gaussian_stats(np.array([["a", "b"], ["c", "d"]]))


# --------------------------------------------------------------------------- FIDComputer


def _toy_problem(seed=0, num_classes=14, d=16, lo=4, hi=10):
    rng = np.random.default_rng(seed)
    counts = rng.integers(lo, hi, num_classes)
    labels = np.repeat(np.arange(num_classes), counts)
    perm = rng.permutation(labels.size)  # labels need not be sorted
    labels = labels[perm]
    centers = 2.0 * rng.standard_normal((num_classes, d))
    x = centers[labels] + rng.standard_normal((labels.size, d)) + 5.0
    return x.astype(np.float32), labels


def _side_points(x, labels, classes, level):
    x64 = x.astype(np.float64)
    if level == "class":
        return np.stack([x64[labels == c].mean(0) for c in sorted(classes)])
    return x64[np.isin(labels, sorted(classes))]


def _random_walk(rng, num_classes, steps, start_split):
    """A search-like sequence of (train, test): swaps, removals and additions."""
    train, test = set(start_split[0]), set(start_split[1])
    for _ in range(steps):
        op = rng.integers(0, 5)
        if op <= 1 and len(train) > 2 and len(test) > 2:  # swap k classes
            k = int(rng.integers(1, 3))
            a = rng.choice(sorted(train), size=min(k, len(train) - 2), replace=False)
            b = rng.choice(sorted(test), size=min(k, len(test) - 2), replace=False)
            train.difference_update(a.tolist()), test.difference_update(b.tolist())
            train.update(b.tolist()), test.update(a.tolist())
        elif op == 2 and len(train) > 2:
            train.discard(int(rng.choice(sorted(train))))
        elif op == 3 and len(test) > 2:
            test.discard(int(rng.choice(sorted(test))))
        else:
            free = sorted(set(range(num_classes)) - train - test)
            if free:
                (train if rng.random() < 0.5 else test).add(int(rng.choice(free)))
        yield sorted(train), sorted(test)


@pytest.mark.parametrize("level", ["class", "image"])
@pytest.mark.parametrize("refresh_every", [1000, 3])
def test_fid_computer_incremental_equals_from_scratch(level, refresh_every):
    # d = 40 and ~6.5 images per class: sides of ~6 classes sit at the dense / low-rank boundary
    x, labels = _toy_problem(seed=1, d=40)
    fc = FIDComputer(x, labels, level=level, refresh_every=refresh_every)
    rng = np.random.default_rng(2)
    start = (list(range(0, 7)), list(range(7, 14)))
    worst = 0.0
    for train, test in _random_walk(rng, 14, 80, start):
        # alternate argument order: the cached states must follow the sets, not the slots
        value = fc(train, test) if rng.random() < 0.7 else fc(test, train)
        ref = frechet_distance_from_features(
            _side_points(x, labels, train, level), _side_points(x, labels, test, level)
        )
        worst = max(worst, _rel(value, ref))
        assert _rel(fc.compute(train, test, incremental=False), ref) < 1e-9
    assert worst < 1e-9
    c = fc.counters
    if level == "image":
        # every path was exercised, and the dense one mostly through incremental updates
        assert c["path_dense"] > 5 and c["path_cross"] + c["path_factor_cov"] > 5
        if refresh_every > 100:
            assert c["incremental_updates"] > c["scratch_builds"]
        else:
            assert c["scratch_builds"] > 3


def test_fid_computer_class_level_with_more_classes_than_dims():
    # SOP-like: thousands of classes in few dims -> the class level takes the dense path too
    x, labels = _toy_problem(seed=8, num_classes=60, d=8, lo=2, hi=5)
    fc = FIDComputer(x, labels, level="class", refresh_every=4)
    rng = np.random.default_rng(9)
    for train, test in _random_walk(rng, 60, 25, (range(0, 30), range(30, 60))):
        ref = frechet_distance_from_features(
            _side_points(x, labels, train, "class"), _side_points(x, labels, test, "class")
        )
        assert _rel(fc(train, test), ref) < 1e-9
    assert fc.counters["path_dense"] > 10 and fc.counters["incremental_updates"] > 10


def test_fid_computer_class_level_is_fid_of_class_means():
    x, labels = _toy_problem(seed=5, num_classes=10, d=32)
    fc = FIDComputer(x, labels, level="class")
    means = np.stack([x[labels == c].astype(np.float64).mean(0) for c in range(10)])
    value = fc([0, 2, 4, 6, 8], np.array([1, 3, 5, 7, 9]))
    assert _rel(value, frechet_distance_from_features(means[0::2], means[1::2])) < 1e-10
    # stats(): mean, covariance and factor of one side, in the original coordinates
    mu, sigma, n = fc.stats([1, 3, 5, 7, 9])
    assert n == 5
    np.testing.assert_allclose(mu, means[1::2].mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(means[1::2], rowvar=False), rtol=1e-10, atol=1e-12)
    mu_f, a, n_f = fc.stats({1, 3, 5, 7, 9}, factor=True)
    assert a.shape == (4, 32) and n_f == 5
    np.testing.assert_allclose(a.T @ a, sigma, rtol=1e-10, atol=1e-12)


def test_fid_computer_cache_and_symmetry():
    x, labels = _toy_problem(seed=6)
    fc = FIDComputer(x, labels, level="image", cache_size=4)
    v1 = fc(range(0, 5), range(5, 10))
    assert fc(range(5, 10), range(0, 5)) == v1  # unordered key
    assert fc.counters["cache_hits"] == 1
    assert _rel(fc.from_scratch(range(5, 10), range(0, 5)), v1) < 1e-9
    for k in range(6):  # evict
        fc([k, 10], [11, 12])
    fc(range(0, 5), range(5, 10))
    assert fc.counters["cache_hits"] == 1
    fc.clear()
    assert _rel(fc(range(0, 5), range(5, 10)), v1) < 1e-9
    nocache = FIDComputer(x, labels, level="image", cache_size=0)
    nocache([0, 1], [2, 3])
    nocache([0, 1], [2, 3])
    assert nocache.counters["cache_hits"] == 0


def test_fid_computer_input_errors():
    x, labels = _toy_problem(seed=7, num_classes=6)
    fc = FIDComputer(x, labels, level="class")
    with pytest.raises(ValueError, match="train_classes: empty"):
        fc([], [1, 2])
    with pytest.raises(ValueError, match="test_classes: empty"):
        fc([0, 1], set())
    with pytest.raises(ValueError, match=r"overlap in 1 class id\(s\): \[2\]"):
        fc([0, 1, 2], [2, 3])
    with pytest.raises(ValueError, match=r"unknown class id\(s\) \[6\]"):
        fc([0, 1], [5, 6])
    with pytest.raises(ValueError, match=r"unknown class id\(s\) \[-1\]"):
        fc([-1, 1], [4, 5])
    with pytest.raises(ValueError, match="duplicate"):
        fc([0, 0, 1], [4, 5])
    with pytest.raises(ValueError, match="at least 2 classes"):
        fc([0], [4, 5])
    with pytest.raises(ValueError, match="integers"):
        fc([0.5, 1], [4, 5])
    with pytest.raises(ValueError, match="iterable"):
        fc("01", [4, 5])
    # an id below C without images
    labels_gap = np.where(labels == 3, 4, labels)
    fc_gap = FIDComputer(x, labels_gap, level="image")
    with pytest.raises(ValueError, match=r"class id\(s\) \[3\] have no images"):
        fc_gap([0, 3], [4, 5])
    with pytest.raises(ValueError, match="level must be"):
        FIDComputer(x, labels, level="pixel")
    with pytest.raises(ValueError, match="labels: expected shape"):
        FIDComputer(x, labels[:-1])
    with pytest.raises(ValueError, match="≥ 0"):
        FIDComputer(x, labels - 1)
    with pytest.raises(ValueError, match="integer class ids"):
        FIDComputer(x, labels + 0.5)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        FIDComputer(bad, labels)


# --------------------------------------------------------------------------- dense path on torch
def test_dense_backend_resolution():
    assert dense.resolve_dense_backend("scipy") == ("scipy", None)
    assert dense.resolve_dense_backend("torch", "cpu") == ("torch", "cpu")
    import torch

    auto = dense.resolve_dense_backend("auto")  # torch on a visible GPU, else scipy: faster on a CPU
    assert auto == (("torch", "cuda") if torch.cuda.is_available() else ("scipy", None))
    assert dense.resolve_dense_backend("auto", "cpu") == ("scipy", None)
    with pytest.raises(ValueError, match="dense backend"):
        dense.resolve_dense_backend("magma")
    with pytest.raises(ValueError, match="CPU only"):
        dense.resolve_dense_backend("scipy", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            dense.resolve_dense_backend("torch", "cuda")
    import os

    os.environ["OODML_FID_BACKEND"] = "scipy"
    try:
        assert dense.resolve_dense_backend("auto") == ("scipy", None)
        assert dense.resolve_dense_backend("torch", "cpu") == ("torch", "cpu")  # explicit wins
        os.environ["OODML_FID_BACKEND"] = "lapack"
        with pytest.raises(ValueError, match="OODML_FID_BACKEND"):
            dense.resolve_dense_backend("auto")
    finally:
        del os.environ["OODML_FID_BACKEND"]
    # class level never needs the dense path (nor torch)
    x, labels = _toy_problem(seed=3)
    assert FIDComputer(x, labels, level="class", dense_backend="torch").dense_backend == "scipy"


def test_auto_looks_for_a_gpu_without_importing_torch_on_a_machine_without_one(monkeypatch):
    """torch's answer once it is imported; else the driver's device files (and CUDA_VISIBLE_DEVICES)."""
    import subprocess
    import sys
    import types

    monkeypatch.setitem(
        sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True))
    )
    assert dense._gpu_may_be_visible()
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(dense.os.path, "exists", lambda p: p == "/dev/nvidiactl")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert dense._gpu_may_be_visible()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not dense._gpu_may_be_visible()
    monkeypatch.undo()
    if not dense._gpu_may_be_visible():  # this machine: no GPU, so no torch import at image level
        code = (
            "import sys\nfrom oodml.shift.dense import resolve_dense_backend\n"
            "assert resolve_dense_backend('auto') == ('scipy', None)\nassert 'torch' not in sys.modules\n"
        )
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("d", [8, 200])  # below and above the 2 x 2 blocking threshold (h >= 64)
def test_torch_dense_trace_sqrt_equals_the_lapack_path(d):
    """The device-agnostic float64 path (here on the CPU; the same code runs on CUDA) against
    scipy's potrf + sygst + syevd, on PD, singular and swapped-role inputs."""
    from oodml.threads import torch_threads

    with torch_threads(1):  # small problems: one thread (quick on a shared machine too)
        _check_torch_dense_path(d)


def _check_torch_dense_path(d):
    rng = np.random.default_rng(d)
    a = _features(rng, 3 * d, d, rank=max(2, d // 4))
    b = _features(rng, 3 * d, d, rank=max(2, d // 3), shift=0.5)
    s1, s2 = dense._lstore(np.cov(a, rowvar=False)), dense._lstore(np.cov(b, rowvar=False))
    ref = dense._trace_sqrt_sym(s1.copy(order="F"), s2.copy(order="F"))
    got = dense._trace_sqrt_dense_torch(s1, s2, "cpu")
    assert _rel(got, ref) < 1e-12
    # the first matrix singular: Cholesky of the second one instead (as on the LAPACK path)
    low = dense._lstore(np.cov(a[: d // 2], rowvar=False))
    ref2 = dense._trace_sqrt_sym(low.copy(order="F"), s2.copy(order="F"))
    assert _rel(dense._trace_sqrt_dense_torch(low, s2, "cpu"), ref2) < 1e-10
    # both singular: None, the caller takes the eigendecomposition fallback
    assert dense._trace_sqrt_dense_torch(low, low.copy(order="F"), "cpu") is None


@pytest.mark.parametrize("blas_threads", [None, 1])
def test_fid_computer_torch_backend_equals_scipy_backend(blas_threads):
    x, labels = _toy_problem(seed=4, num_classes=12, d=24, lo=8, hi=14)
    x[:, 5] = 1.0  # a dead unit: restricted away on both backends
    fcs = FIDComputer(x, labels, level="image", dense_backend="scipy")
    fct = FIDComputer(x, labels, level="image", dense_backend="torch", device="cpu", blas_threads=blas_threads)
    rng = np.random.default_rng(5)
    for train, test in _random_walk(rng, 12, 30, (list(range(6)), list(range(6, 12)))):
        a, b = fcs(train, test), fct(train, test)
        assert _rel(b, a) < 1e-10
        assert _rel(fct.compute(train, test, incremental=False), a) < 1e-10
    assert fct.counters["path_dense"] > 5 and fct.counters["incremental_updates"] > 0


def test_old_import_path_oodml_fid_is_the_same_objects():
    import oodml.fid as old

    assert old.FIDComputer is FIDComputer and old.frechet_distance is frechet_distance
    assert old.gaussian_stats is gaussian_stats and old.trace_sqrt_product is trace_sqrt_product
    assert old._lstore is dense._lstore and old.EIGH_DRIVER == dense.EIGH_DRIVER
