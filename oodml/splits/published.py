"""The ooDML study's published split files, imported faithfully.

The study published one pickle per dataset (``cub200_splits.pkl``, ``cars196_splits.pkl``,
``online_products_splits.pkl``): a dict of split id -> ``train``, ``test`` (class names),
``fid``, ``split_train``, ``split_val`` (its train/validation division) and ``test_episodes``
``{shots: {episode: {class: [image file names]}}}``, with numpy string and float scalars. It is
read with :func:`oodml.io.restricted_pickle_load` (plain containers, numbers, strings and numpy
scalars/arrays only: nothing in the file runs).

:func:`import_published` converts it into an oodml split file (:mod:`oodml.splits`):

* **every split, FID and validation list is kept** (ids renumbered 1..K by FID;
  ``reference_id`` keeps the published key); the FIDs stay the published ones;
* **the published few-shot episodes are kept** whenever their file names map onto the dataset
  on disk (:func:`published_image_names`). Where they cannot be mapped the import stops with
  one line naming the first unmappable file and the layouts that work; new episodes are drawn
  only with ``redraw_episodes=True`` (``--redraw-episodes``), and the file says so;
* **names only**: without a dataset (``dataset=None``) the file keeps the published class and
  image names (``provenance.names_only``); :func:`resolve_names_only` maps them onto the
  dataset when a run starts (:func:`oodml.splits.load_splits` with a dataset does it), so the
  published series can be converted once and shipped as split files;
* **provenance**: ``provenance.parts`` says where every part came from (``fids``: published;
  ``validation``: published ``split_val`` or drawn; ``episodes``: published, redrawn or drawn
  because none were published), every split repeats it in ``sources``, and
  ``python -m oodml.make_splits --check FILE --recompute-fid`` recomputes the FIDs with an
  extractor and reports the differences.

How the study named its images, and how those names map onto a dataset: :mod:`oodml.splits.names`.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oodml.errors import BadInputError
from oodml.io import file_digest, restricted_pickle_load
from oodml.splits.document import _finish_series, _oodml_version, _ordered
from oodml.splits.episodes import make_episodes, validation_classes
from oodml.splits.names import (
    WORKING_LAYOUTS,
    EpisodeMappingError,
    ImageNames,
    _map_episodes,
    _NameMapper,
    published_image_names,
)
from oodml.splits.params import SCHEMA, SearchParams

__all__ = [
    "PUBLISHED_FILES",
    "EpisodeMappingError",
    "ImageNames",
    "dataset_from_filename",
    "import_published",
    "published_image_names",
    "import_oodml",
    "resolve_names_only",
]

#: Published file name -> oodml dataset name.
PUBLISHED_FILES = {
    "cub200_splits.pkl": "cub",
    "cars196_splits.pkl": "cars",
    "online_products_splits.pkl": "sop",
}


def dataset_from_filename(path: str | os.PathLike) -> str | None:
    """The dataset a published pickle is for, from its file name (``None`` when unknown)."""
    name = Path(path).name.lower()
    for fname, ds in PUBLISHED_FILES.items():
        if name == fname or name.endswith("_" + fname) or name.startswith(fname[: -len("_splits.pkl")]):
            return ds
    return None


# ============================================================================================
# Reading the pickle
# ============================================================================================
def _scalar(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return v


def _names(x, where: str) -> list:
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (set, frozenset)):
        x = sorted(x, key=str)
    if not isinstance(x, (list, tuple)):
        raise BadInputError(f"{where} is a {type(x).__name__}, expected a list of class names or ids")
    out = []
    for v in x:
        v = _scalar(v)
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise BadInputError(f"{where} holds {v!r} ({type(v).__name__}); expected class names or integer ids")
        out.append(v)
    return out


def _sort_key(k):
    k = _scalar(k)
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))


def _episodes_raw(eps, where: str) -> dict[int, list[dict[Any, list[str]]]] | None:
    """``{k: [ {class: [file names]} per episode, in episode-key order ]}`` or None when absent."""
    if eps is None or (isinstance(eps, dict) and not eps):
        return None
    if not isinstance(eps, dict):
        raise BadInputError(f"{where} test_episodes is a {type(eps).__name__}, expected {{shots: {{episode: ...}}}}")
    out: dict[int, list] = {}
    for k, episodes in sorted(eps.items(), key=lambda kv: _sort_key(kv[0])):
        try:
            shots = int(_scalar(k))
        except (TypeError, ValueError):
            raise BadInputError(f"{where} test_episodes key {k!r} is not a number of shots") from None
        if not isinstance(episodes, dict):
            raise BadInputError(f"{where} test_episodes[{shots}] is a {type(episodes).__name__}, expected a dict")
        lst = []
        for e, ep in sorted(episodes.items(), key=lambda kv: _sort_key(kv[0])):
            if not isinstance(ep, dict):
                raise BadInputError(f"{where} test_episodes[{shots}][{e!r}] is not a dict of class -> image names")
            conv = {}
            for c, files in ep.items():
                fl = [str(_scalar(f)) for f in (files.tolist() if isinstance(files, np.ndarray) else files)]
                conv[_scalar(c)] = [os.path.basename(f) for f in fl]
            lst.append(conv)
        out[shots] = lst
    return out


@dataclass
class _Entry:
    key: Any
    fid: float
    train: list
    test: list
    split_train: list | None
    split_val: list | None
    episodes: dict | None


def _read(pkl_path: Path) -> list[_Entry]:
    src = f"ooDML split pickle {pkl_path}"
    data = restricted_pickle_load(pkl_path)
    if not isinstance(data, dict) or not data:
        raise BadInputError(f"{src} holds a {type(data).__name__}, expected a non-empty dict keyed by split id")
    out = []
    for key, val in sorted(data.items(), key=lambda kv: _sort_key(kv[0])):
        key = _scalar(key)
        where = f"{src}: split {key!r}"
        if not isinstance(val, dict):
            raise BadInputError(f"{where} is a {type(val).__name__}, expected a dict with train/test/fid")
        for need in ("train", "test", "fid"):
            if need not in val:
                raise BadInputError(f"{where} lacks {need} (keys: {', '.join(map(str, val))})")
        fid = _scalar(val["fid"])
        if isinstance(fid, bool) or not isinstance(fid, (int, float)) or not math.isfinite(fid):
            raise BadInputError(f"{where} has a non-numeric fid {fid!r}")
        out.append(
            _Entry(
                key=key if isinstance(key, (int, str)) else str(key),
                fid=float(fid),
                train=_names(val["train"], f"{where} train"),
                test=_names(val["test"], f"{where} test"),
                split_train=_names(val["split_train"], f"{where} split_train") if "split_train" in val else None,
                split_val=_names(val["split_val"], f"{where} split_val") if "split_val" in val else None,
                episodes=_episodes_raw(val.get("test_episodes"), where),
            )
        )
    return out


def _trajectory(entries: list[dict], classes: list[str], std_train, std_test) -> list[dict]:
    """Set every entry's ``step`` and ``phase`` (by FID and sides against the standard split)
    and return one trajectory record per entry, each relative to the standard split."""
    index = {c: i for i, c in enumerate(classes)}
    std_fid = next((e["fid"] for e in entries if e["standard"]), None)
    all_cls = set(classes)
    trajectory = []
    for i, e in enumerate(entries):
        e["step"] = i
        tr, te = set(e["train"]), set(e["test"])
        if e["standard"]:
            phase = "start"
        elif tr | te != all_cls:
            phase = "removal"
        elif std_fid is not None and e["fid"] < std_fid:
            phase = "easier"
        else:
            phase = "harder"
        e["phase"] = phase
        trajectory.append(
            {
                "step": i,
                "phase": phase,
                "fid": e["fid"],
                "to_test": _ordered(te & std_train, index),
                "to_train": _ordered(tr & std_test, index),
                "removed": _ordered(all_cls - tr - te, index),
                "n_train": len(tr),
                "n_test": len(te),
                "parent": None,
            }
        )
    return trajectory


def _parts(entries: list[dict]) -> dict:
    def summary(key):
        vals = sorted({e["sources"][key] for e in entries})
        return vals[0] if len(vals) == 1 else "mixed: " + ", ".join(vals)

    return {"fids": "published", "validation": summary("validation"), "episodes": summary("episodes")}


def import_published(
    pkl_path,
    dataset=None,
    params=None,
    *,
    seed: int = 0,
    redraw_episodes: bool = False,
    dataset_name: str | None = None,
    extractor: str = "",
) -> dict:
    """Convert a published ooDML split pickle into a split document (see the module docstring).

    Args:
        pkl_path: the pickle.
        dataset: an :class:`~oodml.datasets.ImageDataset` to map classes and images onto, or
            ``None`` for a names-only file.
        params: :class:`oodml.splits.SearchParams` (``val_fraction``, ``shots``, ``episodes``
            for whatever has to be drawn).
        seed: seed of drawn validation classes and episodes.
        redraw_episodes: draw new episodes where the published ones cannot be mapped (else a
            :class:`EpisodeMappingError`).
        dataset_name: the dataset of a names-only file (default: from the file name).
        extractor: recorded as the FIDs' extractor (default: the study's ResNet-50).

    Returns:
        the split document (a dict; write it with :func:`oodml.splits.write_split_document`).
    """
    p = params or SearchParams()
    pkl_path = Path(pkl_path)
    src = f"ooDML split pickle {pkl_path}"
    raw = _read(pkl_path)
    name = dataset.name if dataset is not None else (dataset_name or dataset_from_filename(pkl_path))
    if dataset is None and not name:
        raise BadInputError(f"{src}: cannot tell the dataset from the file name; pass --dataset (cub, cars or sop)")
    prov = OrderedDict(
        dataset=name,
        fingerprint=dataset.fingerprint() if dataset is not None else None,
        extractor=extractor or "ooDML reference (ResNet-50, ImageNet)",
        level="class",
        params=p.to_dict(),
        seed=int(seed),
        oodml_version=_oodml_version(),
        source="oodml-import",
        reference_file=pkl_path.name,
        reference_md5=file_digest(pkl_path),
    )
    if dataset is None:
        return _names_only_document(raw, prov, p)

    return _mapped_document(raw, prov, p, dataset, src, seed, redraw_episodes)


def _mapped_document(raw: list[_Entry], prov: OrderedDict, p, dataset, src: str, seed: int, redraw: bool) -> dict:
    """The split document of the published splits mapped onto ``dataset`` (classes, images)."""
    all_values = [v for e in raw for v in e.train + e.test]
    mapper = _NameMapper(dataset, all_values, src)
    names = published_image_names(dataset)
    layouts = WORKING_LAYOUTS.get(dataset.name, "a layout whose files carry the published names")
    classes = list(dataset.classes)
    by_cls = {c: v.tolist() for c, v in dataset.indices_by_class().items()}
    std = (frozenset(dataset.train_classes), frozenset(dataset.test_classes))
    entries = [_mapped_entry(r, f"{src}: split {r.key!r}", mapper, names, layouts, std, redraw) for r in raw]
    entries.sort(key=lambda e: (e["fid"], str(e["reference_id"])))
    trajectory = _trajectory(entries, classes, std[0], std[1])
    series = _finish_series(entries, classes, by_cls, p, seed)
    prov["parts"] = _parts(entries)
    prov["image_names"] = names.layout
    prov["redraw_episodes"] = bool(redraw)
    return {
        "schema": SCHEMA,
        "provenance": dict(prov),
        "classes": classes,
        "num_images": len(dataset),
        "trajectory": trajectory,
        "series": series,
    }


def _mapped_entry(r: _Entry, where: str, mapper, names: ImageNames, layouts: str, std, redraw: bool) -> dict:
    """One published split on the dataset's classes, with its validation classes and episodes
    where published (``sources`` says where every part came from)."""
    train, test = [mapper(v) for v in r.train], [mapper(v) for v in r.test]
    both = set(train) & set(test)
    if both:
        raise BadInputError(f"{where} has class {sorted(both)[0]!r} on both sides")
    e: dict[str, Any] = {
        "fid": r.fid,
        "train": train,
        "test": test,
        "reference_id": r.key,
        "standard": frozenset(train) == std[0] and frozenset(test) == std[1],
    }
    sources = {"fid": "published"}
    if r.split_val is not None:
        val = [mapper(v) for v in r.split_val]
        if not set(val) <= set(train):
            bad = sorted(set(val) - set(train))[0]
            raise BadInputError(f"{where}: split_val class {bad!r} is not a train class of that split")
        e["val"] = val
        sources["validation"] = "published"
    else:
        sources["validation"] = "drawn (none published)"
    if r.episodes is None:
        sources["episodes"] = "drawn (none published)"
    else:
        try:
            e["episodes"] = _map_episodes(r.episodes, test, mapper, names, where, layouts)
            sources["episodes"] = "published"
        except EpisodeMappingError as exc:
            if not redraw:
                raise EpisodeMappingError(
                    f"{exc}; or pass --redraw-episodes to draw new episodes (recorded in the split file)"
                ) from None
            sources["episodes"] = "redrawn (published ones not mappable on this layout)"
    e["sources"] = sources
    return e


def _names_only_document(raw: list[_Entry], prov: OrderedDict, p) -> dict:
    """A split document in the published names (classes and image file names), resolved later."""
    classes = sorted({str(v) for r in raw for v in r.train + r.test}, key=_sort_key)
    every = set(classes)
    entries = sorted(raw, key=lambda r: (r.fid, str(r.key)))
    series, trajectory = [], []
    for i, r in enumerate(entries):
        train, test = [str(v) for v in r.train], [str(v) for v in r.test]
        if set(train) & set(test):
            raise BadInputError(
                f"ooDML split pickle {prov['reference_file']}: split {r.key!r} has class "
                f"{sorted(set(train) & set(test))[0]!r} on both sides"
            )
        val = [str(v) for v in r.split_val] if r.split_val is not None else None
        if val is None:
            val = validation_classes(train, int(prov["seed"]), p.val_fraction)
        eps = (
            {}
            if r.episodes is None
            else {
                str(k): [{str(c): list(files) for c, files in ep.items()} for ep in lst]
                for k, lst in r.episodes.items()
            }
        )
        sources = {
            "fid": "published",
            "validation": "published" if r.split_val is not None else "drawn (none published)",
            "episodes": "published" if r.episodes is not None else "drawn when resolved (none published)",
        }
        # phases need the standard split (the dataset's): provisional until resolved
        phase = "removal" if set(train) | set(test) != every else "harder"
        series.append(
            {
                "id": i + 1,
                "fid": r.fid,
                "step": i,
                "phase": phase,
                "standard": False,
                "train": train,
                "test": test,
                "val": val,
                "n_train_images": 0,
                "n_test_images": 0,
                "episodes": eps,
                "reference_id": r.key,
                "sources": sources,
            }
        )
        trajectory.append(
            {
                "step": i,
                "phase": phase,
                "fid": r.fid,
                "to_test": [],
                "to_train": [],
                "removed": [],
                "n_train": len(train),
                "n_test": len(test),
                "parent": None,
            }
        )
    prov["names_only"] = True
    prov["phases"] = "provisional (removal or harder) until resolved against the dataset's standard split"
    prov["parts"] = _parts(series)
    prov["image_names"] = "published names (resolved against the dataset when a run starts)"
    prov["redraw_episodes"] = False
    return {
        "schema": SCHEMA,
        "provenance": dict(prov),
        "classes": classes,
        "num_images": 0,
        "trajectory": trajectory,
        "series": series,
    }


def resolve_names_only(doc: dict, dataset, source: str = "<document>") -> dict:
    """A names-only split document mapped onto ``dataset``: class names to the dataset's
    classes, published image names to item ids; a name that does not map is one clear error
    (episodes are never silently redrawn; a split without published episodes gets drawn ones,
    as the file's ``sources`` say)."""
    prov = dict(doc["provenance"])
    src = f"split file {source}"
    all_values = list(doc["classes"])
    mapper = _NameMapper(dataset, all_values, src)
    names = published_image_names(dataset)
    layouts = WORKING_LAYOUTS.get(dataset.name, "a layout whose files carry the published names")
    classes = list(dataset.classes)
    index = {c: i for i, c in enumerate(classes)}
    by_cls = {c: v.tolist() for c, v in dataset.indices_by_class().items()}
    params = SearchParams(
        **{k: v for k, v in (prov.get("params") or {}).items() if k in SearchParams.__dataclass_fields__}
    )
    std_train, std_test = frozenset(dataset.train_classes), frozenset(dataset.test_classes)
    series = []
    for s in doc["series"]:
        where = f"{src}: split {s['id']}"
        train = _ordered([mapper(v) for v in s["train"]], index)
        test = _ordered([mapper(v) for v in s["test"]], index)
        val = _ordered([mapper(v) for v in s.get("val", [])], index)
        eps_in = s.get("episodes") or {}
        if eps_in:
            raw = {int(k): lst for k, lst in eps_in.items()}
            eps = _map_episodes(raw, test, mapper, names, where, layouts)
        else:
            eps = make_episodes(test, by_cls, shots=params.shots, episodes=params.episodes, seed=int(prov["seed"]))
        item = dict(s)
        item.update(
            train=train,
            test=test,
            val=val,
            episodes={str(k): v for k, v in eps.items()},
            standard=frozenset(train) == std_train and frozenset(test) == std_test,
            n_train_images=int(sum(len(by_cls[c]) for c in train)),
            n_test_images=int(sum(len(by_cls[c]) for c in test)),
        )
        series.append(item)
    trajectory = _trajectory(series, classes, std_train, std_test)  # series is in FID order already
    prov.update(
        dataset=dataset.name,
        fingerprint=dataset.fingerprint(),
        names_only=False,
        resolved_from_names=True,
        image_names=names.layout,
    )
    return {
        **doc,
        "provenance": prov,
        "classes": classes,
        "num_images": len(dataset),
        "series": series,
        "trajectory": trajectory,
    }


def import_oodml(
    pkl_path,
    dataset,
    params: SearchParams | None = None,
    *,
    seed: int = 0,
    redraw_episodes: bool = False,
    extractor: str = "",
) -> dict:
    """Convert the ooDML study's published ``<dataset>_splits.pkl`` into a split document.

    See :func:`import_published` (this is it with a dataset; pass
    ``dataset=None`` there for a names-only file). The pickle is read with
    :func:`oodml.io.restricted_pickle_load`. Every split, published FID and ``split_val`` list
    is kept; the published ``test_episodes`` are kept, and where their image names cannot be
    mapped onto the dataset's layout the import stops with one line (new episodes are drawn
    only with ``redraw_episodes=True``, recorded in the file). Class names may be folder names,
    SOP product ids (file-name prefixes) or integer ids (0-based if any id is 0, else 1-based).
    Series ids are renumbered ``1 … K`` by FID (``reference_id`` keeps the original key).
    """
    return import_published(pkl_path, dataset, params, seed=seed, redraw_episodes=redraw_episodes, extractor=extractor)
