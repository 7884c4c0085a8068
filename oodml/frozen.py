"""A no-training reference on every split: the frozen extractor's own features, scored like a model.

What does DML training add under each shift?  The answer needs a baseline measured the same way
on the same images: the features of a frozen network (the one that measured the FID, an ImageNet
backbone, or a foundation model's embeddings from a features file), scored with the retrieval
metrics of :func:`oodml.evaluate.evaluate_embeddings` on each split's test classes, exactly as a
trained run's test metrics are.

A study asks for it with the ``frozen`` key::

    frozen: true                          # the extractor that graded the split file
    frozen: [pixels, resnet50]            # extractors by name (features cached, see oodml.features)
    frozen: [{name: clip, features_file: feats/clip.npz}]   # a table computed elsewhere

and ``python -m oodml.study collect`` adds the rows to the results table with ``loss`` =
``frozen:<name>`` (``run_id`` the same), one row per study seed with the same value (the reference
is deterministic: its interval over seeds is zero wide, and paired tests against it pair every
trained seed with it).  The curves draw it as a dashed line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oodml import features as feats  # lazy package: torch only if an extractor runs
from oodml.datasets import load_dataset
from oodml.errors import BadInputError
from oodml.evaluate import evaluate_embeddings
from oodml.io import read_json

__all__ = ["FROZEN_PREFIX", "frozen_metrics", "frozen_rows", "frozen_specs", "is_frozen"]

FROZEN_PREFIX = "frozen:"
TEST_METRICS = ("recall", "precision@1", "r_precision", "map@r", "nmi")


def is_frozen(loss: str) -> bool:
    """Whether a results-table ``loss`` is a frozen reference (``frozen:<name>``)."""
    return str(loss).startswith(FROZEN_PREFIX)


def frozen_specs(value: Any, study_path: Path, base: Path) -> list[dict]:
    """Normalise a study's ``frozen`` key to ``[{"name", "extractor", "features_file"}]``
    (``extractor`` None = the split file's own)."""
    if value in (None, False):
        return []
    items = [value] if not isinstance(value, list) else value
    specs = []
    for it in items:
        if it is True:
            specs.append({"name": None, "extractor": None, "features_file": None})
        elif isinstance(it, str) and it:
            specs.append({"name": it, "extractor": it, "features_file": None})
        elif isinstance(it, dict) and set(it) <= {"name", "features_file"} and it.get("features_file"):
            p = Path(str(it["features_file"])).expanduser()
            p = p if p.is_absolute() else base / p
            specs.append({"name": str(it.get("name") or p.stem), "extractor": None, "features_file": str(p)})
        else:
            raise BadInputError(
                f"{study_path}: frozen must be true, extractor names, or {{name, features_file}} entries, got {it!r}"
            )
    return specs


def frozen_metrics(
    features: np.ndarray, labels: Sequence[str], test_classes: Sequence[str], *, ks: Any = "default"
) -> dict[str, float]:
    """Retrieval metrics of frozen ``features`` (n, d) on the rows whose label is a test class
    (leave-one-out, the trained runs' test protocol)."""
    test = set(test_classes)
    rows = np.fromiter((i for i, c in enumerate(labels) if c in test), dtype=np.int64)
    if len(rows) < 2:
        raise BadInputError(
            f"the frozen features have {len(rows)} rows of the split's test classes; "
            "were they computed on the same dataset?"
        )
    lab = np.asarray([labels[i] for i in rows])
    return evaluate_embeddings(np.asarray(features)[rows], lab, ks=ks, metrics=TEST_METRICS)


def frozen_rows(study, *, progress: bool = False) -> list[dict]:
    """Results rows of the study's frozen references on every (dataset, split) of its grid."""
    specs = frozen_specs(study.raw.get("frozen"), study.path, study.base_dir)
    if not specs:
        return []
    shared = study.raw.get("train") or {}
    rows: list[dict] = []
    for ds in study.datasets:
        cells = sorted(
            {(r.split, r.fid) for r in study.runs if r.dataset == ds["name"]},
            key=lambda c: -1 if c[0] is None else c[0],
        )
        if ds["splits"] is None:
            raise BadInputError(f"{study.path}: frozen references need a split file for dataset {ds['name']!r}")
        doc = read_json(Path(ds["splits"]), "split file")
        entries = {int(s["id"]): s for s in list(doc["series"]) + list(doc.get("controls") or [])}
        ks = shared.get("ks") or ("sop" if ds["name"] == "sop" else "default")
        dataset = None
        for spec in specs:
            if spec["features_file"]:
                fs = feats.load_features_file(spec["features_file"])
            else:
                if dataset is None:
                    dataset = load_dataset(ds["name"], root=ds["root"])
                ext = spec["extractor"] or doc.get("provenance", {}).get("extractor") or None
                fs = feats.extract_features(dataset, ext, progress=progress)
            name = FROZEN_PREFIX + (spec["name"] or str(fs.extractor))
            for split, fid in cells:
                e = entries[int(split)]
                m = frozen_metrics(fs.features, fs.labels, e["test"], ks=ks)
                for seed in study.seeds:
                    for metric, value in m.items():
                        rows.append(
                            {
                                "study": study.name,
                                "dataset": ds["name"],
                                "split": split,
                                "fid": fid,
                                "loss": name,
                                "seed": seed,
                                "stage": "zero-shot",
                                "metric": str(metric),
                                "value": float(value),
                                "ci95": None,
                                "run_id": name,
                            }
                        )
    return rows
