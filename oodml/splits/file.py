"""The split file: :class:`Split` and :class:`SplitFile`, validation
(:func:`validate_split_document`, one named check per part of the document, the class-count
controls included), reading (:func:`load_splits`) and writing (:func:`write_split_document`)."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oodml.errors import BadInputError
from oodml.io import atomic_write, read_json
from oodml.splits.jsontext import dumps_split_document
from oodml.splits.params import KNOWN_SCHEMAS, PHASES
from oodml.splits.published import resolve_names_only

__all__ = [
    "CONTROL_PHASE",
    "Split",
    "SplitFile",
    "load_splits",
    "split_file_from_document",
    "validate_controls",
    "validate_split_document",
    "write_split_document",
]

#: Phase of a class-count control (:mod:`oodml.splits.controls`).
CONTROL_PHASE = "control"


@dataclass
class Split:
    """One split of a series (see the module docstring)."""

    id: int
    fid: float
    phase: str
    step: int
    standard: bool
    train: list[str]
    test: list[str]
    val: list[str]
    episodes: dict[int, list[dict[str, list[int]]]]
    n_train_images: int = 0
    n_test_images: int = 0
    control_of: int | None = None  # a class-count control: the series id it matches (oodml.splits.controls)
    draw: int | None = None

    @property
    def fit_classes(self) -> list[str]:
        """Train classes minus validation classes, in order (what a model is fitted on)."""
        v = set(self.val)
        return [c for c in self.train if c not in v]


@dataclass
class SplitFile:
    """A validated split file."""

    path: Path | None
    schema: str
    provenance: dict
    classes: list[str]
    num_images: int
    trajectory: list[dict]
    series: list[Split]
    raw: dict = field(repr=False, default_factory=dict)
    controls: list[Split] = field(default_factory=list)  # class-count controls (oodml.splits.controls)

    @property
    def dataset(self) -> str:
        return str(self.provenance.get("dataset", ""))

    @property
    def ids(self) -> list[int]:
        return [s.id for s in self.series]

    def get(self, id: int) -> Split:
        """The split with this id (clear error listing the ids otherwise)."""
        for s in self.series + self.controls:
            if s.id == int(id):
                return s
        more = f" (controls {[c.id for c in self.controls]})" if self.controls else ""
        raise BadInputError(f"split file {self.path}: no split with id {id}; ids are {self.ids}{more}")

    @property
    def standard(self) -> Split | None:
        return next((s for s in self.series if s.standard), None)


def _fail(source: str, msg: str) -> None:
    raise BadInputError(f"split file {source}: {msg}; regenerate it with python -m oodml.make_splits")


def _str_list(x, source, what) -> list[str]:
    if not isinstance(x, list) or not all(isinstance(v, str) for v in x):
        _fail(source, f"{what} must be a list of class names")
    return x


def _is_number(f) -> bool:
    return isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f)


def validate_split_document(doc: Any, source: str = "<document>", dataset=None) -> None:
    """Check a split document; raise :class:`BadInputError` naming ``source`` on the first problem.

    Checks: known schema; required fields; class list unique; every split's train/test non-empty,
    disjoint and made of known classes; ``val ⊂ train``; ids unique positive integers running in
    order of FID; FIDs finite; episodes (k-shot: k distinct ids of that class, within
    ``num_images``); trajectory steps 0, 1, … with known phases.  With ``dataset`` (an
    :class:`~oodml.datasets.ImageDataset`): every class exists in the dataset, the image count
    matches, and episode image ids belong to their class.
    """
    classes = _check_header(doc, source)
    # a names-only import (oodml.splits.published): episodes name image files, resolved on load
    names_only = bool(doc["provenance"].get("names_only"))
    if names_only and dataset is not None:
        doc = resolve_names_only(doc, dataset, source)
        return validate_split_document(doc, source, dataset)
    n_img = doc["num_images"]
    if not isinstance(n_img, int) or n_img < 0:
        _fail(source, "num_images must be a non-negative integer")
    known = set(classes)
    _check_trajectory(doc["trajectory"], known, source)
    series = doc["series"]
    if not isinstance(series, list) or not series:
        _fail(source, "series must be a non-empty list")
    if dataset is not None:
        _check_against_dataset(doc, classes, n_img, dataset, source)
    labels = np.asarray(dataset.label_names, dtype=object) if dataset is not None else None
    ids, prev_fid = set(), -math.inf
    for s in series:
        prev_fid = _check_entry(s, ids, prev_fid, source)
        test = _check_sides(s, known, source)
        _check_episodes(s, test, n_img, names_only, labels, dataset, source)
    if doc.get("controls") is not None:
        validate_controls(doc, source, dataset)


def _check_header(doc: Any, source: str) -> list[str]:
    """Schema, required fields, provenance object, unique class list; returns the classes."""
    if not isinstance(doc, dict):
        _fail(source, "is not a JSON object")
    schema = doc.get("schema")
    if schema not in KNOWN_SCHEMAS:
        raise BadInputError(
            f"split file {source}: unknown schema {schema!r} (this oodml reads {', '.join(KNOWN_SCHEMAS)}); "
            "regenerate it with python -m oodml.make_splits or upgrade oodml"
        )
    for key in ("provenance", "classes", "num_images", "trajectory", "series"):
        if key not in doc:
            _fail(source, f"missing field {key!r}")
    if not isinstance(doc["provenance"], dict):
        _fail(source, "provenance must be an object")
    classes = _str_list(doc["classes"], source, "classes")
    if len(set(classes)) != len(classes):
        dup = next(c for c in classes if classes.count(c) > 1)
        _fail(source, f"class {dup!r} is listed twice in classes")
    return classes


def _check_trajectory(traj: Any, known: set[str], source: str) -> None:
    """Steps 0, 1, … with known phases, numeric (or null) FIDs and moves of known classes."""
    if not isinstance(traj, list):
        _fail(source, "trajectory must be a list")
    for i, r in enumerate(traj):
        if not isinstance(r, dict) or r.get("step") != i:
            _fail(source, f"trajectory record {i} must be an object with step {i}")
        if r.get("phase") not in PHASES:
            _fail(source, f"trajectory step {i} has unknown phase {r.get('phase')!r} (known: {', '.join(PHASES)})")
        f = r.get("fid")
        if f is not None and not _is_number(f):
            _fail(source, f"trajectory step {i} has a non-numeric fid {f!r}")
        for k in ("to_test", "to_train", "removed"):
            bad = [c for c in _str_list(r.get(k, []), source, f"trajectory step {i} {k}") if c not in known]
            if bad:
                _fail(source, f"trajectory step {i} names unknown class {bad[0]!r}")


def _check_against_dataset(doc: dict, classes: list[str], n_img: int, dataset, source: str) -> None:
    """Every class exists in ``dataset`` and the image count matches (a changed fingerprint warns)."""
    ds_classes = set(dataset.classes)
    missing = [c for c in classes if c not in ds_classes]
    if missing:
        raise BadInputError(
            f"split file {source}: class {missing[0]!r} does not exist in dataset {dataset.name!r} "
            f"({len(missing)} unknown); the file was made for another dataset or version: regenerate it"
        )
    if n_img != len(dataset):
        raise BadInputError(
            f"split file {source}: made for {n_img} images but dataset {dataset.name!r} has {len(dataset)}; "
            "its episode image ids would be wrong: regenerate it"
        )
    fp = doc["provenance"].get("fingerprint")
    if fp and fp != dataset.fingerprint():
        warnings.warn(
            f"split file {source}: dataset fingerprint differs from {dataset.name!r} at {dataset.root} "
            "(the dataset content changed since the file was made)",
            stacklevel=3,  # the caller of validate_split_document, as before the checks were cut into steps
        )


def _check_entry(s: Any, ids: set, prev_fid: float, source: str) -> float:
    """A series entry is an object with a new positive id and a finite FID not below the previous
    one; returns its FID."""
    if not isinstance(s, dict):
        _fail(source, "every series entry must be an object")
    sid = s.get("id")
    if not isinstance(sid, int) or isinstance(sid, bool) or sid < 1:
        _fail(source, f"split id {sid!r} is not a positive integer")
    if sid in ids:
        _fail(source, f"split id {sid} appears twice")
    ids.add(sid)
    f = s.get("fid")
    if not _is_number(f):
        _fail(source, f"split {sid} has a non-numeric fid {f!r}")
    if f < prev_fid:
        _fail(source, f"split {sid} has FID {f} below the previous split's {prev_fid}: ids must run in order of FID")
    return f


def _check_sides(s: dict, known: set[str], source: str) -> list[str]:
    """Train and test non-empty, without repeats, of known classes, disjoint; ``val ⊂ train``.
    Returns the test classes."""
    sid = s["id"]
    train = _str_list(s.get("train"), source, f"split {sid} train")
    test = _str_list(s.get("test"), source, f"split {sid} test")
    val = _str_list(s.get("val", []), source, f"split {sid} val")
    if not train or not test:
        _fail(source, f"split {sid} has an empty side")
    for side, names in (("train", train), ("test", test)):
        if len(set(names)) != len(names):
            _fail(source, f"split {sid} lists a {side} class twice")
        bad = [c for c in names if c not in known]
        if bad:
            _fail(source, f"split {sid} {side} names unknown class {bad[0]!r}")
    both = set(train) & set(test)
    if both:
        _fail(source, f"split {sid}: class {sorted(both)[0]!r} is on both train and test sides")
    if not set(val) <= set(train):
        _fail(source, f"split {sid}: validation class {sorted(set(val) - set(train))[0]!r} is not a train class")
    return test


def _check_episodes(s: dict, test: list[str], n_img: int, names_only: bool, labels, dataset, source: str) -> None:
    """Episodes keyed by positive shots ``k``: lists of ``{test class: k distinct image ids}``
    (image file names in a names-only file); with a dataset (``labels``: its class name per
    image, an object array), every id belongs to its class."""
    sid = s["id"]
    eps = s.get("episodes", {})
    if not isinstance(eps, dict):
        _fail(source, f"split {sid} episodes must be an object keyed by shots")
    test_set = set(test)
    for k_str, lst in eps.items():
        if not (isinstance(k_str, str) and k_str.isdigit() and int(k_str) > 0):
            _fail(source, f"split {sid} episodes key {k_str!r} is not a positive number of shots")
        k = int(k_str)
        if not isinstance(lst, list):
            _fail(source, f"split {sid} {k}-shot episodes must be a list")
        for e, ep in enumerate(lst):
            if not isinstance(ep, dict):
                _fail(source, f"split {sid} {k}-shot episode {e} must be an object")
            if not names_only and _episode_ids_valid(ep, k, n_img, test_set, labels):
                continue  # the whole episode checked at once (SOP: 11k classes per episode)
            for c, sup in ep.items():
                if c not in test_set:
                    _fail(source, f"split {sid} {k}-shot episode {e} names {c!r}, which is not a test class")
                where = f"split {sid} {k}-shot episode {e} class {c!r}"
                if names_only:
                    _check_support_names(sup, k, where, source)
                    continue
                _check_support_ids(sup, k, n_img, where, source)
                if labels is not None and any(labels[i] != c for i in sup):
                    bad_i = next(i for i in sup if labels[i] != c)
                    raise BadInputError(
                        f"split file {source}: split {sid} {k}-shot episode {e} gives image {bad_i} to class "
                        f"{c!r} but it belongs to {labels[bad_i]!r} in dataset {dataset.name!r}; regenerate it"
                    )


def _episode_ids_valid(ep: dict, k: int, n_img: int, test_set: set, label_arr=None) -> bool:
    """True when every class of the episode is a test class with ``k`` distinct image ids in
    ``0..n_img-1`` (plain ints), each of that class when ``label_arr`` (the dataset's class name
    per image) is given: the checks of the per-class loop, vectorised.  False sends the episode
    through that loop, which names the first fault."""
    if not ep.keys() <= test_set:
        return False
    sups = list(ep.values())
    if not all(type(sup) is list and len(sup) == k for sup in sups):
        return False
    flat = [i for sup in sups for i in sup]
    if not flat:
        return True
    if set(map(type, flat)) != {int}:  # bools and floats (and ints beyond int64) take the loop
        return False
    try:
        ids = np.asarray(flat, dtype=np.int64).reshape(len(sups), k)
    except OverflowError:
        return False
    if ids.min() < 0 or ids.max() >= n_img:
        return False
    if label_arr is not None and not np.all(label_arr[ids] == np.asarray(list(ep), dtype=object)[:, None]):
        return False
    ids.sort(axis=1)
    return bool(np.all(ids[:, 1:] != ids[:, :-1]))


def _check_support_names(sup: Any, k: int, where: str, source: str) -> None:
    if (
        not isinstance(sup, list)
        or len(sup) != k
        or len(set(sup)) != k
        or not all(isinstance(i, str) and i for i in sup)
    ):
        _fail(source, f"{where} needs {k} distinct image file names")


def _check_support_ids(sup: Any, k: int, n_img: int, where: str, source: str) -> None:
    if (
        not isinstance(sup, list)
        or len(sup) != k
        or len(set(sup)) != k
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_img for i in sup)
    ):
        _fail(source, f"{where} needs {k} distinct image ids in 0..{n_img - 1}")


def validate_controls(doc: dict, source: str, dataset=None) -> None:
    """Check a split document's ``controls`` (when present): each entry is a valid split (the
    series rules: known classes, disjoint sides, ``val ⊂ train``, episodes), its id is unique
    among series and controls, ``control_of`` names a series split, its sides are drawn from the
    standard split's and have the sizes of the split it controls."""

    controls = doc.get("controls")
    if controls is None:
        return
    if not isinstance(controls, list):
        _fail(source, "controls must be a list")
    series = {s["id"]: s for s in doc["series"]}
    standard = next((s for s in doc["series"] if s.get("standard")), None)
    seen = set(series)
    for c in controls:
        if not isinstance(c, dict):
            _fail(source, "every controls entry must be an object")
        cid = c.get("id")
        if cid in seen:
            _fail(source, f"control id {cid!r} is used twice (ids are shared by series and controls)")
        validate_split_document({**doc, "series": [c], "trajectory": [], "controls": None}, source, dataset)
        seen.add(cid)
        ref = series.get(c.get("control_of"))
        if ref is None:
            _fail(source, f"control {cid} has control_of {c.get('control_of')!r}, which is not a series split id")
        if c.get("phase") != CONTROL_PHASE:
            _fail(source, f"control {cid} must have phase {CONTROL_PHASE!r}")
        if standard is None:
            _fail(source, f"control {cid} needs a standard split in the series to be drawn from")
        for side in ("train", "test"):
            extra = set(c[side]) - set(standard[side])
            if extra:
                _fail(source, f"control {cid} {side} class {sorted(extra)[0]!r} is not a standard {side} class")
            if len(c[side]) != len(ref[side]):
                _fail(
                    source,
                    f"control {cid} has {len(c[side])} {side} classes but split {ref['id']} it controls "
                    f"has {len(ref[side])}",
                )


