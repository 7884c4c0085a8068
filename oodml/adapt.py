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
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from oodml.cli import add_quiet, progress_disabled, run_cli
from oodml.errors import BadInputError, OodmlError
from oodml.io import read_json, write_json
from oodml.threads import torch_threads

__all__ = [
    "ADAPT_MODES",
    "DEFAULT_EPISODES",
    "DEFAULT_SHOTS",
    "FrozenFeatures",
    "RunImages",
    "adaptation_rows",
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
    "run_adaptation",
    "summarize",
    "support_batches",
]

SCHEMA = "oodml.adapt/1"
MODES = ("fewshot", "probe")
ADAPT_MODES = ("head", "full")
DEFAULT_SHOTS = (2, 5)
DEFAULT_EPISODES = 10
HEAD_LR = 1e-4
FULL_LR = 1e-5
DEFAULT_METRICS = ("recall", "precision@1", "r_precision", "map@r", "nmi")
DEFAULT_KS = (1, 2, 4, 8)
PROBE_L2 = 1e-3
PROBE_ITERATIONS = 200
PROBE_FRACTION = 0.5


# ============================================================================================
# Statistics
# ============================================================================================
def confidence_interval(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the two-sided ``confidence`` interval of the mean of ``values``
    (Student t with ``n - 1`` degrees of freedom: ``t * s / sqrt(n)``, ``s`` the sample
    standard deviation). ``None`` for fewer than two values; NaN if any value is NaN."""
    from scipy.stats import t as student_t

    x = np.asarray(list(values), dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    if not np.isfinite(x).all():
        return float("nan")
    s = float(np.std(x, ddof=1))
    return float(student_t.ppf(0.5 + confidence / 2.0, n - 1) * s / math.sqrt(n))


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean": mean, "ci95": half-width or None}`` of per-episode values."""
    x = np.asarray(list(values), dtype=np.float64)
    mean = float(x.mean()) if len(x) else float("nan")
    return {"mean": mean, "ci95": confidence_interval(x)}


# ============================================================================================
# Episodes
# ============================================================================================
def _seed_int(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across platforms and numpy versions)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _ids_by_class(dataset, classes: Sequence[str]) -> dict[str, np.ndarray]:
    by_class = dataset.indices_by_class()
    missing = [c for c in classes if c not in by_class]
    if missing:
        raise BadInputError(
            f"test class {missing[0]!r} is not in dataset {getattr(dataset, 'name', '?')!r}; "
            "the run's split does not match the dataset"
        )
    return {c: np.asarray(by_class[c], dtype=np.int64) for c in classes}


def _usable(k: int, ids_by_class: Mapping[str, np.ndarray]) -> list[str]:
    """Classes with at least ``k + 1`` images (a support set and a query image); error when
    fewer than two remain (no retrieval or classification is possible)."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise BadInputError(f"shots must be positive integers (got {k!r})")
    usable = [c for c, v in ids_by_class.items() if len(v) >= k + 1]
    if len(usable) < 2:
        largest = max((len(v) for v in ids_by_class.values()), default=0)
        raise BadInputError(
            f"{k} shots need at least {k + 1} images per test class (support + query), but "
            f"{'no' if not usable else 'only one'} test class has that many (the largest has {largest}); "
            "choose fewer --shots"
        )
    return usable


def draw_episodes(
    dataset, classes: Sequence[str], k: int, n_episodes: int, seed: int = 0
) -> list[dict[str, list[int]]]:
    """``n_episodes`` episodes of ``k`` support image ids per class, drawn from ``seed`` by
    :func:`oodml.splits.make_episodes` (the same rule as split files: classes with fewer than
    ``k + 1`` images are left out of the ``k``-shot episodes)."""
    from oodml.splits import make_episodes

    ids = _ids_by_class(dataset, classes)
    _usable(int(k), ids)
    eps = make_episodes(
        list(classes), {c: v.tolist() for c, v in ids.items()}, shots=[int(k)], episodes=int(n_episodes), seed=int(seed)
    )
    return eps[int(k)]


def check_episodes(
    dataset, classes: Sequence[str], k: int, episodes: Sequence[Mapping[str, Sequence[int]]], where: str = "episodes"
) -> list[dict[str, list[int]]]:
    """Validate episodes and return them as plain dicts in the order of ``classes``.

    An episode maps test classes to ``k`` distinct image ids of that class leaving at least one
    query image; classes may be left out (split files leave out classes with fewer than
    ``k + 1`` images), but at least two must remain."""
    ids = _ids_by_class(dataset, classes)
    _usable(int(k), ids)
    sets = {c: set(v.tolist()) for c, v in ids.items()}
    out = []
    for e, ep in enumerate(episodes):
        if not isinstance(ep, Mapping):
            raise BadInputError(f"{where}: {k}-shot episode {e} is not a mapping of class -> image ids")
        extra = [c for c in ep if c not in sets]
        if extra:
            raise BadInputError(f"{where}: {k}-shot episode {e} names class {extra[0]!r}, which is not a test class")
        clean: dict[str, list[int]] = {}
        for c in classes:
            if c not in ep:
                continue
            support = [int(i) for i in ep[c]]
            if len(support) != k or len(set(support)) != k:
                raise BadInputError(
                    f"{where}: {k}-shot episode {e} gives class {c!r} {len(set(support))} distinct images, not {k}"
                )
            bad = [i for i in support if i not in sets[c]]
            if bad:
                raise BadInputError(
                    f"{where}: {k}-shot episode {e}: image {bad[0]} is not an image of class {c!r}; "
                    "the split file does not match the dataset (regenerate it)"
                )
            if len(sets[c]) <= k:
                raise BadInputError(f"{where}: {k}-shot episode {e} leaves class {c!r} no query image")
            clean[c] = support
        if len(clean) < 2:
            raise BadInputError(
                f"{where}: {k}-shot episode {e} covers {len(clean)} test class(es); at least 2 are needed"
            )
        out.append(clean)
    return out


def resolve_episodes(
    dataset,
    classes: Sequence[str],
    shots: Iterable[int],
    split_episodes: Mapping[int, Sequence[Mapping[str, Sequence[int]]]] | None = None,
    n_episodes: int | None = None,
    seed: int = 0,
    where: str = "split file",
) -> tuple[dict[int, list[dict[str, list[int]]]], dict[int, str]]:
    """Episodes per ``k``: the first ``n_episodes`` of the split's (all when ``None``), or
    ``n_episodes`` (default :data:`DEFAULT_EPISODES`) drawn from ``seed`` when the split has none
    for ``k``. Returns ``(episodes, source)`` with ``source[k]`` ``"split"`` or ``"drawn"``."""
    if n_episodes is not None and (isinstance(n_episodes, bool) or int(n_episodes) != n_episodes or n_episodes < 1):
        raise BadInputError(f"episodes must be a positive integer (got {n_episodes!r})")
    split_episodes = {int(k): v for k, v in (split_episodes or {}).items()}
    episodes: dict[int, list[dict[str, list[int]]]] = {}
    source: dict[int, str] = {}
    for k in shots:
        k = int(k)
        given = split_episodes.get(k)
        if given:
            if n_episodes is not None and n_episodes > len(given):
                raise BadInputError(
                    f"{where} has {len(given)} episodes for {k} shots, {n_episodes} were asked for; "
                    f"use --episodes {len(given)} or fewer (or regenerate the split file with more)"
                )
            chosen = list(given)[: n_episodes or len(given)]
            episodes[k] = check_episodes(dataset, classes, k, chosen, where)
            source[k] = "split"
        else:
            episodes[k] = draw_episodes(dataset, classes, k, n_episodes or DEFAULT_EPISODES, seed)
            source[k] = "drawn"
    return episodes, source


def episode_sets(
    episode: Mapping[str, Sequence[int]], test_ids: np.ndarray, test_labels: np.ndarray, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows (positions in ``test_ids``) and labels of an episode's support and query sets.

    ``test_ids``: the image ids of all test images; ``test_labels`` their class index in
    ``classes``. The query set is every image of the episode's classes that is not in its support
    set (a class left out of the episode is left out of its query set too). Returns
    ``(support_rows, support_labels, query_rows, query_labels)``, rows sorted."""
    pos = {int(i): r for r, i in enumerate(test_ids.tolist())}
    index = {c: j for j, c in enumerate(classes)}
    support = []
    for c, members in episode.items():
        for i in members:
            r = pos.get(int(i))
            if r is None or c not in index or test_labels[r] != index[c]:
                raise BadInputError(f"support image {i} of class {c!r} is not one of that test class's images")
            support.append(r)
    s_rows = np.array(sorted(support), dtype=np.int64)
    in_episode = np.isin(test_labels, [index[c] for c in episode])
    in_episode[s_rows] = False
    q_rows = np.flatnonzero(in_episode).astype(np.int64)
    return s_rows, test_labels[s_rows], q_rows, test_labels[q_rows]


def support_batches(
    labels: np.ndarray, batch_size: int, m_per_class: int, iterations: int, seed: int
) -> list[list[tuple[int, int]]]:
    """The training batches of one episode: ``iterations`` lists of ``(position, sample seed)``
    pairs (positions into the support set ``labels``).

    All support images in every batch when they fit in ``batch_size``; otherwise the
    class-balanced batches of :class:`oodml.data.ClassBalancedBatchSampler` (``batch_size //
    m_per_class`` classes with ``m_per_class`` images each, at most all classes). Sample seeds
    drive the augmentation of full adaptation. Everything depends only on ``seed``."""
    from oodml.data import ClassBalancedBatchSampler

    labels = np.asarray(labels)
    n, iterations = len(labels), int(iterations)
    if iterations == 0:
        return []
    if n <= int(batch_size):
        rng = np.random.default_rng(_seed_int(seed, 0xA11))
        seeds = rng.integers(0, 2**62, size=(iterations, n))
        return [list(zip(range(n), (int(s) for s in row))) for row in seeds]
    n_cls = len(np.unique(labels))
    m = max(1, int(m_per_class))
    per_batch = max(1, min(n_cls, int(batch_size) // m))
    sampler = ClassBalancedBatchSampler(
        np.arange(n), labels, m_per_class=m, batch_size=per_batch * m, num_batches=iterations, seed=int(seed)
    )
    return sampler.batches(0)


# ============================================================================================
# Options
# ============================================================================================
def default_iterations(k: int) -> int:
    """The ooDML head protocol: 1000 iterations for up to 2 shots, 1500 from 5 shots on (and
    linearly in between)."""
    if k <= 2:
        return 1000
    if k >= 5:
        return 1500
    return int(round(1000 + (k - 2) * 500 / 3))


def parse_iterations(spec: Any, shots: Iterable[int]) -> dict[int, int]:
    """Iterations per ``k``: ``None`` (defaults), one number, a mapping ``{k: n}`` or strings
    ``["2=1000", "5=1500"]`` / ``"1000"`` (shots not named keep the default)."""
    shots = [int(k) for k in shots]
    out = {k: default_iterations(k) for k in shots}
    if spec is None:
        return out

    def as_int(v: Any, what: str) -> int:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        if isinstance(v, bool) or not math.isfinite(f) or f != int(f) or f < 0:
            raise BadInputError(
                f"iterations {what} must be a non-negative integer (got {v!r}); e.g. --iterations 2=1000 5=1500"
            )
        return int(f)

    if isinstance(spec, str):
        spec = spec.replace(",", " ").split()
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        if len(spec) == 1 and "=" not in str(spec[0]):
            return {k: as_int(spec[0], "") for k in shots}
        items = []
        for s in spec:
            key, sep, val = str(s).partition("=")
            if not sep:
                raise BadInputError(
                    f"iterations entry {s!r} is not k=n; use e.g. --iterations 2=1000 5=1500 or one number"
                )
            items.append((key, val))
    else:
        return {k: as_int(spec, "") for k in shots}
    for key, val in items:
        k = as_int(key, "shot key")
        out_k = as_int(val, f"for {k} shots")
        if k in out:
            out[k] = out_k
    return out


# ============================================================================================
# Frozen features (computed once per run)
# ============================================================================================
class FrozenFeatures:
    """The frozen quantities of the test images, computed once and reused by every episode,
    every ``k`` and the probe: ``ids`` (image ids, sorted), ``labels`` (class index in
    ``classes``), ``features`` (pooled backbone features, float32 tensor on the model's device)
    and ``embeddings`` (the zero-shot model's embeddings = its head on ``features``)."""

    def __init__(self, classes, ids, labels, features, embeddings):
        self.classes = list(classes)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.features = features
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.ids)


def _model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def compute_frozen(model, dataset, classes: Sequence[str], images: RunImages) -> FrozenFeatures:
    """One backbone pass over all images of ``classes`` (eval transforms): pooled features and
    zero-shot embeddings (the model's head applied to them)."""
    ids_by_class = _ids_by_class(dataset, classes)
    ids = np.sort(np.concatenate([ids_by_class[c] for c in classes]))
    label_of = np.full(len(dataset), -1, dtype=np.int64)
    for j, c in enumerate(classes):
        label_of[ids_by_class[c]] = j
    device = _model_device(model)
    feats = np.asarray(images.embed(model, ids, features=True), dtype=np.float32)
    if feats.shape != (len(ids), model.feature_dim):
        raise RuntimeError(
            f"embed(features=True) returned shape {feats.shape}, expected {(len(ids), model.feature_dim)}"
        )
    f = torch.from_numpy(np.ascontiguousarray(feats)).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        emb = model.embed_from_features(f).float()
    model.train(was_training)
    return FrozenFeatures(classes, ids, label_of[ids], f, emb)


class RunImages:
    """Images of a dataset through a run's pipeline: eval-transform embeddings
    (:func:`oodml.train.embed`) and augmented training batches (:mod:`oodml.data`)."""

    def __init__(self, dataset, config, model=None, device=None, batch_size: int = 256, progress: bool = False):
        self.dataset = dataset
        self.model = model
        self.config = config
        self.device = device
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self._train_images = None

    def embed(self, model, ids: np.ndarray, features: bool = False) -> np.ndarray:
        from oodml.train import embed

        return embed(
            model,
            self.dataset,
            np.asarray(ids, dtype=np.int64),
            self.config,
            device=self.device if self.device is not None else _model_device(model),
            batch_size=self.batch_size,
            features=features,
            progress=self.progress,
        )

    def augmented(self, keys: Sequence[tuple[int, int]], device) -> torch.Tensor:
        """Training-transformed images ``[(image id, sample seed), ...]`` (the augmentation of
        each image seeded by its sample seed, as in training), normalised, on ``device``."""
        from oodml.data import CachedImages, image_cache, normalize_batch, train_transform

        if self._train_images is None:
            cfg = self.config
            cache = image_cache(self.dataset, int(cfg.resize_size), progress=False)
            scale = (float(getattr(cfg, "crop_scale_min", 0.08)), 1.0)
            self._train_images = CachedImages(cache, train_transform(int(cfg.image_size), bool(cfg.augment), scale))
        x = torch.stack([self._train_images[key][0] for key in keys])
        data_config = self.model.data_config
        return normalize_batch(x, data_config["mean"], data_config["std"], device)


# ============================================================================================
# Few-shot adaptation
# ============================================================================================
def _evaluate(emb, labels, ks, metrics, seed) -> dict[str, float]:
    from oodml.evaluate import evaluate_embeddings

    return evaluate_embeddings(
        emb, labels, ks=ks, metrics=metrics, nmi_seed=int(seed), device="cpu" if not torch.cuda.is_available() else None
    )


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _optimize(optimizer, batches, forward) -> float:
    last = float("nan")
    for batch in batches:
        loss = forward(batch)
        optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # a batch without any mined tuple gives a constant zero loss
            loss.backward()
            optimizer.step()
        last = float(loss.detach())
    return last


def _train_head(model, frozen, s_rows, s_labels, objective, opts, batches, device) -> float:
    head_params = model.head_parameters()
    if not head_params:
        raise BadInputError("the model has no embedding head (embed_dim 0): head adaptation needs one; use adapt full")
    for p in head_params:
        p.requires_grad_(True)
    groups = [{"params": head_params, "lr": opts["lr"], "name": "head"}] + objective.param_groups(opts["lr"])
    optimizer = torch.optim.Adam(groups, lr=opts["lr"], weight_decay=opts["weight_decay"])
    feats = frozen.features[torch.from_numpy(s_rows).to(device)]
    labels = torch.from_numpy(s_labels).to(device)
    model.head.train()

    def forward(batch):
        b = torch.tensor([i for i, _ in batch], dtype=torch.int64, device=device)
        return objective(model.embed_from_features(feats[b]), labels[b])

    try:
        return _optimize(optimizer, batches, forward)
    finally:
        model.head.eval()


def _train_full(model, frozen, s_rows, s_labels, objective, opts, batches, device, images) -> float:
    from oodml.models import param_groups

    for p in model.parameters():
        p.requires_grad_(True)
    groups = param_groups(model, opts["lr"]) + objective.param_groups(opts["lr"])
    optimizer = torch.optim.Adam(groups, lr=opts["lr"], weight_decay=opts["weight_decay"])
    s_ids = frozen.ids[s_rows]
    labels = torch.from_numpy(s_labels).to(device)
    model.train()

    def forward(batch):
        pos = [i for i, _ in batch]
        x = images.augmented([(int(s_ids[i]), seed) for i, seed in batch], device)
        return objective(model(x), labels[torch.tensor(pos, dtype=torch.int64, device=device)])

    try:
        return _optimize(optimizer, batches, forward)
    finally:
        model.eval()


def fewshot_adaptation(
    model,
    frozen: FrozenFeatures,
    episodes: Mapping[int, Sequence[Mapping[str, Sequence[int]]]],
    *,
    adapt: str = "head",
    loss: str = "margin",
    loss_params: Mapping[str, Any] | None = None,
    iterations: Any = None,
    lr: float | None = None,
    weight_decay: float = 0.0,
    batch_size: int = 112,
    m_per_class: int = 2,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    images: RunImages | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Adapt ``model`` on each episode's support set and evaluate it on the query set.

    Args:
        model: the trained :class:`~oodml.models.EmbeddingModel` (on its device); its weights
            are restored after every episode and at the end.
        frozen: :func:`compute_frozen` of the model on the test classes.
        episodes: ``{k: [ {class: [k image ids]}, ... ]}`` (see :func:`resolve_episodes`).
        adapt: ``"head"`` (train the embedding layer on the frozen features) or ``"full"``
            (train everything on augmented images; needs ``images``).
        loss, loss_params: the objective (:func:`oodml.losses.make_objective`).
        iterations: see :func:`parse_iterations`.
        lr: default 1e-4 (head) / 1e-5 (full). weight_decay: Adam's, default 0.
        batch_size, m_per_class: see :func:`support_batches` (per class at most ``k``).
        seed: seeds batches, the miner and the objective's initial parameters, per episode.
        ks, metrics: passed to :func:`oodml.evaluate.evaluate_embeddings`.

    Returns:
        ``{"options": {...}, "shots": {"<k>": {"episodes", "iterations", "support_images",
        "query_images", "adapted": {metric: {mean, ci95}}, "zero_shot": {...}, "gain": {...},
        "per_episode": [{"adapted": {...}, "zero_shot": {...}, "final_loss": float}]}}}``.
    """
    from oodml.losses import make_objective

    if adapt not in ADAPT_MODES:
        raise BadInputError(f"adapt must be one of {', '.join(ADAPT_MODES)} (got {adapt!r})")
    if adapt == "full" and images is None:
        raise BadInputError("full adaptation needs the run's images (RunImages) for augmented batches")
    if int(batch_size) < 1 or int(m_per_class) < 1:
        raise BadInputError(f"batch_size and m_per_class must be positive (got {batch_size}, {m_per_class})")
    loss_params = dict(loss_params or {})
    shots = sorted(int(k) for k in episodes)
    iters = parse_iterations(iterations, shots)
    lr = float(lr) if lr is not None else (HEAD_LR if adapt == "head" else FULL_LR)
    if not (lr > 0 and math.isfinite(lr)):
        raise BadInputError(f"lr must be a positive number (got {lr})")
    num_classes = len(frozen.classes)
    device = _model_device(model)
    # check the objective once, up front (bad loss options fail before any work)
    make_objective(loss, num_classes=num_classes, embed_dim=model.embed_dim, **loss_params)
    options = {
        "adapt": adapt,
        "loss": loss,
        "loss_params": loss_params,
        "iterations": {str(k): iters[k] for k in shots},
        "lr": lr,
        "weight_decay": float(weight_decay),
        "batch_size": int(batch_size),
        "m_per_class": int(m_per_class),
        "seed": int(seed),
        "ks": [int(k) for k in ks],
        "metrics": list(metrics),
    }
    base_state = copy.deepcopy(model.head.state_dict() if adapt == "head" else model.state_dict())
    target = model.head if adapt == "head" else model
    requires = {id(p): p.requires_grad for p in model.parameters()}
    was_training = model.training
    emb0 = frozen.embeddings.detach().cpu().numpy()
    result: dict[str, Any] = {"options": options, "shots": {}}
    try:
        for k in shots:
            eps = episodes[k]
            per_episode = []
            n_support = n_query = 0
            bar = _bar(len(eps), f"few-shot {k}-shot ({adapt})", progress)
            for e, ep in enumerate(eps):
                s_rows, s_lab, q_rows, q_lab = episode_sets(ep, frozen.ids, frozen.labels, frozen.classes)
                n_support, n_query = len(s_rows), len(q_rows)
                target.load_state_dict(base_state)
                ep_seed = _seed_int(seed, k, e, 0xADA)
                opts = {
                    "lr": lr,
                    "weight_decay": float(weight_decay),
                    "batch_size": int(batch_size),
                    "m_per_class": min(int(m_per_class), k),
                }
                one_thread = adapt == "head" and device.type == "cpu"
                with _seeded(ep_seed, device), torch_threads(1, enabled=one_thread):
                    objective = make_objective(
                        loss, num_classes=num_classes, embed_dim=model.embed_dim, **loss_params
                    ).to(device)
                    batches = support_batches(s_lab, opts["batch_size"], opts["m_per_class"], iters[k], ep_seed)
                    if adapt == "head":
                        final = _train_head(model, frozen, s_rows, s_lab, objective, opts, batches, device)
                    else:
                        final = _train_full(model, frozen, s_rows, s_lab, objective, opts, batches, device, images)
                with torch.no_grad():
                    if adapt == "head":
                        q_emb = model.embed_from_features(frozen.features[torch.from_numpy(q_rows).to(device)])
                        q_emb = q_emb.float().cpu().numpy()
                    else:
                        model.eval()
                        q_emb = images.embed(model, frozen.ids[q_rows])
                adapted = _evaluate(q_emb, q_lab, ks, metrics, seed)
                zero = _evaluate(emb0[q_rows], q_lab, ks, metrics, seed)
                per_episode.append({"adapted": adapted, "zero_shot": zero, "final_loss": final})
                bar.update(1)
                bar.set_postfix_str(
                    f"R@1 {adapted.get('recall@1', float('nan')):.3f} "
                    f"(zero-shot {zero.get('recall@1', float('nan')):.3f})"
                )
            bar.close()
            names = list(per_episode[0]["adapted"]) if per_episode else []
            result["shots"][str(k)] = {
                "episodes": len(eps),
                "classes": len(eps[0]) if eps else 0,
                "iterations": iters[k],
                "support_images": n_support,
                "query_images": n_query,
                "adapted": {m: summarize([p["adapted"][m] for p in per_episode]) for m in names},
                "zero_shot": {m: summarize([p["zero_shot"][m] for p in per_episode]) for m in names},
                "gain": {m: summarize([p["adapted"][m] - p["zero_shot"][m] for p in per_episode]) for m in names},
                "per_episode": per_episode,
            }
    finally:
        target.load_state_dict(base_state)
        for p in model.parameters():
            p.requires_grad_(requires[id(p)])
        model.train(was_training)
    return result


# ============================================================================================
# Linear probe
# ============================================================================================
def fit_linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    l2: float = PROBE_L2,
    max_iter: int = PROBE_ITERATIONS,
) -> float:
    """Top-1 accuracy on ``(test_x, test_y)`` of a multinomial logistic regression fitted on
    ``(train_x, train_y)`` (see the module docstring: standardised features, zero init,
    full-batch L-BFGS on mean cross-entropy + ``l2/2 ||W||^2``). Tensors on one device."""
    x = train_x.float()
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, unbiased=False, keepdim=True)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    x = (x - mean) / std
    xt = (test_x.float() - mean) / std
    linear = torch.nn.Linear(x.shape[1], int(num_classes)).to(x.device)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    optimizer = torch.optim.LBFGS(
        linear.parameters(),
        lr=1.0,
        max_iter=int(max_iter),
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    y = train_y.long()

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + 0.5 * float(l2) * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        pred = linear(xt).argmax(dim=1)
    return float((pred == test_y.long()).float().mean())


def linear_probe(
    frozen: FrozenFeatures,
    episodes: Mapping[int, Sequence[Mapping[str, Sequence[int]]]],
    *,
    fraction: float = PROBE_FRACTION,
    l2: float = PROBE_L2,
    max_iter: int = PROBE_ITERATIONS,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Linear probes on the frozen backbone features and embeddings of the test images.

    Returns ``{"options": {...}, "shots": {"<k>": {"episodes", "embedding": {mean, ci95,
    per_episode}, "backbone": {...}}}, "half": {"fraction", "train_images", "test_images",
    "embedding": acc, "backbone": acc}}``."""
    if not (0.0 < float(fraction) < 1.0):
        raise BadInputError(f"fraction must be between 0 and 1, exclusive (got {fraction})")
    if not (float(l2) >= 0 and math.isfinite(float(l2))):
        raise BadInputError(f"probe_l2 must be a non-negative number (got {l2})")
    num_classes = len(frozen.classes)
    device = frozen.features.device
    reps = {"embedding": frozen.embeddings.float(), "backbone": frozen.features.float()}
    labels = torch.from_numpy(frozen.labels).to(device)
    result: dict[str, Any] = {
        "options": {
            "fraction": float(fraction),
            "l2": float(l2),
            "max_iter": int(max_iter),
            "seed": int(seed),
            "standardize": True,
            "solver": "lbfgs",
        },
        "shots": {},
    }

    def acc(rep: str, tr: np.ndarray, te: np.ndarray) -> float:
        X = reps[rep]
        tr_t, te_t = torch.from_numpy(tr).to(device), torch.from_numpy(te).to(device)
        with torch_threads(1, enabled=device.type == "cpu"):
            return fit_linear_probe(X[tr_t], labels[tr_t], X[te_t], labels[te_t], num_classes, l2, max_iter)

    for k in sorted(int(k) for k in episodes):
        eps = episodes[k]
        values: dict[str, list[float]] = {"embedding": [], "backbone": []}
        bar = _bar(len(eps), f"linear probe {k}-shot", progress)
        for ep in eps:
            s_rows, _, q_rows, _ = episode_sets(ep, frozen.ids, frozen.labels, frozen.classes)
            for rep in values:
                values[rep].append(acc(rep, s_rows, q_rows))
            bar.update(1)
        bar.close()
        result["shots"][str(k)] = {
            "episodes": len(eps),
            "classes": len(eps[0]) if eps else 0,
            **{rep: {**summarize(v), "per_episode": v} for rep, v in values.items()},
        }
    # a fraction of every class's images, drawn from the seed
    rng = np.random.default_rng(_seed_int(seed, 0xF2AC))
    train_rows, test_rows = [], []
    for j in range(num_classes):  # a class with a single image cannot be split: left out
        rows = np.flatnonzero(frozen.labels == j)
        if len(rows) < 2:
            continue
        n_train = min(max(int(math.floor(len(rows) * float(fraction))), 1), len(rows) - 1)
        perm = rng.permutation(rows)
        train_rows.append(perm[:n_train])
        test_rows.append(perm[n_train:])
    if len(train_rows) < 2:
        raise BadInputError("the probe needs at least two test classes with two or more images each")
    tr = np.sort(np.concatenate(train_rows))
    te = np.sort(np.concatenate(test_rows))
    result["half"] = {
        "fraction": float(fraction),
        "classes": len(train_rows),
        "train_images": int(len(tr)),
        "test_images": int(len(te)),
        "embedding": acc("embedding", tr, te),
        "backbone": acc("backbone", tr, te),
    }
    return result


# ============================================================================================
# Progress
# ============================================================================================
class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled or total <= 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="episode", leave=False, file=sys.stderr)


# ============================================================================================
# A run folder
def resolve_lr(lr: float | None, lr_mult: float | None, run_lr: float | None) -> float | None:
    """The adaptation learning rate: ``lr`` as given, or ``lr_mult`` x the run's training rate
    ``run_lr`` (the ooDML few-shot stage uses 10 x), or ``None`` for the mode's default."""
    if lr_mult is None:
        return lr
    if lr is not None:
        raise BadInputError(f"give either lr ({lr}) or lr_mult ({lr_mult}) for adaptation, not both")
    if (
        isinstance(lr_mult, bool)
        or not isinstance(lr_mult, (int, float))
        or not lr_mult > 0
        or not math.isfinite(lr_mult)
    ):
        raise BadInputError(f"lr_mult must be a positive number (got {lr_mult!r})")
    if run_lr is None:
        raise BadInputError(
            "lr_mult needs the run's training learning rate, and the run config has none; give lr instead"
        )
    return float(run_lr) * float(lr_mult)


# ============================================================================================
#: Options of :func:`run_adaptation` (``**opts``) and their defaults (``None``: from the run).
OPTIONS: dict[str, Any] = {
    "adapt": "head",
    "loss": "margin",
    "loss_params": None,
    "iterations": None,
    "lr": None,
    "lr_mult": None,  # lr = the run's training lr x lr_mult (the ooDML few-shot stage: x10)
    "weight_decay": 0.0,
    "batch_size": None,
    "m_per_class": None,
    "seed": 0,
    "ks": DEFAULT_KS,
    "metrics": DEFAULT_METRICS,
    "fraction": PROBE_FRACTION,
    "probe_l2": PROBE_L2,
    "probe_iterations": PROBE_ITERATIONS,
    "device": "auto",
    "embed_batch_size": 256,
    "progress": True,
}


def _resolve_device(device: Any) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadInputError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} asked for but no CUDA GPU is available; use --device cpu")
    return dev


def _modes(mode: str | Sequence[str]) -> list[str]:
    modes = [mode] if isinstance(mode, str) else list(mode)
    modes = ["fewshot" if m in ("few-shot", "few_shot") else m for m in modes]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise BadInputError(f"mode must be fewshot, probe or both (got {mode!r})")
    return [m for m in MODES if m in modes]


def _merge(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """Keep the modes of an earlier ``adaptation.json`` of the same run that were not re-run
    (modes in the fixed order of :data:`MODES`)."""
    header = {key: value for key, value in new.items() if key not in MODES}
    modes = {m: new[m] for m in MODES if m in new}
    if (
        isinstance(old, dict)
        and old.get("schema") == SCHEMA
        and all(old.get(key) == value for key, value in header.items())
    ):  # same run and split; otherwise the old record describes another model: dropped
        for m in MODES:
            if m not in modes and m in old:
                modes[m] = old[m]
    return {**header, **{m: modes[m] for m in MODES if m in modes}}


def run_adaptation(
    run_dir: str | Path,
    mode: str | Sequence[str] = "fewshot",
    shots: Sequence[int] = DEFAULT_SHOTS,
    episodes: int | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """Few-shot adaptation and/or linear probes of the trained run in ``run_dir``.

    Loads the run's best model (:func:`oodml.train.load_run`), computes the frozen features of its
    test images once, runs ``mode`` (``"fewshot"``, ``"probe"`` or both as a list) for every
    ``k`` in ``shots`` over ``episodes`` episodes (see the module docstring), writes
    ``run_dir/adaptation.json`` atomically (keeping other modes recorded there) and returns its
    content. ``opts`` (see :data:`OPTIONS`): ``adapt`` (head/full), ``loss``, ``loss_params``,
    ``iterations``, ``lr``, ``weight_decay``, ``batch_size``/``m_per_class`` (default: the run's),
    ``seed``, ``ks``, ``metrics``, ``fraction``, ``probe_l2``, ``probe_iterations``, ``device``
    (``auto``), ``embed_batch_size``, ``progress``.
    """
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise BadInputError(f"unknown adaptation option {unknown[0]!r}; valid: {', '.join(OPTIONS)}")
    o = {**OPTIONS, **opts}
    modes = _modes(mode)
    try:
        shots = sorted({int(k) for k in shots})
    except (TypeError, ValueError):
        raise BadInputError(f"shots must be integers (got {shots!r})") from None
    if not shots or shots[0] < 1:
        raise BadInputError(f"shots must be positive integers (got {shots!r})")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run folder {run_dir} does not exist; give the folder of a trained run")
    if not (run_dir / "best.pt").is_file():
        raise BadInputError(
            f"run folder {run_dir} has no best.pt (the run is not trained or not finished); "
            "train it first (python -m oodml.train) or give another run folder"
        )
    progress = bool(o["progress"]) and not progress_disabled()
    device = _resolve_device(o["device"])
    seed = int(o["seed"])

    from oodml.train import load_run

    run = load_run(run_dir, device=device)
    model, config, dataset = run.model, run.config, run.dataset
    model.to(device).eval()
    classes = list(run.test_classes)
    split = run.split
    split_episodes = getattr(split, "episodes", None) if split is not None else None
    eps, source = resolve_episodes(
        dataset,
        classes,
        shots,
        split_episodes,
        episodes,
        seed,
        where=f"split file {getattr(config, 'splits', None) or '(none)'} (split {getattr(split, 'id', None)})",
    )
    images = RunImages(
        dataset, config, model=model, device=device, batch_size=int(o["embed_batch_size"]), progress=progress
    )
    frozen = compute_frozen(model, dataset, classes, images)

    record: dict[str, Any] = {
        "schema": SCHEMA,
        "dataset": getattr(dataset, "name", None),
        "split": getattr(split, "id", None),
        "fid": getattr(split, "fid", None),
        "test_classes": len(classes),
        "test_images": len(frozen),
    }
    if "fewshot" in modes:
        fs = fewshot_adaptation(
            model,
            frozen,
            eps,
            adapt=o["adapt"],
            loss=o["loss"],
            loss_params=o["loss_params"],
            iterations=o["iterations"],
            lr=resolve_lr(o["lr"], o["lr_mult"], getattr(config, "lr", None)),
            weight_decay=float(o["weight_decay"]),
            batch_size=int(o["batch_size"] if o["batch_size"] is not None else getattr(config, "batch_size", 112)),
            m_per_class=int(o["m_per_class"] if o["m_per_class"] is not None else getattr(config, "m_per_class", 2)),
            seed=seed,
            ks=tuple(o["ks"]),
            metrics=tuple(o["metrics"]),
            images=images,
            progress=progress,
        )
        fs["options"]["episodes"] = episodes
        if o["lr_mult"] is not None:
            fs["options"]["lr_mult"] = float(o["lr_mult"])
        for k in shots:
            fs["shots"][str(k)]["source"] = source[k]
        record["fewshot"] = fs
    if "probe" in modes:
        pr = linear_probe(
            frozen,
            eps,
            fraction=float(o["fraction"]),
            l2=float(o["probe_l2"]),
            max_iter=int(o["probe_iterations"]),
            seed=seed,
            progress=progress,
        )
        pr["options"]["episodes"] = episodes
        for k in shots:
            pr["shots"][str(k)]["source"] = source[k]
        record["probe"] = pr
    path = run_dir / "adaptation.json"
    old = None
    if path.is_file():
        try:
            old = read_json(path, "adaptation record")
        except OodmlError:
            old = None  # unreadable: replaced by the new record
    out = _merge(old, record)
    write_json(path, out)
    return out


# ============================================================================================
# Rows and table
# ============================================================================================
def _ci(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def adaptation_rows(adaptation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows ``{"stage", "metric", "value", "ci95"}`` of an adaptation record.

    Few-shot (``stage`` ``few-shot-<k>``): for each metric ``m`` (``recall@1`` ...) the adapted
    mean ``m``, ``m_zero_shot`` and ``m_gain`` (paired per-episode gain). Linear probe (``stage``
    ``linear-probe``): ``top1_embedding_<k>shot``, ``top1_backbone_<k>shot`` (mean over
    episodes) and ``top1_embedding_half``, ``top1_backbone_half`` (``ci95`` None)."""
    rows: list[dict[str, Any]] = []

    def value(v: Any) -> float:
        return float("nan") if v is None else float(v)

    fs = adaptation.get("fewshot")
    if fs:
        for k in sorted(fs.get("shots", {}), key=int):
            rec = fs["shots"][k]
            stage = f"few-shot-{int(k)}"
            for m, s in rec["adapted"].items():
                rows.append({"stage": stage, "metric": m, "value": value(s["mean"]), "ci95": _ci(s["ci95"])})
                z, g = rec["zero_shot"][m], rec["gain"][m]
                rows.append(
                    {"stage": stage, "metric": f"{m}_zero_shot", "value": value(z["mean"]), "ci95": _ci(z["ci95"])}
                )
                rows.append({"stage": stage, "metric": f"{m}_gain", "value": value(g["mean"]), "ci95": _ci(g["ci95"])})
    pr = adaptation.get("probe")
    if pr:
        for k in sorted(pr.get("shots", {}), key=int):
            rec = pr["shots"][k]
            for rep in ("embedding", "backbone"):
                rows.append(
                    {
                        "stage": "linear-probe",
                        "metric": f"top1_{rep}_{int(k)}shot",
                        "value": value(rec[rep]["mean"]),
                        "ci95": _ci(rec[rep]["ci95"]),
                    }
                )
        half = pr.get("half")
        if half:
            for rep in ("embedding", "backbone"):
                rows.append(
                    {"stage": "linear-probe", "metric": f"top1_{rep}_half", "value": value(half[rep]), "ci95": None}
                )
    return rows


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`adaptation_rows` (value ± ci95)."""
    if not rows:
        return "(no adaptation results)"
    header = ("stage", "metric", "value", "± ci95")
    body = [
        (r["stage"], r["metric"], f"{r['value']:.4f}", "" if r["ci95"] is None else f"{r['ci95']:.4f}") for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(b) for b in body)])


# ============================================================================================
# Command line
# ============================================================================================
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.adapt",
        description="Few-shot adaptation and linear probes of a trained run on its test classes; "
        "writes RUN_DIR/adaptation.json and prints a table.",
    )
    p.add_argument("run_dir", help="folder of a trained run (holds best.pt and config.yaml)")
    p.add_argument(
        "--mode",
        nargs="+",
        default=["fewshot"],
        choices=MODES,
        help="fewshot, probe, or both (they share the frozen features); default fewshot",
    )
    p.add_argument("--shots", nargs="+", type=int, default=list(DEFAULT_SHOTS), help="k values (default 2 5)")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"episodes per k (default: all of the split file's; {DEFAULT_EPISODES} drawn without one)",
    )
    p.add_argument(
        "--adapt",
        choices=ADAPT_MODES,
        default="head",
        help="head: train only the embedding layer on frozen features (default); full: the whole network",
    )
    p.add_argument("--loss", default="margin", help="objective (python -m oodml.train --list-losses); default margin")
    p.add_argument(
        "--loss-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="objective option, repeatable (e.g. margin=0.1, miner=none)",
    )
    p.add_argument(
        "--iterations",
        nargs="+",
        default=None,
        metavar="K=N|N",
        help="training iterations per k (e.g. 2=1000 5=1500) or one number (default 1000 / 1500)",
    )
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {HEAD_LR:g} head, {FULL_LR:g} full)")
    p.add_argument(
        "--lr-mult",
        type=float,
        default=None,
        help="learning rate as a multiple of the run's training rate (the ooDML few-shot stage: 10)",
    )
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="support images per batch (default: the run's)")
    p.add_argument("--m-per-class", type=int, default=None, help="images per class in a batch (default: the run's)")
    p.add_argument("--ks", nargs="+", type=int, default=list(DEFAULT_KS), help="Recall@k values (default 1 2 4 8)")
    p.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=DEFAULT_METRICS,
        help="retrieval metrics of the few-shot evaluation (default: all)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=PROBE_FRACTION,
        help="probe: fraction of each class's images to fit on (default 0.5)",
    )
    p.add_argument("--probe-l2", type=float, default=PROBE_L2, help=f"probe: L2 weight (default {PROBE_L2:g})")
    p.add_argument(
        "--probe-iterations",
        type=int,
        default=PROBE_ITERATIONS,
        help=f"probe: maximum L-BFGS iterations (default {PROBE_ITERATIONS})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of drawn episodes, batches, miner (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    add_quiet(p)
    return p


@run_cli
def main(argv: list[str] | None = None) -> int:
    from oodml.io import dumps_json
    from oodml.losses import parse_overrides

    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    result = run_adaptation(
        args.run_dir,
        mode=args.mode,
        shots=args.shots,
        episodes=args.episodes,
        adapt=args.adapt,
        loss=args.loss,
        loss_params=parse_overrides(args.loss_param),
        iterations=args.iterations,
        lr=args.lr,
        lr_mult=args.lr_mult,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        m_per_class=args.m_per_class,
        ks=args.ks,
        metrics=args.metrics,
        fraction=args.fraction,
        probe_l2=args.probe_l2,
        probe_iterations=args.probe_iterations,
        seed=args.seed,
        device=args.device,
        progress=not progress_disabled(args.quiet),
    )
    ran = {"fewshot": "few-shot-", "probe": "linear-probe"}
    rows = [r for r in adaptation_rows(result) if any(r["stage"].startswith(ran[m]) for m in args.mode)]
    if args.json:
        print(dumps_json(rows), end="")
    else:
        print(format_rows(rows))
        print(f"wrote {Path(args.run_dir) / 'adaptation.json'} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
