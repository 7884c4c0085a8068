"""Tests of oodml.splits: the search, selection, validation classes, episodes and the split file.

The core search is tested on synthetic structured features (no oodml.features needed)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from oodml.errors import BadInputError, OodmlError, UnsafeFileError
from oodml.splits import (
    SCHEMA,
    SearchParams,
    build_split_document,
    check_split_file,
    dumps_split_document,
    import_oodml,
    load_splits,
    make_episodes,
    replay_from,
    round_fid,
    search_trajectory,
    select_series,
    side_scores,
    validation_classes,
    write_split_document,
)


# ------------------------------------------------------------------------------------ data
def structured(C=60, per=8, d=24, groups=6, mix=0.3, seed=0):
    """Class means around group centres; groups mostly contiguous in class order (so the
    standard first-half/second-half split is a moderate shift), a fraction ``mix`` reassigned."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, d)) * 3.0
    g = (np.arange(C) * groups) // C
    flip = rng.random(C) < mix
    g[flip] = rng.integers(0, groups, flip.sum())
    means = centres[g] + rng.normal(size=(C, d))
    lab = np.repeat(np.arange(C), per)
    x = means[lab] + 0.5 * rng.normal(size=(lab.size, d))
    return x.astype(np.float32), lab


def names(C):
    return [f"cls{i:03d}" for i in range(C)]


# ------------------------------------------------------- reference transcription (plain numpy)
def reference_harder_moves(train_feats, train_cls, test_feats, test_cls, n_iters, swaps_per_iter, history):
    """The ooDML reference split_maker's harder rule as read from its source, written out
    separately: position-based history, rankings computed once per iteration, the k-th swap of an
    iteration scanning both rankings jointly from rank k, slots exchanged in place."""
    train_feats, test_feats = [np.asarray(f) for f in train_feats], [np.asarray(f) for f in test_feats]
    train_cls, test_cls = list(train_cls), list(test_cls)
    hist_tr, hist_te = [], []
    moves = []
    for _ in range(n_iters):
        F, G = np.stack(train_feats), np.stack(test_feats)
        trainmean, testmean = F.mean(axis=0), G.mean(axis=0)
        d_tr_trm = np.sqrt(((F - trainmean) ** 2).sum(1))
        d_tr_tem = np.sqrt(((F - testmean) ** 2).sum(1))
        d_te_trm = np.sqrt(((G - trainmean) ** 2).sum(1))
        d_te_tem = np.sqrt(((G - testmean) ** 2).sum(1))
        train_swaps = np.argsort(d_tr_tem - d_tr_trm)
        test_swaps = np.argsort(d_te_trm - d_te_tem)
        it = []
        for k in range(swaps_per_iter):
            got_tr = got_te = False
            for a, b in zip(train_swaps[k:], test_swaps[k:]):
                if a not in hist_tr[-history:] and not got_tr:
                    hist_tr.append(a)
                    t_swap, got_tr = a, True
                if b not in hist_te[-history:] and not got_te:
                    hist_te.append(b)
                    s_swap, got_te = b, True
                if got_tr and got_te:
                    break
            it.append((train_cls[t_swap], test_cls[s_swap]))
            train_feats[t_swap], test_feats[s_swap] = test_feats[s_swap], train_feats[t_swap]
            train_cls[t_swap], test_cls[s_swap] = test_cls[s_swap], train_cls[t_swap]
        moves.append(it)
    return moves


@pytest.mark.parametrize("seed,swaps,history", [(0, 2, 5), (1, 2, 5), (2, 3, 4), (3, 1, 5)])
def test_harder_phase_moves_exactly_the_reference_classes(seed, swaps, history):
    x, lab = structured(C=50, per=4, d=20, seed=seed)
    rng = np.random.default_rng(100 + seed)
    perm = rng.permutation(50)  # a scrambled standard split (slot order matters)
    train, test = perm[:25].tolist(), perm[25:].tolist()
    means = np.stack([x[lab == c].astype(np.float64).mean(0) for c in range(50)])
    n_iters = 20
    ref = reference_harder_moves(
        [means[c] for c in train], train, [means[c] for c in test], test, n_iters, swaps, history
    )
    p = SearchParams(phases=("harder",), swaps_per_iter=swaps, history=history, patience=None, max_iters=n_iters)
    traj = search_trajectory(x, lab, train, test, p)
    ours = [list(zip(r["to_test"], r["to_train"])) for r in traj.records[1:]]
    assert len(ours) == n_iters
    assert ours == [[(int(a), int(b)) for a, b in it] for it in ref]


