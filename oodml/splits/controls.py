"""Class-count controls: random-removal splits matched to the removal splits of a series.

The removal phase of the split search makes splits harder by dropping the classes that look
most like the other side, so a removal split differs from the standard split in two ways at once:
more shift, and fewer classes.  A *control* separates the two: the same numbers of train and test
classes as a removal split, removed *at random* from the standard split (seeded, several draws).
Performance that falls on the removal split but not on its controls fell because of the shift.

In a split file the controls are a list beside the series (the series stays ordered by FID)::

    "controls": [
      {"id": 10, "control_of": 8, "draw": 0, "fid": 1.23, "phase": "control", "step": -1,
       "standard": false, "train": [...], "test": [...], "val": [...],
       "n_train_images": ..., "n_test_images": ..., "episodes": {...}},
      ...
    ]

Ids continue after the series' largest id (so ``--split ID`` and a study's ``splits`` address
them like any split); ``control_of`` is the series id they match, ``draw`` the draw number.  Each
control's FID is measured with the file's own features and level, and ``--check`` recomputes it.

``python -m oodml.make_splits --controls N`` writes ``N`` draws per removal split; a study adds
them to its grid with ``controls: all`` (every control of the splits it runs), ``controls: N``
(the first ``N`` draws of each) or ``controls: {draws: N, splits: [9]}`` (only some splits' controls).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oodml.errors import BadInputError
from oodml.io import read_json, stable_hash
from oodml.splits.document import _ordered
from oodml.splits.episodes import make_episodes, validation_classes
from oodml.splits.file import CONTROL_PHASE, validate_controls
from oodml.splits.params import SearchParams

# validate_controls lives with the split file's other checks (oodml.splits.file); re-exported here
__all__ = ["CONTROL_PHASE", "control_cells", "control_map", "make_controls", "validate_controls"]


def _needs_control(split: dict, standard: dict) -> bool:
    return len(split["train"]) < len(standard["train"]) or len(split["test"]) < len(standard["test"])


def make_controls(doc: dict, features, labels, *, draws: int, seed: int = 0, params=None) -> list[dict]:
    """Matched random-removal controls of a split document's series.

    ``doc``: a split document (its ``classes``, ``series`` and provenance ``level``);
    ``features`` (n, d) and ``labels`` (n,) int ids into ``doc["classes"]`` (image id = row).
    For every series split with fewer train or test classes than the standard split, ``draws``
    controls are drawn: that many train and test classes kept at random from the standard split's
    sides (generator seeded by ``(seed, split id, draw)``), their FID measured at the file's level,
    with validation classes and few-shot episodes made by the series' own rules.
    Returns the ``controls`` list (ids continue after the series' largest id).
    """
    from oodml.shift.fid import FIDComputer  # scipy.linalg ≈ 0.4 s: only when controls are drawn

    draws = int(draws)
    if draws < 1:
        raise BadInputError(f"--controls must be a positive number of draws per removal split, got {draws}")
    p = params or SearchParams()
    classes = list(doc["classes"])
    index = {c: i for i, c in enumerate(classes)}
    lab = np.asarray(labels, dtype=np.int64)
    images_by_class: dict[str, list[int]] = {c: [] for c in classes}
    for i, c in enumerate(lab.tolist()):
        images_by_class[classes[c]].append(i)
    series = doc["series"]
    standard = next((s for s in series if s.get("standard")), None)
    if standard is None:
        raise BadInputError("the split series has no standard split to draw controls from")
    level = doc.get("provenance", {}).get("level", "class")
    fc = FIDComputer(np.asarray(features), lab, level=level)
    next_id = max(int(s["id"]) for s in series) + 1
    out = []
    for s in series:
        if not _needs_control(s, standard):
            continue
        for d in range(draws):
            rng = np.random.default_rng([int(seed), 0xC047, int(s["id"]), d])
            train = _ordered(rng.choice(standard["train"], len(s["train"]), replace=False).tolist(), index)
            test = _ordered(rng.choice(standard["test"], len(s["test"]), replace=False).tolist(), index)
            fid = float(fc([index[c] for c in train], [index[c] for c in test]))
            val = validation_classes(train, seed, p.val_fraction)
            eps = make_episodes(test, images_by_class, shots=p.shots, episodes=p.episodes, seed=seed)
            out.append(
                dict(
                    OrderedDict(
                        id=next_id,
                        control_of=int(s["id"]),
                        draw=d,
                        fid=fid,
                        step=-1,
                        phase=CONTROL_PHASE,
                        standard=False,
                        train=train,
                        test=test,
                        val=val,
                        n_train_images=int(sum(len(images_by_class[c]) for c in train)),
                        n_test_images=int(sum(len(images_by_class[c]) for c in test)),
                        episodes={str(k): v for k, v in eps.items()},
                    )
                )
            )
            next_id += 1
    return out


def control_cells(split_file: str | Path, chosen: Sequence[int], selection: Any, study_path: Path) -> list[tuple]:
    """Grid cells ``(id, fid, digest)`` of the controls of the ``chosen`` series splits, for a
    study's ``controls:`` key (``all``/``true``: every draw; ``N``: the first ``N`` draws;
    ``{draws: N, splits: [ids]}``: only the controls of those of the chosen splits)."""
    if selection in (None, False, 0):
        return []
    only = None
    if isinstance(selection, dict):
        unknown = set(selection) - {"draws", "splits"}
        if unknown:
            raise BadInputError(f"{study_path}: controls has unknown key {sorted(unknown)[0]!r} (keys: draws, splits)")
        only = selection.get("splits")
        if only is not None and (not isinstance(only, list) or not all(isinstance(i, int) for i in only)):
            raise BadInputError(f"{study_path}: controls.splits must be a list of series ids, got {only!r}")
        selection = selection.get("draws", "all")
    if selection is True or selection == "all":
        limit = None
    elif isinstance(selection, int) and not isinstance(selection, bool) and selection > 0:
        limit = selection
    else:
        raise BadInputError(
            f"{study_path}: controls must be 'all', a positive number of draws, or {{draws, splits}}, got {selection!r}"
        )
    data = read_json(Path(split_file), "split file")
    controls = data.get("controls") or []
    if not controls:
        raise BadInputError(
            f"{study_path}: controls asked for but split file {split_file} has none; "
            "add them with python -m oodml.make_splits --controls N"
        )
    wanted = set(int(s) for s in chosen)
    if only is not None:
        missing = sorted(set(only) - wanted)
        if missing:
            raise BadInputError(
                f"{study_path}: controls.splits names split {missing[0]} which the study does not run "
                f"(its splits: {sorted(wanted)})"
            )
        wanted = set(only)
    return [
        (int(c["id"]), c.get("fid"), stable_hash(c, 32))
        for c in controls
        if int(c["control_of"]) in wanted and (limit is None or int(c["draw"]) < limit)
    ]


def control_map(split_file: str | Path) -> dict[int, int]:
    """``{control id: series id it controls}`` of a split file (empty without controls)."""
    data = read_json(Path(split_file), "split file")
    return {int(c["id"]): int(c["control_of"]) for c in (data.get("controls") or [])}
