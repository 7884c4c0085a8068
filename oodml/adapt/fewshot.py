"""Few-shot adaptation: each episode adapts the trained model (the embedding layer on frozen
features, or the whole network on augmented images) on its support set and evaluates it on its
query set beside the zero-shot model (:func:`fewshot_adaptation`)."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from oodml.adapt.episodes import episode_sets, seed_int, support_batches
from oodml.adapt.frozen import FrozenFeatures, RunImages, model_device
from oodml.adapt.options import (
    ADAPTED_PARTS,
    DEFAULT_KS,
    DEFAULT_METRICS,
    FULL_LR,
    HEAD_LR,
    parse_iterations,
)
from oodml.adapt.stats import summarize
from oodml.errors import BadInputError
from oodml.evaluate import evaluate_embeddings
from oodml.losses import make_objective
from oodml.models import param_groups
from oodml.progress import progress_bar
from oodml.threads import torch_threads

__all__ = ["fewshot_adaptation"]


def _evaluate(emb, labels, ks, metrics, seed) -> dict[str, float]:
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
        frozen: :func:`~oodml.adapt.compute_frozen` of the model on the test classes.
        episodes: ``{k: [ {class: [k image ids]}, ... ]}`` (see :func:`~oodml.adapt.resolve_episodes`).
        adapt: ``"head"`` (train the embedding layer on the frozen features) or ``"full"``
            (train everything on augmented images; needs ``images``).
        loss, loss_params: the objective (:func:`oodml.losses.make_objective`).
        iterations: see :func:`~oodml.adapt.parse_iterations`.
        lr: default 1e-4 (head) / 1e-5 (full). weight_decay: Adam's, default 0.
        batch_size, m_per_class: see :func:`~oodml.adapt.support_batches` (per class at most ``k``).
        seed: seeds batches, the miner and the objective's initial parameters, per episode.
        ks, metrics: passed to :func:`oodml.evaluate.evaluate_embeddings`.

    Returns:
        ``{"options": {...}, "shots": {"<k>": {"episodes", "iterations", "support_images",
        "query_images", "adapted": {metric: {mean, ci95}}, "zero_shot": {...}, "gain": {...},
        "per_episode": [{"adapted": {...}, "zero_shot": {...}, "final_loss": float}]}}}``.
    """
    _check_arguments(adapt, images, batch_size, m_per_class)
    loss_params = dict(loss_params or {})
    shots = sorted(int(k) for k in episodes)
    iters = parse_iterations(iterations, shots)
    lr = float(lr) if lr is not None else (HEAD_LR if adapt == "head" else FULL_LR)
    if not (lr > 0 and math.isfinite(lr)):
        raise BadInputError(f"lr must be a positive number (got {lr})")
    num_classes = len(frozen.classes)
    # check the objective once, up front (bad loss options fail before any work)
    make_objective(loss, num_classes=num_classes, embed_dim=model.embed_dim, **loss_params)
    options = _record_options(
        adapt, loss, loss_params, iters, shots, lr, weight_decay, batch_size, m_per_class, seed, ks, metrics
    )
    run = _EpisodeRunner(model, frozen, options, images, (ks, metrics, seed))
    result: dict[str, Any] = {"options": options, "shots": {}}
    try:
        for k in shots:
            per_episode = []
            sizes = (0, 0)
            bar = progress_bar(
                total=len(episodes[k]), desc=f"few-shot {k}-shot ({adapt})", unit="episode", enabled=progress
            )
            for e, ep in enumerate(episodes[k]):
                record, sizes = run.episode(k, e, ep, iters[k])
                per_episode.append(record)
                bar.update(1)
                bar.set_postfix_str(
                    f"R@1 {record['adapted'].get('recall@1', float('nan')):.3f} "
                    f"(zero-shot {record['zero_shot'].get('recall@1', float('nan')):.3f})"
                )
            bar.close()
            result["shots"][str(k)] = _shot_record(episodes[k], iters[k], sizes, per_episode)
    finally:
        run.restore()
    return result


