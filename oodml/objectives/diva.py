"""DiVA: diverse visual feature aggregation (Milbich et al. 2020), as in the ooDML study.

The embedding of ``E`` dimensions is read as ``4`` heads of ``E / 4`` (128 for the study's 512),
each L2-normalised (the model normalises each head, see ``EmbeddingModel(embed_groups=4)``; the
evaluated embedding is their concatenation).  Each head learns one kind of feature::

    L = L_disc + alpha_shared * L_shared + alpha_intra * L_intra + alpha_ssl * L_ssl + L_decorr

* ``discriminative``: the base objective (margin loss with distance-weighted mining) on the classes.
* ``shared`` (class-shared features): a margin loss on triplets whose *positive* is the nearest
  sample of another class (in the shared head, detached) and whose negative is a random other
  sample: features that several classes have in common.
* ``intra`` (intra-class features): a contrastive push on the pairs of samples *within* one class
  (``relu(neg_margin - d)``), so the head keeps what tells images of one class apart.
* ``selfsim`` (self-supervised instance discrimination): every image is its own class; without a
  second augmented view in the batch this is the negative part of InfoNCE, the uniformity loss of
  Wang & Isola (2020): ``log mean_{i != j} exp(-t * ||z_i - z_j||^2)`` (t = 2).  The DiVA paper
  uses MoCo with a second view and a memory queue instead.
* ``L_decorr`` (adversarial separation): for each direction ``s -> t`` a regressor MLP ``R`` maps
  head ``s`` onto head ``t``; with ``grl`` a gradient reversal and ``n`` L2 normalisation::

      L_decorr = - sum_(s->t) w * mean_b mean_k ( n(grl(z_t)) * n(R(n(grl(z_s)))) )^2

  ``R`` learns to predict one head from the other; the reversed gradient makes the heads
  decorrelate.  The regressors' parameters belong to the objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DIVA_HEADS", "DiVA", "grad_reverse", "shared_triplets", "intra_pairs", "uniformity_loss"]

DIVA_HEADS = ("discriminative", "shared", "intra", "selfsim")


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return -grad


def grad_reverse(x: torch.Tensor) -> torch.Tensor:
    """Identity forward, negated gradient backward."""
    return _GradReverse.apply(x)


def shared_triplets(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-shared triplets: anchor ``a``, positive = nearest sample of another class, negative =
    a random sample other than ``a`` and the positive (torch's global generator).  ``z``: ``(B, d)``."""
    n = len(labels)
    dev = z.device
    with torch.no_grad():
        d = torch.cdist(z.detach().float(), z.detach().float())
        d = d.masked_fill(labels[:, None] == labels[None, :], float("inf"))
        ok = torch.isfinite(d).any(dim=1) & torch.tensor(n > 2, device=dev)
        anchors = torch.nonzero(ok).flatten()
        pos = d[anchors].argmin(dim=1)
        allowed = torch.ones(len(anchors), n, device=dev)
        allowed[torch.arange(len(anchors), device=dev), anchors] = 0
        allowed[torch.arange(len(anchors), device=dev), pos] = 0
        neg = torch.multinomial(allowed, 1).flatten() if len(anchors) else pos.clone()
    return anchors, pos, neg


def intra_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs ``(i, j)``, ``i != j``, of samples of one class."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    i, j = torch.nonzero(same, as_tuple=True)
    return i, j