def _to_split(s: dict) -> Split:
    eps = {int(k): [{c: list(v) for c, v in ep.items()} for ep in lst] for k, lst in s.get("episodes", {}).items()}
    return Split(
        id=s["id"],
        fid=float(s["fid"]),
        phase=s.get("phase", ""),
        step=int(s.get("step", -1)),
        standard=bool(s.get("standard", False)),
        train=list(s["train"]),
        test=list(s["test"]),
        val=list(s.get("val", [])),
        episodes=eps,
        n_train_images=int(s.get("n_train_images", 0)),
        n_test_images=int(s.get("n_test_images", 0)),
        control_of=s.get("control_of"),
        draw=s.get("draw"),
    )


def split_file_from_document(doc: dict, path=None) -> SplitFile:
    """A :class:`SplitFile` of an already validated (and, with a dataset, resolved) document."""
    return SplitFile(
        path=Path(path) if path is not None else None,
        schema=doc["schema"],
        provenance=doc["provenance"],
        classes=list(doc["classes"]),
        num_images=int(doc["num_images"]),
        trajectory=list(doc["trajectory"]),
        series=[_to_split(s) for s in doc["series"]],
        raw=doc,
        controls=[_to_split(c) for c in doc.get("controls") or []],
    )


def load_splits(path, dataset=None) -> SplitFile:
    """Read and validate a split file (see :func:`validate_split_document`).

    ``dataset``: an :class:`~oodml.datasets.ImageDataset` to check the classes and episode
    image ids against.  Errors are :class:`~oodml.errors.BadInputError` naming the file.
    """
    path = Path(path)
    doc = read_json(path, what="split file")
    validate_split_document(doc, str(path), dataset)
    if dataset is not None and isinstance(doc.get("provenance"), dict) and doc["provenance"].get("names_only"):
        doc = resolve_names_only(doc, dataset, str(path))  # names -> this dataset's classes and images
    return split_file_from_document(doc, path)


def read_series(path, where: str = "") -> list[dict]:
    """The ``series`` entries of a split file as plain dicts (``id``, ``fid``, ``phase``, the sides),
    checked only for their shape: what a study needs to plan its grid without a dataset at hand
    (:func:`load_splits` validates the whole file)."""
    path = Path(path)
    data = read_json(path, "split file")
    series = data.get("series") if isinstance(data, dict) else None
    if not isinstance(series, list) or not all(isinstance(s, dict) and "id" in s for s in series):
        at = f" ({where})" if where else ""
        raise BadInputError(f"split file {path}{at} has no valid 'series' list; regenerate it with oodml.make_splits")
    return series


def write_split_document(path, doc: dict) -> Path:
    """Validate ``doc`` and write it atomically (byte-identical for identical documents)."""
    path = Path(path)
    text = dumps_split_document(doc)
    validate_split_document(json.loads(text), str(path))
    atomic_write(path, text)
    return path