def test_rankings_put_the_most_other_like_class_first():
    tr = np.array([[0.0, 0], [1, 0], [9, 0]])  # the third looks like the test side
    te = np.array([[10.0, 0], [11, 0], [2, 0]])  # the third looks like the train side
    s_tr, s_te = side_scores(tr, te)
    assert np.argmin(s_tr) == 2 and np.argmin(s_te) == 2


# ------------------------------------------------------------------------- search invariants
@pytest.fixture(scope="module")
def traj60():
    x, lab = structured(C=60, per=8, d=24, seed=0, mix=0.5)
    p = SearchParams(swaps_per_iter=2, history=5, patience=4, min_classes=8)
    return x, lab, p, search_trajectory(x, lab, list(range(30)), list(range(30, 60)), p)


def test_search_invariants(traj60):
    x, lab, p, traj = traj60
    all_cls = set(range(60))
    phases = [r["phase"] for r in traj.records]
    assert phases[0] == "start" and {"easier", "harder", "removal"} <= set(phases)
    # phases appear in order: start, easier..., harder..., removal...
    rank = {"start": 0, "easier": 1, "harder": 2, "removal": 3}
    assert [rank[q] for q in phases] == sorted(rank[q] for q in phases)
    removed_so_far: set = set()
    for r, (tr, te) in zip(traj.records, traj.states):
        tr, te = set(tr), set(te)
        assert not tr & te  # sides disjoint
        if r["phase"] == "removal":
            removed_so_far |= set(r["removed"])
            assert len(tr) >= traj.floors[0] and len(te) >= traj.floors[1]  # floor respected
            assert tr | te | removed_so_far == all_cls  # every class accounted for
            assert not (tr | te) & removed_so_far
        else:
            assert tr | te == all_cls
        assert (r["n_train"], r["n_test"]) == (len(tr), len(te))
    assert traj.floors == (8, 8)
    # the last removal state sits on the floor of one side or stopped by patience
    last = traj.records[-1]
    assert last["phase"] == "removal"


def test_history_is_respected(traj60):
    _, _, p, traj = traj60
    for phase in ("easier", "harder"):
        swaps = []  # (class to test, class to train) in order
        for r in traj.records:
            if r["phase"] == phase:
                for a, b in zip(r["to_test"], r["to_train"]):
                    recent = {c for pair in swaps[-p.history :] for c in pair}
                    assert a not in recent and b not in recent
                    swaps.append((a, b))
        assert len(swaps) > p.history


def test_fid_rises_in_harder_and_falls_in_easier_phase(traj60):
    _, _, p, traj = traj60
    f0 = traj.records[0]["fid"]
    harder = [r["fid"] for r in traj.records if r["phase"] == "harder"]
    easier = [r["fid"] for r in traj.records if r["phase"] == "easier"]
    removal = [r["fid"] for r in traj.records if r["phase"] == "removal"]
    assert max(harder) > 1.5 * f0
    assert min(easier) < 0.8 * f0
    assert harder[0] > f0 and easier[0] < f0  # the very first iteration goes the right way
    assert max(removal) > max(harder)  # removal pushes the FID further
    # stopping rule: after its best, the harder phase ran exactly `patience` more iterations
    # (or hit max_iters)
    best = int(np.argmax(harder))
    assert len(harder) - 1 - best == p.patience or len(harder) == traj.max_iters


def test_removal_starts_from_hardest_swap_state(traj60):
    _, _, _, traj = traj60
    harder = [r for r in traj.records if r["phase"] == "harder"]
    hardest = max(harder, key=lambda r: (r["fid"], -r["step"]))
    first_removal = next(r for r in traj.records if r["phase"] == "removal")
    assert first_removal["parent"] == hardest["step"]


