"""Linear probes: multinomial logistic regression on the frozen features and embeddings of the
test classes, fitted per episode and on a fraction of every class (:func:`linear_probe`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from oodml.adapt.episodes import episode_sets, seed_int
from oodml.adapt.frozen import FrozenFeatures
from oodml.adapt.options import PROBE_FRACTION, PROBE_ITERATIONS, PROBE_L2
from oodml.adapt.stats import summarize
from oodml.errors import BadInputError
from oodml.progress import progress_bar
from oodml.threads import torch_threads

__all__ = ["fit_linear_probe", "linear_probe"]


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
        bar = progress_bar(total=len(eps), desc=f"linear probe {k}-shot", unit="episode", enabled=progress)
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
    tr, te, n_classes = _fraction_split(frozen.labels, num_classes, fraction, seed)
    result["half"] = {
        "fraction": float(fraction),
        "classes": n_classes,
        "train_images": int(len(tr)),
        "test_images": int(len(te)),
        "embedding": acc("embedding", tr, te),
        "backbone": acc("backbone", tr, te),
    }
    return result


def _fraction_split(
    labels: np.ndarray, num_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows to fit on and rows to test on: a ``fraction`` of every class's images (at least one,
    at most all but one), drawn from ``seed``; a class with a single image is left out. Returns
    ``(train rows, test rows, classes kept)``, rows sorted."""
    rng = np.random.default_rng(seed_int(seed, 0xF2AC))
    train_rows, test_rows = [], []
    for j in range(num_classes):
        rows = np.flatnonzero(labels == j)
        if len(rows) < 2:
            continue
        n_train = min(max(int(math.floor(len(rows) * float(fraction))), 1), len(rows) - 1)
        perm = rng.permutation(rows)
        train_rows.append(perm[:n_train])
        test_rows.append(perm[n_train:])
    if len(train_rows) < 2:
        raise BadInputError("the probe needs at least two test classes with two or more images each")
    return np.sort(np.concatenate(train_rows)), np.sort(np.concatenate(test_rows)), len(train_rows)
