"""Per-class attribution of a split's FID: how much the FID changes when one class is left out of
its side (negative: the class carries shift), through :class:`~oodml.shift.fid.FIDComputer`'s
incremental statistics."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from oodml.progress import progress_bar
from oodml.shift.tables import _Table

__all__ = ["attribution_table", "fid_attribution"]


def fid_attribution(fc, train: Sequence[int], test: Sequence[int], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-class leave-one-out change of the FID of a split.

    ``fc``: a :class:`~oodml.shift.fid.FIDComputer`; ``train``/``test``: its class ids of the two sides.
    For every class ``c`` the FID is recomputed with ``c`` left out of its side, through the
    computer's incremental statistics (at image level each call is a rank update of the cached
    side moments, not a rebuild).  Returns columns ``class, side, fid, fid_without, delta``
    (``delta = fid_without - fid``; negative = the class adds to the shift), sorted by ``delta``.
    A side of two points or fewer cannot lose one; its classes are skipped.
    """
    train, test = [int(c) for c in train], [int(c) for c in test]
    base = float(fc(train, test))
    rows = []
    for side, own, other in (("train", train, test), ("test", test, train)):
        npts = int(sum(fc._point_counts[c] for c in own))
        for c in own:
            if npts - int(fc._point_counts[c]) < 2:
                continue
            rest = [k for k in own if k != c]
            value = float(fc(rest, other) if side == "train" else fc(other, rest))
            rows.append(
                {
                    "class": names[c] if names is not None else c,
                    "side": side,
                    "fid": base,
                    "fid_without": value,
                    "delta": value - base,
                }
            )
    out = pd.DataFrame(rows, columns=["class", "side", "fid", "fid_without", "delta"])
    return out.sort_values(["delta", "side"], kind="mergesort").reset_index(drop=True)


def attribution_table(sf, table: _Table, *, level: str | None = None, progress: bool = False) -> pd.DataFrame:
    """:func:`fid_attribution` for every split of a series under one feature table (at the split
    file's level by default); columns ``split`` + those of :func:`fid_attribution`."""
    level = level or sf.provenance.get("level", "class")
    fc = table.fid(level)
    frames = []
    for s in progress_bar(sf.series, desc="FID attribution", enabled=progress):
        a = fid_attribution(fc, table.ids(s.train, str(sf.path)), table.ids(s.test, str(sf.path)), table.classes)
        frames.append(a.assign(split=int(s.id)))
    out = pd.concat(frames, ignore_index=True)
    return out[["split", "class", "side", "fid", "fid_without", "delta"]]


# ============================================================================================
