r"""FID-graded class splits: the search, the selection, and the split file.

A *split* divides a dataset's classes into train and test sides.  The further apart the two
sides' feature distributions are (measured by the FID of :mod:`oodml.fid`, computed on frozen
features from :mod:`oodml.features`), the more out-of-distribution the test side is.  This module
builds a *series* of splits with evenly graded FIDs, from an easier-than-standard mix to a
much harder separation, as the ooDML benchmark does, and writes it to ``splits/<dataset>.json``.

The search (deterministic; no randomness at all)
------------------------------------------------
Notation: ``f_c`` is the mean feature of train class ``c``, ``g_c`` that of test class ``c``;
``μ_train`` / ``μ_test`` is the mean of one side's class means.  The rule always works on class
means (cheap, no FID needed); the FID that is *recorded* uses the chosen ``level`` (``"class"``:
the sides' sets of class means, as in the reference; ``"image"``: all images of each side).

**Ranking.**  Train classes are ranked by ``‖f_c − μ_test‖ − ‖f_c − μ_train‖`` ascending (the train
class that looks most like the test side comes first), test classes by
``‖g_c − μ_train‖ − ‖g_c − μ_test‖`` ascending.  Ties keep the side's slot order (stable sort).

**Swap iteration** (``swaps_per_iter = S``, ``history = H``).  The rankings are computed once per
iteration.  For ``k = 0 … S−1``: walk the two rankings jointly from rank ``k`` (up to the length of
the shorter side) and take the first train class and the first test class that were not moved in
the last ``H`` swaps; exchange them (the train class takes the test class's *slot* and vice
versa, so slot order is that of the reference code).  This is exactly the harder-phase rule of the
ooDML reference ``split_maker`` (its position history is equivalent to "classes moved in the last
``H`` swaps"); ``H = 0`` disables the history (in the reference ``H = 0`` would mean *infinite*
history through Python's ``[-0:]``).  If no admissible pair exists the phase ends.

**Phases** (each recorded in the trajectory, step by step, with its FID):

1. ``start`` (step 0): the dataset's standard split.
2. ``easier``: from the standard split, swap iterations with both rankings *reversed* (the train
   class that looks most like the train side leaves, i.e. the sides mix) — the FID falls.
   Stops when the FID has not gone below its best (lowest) value for ``patience`` iterations,
   after ``max_iters`` iterations, or when no admissible swap is left.
3. ``harder``: again from the standard split, swap iterations with the rankings as above — the
   FID rises.  Stops when the FID has not exceeded its best (highest) value for ``patience``
   iterations, after ``max_iters`` iterations, or when no admissible swap is left.
4. ``removal``: from the hardest state of the harder phase (highest FID, earliest on ties), each
   iteration removes the ``S`` top-ranked classes of each side (those that look most like the
   other side), never taking a side below its floor (``min_classes``; default
   ``max(10, ceil(min_fraction · the side's standard size))`` with ``min_fraction = 0.5``, and never
   below 2).  The floor keeps removal from trading shift for a smaller retrieval problem: a test
   side of a few dozen classes has fewer distractors, which raises Recall@1 whatever the shift
   (on the embedded dataset, below about half of the classes Recall@1 stopped falling with FID).  Stops when the FID has
   not exceeded the phase's best (starting with the hardest swap state's FID) for ``patience``
   iterations, or when both sides are at their floor.

``max_iters`` defaults to ``ceil(min(n_train, n_test) / S)`` (enough iterations to move every class
of the smaller side once); ``patience=None`` disables the patience rule (fixed-length phases, as
in the reference, which runs a fixed number of iterations).

**Defaults that scale with the number of classes** (:func:`default_swaps`,
:func:`default_max_iters`).  With ``n = min(n_train, n_test)``: ``S = max(2, ceil(n / 100))``
swaps per iteration (each iteration moves about 1% of the smaller side, at least 2 classes), and
a phase moves at most ``MOVE_BUDGET = 2000`` classes of a side: ``max_iters = ceil(min(n, 2000) / S)``
swap iterations, and the removal phase at most ``ceil(min(r, 2000) / S)`` iterations (``r``:
classes removable above the floors).  Up to 200 classes per side this is exactly the former rule
(``S = 2``, every class once: CUB, CARS, the embedded dataset); at Stanford Online Products' size
(11,317 / 11,316 classes) it gives ``S = 114`` and at most 18 iterations per phase, about 55 FIDs
for the whole series instead of thousands (the reference used 1,000 swaps and 20 iterations for
SOP).  Explicit ``swaps_per_iter`` / ``max_iters`` override the rule.

Selection
---------
All distinct states of the trajectory are candidates (a revisited state counts once, at its first
step).  From them :func:`select_series` picks ``K`` (``num_splits``) states whose FIDs best match
``K`` evenly spaced targets from the lowest to the highest FID (least squares over an
order-preserving assignment, solved exactly by dynamic programming), always including the easiest
and hardest states (when ``K ≥ 3``) and the standard split.  Series ids run ``1 … K`` in order of
increasing FID.

What each split carries
-----------------------
* ``val``: a class-disjoint validation subset of its train classes: ``round(val_fraction · n)``
  classes, at least 2, leaving at least 2 to fit on (none if the side has fewer than 4 classes),
  drawn from ``seed`` and the split's train classes (the same split gets the same ``val`` in any
  series).  Training fits on ``train − val`` (:attr:`Split.fit_classes`).
* ``episodes``: for each ``k`` in ``shots`` (default 1, 2, 5, 10), ``episodes`` few-shot episodes,
  each mapping every test class to ``k`` support image ids (sorted; the query set is the class's
  other images).  **A class with fewer than ``k + 1`` images is left out of the ``k``-shot episodes**
  (it would have no query image).  Drawn from ``seed``, ``k`` and the split's test classes.

The file
--------
``schema`` (``oodml.splits/1``), ``provenance`` (dataset, fingerprint, extractor, level, every
parameter, seed, oodml version, source), ``classes`` (all class names, dataset order),
``num_images``, ``trajectory`` (one record per step: ``step``, ``phase``, ``fid``, ``to_test``,
``to_train``, ``removed``, ``n_train``, ``n_test`` and ``parent``, the step whose state the record's
moves apply to), and ``series``.  Written canonically and atomically: identical inputs give a
byte-identical file.  Lists of numbers and of class names are written on one line each (a few MB
instead of tens of MB for large datasets).  :func:`load_splits` validates a file and names it in
every error; :func:`check_split_file` recomputes its FIDs.

**A stride** (``SearchParams.trajectory_stride``, ``--trajectory-stride S``): the moves of every
phase need only class means, so with ``S > 1`` the FID is evaluated only every ``S``-th iteration
of a phase and at its last step (the other records carry ``"fid": null``); patience is checked at
evaluated steps (``patience`` iterations since the last new best), the hardest state is the
hardest evaluated one, and the series is selected among evaluated steps, so every selected split
has its exact FID.  At image level, where each FID is one ``d × d`` eigenvalue problem, this cuts
the series' cost by about ``S`` (``S = 1``, the default, is the full search, and its files carry
no ``trajectory_stride`` key).

**FIDs are written at** :data:`FID_DIGITS` **(12) significant digits** (:func:`round_fid`), and the
series is selected on those rounded values.  Another CPU's BLAS rounds the last of a float64's ~16
digits differently (e.g. ``0.19190092937261793`` against ``0.1919009293726175``); at 12 digits both
give ``0.191900929373``, so a split file regenerated on any machine is byte-identical to the shipped
one.  ``--check`` compares recomputed FIDs at a relative tolerance (:data:`FID_RTOL`, 1e-5), far
above both the rounding and the run-to-run differences.

Python API::

    from oodml.splits import make_splits, load_splits
    sf = make_splits("glyphs", out="splits/glyphs.json")         # search, select, write
    sf = load_splits("splits/glyphs.json", dataset=ds)           # validate + read
    split = sf.get(3); split.train, split.test, split.val, split.episodes[5][0]

Lower-level pieces: :func:`search_trajectory` (the search on a feature table),
:func:`select_series`, :func:`validation_classes`, :func:`make_episodes`,
:func:`build_split_document`, :func:`write_split_document`, :func:`import_oodml`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oodml.errors import BadInputError, OodmlError

__all__ = [
    "SCHEMA",
    "DEFAULT_SHOTS",
    "PHASES",
    "SearchParams",
    "Split",
    "SplitFile",
    "CheckReport",
    "Trajectory",
    "assemble_document",
    "build_split_document",
    "check_split_file",
    "class_means",
    "default_floor",
    "dumps_split_document",
    "import_oodml",
    "load_splits",
    "make_episodes",
    "make_splits",
    "replay_from",
    "round_fid",
    "side_scores",
    "search_trajectory",
    "select_series",
    "validate_split_document",
    "validation_classes",
    "write_split_document",
]

#: Schema tag of the split file; bump on incompatible changes.
SCHEMA = "oodml.splits/1"
KNOWN_SCHEMAS = (SCHEMA,)
#: Shots of the few-shot episodes.
DEFAULT_SHOTS = (1, 2, 5, 10)
#: Phase names in trajectory records.
PHASES = ("start", "easier", "harder", "removal")
#: Relative tolerance of :func:`check_split_file` when comparing recomputed FIDs.
FID_RTOL = 1e-5
#: Significant digits of the FIDs written in a split file (see "The file" above).
FID_DIGITS = 12


def round_fid(value: float) -> float:
    """``value`` rounded to :data:`FID_DIGITS` significant digits (what a split file stores):
    machine-independent where float64 results differ in their last digits between BLAS builds."""
    v = float(value)
    if not math.isfinite(v):
        return v
    return float(f"{v:.{FID_DIGITS}g}")


# ============================================================================================
# Parameters
# ============================================================================================
@dataclass
class SearchParams:
    """Every parameter of the search, selection, validation classes and episodes.

    ``swaps_per_iter=None``: :func:`default_swaps` of the smaller side.  ``max_iters=None``:
    :func:`default_max_iters` (``ceil(min(n_train, n_test, MOVE_BUDGET) / swaps_per_iter)``).  ``min_classes=None``:
    per side ``max(10, ceil(min_fraction · standard size))`` (see :func:`default_floor`).
    ``patience=None``: phases run ``max_iters`` iterations (no patience rule).
    """

    level: str = "class"
    num_splits: int = 9
    swaps_per_iter: int | None = None  # None: default_swaps(min side), 2 up to 200 classes per side
    history: int = 5
    patience: int | None = 5
    max_iters: int | None = None
    min_classes: int | None = None
    min_fraction: float = 0.5
    phases: tuple[str, ...] = ("easier", "harder", "removal")
    episodes: int = 10
    shots: tuple[int, ...] = DEFAULT_SHOTS
    val_fraction: float = 0.15
    #: FID evaluated every this many iterations of a phase (and at its last); 1 = every step.
    trajectory_stride: int = 1

    def __post_init__(self) -> None:
        self.phases = tuple(self.phases)
        self.shots = tuple(int(k) for k in self.shots)
        if self.level not in ("class", "image"):
            raise OodmlError(f"level must be 'class' or 'image', got {self.level!r}")
        for name in ("num_splits", "swaps_per_iter"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise OodmlError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("history", "episodes"):
            if int(getattr(self, name)) < 0:
                raise OodmlError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.patience is not None and int(self.patience) < 1:
            raise OodmlError(f"patience must be at least 1 (or None), got {self.patience}")
        if self.max_iters is not None and int(self.max_iters) < 0:
            raise OodmlError(f"max-iters must be at least 0, got {self.max_iters}")
        if self.min_classes is not None and int(self.min_classes) < 2:
            raise OodmlError(
                f"min-classes must be at least 2 (an FID needs two points per side), got {self.min_classes}"
            )
        if not 0.0 < float(self.min_fraction) <= 1.0:
            raise OodmlError(f"min-fraction must be in (0, 1], got {self.min_fraction}")
        bad = [p for p in self.phases if p not in ("easier", "harder", "removal")]
        if bad:
            raise OodmlError(f"unknown phase {bad[0]!r}; choose from easier, harder, removal")
        if any(k < 1 for k in self.shots):
            raise OodmlError(f"shots must be positive, got {list(self.shots)}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise OodmlError(f"val-fraction must be in [0, 1), got {self.val_fraction}")
        if int(self.trajectory_stride) < 1:
            raise OodmlError(f"trajectory-stride must be at least 1, got {self.trajectory_stride}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["phases"] = list(self.phases)
        d["shots"] = list(self.shots)
        if self.trajectory_stride == 1:  # the default: files stay as they were before the option
            del d["trajectory_stride"]
        return d


#: Classes of a side one phase of the search moves (or removes) at most, by default.
MOVE_BUDGET = 2000
#: Share of the smaller side swapped per iteration, by default (at least 2 classes).
SWAP_FRACTION = 0.01


def default_swaps(n_small: int) -> int:
    """Default swaps per iteration for a smaller side of ``n_small`` classes:
    ``max(2, ceil(SWAP_FRACTION · n_small))`` (2 up to 200 classes; 114 for SOP's 11,316)."""
    return max(2, math.ceil(SWAP_FRACTION * int(n_small) - 1e-9))


def default_max_iters(n_small: int, swaps: int) -> int:
    """Default swap iterations per phase: ``ceil(min(n_small, MOVE_BUDGET) / swaps)`` (every class of
    the smaller side once, but at most ``MOVE_BUDGET`` classes moved per phase)."""
    return math.ceil(min(int(n_small), MOVE_BUDGET) / int(swaps))


def resolve_params(params: SearchParams, n_train: int, n_test: int) -> SearchParams:
    """A copy of ``params`` with ``swaps_per_iter`` resolved by :func:`default_swaps` when None."""
    from dataclasses import replace

    if params.swaps_per_iter is not None:
        return params
    return replace(params, swaps_per_iter=default_swaps(min(int(n_train), int(n_test))))


def default_floor(side_size: int, fraction: float = 0.5) -> int:
    """Default removal floor of a side: ``max(10, ceil(fraction · side_size))``, at most the side."""
    return max(2, min(side_size, max(10, math.ceil(fraction * side_size - 1e-9))))


# ============================================================================================
# Core search on a feature table
# ============================================================================================
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
    s_tr = np.linalg.norm(train_means - mu_te, axis=1) - np.linalg.norm(train_means - mu_tr, axis=1)
    s_te = np.linalg.norm(test_means - mu_tr, axis=1) - np.linalg.norm(test_means - mu_te, axis=1)
    return s_tr, s_te


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
    """Run the documented search (module docstring) on a feature table.

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
    import time

    from tqdm.auto import tqdm

    from oodml.fid import FIDComputer

    p = params or SearchParams()
    x = np.asarray(features)
    lab = np.asarray(labels, dtype=np.int64)
    train, test = [int(c) for c in train], [int(c) for c in test]
    if len(set(train) & set(test)):
        raise OodmlError("the standard split's train and test classes overlap")
    if len(train) < 2 or len(test) < 2:
        raise OodmlError(f"each side needs at least 2 classes for an FID, got {len(train)} train / {len(test)} test")
    t0 = time.perf_counter()
    means = class_means(x, lab)
    if units is not None:
        groups = [[int(c) for c in g] for g in units]
        means = np.stack([means[g].mean(axis=0) for g in groups])

        def expand(ids):
            return [c for u in ids for c in groups[u]]
    else:

        def expand(ids):
            return ids

    fc = fid if fid is not None else FIDComputer(x, lab, level=p.level, blas_threads=blas_threads)
    t_setup = time.perf_counter() - t0
    p = resolve_params(p, len(train), len(test))
    S, H = int(p.swaps_per_iter), int(p.history)
    max_iters = p.max_iters
    default_iters = max_iters is None
    if max_iters is None:
        max_iters = default_max_iters(min(len(train), len(test)), S)
    max_iters = int(max_iters)
    if p.min_classes is None:
        floors = (default_floor(len(train), p.min_fraction), default_floor(len(test), p.min_fraction))
    else:
        floors = (min(int(p.min_classes), len(train)), min(int(p.min_classes), len(test)))

    records: list[dict] = []
    states: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    calls = [0]
    t_fid = [0.0]

    def fid_of(tr, te) -> float:
        calls[0] += 1
        t = time.perf_counter()
        v = float(fc(expand(tr), expand(te)))
        t_fid[0] += time.perf_counter() - t
        return v

    unit_states: list[tuple[list[int], list[int]]] = []  # the states in units (= states without units)

    def add(phase, parent, tr, te, value, to_test=(), to_train=(), removed=()):
        unit_states.append((list(tr), list(te)))
        tr, te = expand(tr), expand(te)
        to_test, to_train, removed = expand(to_test), expand(to_train), expand(removed)
        records.append(
            {
                "step": len(records),
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
        states.append((tuple(tr), tuple(te)))
        return len(records) - 1

    f0 = fid_of(train, test)
    add("start", None, train, test, f0)

    bar_kw = dict(disable=not progress, leave=False, unit="it")

    stride = int(p.trajectory_stride)

    def settle(tr, te) -> None:
        """With a stride, the last step of a phase gets its FID too (if it has none yet)."""
        r = records[-1]
        if r["fid"] is None:
            r["fid"] = fid_of(tr, te)

    def swap_phase(name: str, reverse: bool) -> int:
        tr, te = list(train), list(test)
        blocked: deque = deque(maxlen=max(H, 1) * S + S)
        best, best_step, best_it, parent = f0, 0, 0, 0
        sign = -1.0 if reverse else 1.0  # harder: maximise; easier: minimise
        with tqdm(total=max_iters, desc=f"{name} phase", **bar_kw) as bar:
            for it in range(1, max_iters + 1):
                s_tr, s_te = side_scores(means[tr], means[te])
                o_tr = np.argsort(s_tr, kind="stable")
                o_te = np.argsort(s_te, kind="stable")
                if reverse:
                    o_tr, o_te = o_tr[::-1], o_te[::-1]
                moved = _pick_pairs(list(o_tr), list(o_te), tr, te, S, blocked, H)
                if not moved:
                    break
                value = fid_of(tr, te) if it % stride == 0 else None  # the moves need class means only
                parent = add(name, parent, tr, te, value, [a for a, _ in moved], [b for _, b in moved])
                bar.update(1)
                if value is None:
                    continue
                bar.set_postfix(fid=f"{value:.4g}")
                if sign * value > sign * best:
                    best, best_step, best_it = value, parent, it
                elif p.patience is not None and it - best_it >= int(p.patience):
                    break  # (with stride 1: `patience` iterations in a row without a new best)
        if records[-1]["fid"] is None:
            settle(tr, te)
            value = records[-1]["fid"]
            if sign * value > sign * best:
                best_step = len(records) - 1
        return best_step

    hardest = 0
    if "easier" in p.phases:
        swap_phase("easier", reverse=True)
    if "harder" in p.phases:
        hardest = swap_phase("harder", reverse=False)
    if "removal" in p.phases:
        tr, te = list(unit_states[hardest][0]), list(unit_states[hardest][1])
        best, best_it, parent = records[hardest]["fid"], 0, hardest
        removable = max(len(tr) - floors[0], len(te) - floors[1], 0)
        if default_iters:  # the scaling rule: at most MOVE_BUDGET classes removed per side
            removable = min(removable, MOVE_BUDGET)
        limit = math.ceil(removable / S)
        with tqdm(total=limit, desc="removal phase", **bar_kw) as bar:
            for it in range(1, limit + 1):
                r_tr = max(0, min(S, len(tr) - floors[0]))
                r_te = max(0, min(S, len(te) - floors[1]))
                if r_tr == 0 and r_te == 0:
                    break
                s_tr, s_te = side_scores(means[tr], means[te])
                o_tr = np.argsort(s_tr, kind="stable")[:r_tr]
                o_te = np.argsort(s_te, kind="stable")[:r_te]
                gone = [tr[i] for i in o_tr] + [te[i] for i in o_te]
                drop_tr, drop_te = set(o_tr.tolist()), set(o_te.tolist())
                tr = [c for i, c in enumerate(tr) if i not in drop_tr]
                te = [c for i, c in enumerate(te) if i not in drop_te]
                value = fid_of(tr, te) if it % stride == 0 else None
                parent = add("removal", parent, tr, te, value, removed=gone)
                bar.update(1)
                if value is None:
                    continue
                bar.set_postfix(fid=f"{value:.4g}")
                if value > best:
                    best, best_it = value, it
                elif p.patience is not None and it - best_it >= int(p.patience):
                    break
        if records[-1]["fid"] is None:
            settle(tr, te)
    return Trajectory(
        records,
        states,
        floors,
        max_iters,
        calls[0],
        {"setup": t_setup, "fid": t_fid[0], "total": time.perf_counter() - t0},
    )


# ============================================================================================
# Selection
# ============================================================================================
def select_series(fids: Sequence[float], num_splits: int, required: int = 0) -> list[int]:
    """Pick ``num_splits`` indices of ``fids`` whose values are as evenly spaced as possible.

    "Evenly spaced" means: the picks, sorted by FID, minimise the sum of squared gaps between
    consecutive FIDs, ``Σ_j (fid[i_{j+1}] − fid[i_j])²`` -- for fixed end points that sum is smallest
    when all gaps are equal.  The pick always contains ``required`` (the standard split) and, when
    ``num_splits ≥ 3``, the lowest and highest FID.  Because the gaps are measured between the
    picks themselves (not against fixed targets), a standard split that happens to lie close to the
    easiest state costs one small gap and the other picks spread evenly over the rest of the range.
    Returns the picked indices sorted by (FID, index).  Exact dynamic programme, ``O(K·N²)``.
    """
    vals = np.asarray(fids, dtype=np.float64)
    N = len(vals)
    if N == 0:
        return []
    order = sorted(range(N), key=lambda i: (vals[i], i))
    K = min(int(num_splits), N)
    pos_req = order.index(required)
    if K == 1:
        return [required]
    v = vals[order]
    INF = float("inf")
    gap2 = (v[None, :] - v[:, None]) ** 2  # gap2[i', i] for i' < i
    allowed_first = np.zeros(N, bool)
    allowed_first[0 if K >= 3 else slice(None)] = True
    # cost[f, i]: best cost of a chain of j+1 picks ending at sorted candidate i; f = required used
    cost = np.full((2, N), INF)
    for i in np.flatnonzero(allowed_first):
        cost[1 if i == pos_req else 0, i] = 0.0
    back: list[np.ndarray] = []
    idx = np.arange(N)
    for j in range(1, K):
        new = np.full((2, N), INF)
        arg = np.full((2, N), -1, dtype=np.int64)
        for i in range(1, N):
            if j == K - 1 and K >= 3 and i != N - 1:
                continue
            is_req = i == pos_req
            for f_prev in (0, 1):
                if is_req and f_prev == 1:
                    continue
                cand = cost[f_prev, :i] + gap2[:i, i]
                ip = int(np.argmin(cand))  # first minimum: ties go to the lower FID / index
                c = cand[ip]
                if not np.isfinite(c):
                    continue
                f_new = 1 if (is_req or f_prev == 1) else 0
                if c < new[f_new, i]:
                    new[f_new, i] = c
                    arg[f_new, i] = int(idx[ip]) * 2 + f_prev
        back.append(arg)
        cost = new
    i = int(np.argmin(cost[1]))
    if not np.isfinite(cost[1, i]):  # pragma: no cover - infeasible only if N < K
        raise OodmlError("cannot select splits (too few distinct states)")
    picks = [i]
    f = 1
    for j in range(K - 1, 0, -1):
        code = int(back[j - 1][f, i])
        i, f = code // 2, code % 2
        picks.append(i)
    picks.reverse()
    return [order[i] for i in picks]


# ============================================================================================
# Validation classes and episodes
# ============================================================================================
def _content_seed(seed: int, names: Iterable[str], tag: int) -> np.random.Generator:
    from oodml.io import stable_hash

    h = int(stable_hash(sorted(names)), 16)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, h & 0xFFFFFFFF, h >> 32, int(tag)])


def validation_classes(train: Sequence[str], seed: int = 0, fraction: float = 0.15) -> list[str]:
    """A class-disjoint validation subset of ``train`` (in ``train``'s order).

    ``round(fraction · n)`` classes, at least 2, leaving at least 2 to fit on; empty if
    ``fraction == 0`` or ``n < 4``.  Deterministic from ``seed`` and the set of train classes.
    """
    n = len(train)
    if fraction <= 0 or n < 4:
        return []
    m = min(max(2, int(round(fraction * n))), n - 2)
    rng = _content_seed(seed, train, 0x7A1)
    pick = set(rng.choice(n, size=m, replace=False).tolist())
    return [c for i, c in enumerate(train) if i in pick]


def make_episodes(
    test: Sequence[str],
    images_by_class: dict[str, Sequence[int]],
    *,
    shots: Sequence[int] = DEFAULT_SHOTS,
    episodes: int = 10,
    seed: int = 0,
) -> dict[int, list[dict[str, list[int]]]]:
    """Few-shot episodes: ``{k: [ {class: sorted k support image ids}, … episodes ]}``.

    A class with fewer than ``k + 1`` images is left out of the ``k``-shot episodes (it would have
    no query image).  Deterministic from ``seed``, ``k`` and the set of test classes.
    """
    out: dict[int, list[dict[str, list[int]]]] = {}
    test = list(test)
    groups = [np.asarray(images_by_class[c], dtype=np.int64) for c in test]
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    ids = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(test)), sizes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(test) else sizes
    for k in shots:
        k = int(k)
        rng = _content_seed(seed, test, 1000 + k)
        usable = np.flatnonzero(sizes >= k + 1)
        eps = []
        for _ in range(int(episodes)):
            # a uniform random k-subset per class: the k smallest of i.i.d. uniform keys
            keys = rng.random(ids.size)
            order = np.lexsort((keys, owner))  # grouped by class, random order inside
            picks = ids[order][starts[usable, None] + np.arange(k)[None, :]]
            picks.sort(axis=1)
            eps.append({test[c]: row.tolist() for c, row in zip(usable.tolist(), picks)})
        out[int(k)] = eps
    return out


# ============================================================================================
# Building the document
# ============================================================================================
def _oodml_version() -> str:
    from oodml import __version__

    return __version__


def _ordered(names: Iterable[str], index: dict[str, int]) -> list[str]:
    return sorted(names, key=index.__getitem__)


def _finish_series(
    entries: list[dict], classes: list[str], images_by_class: dict[str, list[int]], params: SearchParams, seed: int
) -> list[dict]:
    """Add ids (1..K by FID), val, image counts and episodes to selected entries."""
    index = {c: i for i, c in enumerate(classes)}
    entries = sorted(entries, key=lambda e: (round_fid(e["fid"]), e["step"]))
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
) -> dict:
    """Search, select and assemble the whole split document (a JSON-able dict, see the module
    docstring) for a feature table.

    ``superclass_of`` (one superclass name, or None, per class of ``classes``): move whole
    superclasses instead of classes (``--swap-unit superclass``, :func:`superclass_units`);
    recorded as ``provenance.swap_unit``.

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
        if len(superclass_of) != len(classes) or all(s is None for s in superclass_of):
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
    )


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
) -> dict:
    """Turn a :class:`Trajectory` (ids) into the file document (names), with the selected series."""
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
    # distinct states: the first step that reached each
    seen: dict = {}
    for i, (tr, te) in enumerate(traj.states):
        if trajectory[i]["fid"] is None:  # not evaluated (--trajectory-stride): not selectable
            continue
        key = (frozenset(tr), frozenset(te))
        seen.setdefault(key, i)
    distinct = sorted(seen.values())
    picks = select_series([trajectory[i]["fid"] for i in distinct], params.num_splits, required=0)
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
    series = _finish_series(entries, classes, images_by_class, params, seed)
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
    return {
        "schema": SCHEMA,
        "provenance": dict(prov),
        "classes": list(classes),
        "num_images": int(num_images),
        "trajectory": trajectory,
        "series": series,
    }


