"""Re-verifying a split file: replay its trajectory (:func:`replay_from`) and recompute its FIDs
from a feature table (:func:`check_split_file`, ``python -m oodml.make_splits --check``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from oodml.errors import BadInputError
from oodml.progress import progress_bar
from oodml.splits.file import SplitFile, _fail
from oodml.splits.params import FID_RTOL

__all__ = ["CheckReport", "check_split_file", "replay_from"]


def replay_from(
    trajectory: list[dict], train0: Iterable[str], test0: Iterable[str], source: str = "<document>"
) -> list[tuple[frozenset, frozenset]]:
    """(train, test) class sets of every step: step 0 = ``(train0, test0)``; every other record's
    moves are applied to its ``parent``'s state (previous step when ``parent`` is missing)."""
    states: list[tuple[frozenset, frozenset]] = []
    for i, r in enumerate(trajectory):
        if i == 0:
            states.append((frozenset(train0), frozenset(test0)))
            continue
        parent = r.get("parent", i - 1)
        if parent is None or not isinstance(parent, int) or not 0 <= parent < i:
            _fail(source, f"trajectory step {i} has an invalid parent {parent!r}")
        tr, te = set(states[parent][0]), set(states[parent][1])
        to_test, to_train, removed = set(r["to_test"]), set(r["to_train"]), set(r["removed"])
        if not to_test <= tr or not to_train <= te or not removed <= (tr | te):
            _fail(source, f"trajectory step {i} moves a class that is not on the side it leaves")
        tr = (tr - to_test - removed) | to_train
        te = (te - to_train - removed) | to_test
        if len(tr) != r["n_train"] or len(te) != r["n_test"]:
            _fail(source, f"trajectory step {i} class counts do not match its moves")
        states.append((frozenset(tr), frozenset(te)))
    return states


@dataclass
class CheckReport:
    """Outcome of :func:`check_split_file`."""

    rows: list[dict]
    mismatches: list[str]
    structure_ok: bool
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.structure_ok


def check_split_file(
    sf: SplitFile,
    features,
    labels,
    classes: Sequence[str],
    *,
    rtol: float = FID_RTOL,
    trajectory: bool | None = None,
    progress: bool = False,
) -> CheckReport:
    """Recompute a split file's FIDs from a feature table and compare.

    ``labels``: int ids into ``classes`` (the feature table's class list).  Every series split's
    FID is recomputed at the provenance level; the trajectory is replayed from its start record
    (the standard split = the series entry marked ``standard``) and must reproduce every series
    split's sides; at class level (``trajectory=None``) every trajectory FID is recomputed too.
    """
    from oodml.shift.fid import FIDComputer  # scipy.linalg ≈ 0.4 s: only when FIDs are recomputed

    level = sf.provenance.get("level", "class")
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in sf.classes if c not in index]
    if missing:
        raise BadInputError(
            f"split file {sf.path}: class {missing[0]!r} is not in the features' classes; "
            "were they extracted from the same dataset?"
        )
    fc = FIDComputer(np.asarray(features), np.asarray(labels, dtype=np.int64), level=level)
    mismatches: list[str] = []
    rows: list[dict] = []

    def close(a, b):
        return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)

    items = [("split", s.id, s.train, s.test, s.fid) for s in sf.series]
    items += [("control", c.id, c.train, c.test, c.fid) for c in sf.controls]
    structure_ok = True
    std = sf.standard
    if sf.provenance.get("source") != "oodml-import" and std is not None and sf.trajectory:
        states = replay_from(sf.trajectory, std.train, std.test, str(sf.path))
        for s in sf.series:
            if not 0 <= s.step < len(states) or states[s.step] != (frozenset(s.train), frozenset(s.test)):
                structure_ok = False
                mismatches.append(f"split {s.id}: sides differ from trajectory step {s.step}")
        do_traj = (level == "class") if trajectory is None else trajectory
        if do_traj:
            for r, (tr, te) in zip(sf.trajectory, states):
                if r.get("fid") is not None:
                    items.append(("step", r["step"], sorted(tr, key=index.get), sorted(te, key=index.get), r["fid"]))
    for kind, ident, tr, te, stored in progress_bar(items, desc="recomputing FIDs", enabled=progress):
        value = float(fc([index[c] for c in tr], [index[c] for c in te]))
        ok = close(stored, value)
        rows.append({"what": kind, "id": ident, "stored": stored, "recomputed": value, "ok": ok})
        if not ok:
            mismatches.append(f"{kind} {ident}: stored FID {stored!r}, recomputed {value!r}")
    return CheckReport(rows, mismatches, structure_ok)
