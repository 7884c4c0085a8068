"""The :class:`Objective` module: a loss (pml's, or a composite criterion) with its miner,
regularisers and the learning rates of its own parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from oodml.errors import BadInputError

__all__ = ["Objective"]


class Objective(nn.Module):
    """A pml loss with an optional pml miner and the learning rates of the loss's parameters.

    Call it as ``objective(embeddings, labels)`` -> scalar loss (the miner, when present, picks
    the tuples first).  Being an ``nn.Module``, ``.to(device)`` moves its parameters and
    ``state_dict()`` carries them into checkpoints.
    """

    def __init__(
        self,
        name: str,
        loss: nn.Module,
        miner: nn.Module | None,
        kind: str,
        num_classes: int,
        embed_dim: int,
        config: dict[str, Any],
        lr_rule: dict[str, Any],
        indexed_by_label: bool,
        *,
        regularizers: Iterable[nn.Module] = (),
        criterion: nn.Module | None = None,
        needs_features: bool = False,
        embed_groups: int = 1,
    ):
        super().__init__()
        self.name = name
        self.loss = loss
        self.miner = miner
        self.criterion = criterion  # a composite objective (S2SD, DiVA, a plugin's)
        self.regularizers = nn.ModuleList(regularizers)
        self.needs_features = bool(needs_features)
        self.embed_groups = int(embed_groups)
        self.kind = kind
        self.num_classes = int(num_classes)
        self.embed_dim = int(embed_dim)
        self.config = config
        self._lr_rule = dict(lr_rule)
        self._indexed_by_label = bool(indexed_by_label)

    @property
    def needs_pairs(self) -> bool:
        """True when batches need at least two samples per class (pair/triplet-based objectives)."""
        return self.kind == "pair"

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The scalar loss of ``embeddings`` ``(B, embed_dim)`` float with ``labels`` ``(B,)`` int64
        in ``0..num_classes-1``; ``features`` ``(B, feature_dim)``: the pooled backbone features,
        needed by objectives with ``needs_features`` (S2SD) and ignored by the others."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim:
            raise BadInputError(
                f"objective {self.name} expects embeddings of shape (batch, {self.embed_dim}), "
                f"got {tuple(embeddings.shape)}; build it with the model's embed_dim"
            )
        if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
            raise BadInputError(
                f"objective {self.name}: labels must be a 1-d tensor with one label per embedding "
                f"(got labels {tuple(labels.shape)} for embeddings {tuple(embeddings.shape)})"
            )
        if self._indexed_by_label and labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise BadInputError(
                    f"objective {self.name} was built for {self.num_classes} training classes but got "
                    f"label {hi if hi >= self.num_classes else lo}; "
                    f"labels must be remapped to 0..{self.num_classes - 1}"
                )
        if self.needs_features and (features is None or features.ndim != 2 or features.shape[0] != embeddings.shape[0]):
            raise BadInputError(
                f"objective {self.name} needs the pooled backbone features, one row per embedding "
                "(objective(embeddings, labels, features=model.forward_features(x)))"
            )
        if self.criterion is not None:
            value = self.criterion(embeddings, labels, features)
        elif self.miner is not None:
            indices = self.miner(embeddings, labels)
            value = self.loss(embeddings, labels, indices)
        else:
            value = self.loss(embeddings, labels)
        for reg in self.regularizers:
            value = value + reg(embeddings, labels)
        return value

    def last_terms(self) -> dict[str, float]:
        """The named parts of the last loss value (composite objectives and regularisers report
        them, e.g. DiVA's ``discriminative`` ... ``decorrelation``); empty for plain objectives."""
        terms = dict(getattr(self.criterion, "last", {}) or {}) if self.criterion is not None else {}
        for reg in self.regularizers:
            terms.update({f"{getattr(reg, 'name', 'reg')}_{k}": v for k, v in (getattr(reg, "last", {}) or {}).items()})
        return terms

    def param_lr(self, base_lr: float) -> float:
        """The learning rate of the loss's own parameters for a base learning rate ``base_lr``."""
        rule = self._lr_rule
        if rule.get("lr") is not None:
            return float(rule["lr"])
        return float(base_lr) * float(rule.get("lr_mult", 1.0))

    def param_groups(self, base_lr: float, weight_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimizer groups for the loss's trainable parameters (empty when it has none)."""
        groups: list[dict[str, Any]] = []
        params = [p for p in self.loss.parameters() if p.requires_grad] if self.loss is not None else []
        if params:
            groups.append({"params": params, "lr": self.param_lr(base_lr), "name": f"objective/{self.name}"})
        if self.criterion is not None:
            if hasattr(self.criterion, "param_groups"):
                groups += self.criterion.param_groups(base_lr, weight_decay)
            elif any(p.requires_grad for p in self.criterion.parameters()):
                groups.append(
                    {
                        "params": [p for p in self.criterion.parameters() if p.requires_grad],
                        "lr": self.param_lr(base_lr),
                        "name": f"objective/{self.name}",
                    }
                )
        for reg in self.regularizers:
            reg_params = [p for p in reg.parameters() if p.requires_grad]
            if reg_params:
                lr = float(base_lr) * float(getattr(reg, "lr_mult", 1.0))
                groups.append({"params": reg_params, "lr": lr, "name": f"regularizer/{getattr(reg, 'name', 'reg')}"})
        if weight_decay is not None:
            for g in groups:
                g.setdefault("weight_decay", float(weight_decay))
        return groups

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}, num_classes={self.num_classes}, embed_dim={self.embed_dim}"
