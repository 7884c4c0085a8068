"""Few-shot adaptation and linear probes of a trained run on its (shifted) test classes.

Command line::

    python -m oodml.adapt RUN_DIR --mode fewshot [--shots 2 5] [--episodes N] [--adapt head|full]
                                  [--loss margin] [--loss-param key=value ...] [--iterations 2=1000 5=1500]
    python -m oodml.adapt RUN_DIR --mode probe [--shots 2 5] [--fraction 0.5]
    python -m oodml.adapt RUN_DIR --mode fewshot probe         # both, sharing the frozen features

Library::

    from oodml.adapt import run_adaptation, adaptation_rows
    result = run_adaptation("runs/study/run-0", mode="fewshot", shots=(2, 5))
    rows = adaptation_rows(result)   # [{"stage": "few-shot-2", "metric": "recall@1", "value": ..., "ci95": ...}, ...]

Both write ``RUN_DIR/adaptation.json`` (atomically; a mode already recorded there is kept, the
mode just run replaces its own record) and return its content.

Episodes
--------
An *episode* for ``k`` shots maps test classes to ``k`` *support* image ids; its *query set* is
every other image of those classes. Episodes come from the split file (``Split.episodes[k]``;
the first ``episodes`` of them when a number is given). When the run has no split file (the
dataset's standard split) or the split file has no episodes for ``k``, ``episodes`` of them
(default 10) are drawn from ``seed`` with :func:`oodml.splits.make_episodes`; the record says
which (``"source": "split"|"drawn"``). As in split files, a class with fewer than ``k + 1``
images is left out of the ``k``-shot episodes (support *and* query; ``"classes"`` in the record
counts those kept); fewer than two usable classes is an error naming the largest class.

Few-shot adaptation (``mode="fewshot"``)
----------------------------------------
``adapt`` (:data:`ADAPTED_PARTS`) says which part of the network adapts.

For each ``k`` and each episode, the trained model (every episode starts again from its
weights) is adapted on the support set and evaluated on the query set with
:func:`oodml.evaluate.evaluate_embeddings` (leave-one-out retrieval among the query images);
the *zero-shot* model is evaluated on the same query set, so the gain is paired. Reported per
metric: the mean over episodes and the 95% confidence interval half-width
(:func:`confidence_interval`: Student t over episodes; ``None`` for one episode) of the adapted
model, of the zero-shot model and of the per-episode gain (adapted - zero-shot).

* ``adapt="head"`` (default; the ooDML protocol): only the embedding layer trains, with Adam at
  ``lr`` 1e-4 for 1000 iterations (2-shot) or 1500 (5-shot and more; 1000 below 2 shots) on the
  margin loss with distance-weighted mining (:func:`oodml.losses.make_objective`). The backbone
  is frozen, so its pooled features of all test images are computed **once** (eval transforms)
  and the head is trained on them through :meth:`~oodml.models.EmbeddingModel.embed_from_features`;
  the zero-shot embeddings are the original head applied to the same features.
* ``adapt="full"``: the whole network trains (BatchNorm as the run was trained: frozen statistics
  with ``freeze_bn``), on augmented support images (the run's training transforms from
  :mod:`oodml.data`, each image's augmentation seeded as in training), default ``lr`` 1e-5 (the
  ooDML training rate, ten times below the head protocol), same iteration defaults; the query
  set is embedded again after each episode (the zero-shot side still comes from the cache).
* ``lr_mult``: the learning rate as a multiple of the run's training rate instead of an absolute
  ``lr`` (the ooDML few-shot stage: ``lr_mult: 10``, i.e. 1e-4 for its 1e-5; :func:`resolve_lr`).
* ``loss``/``loss_params``: any objective of :mod:`oodml.losses` (its labels are the test
  classes, 0..C-1). ``iterations``: one number, or a mapping ``{k: n}`` (CLI ``2=1000 5=1500``).
* Batches: all support images when they fit in ``batch_size`` (default: the run's), else
  class-balanced batches of ``m_per_class`` (default: the run's, at most ``k``) images from
  ``batch_size // m_per_class`` classes, classes visited in seeded random order.

Linear probe (``mode="probe"``)
-------------------------------
The trained network is frozen. A multinomial logistic-regression classifier over the test
classes is fitted (a) on each episode's support set (``k`` shots per class), tested on its query
set, mean and CI over episodes, and (b) on a fraction (``fraction``, default half, at least one
and at most all but one image) of each class's images drawn from ``seed``, tested on the rest.
Both on the pooled backbone features and on the embedding (the same frozen features the
few-shot head mode uses, computed once). The classifier is a ``torch.nn.Linear`` on the model's
device, on features standardised with the training set's mean and standard deviation,
initialised at zero and fitted by full-batch L-BFGS (strong-Wolfe line search, at most
``probe_iterations`` iterations) on the mean cross-entropy plus ``probe_l2/2 * ||W||^2`` (bias not
regularised): a convex problem (strictly so in ``W`` for ``probe_l2 > 0``), solved from a fixed
start, so the result is deterministic. Reported: top-1 accuracy.

Efficiency
----------
Whatever is frozen is computed once per call and shared by every episode, every ``k`` and both
modes (:class:`FrozenFeatures`: one backbone pass over the test images; the zero-shot embeddings
are the head on those features). On CPU, head training and probe fitting run on one intra-op
thread: their many tiny operations are faster so (no thread wake-up per operation, which on a
busy machine made them ~30x slower) and the numbers do not depend on the machine's core count.

Core functions (no run folder needed): :func:`compute_frozen` (model, dataset, test classes,
images), :func:`resolve_episodes`, :func:`fewshot_adaptation` and :func:`linear_probe`;
:func:`run_adaptation` wires them to a run folder through :func:`oodml.train.load_run`.

Determinism
-----------
Every random draw comes from ``seed`` (episodes, batches, the fraction split; the torch generator
of the miner and of the objective's parameters is re-seeded per episode inside
``torch.random.fork_rng``, so the caller's global state is untouched). On CPU the same run and
options give a byte-identical ``adaptation.json`` (no timings are written to it).

Layout
------
:mod:`~oodml.adapt.options` (constants, :class:`AdaptOptions`, iterations, learning rate),
:mod:`~oodml.adapt.episodes` (episodes, query sets, support batches), :mod:`~oodml.adapt.frozen`
(frozen features, the run's images), :mod:`~oodml.adapt.fewshot`, :mod:`~oodml.adapt.probe`,
:mod:`~oodml.adapt.stats` (mean and confidence interval), :mod:`~oodml.adapt.record`
(``adaptation.json`` and its rows), :mod:`~oodml.adapt.run` (:func:`run_adaptation` on a run
folder) and :mod:`~oodml.adapt.cli` (the command).
"""

