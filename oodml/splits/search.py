"""The split search on a feature table: rank classes by class means, swap (easier, harder
phases) and remove (removal phase), recording every step with its FID.

The rule is documented in full in :mod:`oodml.splits` ("The search"); :func:`search_trajectory`
runs it, :class:`_Search` holds one run's state and has one method per phase.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from oodml.errors import OodmlError
from oodml.progress import progress_bar
from oodml.splits.params import (
    MOVE_BUDGET,
    SearchParams,
    default_floor,
    default_max_iters,
    resolve_params,
)

__all__ = ["Trajectory", "class_means", "search_trajectory", "side_scores", "superclass_units"]


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """(C, d) float64 mean feature of every class id (rows of absent classes are 0)."""
    x = np.asarray(features)
    lab = np.asarray(labels, dtype=np.int64)
    C = int(lab.max()) + 1 if num_classes is None else int(num_classes)
    counts = np.bincount(lab, minlength=C)
    means = np.zeros((C, x.shape[1]), dtype=np.float64)
    if lab.size > 1 and np.all(lab[1:] >= lab[:-1]):
        xs = x  # already grouped by class: no copy
    else:
        order = np.argsort(lab, kind="stable")
        xs = x[order]
    offsets = np.concatenate(([0], np.cumsum(counts)))
    for c in np.flatnonzero(counts):
        means[c] = xs[offsets[c] : offsets[c + 1]].sum(axis=0, dtype=np.float64) / counts[c]
    return means


def side_scores(train_means: np.ndarray, test_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranking scores of the two sides (lower = looks more like the other side).

    ``train: ‖f_c − μ_test‖ − ‖f_c − μ_train‖``, ``test: ‖g_c − μ_train‖ − ‖g_c − μ_test‖``, with
    ``μ`` the mean of a side's class means.  Inputs (n, d) float64 class means.
    """
    mu_tr = train_means.mean(axis=0)
    mu_te = test_means.mean(axis=0)
    return _distance_gap(train_means, mu_te, mu_tr), _distance_gap(test_means, mu_tr, mu_te)


def _distance_gap(points: np.ndarray, far: np.ndarray, near: np.ndarray, block: int = 256) -> np.ndarray:
    """``‖x − far‖ − ‖x − near‖`` per row, a block of rows at a time: at SOP's size (11k × 2048
    float64 per side) the whole-array form made four 180 MB temporaries per side and spent most of
    its time in page faults; per row the arithmetic is the same, so are the values (bit for bit)."""
    out = np.empty(len(points))
    for i in range(0, len(points), block):
        x = points[i : i + block]
        out[i : i + block] = np.linalg.norm(x - far, axis=1) - np.linalg.norm(x - near, axis=1)
    return out


@dataclass
class Trajectory:
    """Result of :func:`search_trajectory` (class *ids*, not names).

    ``records[i]`` is the file record of step ``i`` (ids in ``to_test``/``to_train``/``removed``);
    ``states[i] = (train_ids, test_ids)`` in slot order.
    """

    records: list[dict]
    states: list[tuple[tuple[int, ...], tuple[int, ...]]]
    floors: tuple[int, int]
    max_iters: int
    fid_calls: int = 0
    seconds: dict = field(default_factory=dict)


def _pick_pairs(order_tr, order_te, slots_tr, slots_te, k_count, blocked: deque, history: int):
    """Apply one swap iteration in place; returns [(train_class, test_class), ...] moved."""
    moved = []
    limit = min(len(order_tr), len(order_te))
    for k in range(k_count):
        recent = set()
        if history > 0:
            for a, b in list(blocked)[-history:]:
                recent.add(a)
                recent.add(b)
        pick_tr = pick_te = None
        for r in range(k, limit):
            ct, cs = slots_tr[order_tr[r]], slots_te[order_te[r]]
            if pick_tr is None and ct not in recent:
                pick_tr = order_tr[r]
            if pick_te is None and cs not in recent:
                pick_te = order_te[r]
            if pick_tr is not None and pick_te is not None:
                break
        if pick_tr is None or pick_te is None:
            break
        a, b = slots_tr[pick_tr], slots_te[pick_te]
        slots_tr[pick_tr], slots_te[pick_te] = b, a
        blocked.append((a, b))
        moved.append((a, b))
    return moved


def superclass_units(
    train: Sequence[int], test: Sequence[int], superclass_of: Sequence[str | None]
) -> tuple[list[list[int]], list[int], list[int]]:
    """Group each side's classes by superclass (``superclass_of[c]`` of class id ``c``; a class
    without one is its own unit): ``(units, train_units, test_units)`` for :func:`search_trajectory`.
    Units are numbered train side first, each side in order of first appearance."""
    units: list[list[int]] = []
    sides = []
    for side in (train, test):
        index: dict[str, int] = {}
        ids = []
        for c in side:
            sup = superclass_of[int(c)]
            if sup is None:
                units.append([int(c)])
                ids.append(len(units) - 1)
                continue
            if sup not in index:
                units.append([])
                index[sup] = len(units) - 1
                ids.append(index[sup])
            units[index[sup]].append(int(c))
        sides.append(ids)
    return units, sides[0], sides[1]


