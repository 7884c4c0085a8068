"""Shared helpers of the analysis tests: synthetic results tables and a small real split file.

Tests cannot import each other (pytest runs in importlib mode), so the helpers are fixtures that
return the functions: ``synthetic(datasets, losses, seeds, adaptation=(), rng_seed=0)`` and
``split_file(path) -> (path, fids)``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from oodml.analysis import REQUIRED_COLUMNS

COLS = list(REQUIRED_COLUMNS)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")


def _synthetic(datasets, losses, seeds, adaptation=(), rng_seed=0) -> pd.DataFrame:
    """Long results table: zero-shot recall@1/map@r per (dataset, split, loss, seed); for the
    datasets in ``adaptation`` also few-shot (k=2 with gain rows, k=5 without: gain computed)
    and linear-probe rows."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for ds, fids in datasets.items():
        for li, loss in enumerate(losses):
            for seed in seeds:
                for sid, fid in enumerate(fids, 1):
                    run = f"{ds}-{loss}-{sid}-{seed}"
                    base = dict(study="synthetic", dataset=ds, split=sid, fid=fid, loss=loss, seed=seed, run_id=run)
                    r1 = 0.8 - 0.05 * li - (0.3 + 0.05 * li) * sid / len(fids) + rng.normal(0, 0.01)
                    rows.append({**base, "stage": "zero-shot", "metric": "recall@1", "value": r1, "ci95": None})
                    rows.append({**base, "stage": "zero-shot", "metric": "map@r", "value": r1 / 2, "ci95": None})
                    if ds in adaptation:
                        gain = 0.02 * sid + rng.normal(0, 0.005)
                        rows.append(
                            {**base, "stage": "few-shot-2", "metric": "recall@1", "value": r1 + gain, "ci95": 0.01}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-2", "metric": "recall@1_zero_shot", "value": r1, "ci95": 0.01}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-2", "metric": "recall@1_gain", "value": gain, "ci95": 0.004}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-5", "metric": "recall@1", "value": r1 + 2 * gain, "ci95": 0.01}
                        )
                        rows.append(
                            {**base, "stage": "few-shot-5", "metric": "recall@1_zero_shot", "value": r1, "ci95": 0.01}
                        )
                        for feat, setting in itertools.product(("embedding", "backbone"), ("2shot", "half")):
                            rows.append(
                                {
                                    **base,
                                    "stage": "linear-probe",
                                    "metric": f"top1_{feat}_{setting}",
                                    "value": 0.5 - 0.1 * sid + rng.normal(0, 0.01),
                                    "ci95": None,
                                }
                            )
    return pd.DataFrame(rows, columns=COLS)


def _split_file(path: Path) -> Path:
    from oodml.splits import SearchParams, build_split_document, write_split_document

    rng = np.random.default_rng(0)
    C, per = 16, 4
    centres = rng.normal(size=(C, 6)) * np.linspace(0.2, 2.0, C)[:, None]
    x = np.repeat(centres, per, 0) + rng.normal(size=(C * per, 6)) * 0.5
    cls = [f"c{i:02d}" for i in range(C)]
    doc = build_split_document(
        x,
        np.repeat(np.arange(C), per),
        cls,
        cls[: C // 2],
        cls[C // 2 :],
        SearchParams(num_splits=3, patience=2, min_classes=4, episodes=1, shots=(1,)),
        dataset="glyphs",
        extractor="pixels",
    )
    return write_split_document(path, doc), [s["fid"] for s in doc["series"]]


@pytest.fixture(scope="session")
def synthetic():
    """The synthetic results-table builder (a function)."""
    return _synthetic


@pytest.fixture(scope="session")
def split_file():
    """The small split-file builder (a function)."""
    return _split_file
