"""From a dataset (or a features file) to a written split file: :func:`make_splits`, the Python
call behind ``python -m oodml.make_splits``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from oodml.datasets import canonical_name, load_dataset
from oodml.errors import OodmlError
from oodml.features.files import standard_split_for_features  # no torch
from oodml.features.prefetch import load_features_file  # the table the entry point began to read, if any
from oodml.io import atomic_write, file_digest
from oodml.splits.controls import make_controls
from oodml.splits.document import build_split_document
from oodml.splits.file import SplitFile, split_file_from_document, validate_split_document
from oodml.splits.jsontext import dumps_split_document
from oodml.splits.params import SearchParams

__all__ = ["make_splits"]


def _table_from_featureset(fs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features (n, d), labels (n,) int ids into classes, classes)`` of a feature set."""
    classes = list(fs.classes)
    index = {c: i for i, c in enumerate(classes)}
    try:
        lab = np.asarray(fs.class_ids(), dtype=np.int64)
    except Exception:  # noqa: BLE001 - fall back to the names
        lab = np.asarray([index[c] for c in fs.labels], dtype=np.int64)
    return np.asarray(fs.features), lab, classes


def make_splits(
    dataset: str | None = None,
    *,
    root=None,
    download: bool = False,
    extractor: str | None = None,
    weights=None,
    features_file=None,
    params: SearchParams | None = None,
    seed: int = 0,
    out=None,
    progress: bool = True,
    controls: int = 0,
    swap_unit: str = "class",
    on_series: Callable[[dict], None] | None = None,
) -> SplitFile:
    """Search, select and (with ``out``) write the split series of a dataset.

    ``swap_unit="superclass"`` moves whole superclasses (the dataset's, or the features file's
    ``superclasses`` array), as the ooDML reference's ``--super`` option did for SOP.

    Features: ``features_file`` (an ``.npz`` written by :mod:`oodml.features`, no dataset needed)
    or :func:`oodml.features.extract_features` on the loaded dataset (cached) with ``extractor``
    (default: the dataset's default extractor) and ``weights``.  ``controls``: draws of matched
    random-removal controls per removal split (:mod:`oodml.splits.controls`).  ``on_series``: called
    with the figure's view of the document as soon as the series is selected
    (:func:`~oodml.splits.document.assemble_document`).  Returns the :class:`SplitFile`.
    """
    p = params or SearchParams()
    if swap_unit not in ("class", "superclass"):
        raise OodmlError(f"swap unit must be 'class' or 'superclass', got {swap_unit!r}")
    superclasses = swap_unit == "superclass"
    if features_file is not None:
        doc, x, lab = _from_features_file(features_file, dataset, p, seed, progress, superclasses, on_series)
    else:
        doc, x, lab = _from_dataset(
            dataset, root, download, extractor, weights, p, seed, progress, superclasses, on_series
        )
    if controls:
        doc["controls"] = make_controls(doc, x, lab, draws=controls, seed=seed, params=p)
    text = dumps_split_document(doc)  # serialised once: validated, written and returned from the same text
    plain = json.loads(text)
    validate_split_document(plain, str(out) if out else "<new split file>")
    if out is not None:
        atomic_write(out, text)
    return split_file_from_document(plain, out)


def _from_features_file(
    features_file, dataset, p: SearchParams, seed: int, progress: bool, superclasses: bool, on_series=None
):
    """The split document of a features file (no dataset, no torch): ``(doc, features, labels)``."""
    with ThreadPoolExecutor(1) as pool:  # hashlib releases the GIL: the MD5 overlaps reading and search
        md5 = pool.submit(file_digest, features_file)
        doc, x, lab = _document_of_file(features_file, dataset, p, seed, progress, superclasses, on_series)
        doc["provenance"]["features_md5"] = md5.result()  # its key was placed with the other provenance
    return doc, x, lab


def _document_of_file(features_file, dataset, p: SearchParams, seed, progress, superclasses, on_series):
    """``(doc, features, labels)`` of a features file; ``provenance.features_md5`` is left for the caller."""
    fs = load_features_file(features_file)
    x, lab, classes = _table_from_featureset(fs)
    std_train, std_test = standard_split_for_features(fs)
    name = dataset or getattr(fs, "dataset", None) or getattr(fs, "dataset_name", None) or Path(features_file).stem
    extra = {"features_file": Path(features_file).name, "features_md5": None}
    sup_of = None
    if superclasses:
        sup_of = [None] * len(classes)
        for c, sup in zip(lab.tolist(), getattr(fs, "superclasses", None) or []):
            sup_of[c] = sup
    doc = build_split_document(
        x,
        lab,
        classes,
        list(std_train),
        list(std_test),
        p,
        seed=seed,
        dataset=str(name),
        fingerprint=str(getattr(fs, "fingerprint", "") or ""),
        extractor=str(getattr(fs, "extractor", "") or ""),
        source="features-file",
        extra_provenance=extra,
        progress=progress,
        superclass_of=sup_of,
        on_series=on_series,
    )
    return doc, x, lab


def _from_dataset(
    dataset, root, download, extractor, weights, p: SearchParams, seed, progress, superclasses: bool, on_series=None
):
    """The split document of a dataset, on its (cached) extracted features: ``(doc, features, labels)``."""
    from oodml import features as feats  # torch ≈ 3.6 s (and timm): only when features are extracted

    ds = load_dataset(dataset, root=root, download=download)
    ext = extractor or feats.default_extractor(canonical_name(dataset) if dataset else ds.name)
    fs = feats.extract_features(ds, ext, weights=weights, progress=progress)
    x, lab, fclasses = _table_from_featureset(fs)
    if len(x) != len(ds):
        raise OodmlError(f"features have {len(x)} rows but dataset {ds.name!r} has {len(ds)} images")
    # labels as ids into the dataset's class order (image id = dataset item index)
    ds_index = {c: i for i, c in enumerate(ds.classes)}
    lab = np.asarray([ds_index[fclasses[i]] for i in lab.tolist()], dtype=np.int64)
    extra = {"weights": os.path.basename(str(weights)) if weights else None}
    sup_of = None
    if superclasses:
        sup_of = [None] * len(ds.classes)
        for it in ds.items:
            sup_of[ds_index[it.label]] = it.superclass
    doc = build_split_document(
        x,
        lab,
        ds.classes,
        ds.train_classes,
        ds.test_classes,
        p,
        seed=seed,
        dataset=ds.name,
        fingerprint=ds.fingerprint(),
        extractor=str(getattr(fs, "extractor", ext)),
        source="search",
        extra_provenance=extra,
        progress=progress,
        superclass_of=sup_of,
        on_series=on_series,
    )
    return doc, x, lab