# ============================================================================================
# Writing
# ============================================================================================
_SCALARS = (str, int, float, bool, type(None))
_LEAF_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # C-accelerated, ", " separators
_encode_str = json.encoder.encode_basestring  # what json.dumps(s, ensure_ascii=False) returns for a str


def _scalar(v):
    """A scalar as plain JSON data, normalised like :func:`oodml.io.dumps_json` (numpy scalars to
    Python, non-finite floats to ``None``, paths to strings)."""
    if type(v) is int or type(v) is str or v is None or type(v) is bool:
        return v
    from oodml.io import _jsonable

    return _jsonable(v)


def _leaf_text(items: list) -> str | None:
    """One-line JSON of a flat list of scalars, or ``None`` when ``items`` holds a container.

    Fast path: lists of plain ``int`` or ``str`` (image ids, class names: nearly all of a file's
    bytes) go to the C encoder in one call, without a Python-level visit per value."""
    kinds = set(map(type, items))
    if kinds == {int}:
        return repr(items)  # a list of Python ints prints exactly as JSON does ("[1, 2, 3]")
    if kinds <= {int, str}:
        return "[" + ", ".join([_encode_str(v) if type(v) is str else repr(v) for v in items]) + "]"
    if not all(isinstance(v, _SCALARS) or np.isscalar(v) and not isinstance(v, (bytes, np.bytes_)) for v in items):
        return None
    return _LEAF_ENCODER.encode([_scalar(v) for v in items])