def _record_options(
    adapt, loss, loss_params, iters, shots, lr, weight_decay, batch_size, m_per_class, seed, ks, metrics
):
    """The options as recorded in ``adaptation.json`` (plain numbers and lists)."""
    return {
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


def _check_arguments(adapt: str, images: RunImages | None, batch_size: int, m_per_class: int) -> None:
    if adapt not in ADAPTED_PARTS:
        raise BadInputError(f"adapt must be one of {', '.join(ADAPTED_PARTS)} (got {adapt!r})")
    if adapt == "full" and images is None:
        raise BadInputError("full adaptation needs the run's images (RunImages) for augmented batches")
    if int(batch_size) < 1 or int(m_per_class) < 1:
        raise BadInputError(f"batch_size and m_per_class must be positive (got {batch_size}, {m_per_class})")


def _shot_record(eps: Sequence[Mapping], iterations: int, sizes: tuple[int, int], per_episode: list[dict]) -> dict:
    """The record of one ``k``: sizes, the mean and CI of adapted, zero-shot and gain, per episode."""
    names = list(per_episode[0]["adapted"]) if per_episode else []
    return {
        "episodes": len(eps),
        "classes": len(eps[0]) if eps else 0,
        "iterations": iterations,
        "support_images": sizes[0],
        "query_images": sizes[1],
        "adapted": {m: summarize([p["adapted"][m] for p in per_episode]) for m in names},
        "zero_shot": {m: summarize([p["zero_shot"][m] for p in per_episode]) for m in names},
        "gain": {m: summarize([p["adapted"][m] - p["zero_shot"][m] for p in per_episode]) for m in names},
        "per_episode": per_episode,
    }


class _EpisodeRunner:
    """One model adapted episode after episode: each starts again from the trained weights, and
    :meth:`restore` gives the model back as it came (weights, ``requires_grad``, train mode)."""

    def __init__(
        self,
        model,
        frozen: FrozenFeatures,
        options: Mapping[str, Any],
        images: RunImages | None,
        evaluation: tuple[Sequence[int], Sequence[str], int],
    ):
        self.model = model
        self.evaluation = evaluation  # (ks, metrics, seed) as given, for evaluate_embeddings
        self.frozen = frozen
        self.options = options
        self.images = images
        self.adapt = options["adapt"]
        self.device = model_device(model)
        self.num_classes = len(frozen.classes)
        head = self.adapt == "head"
        self.base_state = copy.deepcopy(model.head.state_dict() if head else model.state_dict())
        self.target = model.head if head else model
        self.requires = {id(p): p.requires_grad for p in model.parameters()}
        self.was_training = model.training
        self.emb0 = frozen.embeddings.detach().cpu().numpy()

    def episode(self, k: int, e: int, ep: Mapping[str, Sequence[int]], iterations: int) -> tuple[dict, tuple[int, int]]:
        """Adapt on episode ``e`` of ``k`` shots and evaluate: ``({"adapted", "zero_shot",
        "final_loss"}, (support images, query images))``."""
        model, frozen, o, device = self.model, self.frozen, self.options, self.device
        s_rows, s_lab, q_rows, q_lab = episode_sets(ep, frozen.ids, frozen.labels, frozen.classes)
        self.target.load_state_dict(self.base_state)
        ep_seed = seed_int(o["seed"], k, e, 0xADA)
        opts = {
            "lr": o["lr"],
            "weight_decay": o["weight_decay"],
            "batch_size": o["batch_size"],
            "m_per_class": min(o["m_per_class"], k),
        }
        one_thread = self.adapt == "head" and device.type == "cpu"
        with _seeded(ep_seed, device), torch_threads(1, enabled=one_thread):
            objective = make_objective(
                o["loss"], num_classes=self.num_classes, embed_dim=model.embed_dim, **o["loss_params"]
            ).to(device)
            batches = support_batches(s_lab, opts["batch_size"], opts["m_per_class"], iterations, ep_seed)
            if self.adapt == "head":
                final = _train_head(model, frozen, s_rows, s_lab, objective, opts, batches, device)
            else:
                final = _train_full(model, frozen, s_rows, s_lab, objective, opts, batches, device, self.images)
        q_emb = self._query_embeddings(q_rows)
        adapted = _evaluate(q_emb, q_lab, *self.evaluation)
        zero = _evaluate(self.emb0[q_rows], q_lab, *self.evaluation)
        return {"adapted": adapted, "zero_shot": zero, "final_loss": final}, (len(s_rows), len(q_rows))

    def _query_embeddings(self, q_rows: np.ndarray) -> np.ndarray:
        model = self.model
        with torch.no_grad():
            if self.adapt == "head":
                q_emb = model.embed_from_features(self.frozen.features[torch.from_numpy(q_rows).to(self.device)])
                return q_emb.float().cpu().numpy()
            model.eval()
            return self.images.embed(model, self.frozen.ids[q_rows])

    def restore(self) -> None:
        self.target.load_state_dict(self.base_state)
        for p in self.model.parameters():
            p.requires_grad_(self.requires[id(p)])
        self.model.train(self.was_training)
