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

Layout of the package (each module owns one step; this ``__init__`` re-exports every public
name, and the private names other modules imported from the former ``oodml/splits.py``)::

    params     SearchParams (an oodml.config.Config), schema tag, defaults scaled to class counts
    search     class means, ranking scores, the swap/removal search -> Trajectory
    selection  select_series: the K most evenly spaced FIDs (exact dynamic programme)
    episodes   validation_classes, make_episodes (seeded by the split's classes)
    document   build_split_document / assemble_document: trajectory + series -> document
    jsontext   dumps_split_document: the canonical, byte-stable text of a document
    file       Split, SplitFile, validate_split_document (controls included), load_splits,
               write_split_document
    check      replay_from, check_split_file (``--check``)
    controls   class-count controls (random removal matched to removal splits)
    published  the ooDML study's published pickles (``--import-oodml``, names-only files)
    figure     the trajectory figure (matplotlib imported when drawing)
    make       make_splits: dataset or features file -> written split file
    cli        ``python -m oodml.make_splits`` / ``oodml make_splits`` (build_parser, main)

A new search phase goes into :mod:`~oodml.splits.search` (a ``_Search`` method, its name in
``params.SEARCH_PHASES`` and ``PHASES``); a new field of the split file into
:mod:`~oodml.splits.document` (writing) and :mod:`~oodml.splits.file` (a ``_check_*`` step).
"""

from __future__ import annotations

from oodml.splits.check import CheckReport, check_split_file, replay_from
from oodml.splits.document import (
    _finish_series,
    _oodml_version,
    _ordered,
    assemble_document,
    build_split_document,
)
from oodml.splits.episodes import _content_seed, make_episodes, validation_classes
from oodml.splits.file import (
    Split,
    SplitFile,
    _fail,
    _str_list,
    _to_split,
    load_splits,
    read_series,
    validate_split_document,
    write_split_document,
)
from oodml.splits.jsontext import _dump, _leaf_text, _scalar, dumps_split_document
from oodml.splits.make import _table_from_featureset, make_splits
from oodml.splits.params import (
    DEFAULT_SHOTS,
    FID_DIGITS,
    FID_RTOL,
    KNOWN_SCHEMAS,
    MOVE_BUDGET,
    PHASES,
    SCHEMA,
    SWAP_FRACTION,
    SearchParams,
    default_floor,
    default_max_iters,
    default_swaps,
    resolve_params,
    round_fid,
)
from oodml.splits.published import _NameMapper, import_oodml
from oodml.splits.search import Trajectory, _pick_pairs, class_means, search_trajectory, side_scores, superclass_units
from oodml.splits.selection import select_series

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
    "read_series",
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

# kept importable from oodml.splits as before the package (used by other modules, tests, benchmarks)
_COMPAT = (
    FID_DIGITS,
    FID_RTOL,
    KNOWN_SCHEMAS,
    MOVE_BUDGET,
    SWAP_FRACTION,
    default_max_iters,
    default_swaps,
    resolve_params,
    superclass_units,
    _content_seed,
    _dump,
    _fail,
    _finish_series,
    _leaf_text,
    _NameMapper,
    _oodml_version,
    _ordered,
    _pick_pairs,
    _scalar,
    _str_list,
    _table_from_featureset,
    _to_split,
)