def _dump(obj, indent: int, level: int, out: list[str]) -> None:
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, tuple):
        obj = list(obj)
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        out.append("{\n")
        last = len(obj) - 1
        for n, (k, v) in enumerate(obj.items()):
            out.append(pad + _encode_str(str(k)) + ": ")
            leaf = _leaf_text(v) if type(v) is list else None  # fast path: an episode's id lists
            if leaf is not None:
                out.append(leaf)
            else:
                _dump(v, indent, level + 1, out)
            out.append(",\n" if n < last else "\n")
        out.append(end + "}")
    elif isinstance(obj, list):
        leaf = _leaf_text(obj)
        if leaf is not None:  # includes the empty list
            out.append(leaf)
            return
        out.append("[\n")
        last = len(obj) - 1
        for n, v in enumerate(obj):
            out.append(pad)
            _dump(v, indent, level + 1, out)
            out.append(",\n" if n < last else "\n")
        out.append(end + "]")
    else:
        out.append(_LEAF_ENCODER.encode(_scalar(obj)))


def dumps_split_document(doc: dict) -> str:
    """Canonical text of a split document: values normalised as by :func:`oodml.io.dumps_json`
    (numpy to Python, NaN/inf to ``null``), nested containers indented, flat lists (class names,
    image ids) on one line, trailing newline.

    One pass over the document; flat lists of ``int``/``str`` (and numpy integer arrays) are
    encoded by the C JSON encoder in one call each."""
    out: list[str] = []
    _dump(doc, 1, 0, out)
    return "".join(out) + "\n"


