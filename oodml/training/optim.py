"""The optimizer (Adam, AdamW or SGD over the model's and the objective's parameter groups) and
the per-epoch learning-rate scheduler of a :class:`~oodml.training.config.TrainConfig`."""

from __future__ import annotations

import torch

from oodml.errors import BadInputError
from oodml.training.config import TrainConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_scheduler(cfg: TrainConfig, optimizer):
    """The per-epoch learning-rate scheduler of ``cfg`` (None without one)."""
    if cfg.scheduler is None:
        if cfg.scheduler_params:
            raise BadInputError("scheduler_params given without a scheduler; set scheduler: cosine, step or multistep")
        return None
    p = dict(cfg.scheduler_params)
    S = torch.optim.lr_scheduler
    allowed = {"cosine": {"eta_min"}, "step": {"step_size", "gamma"}, "multistep": {"milestones", "gamma"}}[
        cfg.scheduler
    ]
    unknown = sorted(set(p) - allowed)
    if unknown:
        raise BadInputError(
            f"scheduler {cfg.scheduler}: unknown parameter {unknown[0]!r}; valid: {', '.join(sorted(allowed))}"
        )
    try:
        if cfg.scheduler == "cosine":
            return S.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=float(p.get("eta_min", 0.0)))
        if cfg.scheduler == "step":
            return S.StepLR(
                optimizer, step_size=int(p.get("step_size", max(1, cfg.epochs // 3))), gamma=float(p.get("gamma", 0.1))
            )
        milestones = p.get("milestones", [max(1, cfg.epochs // 2), max(2, (3 * cfg.epochs) // 4)])
        return S.MultiStepLR(optimizer, milestones=[int(m) for m in milestones], gamma=float(p.get("gamma", 0.1)))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"scheduler {cfg.scheduler}: bad parameters {p} ({exc})") from None


def make_optimizer(cfg: TrainConfig, model, objective):
    """The optimizer over the model's and the objective's own parameter groups."""
    from oodml.models import param_groups  # lazy: oodml.models imports timm (see loop._setup_model)

    groups = param_groups(model, cfg.lr, head_lr_mult=cfg.head_lr_mult, weight_decay=cfg.weight_decay)
    groups += objective.param_groups(cfg.lr, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