from oodml.adapt.cli import build_parser, main
from oodml.adapt.episodes import (
    check_episodes,
    draw_episodes,
    episode_sets,
    resolve_episodes,
    support_batches,
)
from oodml.adapt.fewshot import fewshot_adaptation
from oodml.adapt.frozen import FrozenFeatures, RunImages, compute_frozen
from oodml.adapt.options import (
    ADAPTED_PARTS,
    DEFAULT_EPISODES,
    DEFAULT_KS,
    DEFAULT_METRICS,
    DEFAULT_SHOTS,
    FULL_LR,
    HEAD_LR,
    MODES,
    OPTIONS,
    PROBE_FRACTION,
    PROBE_ITERATIONS,
    PROBE_L2,
    AdaptOptions,
    default_iterations,
    parse_iterations,
    resolve_lr,
)
from oodml.adapt.probe import fit_linear_probe, linear_probe
from oodml.adapt.record import SCHEMA, adaptation_rows, format_rows
from oodml.adapt.run import run_adaptation
from oodml.adapt.stats import confidence_interval, summarize

__all__ = [
    "ADAPTED_PARTS",
    "DEFAULT_EPISODES",
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "DEFAULT_SHOTS",
    "FULL_LR",
    "HEAD_LR",
    "MODES",
    "OPTIONS",
    "PROBE_FRACTION",
    "PROBE_ITERATIONS",
    "PROBE_L2",
    "SCHEMA",
    "AdaptOptions",
    "FrozenFeatures",
    "RunImages",
    "adaptation_rows",
    "build_parser",
    "check_episodes",
    "compute_frozen",
    "confidence_interval",
    "default_iterations",
    "draw_episodes",
    "episode_sets",
    "fewshot_adaptation",
    "fit_linear_probe",
    "format_rows",
    "linear_probe",
    "main",
    "parse_iterations",
    "resolve_episodes",
    "resolve_lr",
    "run_adaptation",
    "summarize",
    "support_batches",
]