def write_split_document(path, doc: dict) -> Path:
    """Validate ``doc`` and write it atomically (byte-identical for identical documents)."""
    from oodml.io import atomic_write

    path = Path(path)
    text = dumps_split_document(doc)
    validate_split_document(json.loads(text), str(path))
    atomic_write(path, text)
    return path


# ============================================================================================
# Reading and validation
# ============================================================================================
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
    control_of: int | None = None  # a class-count control: the series id it matches (oodml.controls)
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
    controls: list[Split] = field(default_factory=list)  # class-count controls (oodml.controls)

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


def validate_split_document(doc: Any, source: str = "<document>", dataset=None) -> None:
    """Check a split document; raise :class:`BadInputError` naming ``source`` on the first problem.

    Checks: known schema; required fields; class list unique; every split's train/test non-empty,
    disjoint and made of known classes; ``val ⊂ train``; ids unique positive integers running in
    order of FID; FIDs finite; episodes (k-shot: k distinct ids of that class, within
    ``num_images``); trajectory steps 0, 1, … with known phases.  With ``dataset`` (an
    :class:`~oodml.datasets.ImageDataset`): every class exists in the dataset, the image count
    matches, and episode image ids belong to their class.
    """
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
    known = set(classes)
    # a names-only import (oodml.published_splits): episodes name image files, resolved on load
    names_only = bool(doc["provenance"].get("names_only"))
    if names_only and dataset is not None:
        from oodml.published_splits import resolve_names_only

        doc = resolve_names_only(doc, dataset, source)
        return validate_split_document(doc, source, dataset)
    n_img = doc["num_images"]
    if not isinstance(n_img, int) or n_img < 0:
        _fail(source, "num_images must be a non-negative integer")
    traj = doc["trajectory"]
    if not isinstance(traj, list):
        _fail(source, "trajectory must be a list")
    for i, r in enumerate(traj):
        if not isinstance(r, dict) or r.get("step") != i:
            _fail(source, f"trajectory record {i} must be an object with step {i}")
        if r.get("phase") not in PHASES:
            _fail(source, f"trajectory step {i} has unknown phase {r.get('phase')!r} (known: {', '.join(PHASES)})")
        f = r.get("fid")
        if f is not None and (not isinstance(f, (int, float)) or isinstance(f, bool) or not math.isfinite(f)):
            _fail(source, f"trajectory step {i} has a non-numeric fid {f!r}")
        for k in ("to_test", "to_train", "removed"):
            bad = [c for c in _str_list(r.get(k, []), source, f"trajectory step {i} {k}") if c not in known]
            if bad:
                _fail(source, f"trajectory step {i} names unknown class {bad[0]!r}")
    series = doc["series"]
    if not isinstance(series, list) or not series:
        _fail(source, "series must be a non-empty list")
    ids, prev_fid = set(), -math.inf
    ds_classes = None
    if dataset is not None:
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
                stacklevel=2,
            )
    labels = dataset.label_names if dataset is not None else None
    for s in series:
        if not isinstance(s, dict):
            _fail(source, "every series entry must be an object")
        sid = s.get("id")
        if not isinstance(sid, int) or isinstance(sid, bool) or sid < 1:
            _fail(source, f"split id {sid!r} is not a positive integer")
        if sid in ids:
            _fail(source, f"split id {sid} appears twice")
        ids.add(sid)
        f = s.get("fid")
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not math.isfinite(f):
            _fail(source, f"split {sid} has a non-numeric fid {f!r}")
        if f < prev_fid:
            _fail(
                source, f"split {sid} has FID {f} below the previous split's {prev_fid}: ids must run in order of FID"
            )
        prev_fid = f
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
                for c, sup in ep.items():
                    if c not in test_set:
                        _fail(source, f"split {sid} {k}-shot episode {e} names {c!r}, which is not a test class")
                    if names_only:
                        if (
                            not isinstance(sup, list)
                            or len(sup) != k
                            or len(set(sup)) != k
                            or not all(isinstance(i, str) and i for i in sup)
                        ):
                            _fail(
                                source,
                                f"split {sid} {k}-shot episode {e} class {c!r} needs {k} distinct image file names",
                            )
                        continue
                    if (
                        not isinstance(sup, list)
                        or len(sup) != k
                        or len(set(sup)) != k
                        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_img for i in sup)
                    ):
                        _fail(
                            source,
                            f"split {sid} {k}-shot episode {e} class {c!r} needs {k} distinct image ids "
                            f"in 0..{n_img - 1}",
                        )
                    if labels is not None and any(labels[i] != c for i in sup):
                        bad_i = next(i for i in sup if labels[i] != c)
                        raise BadInputError(
                            f"split file {source}: split {sid} {k}-shot episode {e} gives image {bad_i} to class "
                            f"{c!r} but it belongs to {labels[bad_i]!r} in dataset {dataset.name!r}; regenerate it"
                        )
    if doc.get("controls") is not None:
        from oodml.controls import validate_controls

        validate_controls(doc, source, dataset)


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


