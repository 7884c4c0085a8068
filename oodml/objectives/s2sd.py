"""S2SD: simultaneous similarity-based self-distillation (Roth et al. 2021), as in the ooDML study.

Auxiliary *higher-dimensional* heads ``g_i`` (an MLP ``F -> d_i -> d_i`` on the pooled backbone
features, ``d_i`` = 1024, 1536, 2048) are trained with the base loss; the target embedding ``f``
(the model's 512-d head, the one evaluated) learns the batch similarity distributions of the
auxiliary heads, and those of the (normalised, detached) pooled features.  With batch similarity
matrices ``S_x = x x^T`` of L2-normalised ``x`` and the row-wise divergence at temperature ``T``::

    KL_T(A, B) = T^2 / n * sum_i KL(softmax(B_i / T) || softmax(A_i / T))

    L = L_base(f) + 1/m * sum_i [ L_base(g_i) + weight * KL_T(S_f, sg[S_{g_i}]) ]
                  + feat_weight * KL_T(S_f, sg[S_features])          (after feat_delay steps)

``sg`` stops gradients (the teachers are not pulled towards the student).  Every head gets its
own instance of the base objective (its own learnable β, proxies...).  ``step`` counts training
calls (a buffer, so checkpoints carry it and a resumed run switches feature distillation on at
the same step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["S2SD", "similarity_kl"]


def similarity_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL_T(student, teacher)`` of two ``(n, n)`` similarity matrices (see the module docstring):
    the KL divergence of the teacher's row distributions from the student's, summed over rows,
    times ``T^2 / n``.  Gradients flow into both arguments (detach the teacher yourself)."""
    t = float(temperature)
    log_p = F.log_softmax(student / t, dim=-1)
    q = F.softmax(teacher / t, dim=-1)
    return F.kl_div(log_p, q, reduction="sum") * (t * t) / student.shape[0]


class S2SD(nn.Module):
    """The S2SD criterion.

    Args:
        sources: ``1 + len(dims)`` base objectives, called ``source(embeddings, labels)``: the
            first for the target embedding, one per auxiliary head.
        feature_dim: width ``F`` of the pooled backbone features.
        dims: widths of the auxiliary heads.
        temperature, weight, feat_weight, feat_delay: see the module docstring.
        head_lr_mult: learning rate of the auxiliary heads relative to the base rate.

    ``crit(embeddings (B, E), labels (B,), features (B, F))`` -> scalar loss.
    """

    def __init__(
        self,
        sources: Sequence[nn.Module],
        feature_dim: int,
        dims: Sequence[int] = (1024, 1536, 2048),
        temperature: float = 1.0,
        weight: float = 50.0,
        feat_weight: float = 50.0,
        feat_delay: int = 1000,
        head_lr_mult: float = 1.0,
    ):
        super().__init__()
        if len(sources) != 1 + len(dims):
            raise ValueError(f"S2SD needs {1 + len(dims)} base objectives (target + one per head), got {len(sources)}")
        self.target = sources[0]
        self.aux_losses = nn.ModuleList(sources[1:])
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(int(feature_dim), int(d)), nn.ReLU(), nn.Linear(int(d), int(d))) for d in dims
        )
        self.dims = [int(d) for d in dims]
        self.temperature, self.weight, self.feat_weight = float(temperature), float(weight), float(feat_weight)
        self.feat_delay, self.head_lr_mult = int(feat_delay), float(head_lr_mult)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.last: dict[str, float] = {}

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        if features is None:
            raise ValueError("S2SD needs the pooled backbone features (objective(embeddings, labels, features=...))")
        f = F.normalize(embeddings, dim=-1)
        loss = self.target(f, labels)
        s_f = f @ f.T
        last = {"base": float(loss.detach())}
        for i, (head, crit) in enumerate(zip(self.heads, self.aux_losses)):
            g = F.normalize(head(features.float()), dim=-1)
            kl = similarity_kl(s_f, (g @ g.T).detach(), self.temperature)
            loss = loss + (crit(g, labels) + self.weight * kl) / len(self.heads)
            last[f"kl_{self.dims[i]}"] = float(kl.detach())
        if self.feat_weight and int(self.step) >= self.feat_delay:
            h = F.normalize(features.float(), dim=-1).detach()
            kl = similarity_kl(s_f, h @ h.T, self.temperature)
            loss = loss + self.feat_weight * kl
            last["kl_features"] = float(kl.detach())
        if self.training:
            self.step += 1
        self.last = last
        return loss

    def param_groups(self, base_lr: float, weight_decay: float | None = None) -> list[dict[str, Any]]:
        """The base objectives' own groups, then the auxiliary heads at ``base_lr * head_lr_mult``."""
        groups: list[dict[str, Any]] = []
        for crit in (self.target, *self.aux_losses):
            groups += crit.param_groups(base_lr, weight_decay) if hasattr(crit, "param_groups") else []
        group: dict[str, Any] = {
            "params": list(self.heads.parameters()),
            "lr": float(base_lr) * self.head_lr_mult,
            "name": "objective/s2sd-heads",
        }
        if weight_decay is not None:
            group["weight_decay"] = float(weight_decay)
        return groups + [group]
