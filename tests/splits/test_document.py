"""Tests of oodml.splits.document: the split document, its FIDs at 12 significant digits, superclass units."""

from __future__ import annotations

import numpy as np
import pytest

from oodml.errors import OodmlError
from oodml.splits import (
    SCHEMA,
    SearchParams,
    build_split_document,
    check_split_file,
    dumps_split_document,
    load_splits,
    replay_from,
    round_fid,
    search_trajectory,
    write_split_document,
)


def test_document_content(doc40):
    doc, x, lab, cls = doc40
    assert doc["schema"] == SCHEMA and doc["classes"] == cls and doc["num_images"] == len(lab)
    prov = doc["provenance"]
    for key in ("dataset", "fingerprint", "extractor", "level", "params", "seed", "oodml_version", "source"):
        assert key in prov
    for key in ("swaps_per_iter", "history", "patience", "min_classes", "num_splits", "episodes", "val_fraction"):
        assert key in prov["params"]
    series = doc["series"]
    assert [s["id"] for s in series] == list(range(1, 6))
    assert [s["fid"] for s in series] == sorted(s["fid"] for s in series)
    assert sum(s["standard"] for s in series) == 1
    std = next(s for s in series if s["standard"])
    assert std["train"] == cls[:20] and std["step"] == 0
    fids = [r["fid"] for r in doc["trajectory"]]
    assert series[0]["fid"] == min(fids) and series[-1]["fid"] == max(fids)
    for s in series:
        assert set(s["val"]) <= set(s["train"]) and len(s["val"]) >= 2
        assert sorted(s["episodes"]) == ["1", "10", "2", "5"]
        assert all(len(ep) == 3 for ep in s["episodes"].values())
        assert s["n_train_images"] == 6 * len(s["train"])
        assert doc["trajectory"][s["step"]]["fid"] == s["fid"]
    # the trajectory replays to every series split
    states = replay_from(doc["trajectory"], std["train"], std["test"])
    for s in series:
        assert states[s["step"]] == (frozenset(s["train"]), frozenset(s["test"]))


def test_fids_are_written_at_12_significant_digits(small_doc):
    assert round_fid(0.19190092937261793) == round_fid(0.1919009293726175) == 0.191900929373
    assert round_fid(1234.5678901234567) == 1234.56789012 and round_fid(0.0) == 0.0
    assert round_fid(-3.2e-14) == -3.2e-14 and np.isnan(round_fid(float("nan")))
    doc = small_doc()[0]
    for value in [r["fid"] for r in doc["trajectory"]] + [s["fid"] for s in doc["series"]]:
        assert value == round_fid(value) and len(repr(value).lstrip("-0.").replace(".", "").split("e")[0]) <= 12


def test_file_survives_last_digit_rounding_differences(tmp_path, names, structured):
    """Another machine's BLAS changes the last digits of every FID: the file must not change."""
    x, lab = structured(C=40, per=6, d=16, seed=3)
    cls = names(40)
    p = SearchParams(num_splits=5, patience=3, min_classes=6, episodes=2)

    def doc(features):
        return build_split_document(features, lab, cls, cls[:20], cls[20:], p, seed=0, dataset="synthetic")

    x = x.astype(np.float64)
    a = doc(x)
    # the same table, each feature moved by one float64 ulp in a random direction: FIDs differ
    # in their last digits, as between two BLAS builds
    rng = np.random.default_rng(0)
    nudged = np.nextafter(x, np.where(rng.random(x.shape) < 0.5, np.inf, -np.inf))
    b = doc(nudged)
    raw_a = search_trajectory(x, lab, range(20), range(20, 40), p).records
    raw_b = search_trajectory(nudged, lab, range(20), range(20, 40), p).records
    assert any(r["fid"] != q["fid"] for r, q in zip(raw_a, raw_b))  # the raw values do differ
    assert dumps_split_document(a) == dumps_split_document(b)  # the written file does not
    path = tmp_path / "s.json"
    write_split_document(path, a)
    assert check_split_file(load_splits(path), nudged, lab, cls).ok  # --check at its tolerance


def test_swap_unit_superclass_moves_whole_superclasses(tmp_path):
    """--swap-unit superclass: every state of the search keeps each side's superclass groups whole
    (a group is all on one side, or removed), and the CLI records it in the provenance."""
    from oodml.splits import build_split_document, default_max_iters, default_swaps, superclass_units

    rng = np.random.default_rng(0)
    n_cls, d = 48, 16
    sup = [f"s{c % 8}" for c in range(n_cls)]
    centres = rng.standard_normal((8, d))[np.arange(n_cls) % 8] * 3 + rng.standard_normal((n_cls, d))
    labels = np.repeat(np.arange(n_cls), 6)
    x = (centres[labels] + 0.5 * rng.standard_normal((labels.size, d))).astype(np.float32)
    classes = [f"c{c:02d}" for c in range(n_cls)]
    train, test = classes[:24], classes[24:]
    units, tr_u, te_u = superclass_units(list(range(24)), list(range(24, 48)), sup)
    assert len(tr_u) == len(te_u) == 8 and sorted(c for u in units for c in u) == list(range(n_cls))
    doc = build_split_document(x, labels, classes, train, test, SearchParams(), superclass_of=sup)
    assert doc["provenance"]["swap_unit"] == "superclass"
    assert doc["provenance"]["params"]["swaps_per_iter"] == default_swaps(8) == 2
    assert doc["provenance"]["params"]["resolved_max_iters"] == default_max_iters(8, 2) == 4
    groups = [set(classes[c] for c in u) for u in units]
    moved = 0
    for s in doc["trajectory"]:
        moved += len(s["to_test"])
    assert moved > 0
    for s in doc["series"]:
        tr, te = set(s["train"]) | set(s.get("val", [])), set(s["test"])
        for g in groups:
            assert g <= tr or g <= te or not (g & (tr | te)), (s["id"], sorted(g))
    with pytest.raises(OodmlError, match="needs a superclass"):
        build_split_document(x, labels, classes, train, test, SearchParams(), superclass_of=[None] * n_cls)
