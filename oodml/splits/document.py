"""Building a split document: search a feature table (:mod:`oodml.splits.search`), select the
series (:mod:`oodml.splits.selection`), add validation classes and episodes
(:mod:`oodml.splits.episodes`) and assemble the JSON-able document described in :mod:`oodml.splits`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from oodml import __version__
from oodml.errors import OodmlError
from oodml.splits.episodes import make_episodes, validation_classes
from oodml.splits.params import SCHEMA, SearchParams, resolve_params, round_fid
from oodml.splits.search import Trajectory, search_trajectory, superclass_units
from oodml.splits.selection import select_series

__all__ = ["assemble_document", "build_split_document", "figure_view"]


#: The trajectory fields and provenance keys the split figure (:mod:`oodml.splits.figure`) reads.
_VIEW_STEP_KEYS = ("step", "phase", "parent", "fid", "n_train", "n_test")
_VIEW_PROVENANCE_KEYS = ("dataset", "level", "extractor")


def figure_view(provenance: dict, trajectory: list[dict], series: list) -> dict:
    """What the split figure reads of a split document, as plain JSON types: the provenance's dataset,
    level and extractor, each step's position fields and FID, and each selected split's id, FID,
    step and standard flag (``series``: dicts or :class:`~oodml.splits.Split` objects)."""

    def field_of(s, key):
        return s[key] if isinstance(s, dict) else getattr(s, key)

    return {
        "provenance": {k: provenance[k] for k in _VIEW_PROVENANCE_KEYS if k in provenance},
        "trajectory": [{k: r.get(k) for k in _VIEW_STEP_KEYS} for r in trajectory],
        "series": [{k: field_of(s, k) for k in ("id", "fid", "step", "standard")} for s in series],
    }


def _oodml_version() -> str:
    return __version__


def _ordered(names: Iterable[str], index: dict[str, int]) -> list[str]:
    return sorted(names, key=index.__getitem__)


def _by_fid(entries: list[dict]) -> list[dict]:
    """Selected entries in series order: ids 1..K by FID (then by step)."""
    return sorted(entries, key=lambda e: (round_fid(e["fid"]), e["step"]))


def _finish_series(
    entries: list[dict], classes: list[str], images_by_class: dict[str, list[int]], params: SearchParams, seed: int
) -> list[dict]:
    """Add ids (1..K by FID), val, image counts and episodes to selected entries."""
    index = {c: i for i, c in enumerate(classes)}
    entries = _by_fid(entries)
    out = []
    for i, e in enumerate(entries, 1):
        train = _ordered(e["train"], index)
        test = _ordered(e["test"], index)
        val = e.get("val")
        if val is None:
            val = validation_classes(train, seed, params.val_fraction)
        else:
            val = _ordered(val, index)
        eps = e.get("episodes")
        if eps is None:
            eps = make_episodes(test, images_by_class, shots=params.shots, episodes=params.episodes, seed=seed)
        item = OrderedDict(
            id=i,
            fid=round_fid(e["fid"]),
            step=int(e["step"]),
            phase=e["phase"],
            standard=bool(e["standard"]),
            train=train,
            test=test,
            val=val,
            n_train_images=int(sum(len(images_by_class[c]) for c in train)),
            n_test_images=int(sum(len(images_by_class[c]) for c in test)),
            episodes={str(k): v for k, v in eps.items()},
        )
        for extra in ("reference_id", "sources"):
            if extra in e:
                item[extra] = e[extra]
        out.append(dict(item))
    return out


def build_split_document(
    features,
    labels,
    classes: Sequence[str],
    standard_train: Sequence[str],
    standard_test: Sequence[str],
    params: SearchParams | None = None,
    *,
    seed: int = 0,
    dataset: str = "",
    fingerprint: str = "",
    extractor: str = "",
    source: str = "search",
    extra_provenance: dict | None = None,
    blas_threads: int | None = None,
    progress: bool = False,
    superclass_of: Sequence[str | None] | None = None,
    on_series: Callable[[dict], None] | None = None,
) -> dict:
    """Search, select and assemble the whole split document (a JSON-able dict, see the module
    docstring) for a feature table.

    ``superclass_of`` (one superclass name, or None, per class of ``classes``): move whole
    superclasses instead of classes (``--swap-unit superclass``, :func:`superclass_units`);
    recorded as ``provenance.swap_unit``.  ``on_series``: see :func:`assemble_document`.

    ``features`` (n, d); ``labels`` (n,) int ids into ``classes``; image id = row index.
    """
    p = params or SearchParams()
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    lab = np.asarray(labels, dtype=np.int64)
    if lab.ndim != 1 or len(lab) != len(features):
        raise OodmlError(f"labels must be one class id per feature row ({len(features)}), got shape {lab.shape}")
    if lab.min() < 0 or lab.max() >= len(classes):
        raise OodmlError(f"labels must be class ids 0..{len(classes) - 1}")
    for name, side in (("train", standard_train), ("test", standard_test)):
        bad = [c for c in side if c not in index]
        if bad:
            raise OodmlError(f"standard {name} class {bad[0]!r} is not among the feature table's classes")
    images_by_class = {c: [] for c in classes}
    for i, c in enumerate(lab.tolist()):
        images_by_class[classes[c]].append(i)
    empty = [c for c in list(standard_train) + list(standard_test) if not images_by_class[c]]
    if empty:
        raise OodmlError(f"class {empty[0]!r} of the standard split has no images in the feature table")
    tr_ids, te_ids = [index[c] for c in standard_train], [index[c] for c in standard_test]
    units = None
    if superclass_of is not None:
        units, tr_ids, te_ids = _superclass_units(tr_ids, te_ids, superclass_of, len(classes))
        extra_provenance = {**(extra_provenance or {}), "swap_unit": "superclass"}
    p = resolve_params(p, len(tr_ids), len(te_ids))  # provenance records the resolved S
    traj = search_trajectory(
        features, lab, tr_ids, te_ids, p, blas_threads=blas_threads, progress=progress, units=units
    )
    return assemble_document(
        traj,
        classes,
        images_by_class,
        p,
        seed=seed,
        dataset=dataset,
        fingerprint=fingerprint,
        extractor=extractor,
        source=source,
        extra_provenance=extra_provenance,
        num_images=len(lab),
        on_series=on_series,
    )


def _selected_entries(traj: Trajectory, trajectory: list[dict], names: list[str], num_splits: int) -> list[dict]:
    """The selected states as series entries (names), chosen among the distinct evaluated states
    (a revisited state counts at the first step that reached it)."""
    # distinct states: the first step that reached each
    seen: dict = {}
    for i, (tr, te) in enumerate(traj.states):
        if trajectory[i]["fid"] is None:  # not evaluated (--trajectory-stride): not selectable
            continue
        key = (frozenset(tr), frozenset(te))
        seen.setdefault(key, i)
    distinct = sorted(seen.values())
    picks = select_series([trajectory[i]["fid"] for i in distinct], num_splits, required=0)
    entries = []
    for j in picks:
        s = distinct[j]
        tr, te = traj.states[s]
        entries.append(
            {
                "fid": trajectory[s]["fid"],
                "step": s,
                "phase": traj.records[s]["phase"],
                "standard": s == 0,
                "train": [names[c] for c in tr],
                "test": [names[c] for c in te],
            }
        )
    return entries


def _superclass_units(tr_ids, te_ids, superclass_of, n_classes: int):
    """``(units, train units, test units)`` for ``--swap-unit superclass`` (clear errors when the
    classes have no superclasses or a side has fewer than 2)."""
    if len(superclass_of) != n_classes or all(s is None for s in superclass_of):
        raise OodmlError(
            "--swap-unit superclass needs a superclass for the classes (the dataset or the "
            "features file's 'superclasses' array has none)"
        )
    units, tr_ids, te_ids = superclass_units(tr_ids, te_ids, superclass_of)
    if len(tr_ids) < 2 or len(te_ids) < 2:
        raise OodmlError(
            f"--swap-unit superclass needs at least 2 superclasses on each side, got "
            f"{len(tr_ids)} train / {len(te_ids)} test"
        )
    return units, tr_ids, te_ids


def assemble_document(
    traj: Trajectory,
    classes: list[str],
    images_by_class: dict[str, list[int]],
    params: SearchParams,
    *,
    seed: int,
    dataset: str,
    fingerprint: str,
    extractor: str,
    source: str,
    extra_provenance: dict | None,
    num_images: int,
    on_series: Callable[[dict], None] | None = None,
) -> dict:
    """Turn a :class:`Trajectory` (ids) into the file document (names), with the selected series.

    ``on_series`` is called with the document's :func:`figure_view` as soon
    as the series is selected, before its validation classes and episodes are drawn (``make_splits``
    starts drawing its figure then)."""
    names = classes
    trajectory = []
    for r in traj.records:
        trajectory.append(
            {
                "step": r["step"],
                "phase": r["phase"],
                "fid": None if r["fid"] is None else round_fid(r["fid"]),
                "to_test": [names[c] for c in r["to_test"]],
                "to_train": [names[c] for c in r["to_train"]],
                "removed": [names[c] for c in r["removed"]],
                "n_train": r["n_train"],
                "n_test": r["n_test"],
                "parent": r["parent"],
            }
        )
    entries = _by_fid(_selected_entries(traj, trajectory, names, params.num_splits))
    prov = OrderedDict(
        dataset=dataset,
        fingerprint=fingerprint,
        extractor=extractor,
        level=params.level,
        params={
            **params.to_dict(),
            "resolved_max_iters": traj.max_iters,
            "resolved_floors": {"train": traj.floors[0], "test": traj.floors[1]},
        },
        seed=int(seed),
        oodml_version=_oodml_version(),
        source=source,
    )
    if extra_provenance:
        prov.update(extra_provenance)
    if on_series is not None:
        marks = [
            {"id": i, "fid": round_fid(e["fid"]), "step": int(e["step"]), "standard": bool(e["standard"])}
            for i, e in enumerate(entries, 1)
        ]
        on_series(figure_view(prov, trajectory, marks))
    series = _finish_series(entries, classes, images_by_class, params, seed)
    return {
        "schema": SCHEMA,
        "provenance": dict(prov),
        "classes": list(classes),
        "num_images": int(num_images),
        "trajectory": trajectory,
        "series": series,
    }