def uniformity_loss(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` of ``(B, d)`` embeddings (Wang & Isola 2020)."""
    n = z.shape[0]
    sq = torch.cdist(z, z).pow(2)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    return torch.logsumexp(-t * sq[off], dim=0) - torch.log(torch.tensor(float(off.sum()), device=z.device))


class DiVA(nn.Module):
    """The DiVA criterion (see the module docstring).

    Args:
        embed_dim: total embedding dimension (a multiple of 4).
        discriminative: the base objective of the class-discriminative head, called
            ``(embeddings (B, E/4), labels)``.
        shared_loss: a pml triplet loss for the shared head (``loss(z, labels, (a, p, n))``).
        intra_loss: a pml pair loss for the intra head (``loss(z, labels, (a1, p, a2, n))``).
        alpha_shared, alpha_intra, alpha_ssl: weights of the three auxiliary heads (0.3).
        decorrelation: weight ``w`` of each decorrelation direction (1500).
        directions: ``"source-target"`` head pairs.
        decorr_dim: hidden width of the regressors.
        decorr_lr_mult: learning rate of the regressors relative to the base rate.
        ssl_t: temperature ``t`` of the self-supervised uniformity loss.
        beta_lr: learning rate of the learnable β of the shared head's margin loss.
    """

    def __init__(
        self,
        embed_dim: int,
        discriminative: nn.Module,
        shared_loss: nn.Module,
        intra_loss: nn.Module,
        alpha_shared: float = 0.3,
        alpha_intra: float = 0.3,
        alpha_ssl: float = 0.3,
        decorrelation: float = 1500.0,
        directions: Sequence[str] = ("discriminative-selfsim", "discriminative-shared", "discriminative-intra"),
        decorr_dim: int = 512,
        decorr_lr_mult: float = 1.0,
        ssl_t: float = 2.0,
        beta_lr: float = 5e-4,
    ):
        super().__init__()
        if int(embed_dim) % len(DIVA_HEADS):
            raise ValueError(f"DiVA needs an embedding dimension divisible by {len(DIVA_HEADS)} (got {embed_dim})")
        self.head_dim = int(embed_dim) // len(DIVA_HEADS)
        self.discriminative, self.shared_loss, self.intra_loss = discriminative, shared_loss, intra_loss
        self.alpha_shared, self.alpha_intra, self.alpha_ssl = float(alpha_shared), float(alpha_intra), float(alpha_ssl)
        self.decorrelation, self.decorr_lr_mult, self.ssl_t = float(decorrelation), float(decorr_lr_mult), float(ssl_t)
        self.beta_lr = float(beta_lr)
        self.directions = [str(d) for d in directions]
        for d in self.directions:
            s, _, t = d.partition("-")
            if s not in DIVA_HEADS or t not in DIVA_HEADS or s == t:
                raise ValueError(f"DiVA direction {d!r} must be 'source-target' with two of {', '.join(DIVA_HEADS)}")
        self.regressors = nn.ModuleDict(
            {
                d.replace("-", "_to_"): nn.Sequential(
                    nn.Linear(self.head_dim, int(decorr_dim)), nn.ReLU(), nn.Linear(int(decorr_dim), self.head_dim)
                )
                for d in self.directions
            }
        )
        self.last: dict[str, float] = {}

    def split(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four L2-normalised heads of ``(B, E)`` embeddings, each ``(B, E/4)``."""
        return {h: F.normalize(c, dim=-1) for h, c in zip(DIVA_HEADS, embeddings.split(self.head_dim, dim=-1))}

    def decorrelation_loss(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        adj = {k: F.normalize(grad_reverse(v), dim=-1) for k, v in heads.items()}
        loss = heads["discriminative"].new_zeros(())
        for d in self.directions:
            s, _, t = d.partition("-")
            pred = F.normalize(self.regressors[d.replace("-", "_to_")](adj[s]), dim=-1)
            loss = loss - self.decorrelation * (adj[t] * pred).pow(2).mean(dim=-1).mean()
        return loss

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        z = self.split(embeddings)
        l_disc = self.discriminative(z["discriminative"], labels)
        l_shared = self.shared_loss(z["shared"], labels, shared_triplets(z["shared"], labels))
        i, j = intra_pairs(labels)
        empty = i[:0]
        l_intra = self.intra_loss(z["intra"], labels, (empty, empty, i, j))
        l_ssl = uniformity_loss(z["selfsim"], self.ssl_t)
        l_dec = self.decorrelation_loss(z)
        self.last = {
            k: float(v.detach())
            for k, v in (
                ("discriminative", l_disc),
                ("shared", l_shared),
                ("intra", l_intra),
                ("selfsim", l_ssl),
                ("decorrelation", l_dec),
            )
        }
        return l_disc + self.alpha_shared * l_shared + self.alpha_intra * l_intra + self.alpha_ssl * l_ssl + l_dec

    def param_groups(self, base_lr: float, weight_decay: float | None = None) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        if hasattr(self.discriminative, "param_groups"):
            groups += self.discriminative.param_groups(base_lr, weight_decay)
        own = [p for m in (self.shared_loss, self.intra_loss) for p in m.parameters() if p.requires_grad]
        extra = [
            ({"params": own, "lr": self.beta_lr, "name": "objective/diva-betas"}) if own else None,
            {
                "params": list(self.regressors.parameters()),
                "lr": float(base_lr) * self.decorr_lr_mult,
                "name": "objective/diva-regressors",
            },
        ]
        for g in extra:
            if g is None:
                continue
            if weight_decay is not None:
                g["weight_decay"] = float(weight_decay)
            groups.append(g)
        return groups
