"""Tests of oodml.splits.search: the swap and removal search against a plain-numpy transcription
of the reference, its invariants, the trajectory stride and superclass units.

The core search is tested on synthetic structured features (no oodml.features needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oodml.errors import OodmlError
from oodml.splits import (
    SearchParams,
    build_split_document,
    dumps_split_document,
    round_fid,
    search_trajectory,
    side_scores,
)


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
def test_harder_phase_moves_exactly_the_reference_classes(seed, swaps, history, structured):
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


def test_side_scores_blockwise_are_bit_identical_to_the_whole_array_formula():
    rng = np.random.default_rng(0)
    tr, te = rng.standard_normal((1000, 40)), rng.standard_normal((700, 40)) + 0.3
    mu_tr, mu_te = tr.mean(axis=0), te.mean(axis=0)
    s_tr, s_te = side_scores(tr, te)  # rows in blocks of 256: the last block is partial on both sides
    assert np.array_equal(s_tr, np.linalg.norm(tr - mu_te, axis=1) - np.linalg.norm(tr - mu_tr, axis=1))
    assert np.array_equal(s_te, np.linalg.norm(te - mu_tr, axis=1) - np.linalg.norm(te - mu_te, axis=1))


def test_rankings_put_the_most_other_like_class_first():
    tr = np.array([[0.0, 0], [1, 0], [9, 0]])  # the third looks like the test side
    te = np.array([[10.0, 0], [11, 0], [2, 0]])  # the third looks like the train side
    s_tr, s_te = side_scores(tr, te)
    assert np.argmin(s_tr) == 2 and np.argmin(s_te) == 2


# ------------------------------------------------------------------------- search invariants
@pytest.fixture(scope="module")
def traj60(structured):
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


def test_default_floor_and_no_patience_runs_to_floor(structured):
    x, lab = structured(C=60, per=4, d=16, seed=3)
    p = SearchParams(phases=("harder", "removal"), patience=None, max_iters=6, swaps_per_iter=3)
    traj = search_trajectory(x, lab, list(range(30)), list(range(30, 60)), p)
    assert traj.floors == (15, 15)  # max(10, ceil(50% of 30))
    rem = [r for r in traj.records if r["phase"] == "removal"]
    assert rem[-1]["n_train"] == 15 and rem[-1]["n_test"] == 15
    assert sum(1 for r in traj.records if r["phase"] == "harder") == 6


def test_search_is_deterministic_and_image_level_runs(structured):
    x, lab = structured(C=30, per=6, d=8, seed=5)
    p = SearchParams(level="image", patience=2, max_iters=4, min_classes=6)
    a = search_trajectory(x, lab, list(range(15)), list(range(15, 30)), p)
    b = search_trajectory(x, lab, list(range(15)), list(range(15, 30)), p)
    assert a.records == b.records
    from oodml.fid import frechet_distance_from_features

    tr, te = a.states[-1]
    ref = frechet_distance_from_features(x[np.isin(lab, tr)].astype(np.float64), x[np.isin(lab, te)].astype(np.float64))
    assert a.records[-1]["fid"] == pytest.approx(ref, rel=1e-8)


def test_bad_search_input(structured):
    x, lab = structured(C=10, per=3, d=4)
    with pytest.raises(OodmlError, match="overlap"):
        search_trajectory(x, lab, [0, 1, 2], [2, 3, 4])
    with pytest.raises(OodmlError, match="at least 2"):
        search_trajectory(x, lab, [0], [2, 3, 4])
    with pytest.raises(OodmlError, match="swaps-per-iter"):
        SearchParams(swaps_per_iter=0)
    with pytest.raises(OodmlError, match="min-classes"):
        SearchParams(min_classes=1)


def test_trajectory_stride_evaluates_every_sth_step_and_the_selected_ones_exactly(names, structured):
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