def load_splits(path, dataset=None) -> SplitFile:
    """Read and validate a split file (see :func:`validate_split_document`).

    ``dataset``: an :class:`~oodml.datasets.ImageDataset` to check the classes and episode
    image ids against.  Errors are :class:`~oodml.errors.BadInputError` naming the file.
    """
    from oodml.io import read_json

    path = Path(path)
    doc = read_json(path, what="split file")
    validate_split_document(doc, str(path), dataset)
    if dataset is not None and isinstance(doc.get("provenance"), dict) and doc["provenance"].get("names_only"):
        from oodml.published_splits import resolve_names_only  # names -> this dataset's classes and images

        doc = resolve_names_only(doc, dataset, str(path))
    return SplitFile(
        path=path,
        schema=doc["schema"],
        provenance=doc["provenance"],
        classes=list(doc["classes"]),
        num_images=int(doc["num_images"]),
        trajectory=list(doc["trajectory"]),
        series=[_to_split(s) for s in doc["series"]],
        raw=doc,
        controls=[_to_split(c) for c in doc.get("controls") or []],
    )


# ============================================================================================
# Replay and check
# ============================================================================================
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
    from tqdm.auto import tqdm

    from oodml.fid import FIDComputer

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
    for kind, ident, tr, te, stored in tqdm(items, desc="recomputing FIDs", disable=not progress, leave=False):
        value = float(fc([index[c] for c in tr], [index[c] for c in te]))
        ok = close(stored, value)
        rows.append({"what": kind, "id": ident, "stored": stored, "recomputed": value, "ok": ok})
        if not ok:
            mismatches.append(f"{kind} {ident}: stored FID {stored!r}, recomputed {value!r}")
    return CheckReport(rows, mismatches, structure_ok)