def test_default_floor_and_no_patience_runs_to_floor():
    x, lab = structured(C=60, per=4, d=16, seed=3)
    p = SearchParams(phases=("harder", "removal"), patience=None, max_iters=6, swaps_per_iter=3)
    traj = search_trajectory(x, lab, list(range(30)), list(range(30, 60)), p)
    assert traj.floors == (15, 15)  # max(10, ceil(50% of 30))
    rem = [r for r in traj.records if r["phase"] == "removal"]
    assert rem[-1]["n_train"] == 15 and rem[-1]["n_test"] == 15
    assert sum(1 for r in traj.records if r["phase"] == "harder") == 6


def test_search_is_deterministic_and_image_level_runs():
    x, lab = structured(C=30, per=6, d=8, seed=5)
    p = SearchParams(level="image", patience=2, max_iters=4, min_classes=6)
    a = search_trajectory(x, lab, list(range(15)), list(range(15, 30)), p)
    b = search_trajectory(x, lab, list(range(15)), list(range(15, 30)), p)
    assert a.records == b.records
    from oodml.fid import frechet_distance_from_features

    tr, te = a.states[-1]
    ref = frechet_distance_from_features(x[np.isin(lab, tr)].astype(np.float64), x[np.isin(lab, te)].astype(np.float64))
    assert a.records[-1]["fid"] == pytest.approx(ref, rel=1e-8)


def test_bad_search_input():
    x, lab = structured(C=10, per=3, d=4)
    with pytest.raises(OodmlError, match="overlap"):
        search_trajectory(x, lab, [0, 1, 2], [2, 3, 4])
    with pytest.raises(OodmlError, match="at least 2"):
        search_trajectory(x, lab, [0], [2, 3, 4])
    with pytest.raises(OodmlError, match="swaps-per-iter"):
        SearchParams(swaps_per_iter=0)
    with pytest.raises(OodmlError, match="min-classes"):
        SearchParams(min_classes=1)


# ------------------------------------------------------------------------------- selection
def test_selection_even_spacing_and_standard_included():
    rng = np.random.default_rng(0)
    fids = rng.uniform(0, 100, 200).tolist()
    fids[0] = 37.3  # the standard split
    picks = select_series(fids, 9, required=0)
    vals = [fids[i] for i in picks]
    assert len(picks) == 9 and 0 in picks
    assert vals == sorted(vals)
    assert vals[0] == min(fids) and vals[-1] == max(fids)
    gaps = np.diff(vals)
    ideal = (max(fids) - min(fids)) / 8
    assert np.all(np.abs(gaps - ideal) < 0.6 * ideal)  # dense candidates: close to even
    # exact optimum against brute force on a small instance
    small = [5.0, 0.0, 1.0, 9.0, 3.5, 6.0, 10.0, 7.9]
    got = select_series(small, 4, required=0)
    import itertools

    order = sorted(range(len(small)), key=lambda i: small[i])
    best = min(
        (c for c in itertools.combinations(order, 4) if 0 in c and 1 in c and 6 in c),
        key=lambda c: float(np.sum(np.diff(sorted(small[i] for i in c)) ** 2)),
    )
    assert sorted(got) == sorted(best)


def test_selection_spreads_the_rest_when_the_standard_split_is_near_an_end():
    # easiest 0.1, standard 0.2, then a dense run up to 6.0: the other picks spread evenly over
    # 0.2 .. 6.0 instead of leaving a hole where the standard split "used up" a target
    fids = [0.2, 0.1] + list(np.linspace(0.25, 6.0, 120))
    picks = select_series(fids, 6, required=0)
    vals = sorted(fids[i] for i in picks)
    assert vals[:2] == [0.1, 0.2] and vals[-1] == 6.0
    gaps = np.diff(vals[1:])
    assert np.all(np.abs(gaps - 5.8 / 4) < 0.06)


def test_selection_small_cases():
    assert select_series([3.0, 1.0], 9, required=0) == [1, 0]  # fewer states than asked: all
    assert select_series([3.0, 1.0, 2.0], 1, required=0) == [0]
    two = select_series([5.0, 0.0, 1.0, 10.0], 2, required=0)
    assert 0 in two and len(two) == 2