class _Search:
    """One run of the search: the class means, the FID computer, the resolved parameters and the
    records so far.  ``search_trajectory`` calls :meth:`start`, then one method per phase."""

    def __init__(self, x, lab, train, test, p: SearchParams, *, fc, units, blas_threads, progress: bool, t0: float):
        means = class_means(x, lab)
        self.groups = None
        if units is not None:
            self.groups = [[int(c) for c in g] for g in units]
            means = np.stack([means[g].mean(axis=0) for g in self.groups])
        self.means = means
        if fc is None:
            # scipy.linalg ≈ 0.4 s: imported when a search runs, not by every reader of split files
            from oodml.shift.fid import FIDComputer

            fc = FIDComputer(x, lab, level=p.level, blas_threads=blas_threads)
        self.fc = fc
        self.t_setup = time.perf_counter() - t0
        self.train, self.test = train, test
        p = resolve_params(p, len(train), len(test))
        self.p = p
        self.S, self.H = int(p.swaps_per_iter), int(p.history)
        self.default_iters = p.max_iters is None
        max_iters = p.max_iters
        if max_iters is None:
            max_iters = default_max_iters(min(len(train), len(test)), self.S)
        self.max_iters = int(max_iters)
        if p.min_classes is None:
            self.floors = (default_floor(len(train), p.min_fraction), default_floor(len(test), p.min_fraction))
        else:
            self.floors = (min(int(p.min_classes), len(train)), min(int(p.min_classes), len(test)))
        self.stride = int(p.trajectory_stride)
        self.progress = progress
        self.records: list[dict] = []
        self.states: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self.unit_states: list[tuple[list[int], list[int]]] = []  # the states in units (= states without units)
        self.calls = 0
        self.t_fid = 0.0
        self.f0 = 0.0

    def expand(self, ids):
        """Unit ids to class ids (the identity without units)."""
        if self.groups is None:
            return ids
        return [c for u in ids for c in self.groups[u]]

    def fid_of(self, tr, te) -> float:
        self.calls += 1
        t = time.perf_counter()
        v = float(self.fc(self.expand(tr), self.expand(te)))
        self.t_fid += time.perf_counter() - t
        return v

    def add(self, phase, parent, tr, te, value, to_test=(), to_train=(), removed=()) -> int:
        """Record one step (ids expanded to classes); returns its step number."""
        self.unit_states.append((list(tr), list(te)))
        tr, te = self.expand(tr), self.expand(te)
        to_test, to_train, removed = self.expand(to_test), self.expand(to_train), self.expand(removed)
        self.records.append(
            {
                "step": len(self.records),
                "phase": phase,
                "fid": value,
                "to_test": [int(c) for c in to_test],
                "to_train": [int(c) for c in to_train],
                "removed": [int(c) for c in removed],
                "n_train": len(tr),
                "n_test": len(te),
                "parent": parent,
            }
        )
        self.states.append((tuple(tr), tuple(te)))
        return len(self.records) - 1

    def settle(self, tr, te) -> None:
        """With a stride, the last step of a phase gets its FID too (if it has none yet)."""
        r = self.records[-1]
        if r["fid"] is None:
            r["fid"] = self.fid_of(tr, te)

    def bar(self, total: int, desc: str):
        return progress_bar(total=total, desc=desc, enabled=self.progress, unit="it")

    def start(self) -> None:
        """Step 0: the standard split."""
        self.f0 = self.fid_of(self.train, self.test)
        self.add("start", None, self.train, self.test, self.f0)

    def swap_iteration(self, tr, te, blocked: deque, reverse: bool) -> list[tuple[int, int]]:
        """Rank both sides and apply one swap iteration to ``tr``/``te`` in place."""
        s_tr, s_te = side_scores(self.means[tr], self.means[te])
        o_tr = np.argsort(s_tr, kind="stable")
        o_te = np.argsort(s_te, kind="stable")
        if reverse:
            o_tr, o_te = o_tr[::-1], o_te[::-1]
        return _pick_pairs(list(o_tr), list(o_te), tr, te, self.S, blocked, self.H)

    def swap_phase(self, name: str, reverse: bool) -> int:
        """The easier (``reverse``) or harder phase from the standard split; returns its best step."""
        tr, te = list(self.train), list(self.test)
        blocked: deque = deque(maxlen=max(self.H, 1) * self.S + self.S)
        best, best_step, best_it, parent = self.f0, 0, 0, 0
        sign = -1.0 if reverse else 1.0  # harder: maximise; easier: minimise
        patience = self.p.patience
        with self.bar(self.max_iters, f"{name} phase") as bar:
            for it in range(1, self.max_iters + 1):
                moved = self.swap_iteration(tr, te, blocked, reverse)
                if not moved:
                    break
                value = self.fid_of(tr, te) if it % self.stride == 0 else None  # the moves need class means only
                parent = self.add(name, parent, tr, te, value, [a for a, _ in moved], [b for _, b in moved])
                bar.update(1)
                if value is None:
                    continue
                bar.set_postfix(fid=f"{value:.4g}")
                if sign * value > sign * best:
                    best, best_step, best_it = value, parent, it
                elif patience is not None and it - best_it >= int(patience):
                    break  # (with stride 1: `patience` iterations in a row without a new best)
        if self.records[-1]["fid"] is None:
            self.settle(tr, te)
            value = self.records[-1]["fid"]
            if sign * value > sign * best:
                best_step = len(self.records) - 1
        return best_step

    def removal_limit(self, tr, te) -> int:
        """Iterations of the removal phase: every removable class once (at most MOVE_BUDGET by default)."""
        removable = max(len(tr) - self.floors[0], len(te) - self.floors[1], 0)
        if self.default_iters:  # the scaling rule: at most MOVE_BUDGET classes removed per side
            removable = min(removable, MOVE_BUDGET)
        return math.ceil(removable / self.S)

    def remove_once(self, tr, te) -> tuple[list, list, list] | None:
        """One removal iteration: ``(train, test, removed)``, or None when both sides are at their floor."""
        r_tr = max(0, min(self.S, len(tr) - self.floors[0]))
        r_te = max(0, min(self.S, len(te) - self.floors[1]))
        if r_tr == 0 and r_te == 0:
            return None
        s_tr, s_te = side_scores(self.means[tr], self.means[te])
        o_tr = np.argsort(s_tr, kind="stable")[:r_tr]
        o_te = np.argsort(s_te, kind="stable")[:r_te]
        gone = [tr[i] for i in o_tr] + [te[i] for i in o_te]
        drop_tr, drop_te = set(o_tr.tolist()), set(o_te.tolist())
        tr = [c for i, c in enumerate(tr) if i not in drop_tr]
        te = [c for i, c in enumerate(te) if i not in drop_te]
        return tr, te, gone

    def removal_phase(self, hardest: int) -> None:
        """The removal phase from step ``hardest`` (the hardest state of the harder phase)."""
        tr, te = list(self.unit_states[hardest][0]), list(self.unit_states[hardest][1])
        best, best_it, parent = self.records[hardest]["fid"], 0, hardest
        patience = self.p.patience
        limit = self.removal_limit(tr, te)
        with self.bar(limit, "removal phase") as bar:
            for it in range(1, limit + 1):
                step = self.remove_once(tr, te)
                if step is None:
                    break
                tr, te, gone = step
                value = self.fid_of(tr, te) if it % self.stride == 0 else None
                parent = self.add("removal", parent, tr, te, value, removed=gone)
                bar.update(1)
                if value is None:
                    continue
                bar.set_postfix(fid=f"{value:.4g}")
                if value > best:
                    best, best_it = value, it
                elif patience is not None and it - best_it >= int(patience):
                    break
        if self.records[-1]["fid"] is None:
            self.settle(tr, te)