# ============================================================================================
# ooDML import
# ============================================================================================
class _NameMapper:
    """Maps reference class names (folder names, product ids, integer ids) onto dataset classes."""

    def __init__(self, dataset, all_values: list, source: str):
        self.ds = dataset
        self.source = source
        self.classes = list(dataset.classes)
        exact = {c: c for c in self.classes}
        tables = [exact]

        def add_table(keyfn):
            t: dict[str, str] = {}
            clash = set()
            for c in self.classes:
                for key in keyfn(c):
                    if key in t and t[key] != c:
                        clash.add(key)
                    t[key] = c
            for key in clash:
                del t[key]
            tables.append(t)

        norm = lambda s: "".join(ch for ch in s.lower() if ch.isalnum())  # noqa: E731
        self._norm = norm
        add_table(lambda c: [c.rsplit("/", 1)[-1]])  # "bicycle/00001" -> "00001"
        add_table(lambda c: [norm(c), norm(c.rsplit("/", 1)[-1]), norm(c.split(".", 1)[-1])])
        by_cls = dataset.indices_by_class()

        def prefixes(c):  # SOP reference names a class by its images' file-name prefix
            keys = {os.path.basename(dataset.items[i].path).split("_")[0] for i in by_cls[c]}
            return list(keys) if len(keys) == 1 else []

        add_table(prefixes)
        self.tables = tables
        ints = [v for v in all_values if isinstance(v, int)]
        self.int_base = 0 if (not ints or 0 in ints) else 1

    def __call__(self, v) -> str:
        if isinstance(v, int):
            i = v - self.int_base
            if 0 <= i < len(self.classes):
                return self.classes[i]
            raise BadInputError(
                f"{self.source}: class id {v} is outside 1..{len(self.classes)} / 0..{len(self.classes) - 1} "
                f"of dataset {self.ds.name!r}; is this the pkl for another dataset?"
            )
        for t in self.tables[:2]:
            if v in t:
                return t[v]
        for key in (self._norm(v), self._norm(v.rsplit("/", 1)[-1]), self._norm(v.split(".", 1)[-1])):
            if key in self.tables[2]:
                return self.tables[2][key]
        if v in self.tables[3]:
            return self.tables[3][v]
        if v.isdigit():
            return self(int(v))
        raise BadInputError(
            f"{self.source}: class {v!r} matches no class of dataset {self.ds.name!r} "
            f"(e.g. {self.classes[0]!r}); is this the pkl for another dataset?"
        )


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

    See :func:`oodml.published_splits.import_published` (this is it with a dataset; pass
    ``dataset=None`` there for a names-only file). The pickle is read with
    :func:`oodml.io.restricted_pickle_load`. Every split, published FID and ``split_val`` list
    is kept; the published ``test_episodes`` are kept, and where their image names cannot be
    mapped onto the dataset's layout the import stops with one line (new episodes are drawn
    only with ``redraw_episodes=True``, recorded in the file). Class names may be folder names,
    SOP product ids (file-name prefixes) or integer ids (0-based if any id is 0, else 1-based).
    Series ids are renumbered ``1 … K`` by FID (``reference_id`` keeps the original key).
    """
    from oodml.published_splits import import_published

    return import_published(pkl_path, dataset, params, seed=seed, redraw_episodes=redraw_episodes, extractor=extractor)


# ============================================================================================
# High-level: from a dataset (or a features file) to a written split file
# ============================================================================================
def _table_from_featureset(fs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = list(fs.classes)
    index = {c: i for i, c in enumerate(classes)}
    try:
        lab = np.asarray(fs.class_ids(), dtype=np.int64)
    except Exception:  # noqa: BLE001 - fall back to the names
        lab = np.asarray([index[c] for c in fs.labels], dtype=np.int64)
    return np.asarray(fs.features), lab, classes


def make_splits(
    dataset: str | None = None,
    *,
    root=None,
    download: bool = False,
    extractor: str | None = None,
    weights=None,
    features_file=None,
    params: SearchParams | None = None,
    seed: int = 0,
    out=None,
    progress: bool = True,
    controls: int = 0,
    swap_unit: str = "class",
) -> SplitFile:
    """Search, select and (with ``out``) write the split series of a dataset.

    ``swap_unit="superclass"`` moves whole superclasses (the dataset's, or the features file's
    ``superclasses`` array), as the ooDML reference's ``--super`` option did for SOP.

    Features: ``features_file`` (an ``.npz`` written by :mod:`oodml.features`, no dataset needed)
    or :func:`oodml.features.extract_features` on the loaded dataset (cached) with ``extractor``
    (default: the dataset's default extractor) and ``weights``.  ``controls``: draws of matched
    random-removal controls per removal split (:mod:`oodml.controls`).  Returns the :class:`SplitFile`.
    """
    p = params or SearchParams()
    if swap_unit not in ("class", "superclass"):
        raise OodmlError(f"swap unit must be 'class' or 'superclass', got {swap_unit!r}")
    if features_file is not None:
        from concurrent.futures import ThreadPoolExecutor

        from oodml.feature_files import load_features_file, standard_split_for_features  # no torch
        from oodml.io import file_digest

        with ThreadPoolExecutor(1) as pool:  # hashlib releases the GIL: the MD5 overlaps the reading
            md5 = pool.submit(file_digest, features_file)
            fs = load_features_file(features_file)
            x, lab, classes = _table_from_featureset(fs)
            md5 = md5.result()
        std_train, std_test = standard_split_for_features(fs)
        name = dataset or getattr(fs, "dataset", None) or getattr(fs, "dataset_name", None) or Path(features_file).stem
        extra = {"features_file": Path(features_file).name, "features_md5": md5}
        sup_of = None
        if swap_unit == "superclass":
            sup_of = [None] * len(classes)
            for c, sup in zip(lab.tolist(), getattr(fs, "superclasses", None) or []):
                sup_of[c] = sup
        doc = build_split_document(
            x,
            lab,
            classes,
            list(std_train),
            list(std_test),
            p,
            seed=seed,
            dataset=str(name),
            fingerprint=str(getattr(fs, "fingerprint", "") or ""),
            extractor=str(getattr(fs, "extractor", "") or ""),
            source="features-file",
            extra_provenance=extra,
            progress=progress,
            superclass_of=sup_of,
        )
    else:
        from oodml import features as feats
        from oodml.datasets import canonical_name, load_dataset

        ds = load_dataset(dataset, root=root, download=download)
        ext = extractor or feats.default_extractor(canonical_name(dataset) if dataset else ds.name)
        fs = feats.extract_features(ds, ext, weights=weights, progress=progress)
        x, lab, fclasses = _table_from_featureset(fs)
        if len(x) != len(ds):
            raise OodmlError(f"features have {len(x)} rows but dataset {ds.name!r} has {len(ds)} images")
        # labels as ids into the dataset's class order (image id = dataset item index)
        ds_index = {c: i for i, c in enumerate(ds.classes)}
        lab = np.asarray([ds_index[fclasses[i]] for i in lab.tolist()], dtype=np.int64)
        extra = {"weights": os.path.basename(str(weights)) if weights else None}
        sup_of = None
        if swap_unit == "superclass":
            sup_of = [None] * len(ds.classes)
            for it in ds.items:
                sup_of[ds_index[it.label]] = it.superclass
        doc = build_split_document(
            x,
            lab,
            ds.classes,
            ds.train_classes,
            ds.test_classes,
            p,
            seed=seed,
            dataset=ds.name,
            fingerprint=ds.fingerprint(),
            extractor=str(getattr(fs, "extractor", ext)),
            source="search",
            extra_provenance=extra,
            progress=progress,
            superclass_of=sup_of,
        )
    if controls:
        from oodml.controls import make_controls

        doc["controls"] = make_controls(doc, x, lab, draws=controls, seed=seed, params=p)
    text = dumps_split_document(doc)  # serialised once: validated, written and returned from the same text
    plain = json.loads(text)
    validate_split_document(plain, str(out) if out else "<new split file>")
    if out is not None:
        from oodml.io import atomic_write

        atomic_write(out, text)
    return SplitFile(
        path=Path(out) if out else None,
        schema=plain["schema"],
        provenance=plain["provenance"],
        classes=plain["classes"],
        num_images=plain["num_images"],
        trajectory=plain["trajectory"],
        series=[_to_split(s) for s in plain["series"]],
        raw=plain,
        controls=[_to_split(c) for c in plain.get("controls") or []],
    )