# ------------------------------------------------------------------ validation and episodes
def test_validation_classes():
    train = names(40)
    v = validation_classes(train, seed=0, fraction=0.15)
    assert len(v) == 6 and set(v) <= set(train) and v == [c for c in train if c in v]
    assert v == validation_classes(list(reversed(train))[::-1], seed=0)
    assert v != validation_classes(train, seed=1)
    assert len(validation_classes(names(6), seed=0, fraction=0.15)) == 2  # at least 2
    assert validation_classes(names(3), seed=0) == []


def test_episodes():
    test = names(12)
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 15, size=12)
    sizes[0] = 1  # too few for any k
    sizes[1] = 5  # enough for k <= 4
    start = np.concatenate(([100], 100 + np.cumsum(sizes)))
    ibc = {c: list(range(start[i], start[i + 1])) for i, c in enumerate(test)}
    eps = make_episodes(test, ibc, shots=(1, 2, 5, 10), episodes=7, seed=3)
    assert sorted(eps) == [1, 2, 5, 10]
    for k, lst in eps.items():
        assert len(lst) == 7
        for ep in lst:
            expect = [c for c in test if len(ibc[c]) >= k + 1]
            assert list(ep) == expect  # classes with <= k images are skipped
            for c, sup in ep.items():
                assert len(sup) == k and len(set(sup)) == k and set(sup) <= set(ibc[c])
                query = set(ibc[c]) - set(sup)
                assert query and not query & set(sup)
                assert sup == sorted(sup)
        assert len({tuple(map(tuple, ep.values())) for ep in lst}) > 1  # episodes differ
    assert eps == make_episodes(test, ibc, shots=(1, 2, 5, 10), episodes=7, seed=3)
    other = make_episodes(test, ibc, shots=(1, 2, 5, 10), episodes=7, seed=4)
    assert other != eps