def search_trajectory(
    features,
    labels,
    train: Sequence[int],
    test: Sequence[int],
    params: SearchParams | None = None,
    *,
    fid=None,
    blas_threads: int | None = None,
    progress: bool = False,
    units: Sequence[Sequence[int]] | None = None,
) -> Trajectory:
    """Run the documented search (:mod:`oodml.splits`) on a feature table.

    Parameters
    ----------
    features : (n, d) float array, one row per image.
    labels : (n,) int class ids ``0 … C−1``.
    train, test : the standard split as class ids (disjoint, ≥ 2 classes each).
    params : :class:`SearchParams` (only the search fields are used here).
    fid : an existing :class:`oodml.fid.FIDComputer` on the same table and level (else one is built).
    blas_threads : BLAS threads of the FID computer built here (``None``: its default; 1 avoids
        OpenBLAS's collapse on an oversubscribed machine, see :mod:`oodml.fid`).
    units : swap whole groups of classes (``--swap-unit superclass``, see :func:`superclass_units`):
        ``units[u]`` lists the class ids of unit ``u``, and ``train``/``test`` are unit ids.  The
        rule ranks units by the mean of their class means, every swap or removal moves whole
        units, swaps per iteration, iterations and floors count units; the FID and the records
        are on classes, as without units.
    """
    p = params or SearchParams()
    x = np.asarray(features)
    lab = np.asarray(labels, dtype=np.int64)
    train, test = [int(c) for c in train], [int(c) for c in test]
    if len(set(train) & set(test)):
        raise OodmlError("the standard split's train and test classes overlap")
    if len(train) < 2 or len(test) < 2:
        raise OodmlError(f"each side needs at least 2 classes for an FID, got {len(train)} train / {len(test)} test")
    t0 = time.perf_counter()
    run = _Search(x, lab, train, test, p, fc=fid, units=units, blas_threads=blas_threads, progress=progress, t0=t0)
    run.start()
    hardest = 0
    if "easier" in run.p.phases:
        run.swap_phase("easier", reverse=True)
    if "harder" in run.p.phases:
        hardest = run.swap_phase("harder", reverse=False)
    if "removal" in run.p.phases:
        run.removal_phase(hardest)
    return Trajectory(
        run.records,
        run.states,
        run.floors,
        run.max_iters,
        run.calls,
        {"setup": run.t_setup, "fid": run.t_fid, "total": time.perf_counter() - t0},
    )