# --------------------------------------------------------------------------- the split file
def small_doc(seed=0, C=40, **kw):
    x, lab = structured(C=C, per=6, d=16, seed=1, mix=0.5)
    cls = names(C)
    p = SearchParams(num_splits=5, patience=3, min_classes=6, episodes=3, **kw)
    return (
        build_split_document(
            x,
            lab,
            cls,
            cls[: C // 2],
            cls[C // 2 :],
            p,
            seed=seed,
            dataset="synthetic",
            fingerprint=make_dataset(cls).fingerprint(),
            extractor="none",
        ),
        x,
        lab,
        cls,
    )


@pytest.fixture(scope="module")
def doc40():
    return small_doc()


def make_dataset(cls, per=6):
    from oodml.datasets import ImageDataset, Item

    items = [Item(f"/nonexistent/{c}/{i}.png", c) for c in cls for i in range(per)]
    return ImageDataset("synthetic", "/nonexistent", items, classes=cls, check_files=False)


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


def test_file_is_byte_identical_and_loads(tmp_path, doc40):
    doc = doc40[0]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_split_document(a, doc)
    write_split_document(b, small_doc()[0])  # recomputed from scratch
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.json"
    write_split_document(c, small_doc(seed=1)[0])
    assert c.read_bytes() != a.read_bytes()  # the seed changes val/episodes
    sf = load_splits(a, dataset=make_dataset(doc40[3]))
    assert sf.ids == [1, 2, 3, 4, 5] and sf.provenance["seed"] == 0
    s = sf.get(3)
    assert s.fit_classes == [c for c in s.train if c not in s.val]
    assert set(s.episodes) == {1, 2, 5, 10} and isinstance(next(iter(s.episodes[2][0].values()))[0], int)
    assert sf.standard is not None and sf.standard.standard
    with pytest.raises(BadInputError, match="no split with id 9"):
        sf.get(9)
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left


def tamper(tmp_path, doc, fn, name="bad.json"):
    d = json.loads(dumps_split_document(doc))
    fn(d)
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize(
    "fn,match",
    [
        (lambda d: d["series"][1]["test"].append(d["series"][1]["train"][0]), "both train and test"),
        (lambda d: d["series"][0]["train"].append("no-such-class"), "unknown class 'no-such-class'"),
        (lambda d: d.__setitem__("schema", "oodml.splits/99"), "unknown schema"),
        (lambda d: d["series"][2].__setitem__("id", d["series"][1]["id"]), "appears twice"),
        (lambda d: d["series"][0].__setitem__("fid", d["series"][-1]["fid"] + 1), "order of FID"),
        (lambda d: d["series"][0]["val"].append(d["series"][0]["test"][0]), "not a train class"),
        (lambda d: d["series"][0]["episodes"]["2"][0].__setitem__(d["series"][0]["test"][0], [1]), "2 distinct"),
        (lambda d: d["series"][0]["episodes"]["1"][0].__setitem__(d["series"][0]["train"][0], [0]), "not a test class"),
        (lambda d: d["trajectory"][1].__setitem__("phase", "sideways"), "unknown phase"),
        (lambda d: d.pop("series"), "missing field 'series'"),
    ],
)
def test_bad_files_are_refused_with_the_file_named(tmp_path, doc40, fn, match):
    path = tamper(tmp_path, doc40[0], fn)
    with pytest.raises(BadInputError, match=match) as err:
        load_splits(path)
    assert str(path) in str(err.value)


def test_dataset_checks(tmp_path, doc40):
    doc, _, _, cls = doc40
    path = tmp_path / "s.json"
    write_split_document(path, doc)
    renamed = make_dataset(cls)
    renamed.name = "renamed"
    with pytest.warns(UserWarning, match="fingerprint differs"):
        load_splits(path, dataset=renamed)
    other = make_dataset([c.upper() for c in cls])
    with pytest.raises(BadInputError, match="does not exist in dataset"):
        load_splits(path, dataset=other)
    with pytest.raises(BadInputError, match="images"):
        load_splits(path, dataset=make_dataset(cls, per=5))

    # an episode image that belongs to another class
    def wrong_image(d):
        s = d["series"][0]
        c = s["test"][0]
        s["episodes"]["1"][0][c] = [0]  # image 0 belongs to class 0 (a train class here)

    bad = tamper(tmp_path, doc, wrong_image)
    with pytest.raises(BadInputError, match="belongs to"):
        load_splits(bad, dataset=make_dataset(cls))
    (tmp_path / "trunc.json").write_text(path.read_text()[:100])
    with pytest.raises(BadInputError, match="not valid JSON"):
        load_splits(tmp_path / "trunc.json")
    with pytest.raises(BadInputError, match="does not exist"):
        load_splits(tmp_path / "missing.json")


def test_check_recomputes_fids(tmp_path, doc40):
    doc, x, lab, cls = doc40
    path = tmp_path / "s.json"
    write_split_document(path, doc)
    rep = check_split_file(load_splits(path), x, lab, cls)
    assert rep.ok and len(rep.rows) == len(doc["series"]) + len(doc["trajectory"])
    d = json.loads(path.read_text())
    d["trajectory"][3]["fid"] *= 1.01
    path.write_text(json.dumps(d))
    rep = check_split_file(load_splits(path), x, lab, cls)
    assert not rep.ok and len(rep.mismatches) == 1 and rep.mismatches[0].startswith("step 3: stored FID")
    bad = [r for r in rep.rows if not r["ok"]]
    assert bad[0]["recomputed"] == pytest.approx(doc["trajectory"][3]["fid"], rel=1e-9)


def test_fids_are_written_at_12_significant_digits():
    assert round_fid(0.19190092937261793) == round_fid(0.1919009293726175) == 0.191900929373
    assert round_fid(1234.5678901234567) == 1234.56789012 and round_fid(0.0) == 0.0
    assert round_fid(-3.2e-14) == -3.2e-14 and np.isnan(round_fid(float("nan")))
    doc = small_doc()[0]
    for value in [r["fid"] for r in doc["trajectory"]] + [s["fid"] for s in doc["series"]]:
        assert value == round_fid(value) and len(repr(value).lstrip("-0.").replace(".", "").split("e")[0]) <= 12


def test_file_survives_last_digit_rounding_differences(tmp_path):
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


def test_one_pass_serialiser_matches_the_canonical_json():
    """dumps_split_document == the former json.loads(dumps_json(doc)) + indent-walk, numpy included."""
    from oodml.io import dumps_json

    doc = {
        "a": [1, 2, np.int64(3)],
        "b": {"x": np.arange(4), "y": []},
        7: 'é"',
        "c": [{}, {"q": (1.5, float("nan"), None, True, np.float32(0.1))}],
        "e": [[1], [2, [3]]],
        "f": np.float64(np.inf),
        "g": [np.bool_(True), "s"],
        "h": np.array([0.5, 2.0]),
    }
    text = dumps_split_document(doc)
    assert json.loads(text) == json.loads(dumps_json(doc))
    assert text == (
        '{\n "a": [1, 2, 3],\n "b": {\n  "x": [0, 1, 2, 3],\n  "y": []\n },\n "7": "é\\"",\n'
        ' "c": [\n  {},\n  {\n   "q": [1.5, null, null, true, 0.10000000149011612]\n  }\n ],\n'
        ' "e": [\n  [1],\n  [\n   2,\n   [3]\n  ]\n ],\n "f": null,\n "g": [true, "s"],\n "h": [0.5, 2.0]\n}\n'
    )


# ------------------------------------------------------------------------------ ooDML import
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "evil_splits.pkl"
    pkl.write_bytes(pickle.dumps({1: {"train": ["a"], "test": ["b"], "fid": 1.0, "x": _Evil(marker)}}))
    with pytest.raises(UnsafeFileError, match="system"):
        import_oodml(pkl, make_dataset(["a", "b", "c", "d"]))
    assert not marker.exists()


def reference_pkl(cls, ds, tmp_path, int_ids=False, with_episodes=True):
    """A pickle in the reference's structure: {id: {train, test, fid, split_train, split_val,
    test_episodes}} with numpy values, as create_dataset_splits.py writes."""
    half = len(cls) // 2
    rng = np.random.default_rng(0)
    splits = {}
    layouts = [
        (cls[:half], cls[half:], 50.0),
        (cls[1 : half + 1], [cls[0]] + cls[half + 1 :], 40.0),
        (cls[: half - 3], cls[half + 3 :], 90.0),
        (cls[2:half] + cls[:2][::-1], cls[half:], 50.0),
    ]
    layouts = layouts[:3]
    by = ds.indices_by_class()
    for i, (tr, te, fid) in enumerate(layouts, 1):
        entry = {
            "train": sorted(tr),
            "test": sorted(te),
            "fid": np.float64(fid),
            "split_train": sorted(tr)[2:],
            "split_val": sorted(tr)[:2],
        }
        if with_episodes:
            entry["test_episodes"] = {
                k: {
                    e: {
                        c: [os.path.basename(ds.items[j].path) for j in rng.choice(by[c], k, replace=False)] for c in te
                    }
                    for e in range(1, 4)
                }
                for k in (2, 5)
            }
        if int_ids:
            pos = {c: n + 1 for n, c in enumerate(cls)}
            entry = {"train": np.array([pos[c] for c in tr]), "test": [np.int64(pos[c]) for c in te], "fid": float(fid)}
        splits[i] = entry
    path = tmp_path / ("ints.pkl" if int_ids else "ref.pkl")
    path.write_bytes(pickle.dumps(splits))
    return path


def test_import_oodml_reference_structure(tmp_path):
    cls = [f"{i:03d}.Bird_{i}" for i in range(1, 21)]
    ds = make_dataset(cls, per=7)
    path = reference_pkl(cls, ds, tmp_path)
    doc = import_oodml(path, ds, SearchParams(episodes=2), seed=0)
    assert doc["provenance"]["source"] == "oodml-import"
    out = tmp_path / "imported.json"
    write_split_document(out, doc)
    sf = load_splits(out, dataset=ds)
    assert [s.fid for s in sf.series] == [40.0, 50.0, 90.0]
    assert [s.phase for s in sf.series] == ["easier", "start", "removal"]
    std = sf.get(2)
    assert std.standard and std.train == cls[:10] and std.val == cls[:2]
    # reference episodes (file names) became image ids of the right classes; others generated
    assert sorted(std.episodes) == [2, 5] and len(std.episodes[2]) == 3
    for k, lst in std.episodes.items():
        for ep in lst:
            assert set(ep) == set(std.test)
            for c, ids in ep.items():
                assert len(ids) == k and all(ds.items[i].label == c for i in ids)
    assert sf.get(3).train == cls[:7]
    # integer ids (1-based, numpy arrays) map by position
    ints = import_oodml(reference_pkl(cls, ds, tmp_path, int_ids=True), ds, SearchParams(episodes=1))
    assert [s["train"] for s in ints["series"]] == [s.train for s in sf.series]
    assert sorted(ints["series"][0]["episodes"]) == ["1", "10", "2", "5"]  # generated
    # names that match nothing: a clear error
    with pytest.raises(BadInputError, match="matches no class"):
        import_oodml(path, make_dataset([f"x{i}" for i in range(20)], per=7))


def test_trajectory_stride_evaluates_every_sth_step_and_the_selected_ones_exactly():
    from oodml.fid import FIDComputer

    x, lab = structured(C=40, per=6, d=16, seed=5)
    cls = names(40)
    full = SearchParams(num_splits=4, patience=None, max_iters=6, min_classes=12, episodes=1)
    strided = SearchParams(num_splits=4, patience=None, max_iters=6, min_classes=12, episodes=1, trajectory_stride=3)
    t1 = search_trajectory(x, lab, range(20), range(20, 40), full)
    t3 = search_trajectory(x, lab, range(20), range(20, 40), strided)
    swaps = sum(r["phase"] != "removal" for r in t1.records)
    assert t3.states[:swaps] == t1.states[:swaps]  # the same swap moves (no patience here)
    evaluated = [i for i, r in enumerate(t3.records) if r["fid"] is not None]
    assert 0 < len(evaluated) < len(t3.records) and t3.fid_calls == len(evaluated)
    for i in evaluated[: sum(i < swaps for i in evaluated)]:  # evaluated = the full search's FID
        assert t3.records[i]["fid"] == pytest.approx(t1.records[i]["fid"], rel=1e-12)
    hardest = t3.records[swaps]["parent"]  # removal starts from the hardest *evaluated* state
    assert t3.records[hardest]["fid"] == max(t3.records[i]["fid"] for i in evaluated if i < swaps)
    for i, r in enumerate(t3.records):  # every 3rd iteration of a phase, and each phase's last step
        last_of_phase = i + 1 == len(t3.records) or t3.records[i + 1]["phase"] != r["phase"]
        if r["phase"] != "start":
            k = i - next(j for j, q in enumerate(t3.records) if q["phase"] == r["phase"]) + 1
            assert (r["fid"] is not None) == (k % 3 == 0 or last_of_phase)
    doc = build_split_document(x, lab, cls, cls[:20], cls[20:], strided, dataset="synthetic")
    assert doc["provenance"]["params"]["trajectory_stride"] == 3
    assert (
        "trajectory_stride"
        not in build_split_document(x, lab, cls, cls[:20], cls[20:], full, dataset="synthetic")["provenance"]["params"]
    )
    text = dumps_split_document(doc)
    assert '"fid": null' in text
    sf = load_splits_from_text(text)
    fc = FIDComputer(x, lab)
    for s in sf["series"]:  # selected splits are evaluated steps, with their exact FIDs
        assert doc["trajectory"][s["step"]]["fid"] == s["fid"]
        tr, te = t3.states[s["step"]]
        assert s["fid"] == round_fid(fc.from_scratch(tr, te)) or s["fid"] == pytest.approx(
            fc.from_scratch(tr, te), rel=1e-11
        )
    with pytest.raises(OodmlError, match="trajectory-stride"):
        SearchParams(trajectory_stride=0)


def load_splits_from_text(text):
    from oodml.splits import validate_split_document

    doc = json.loads(text)
    validate_split_document(doc, "<strided>")
    return doc


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
