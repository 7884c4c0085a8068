"""The ρ-distance miner of Roth et al. (2020, "Revisiting training strategies and generalization
performance in deep metric learning"), used by the R-Margin objective of the ooDML study.

For every anchor ``a`` whose class has another sample in the batch (and which has at least one
negative) the miner draws one triplet:

* with probability ``1 - rho``: a distance-weighted triplet (Wu et al. 2017): a positive ``p``
  uniformly among the other samples of ``a``'s class, a negative ``n`` with probability
  proportional to the inverse density of distances between points on the unit sphere of
  dimension ``D`` (distances clamped below at ``cutoff``)::

      log q^-1(d) = (2 - D) log d - (D - 3) / 2 * log(1 - d^2 / 4)

* with probability ``rho`` (the *ρ push*): the triplet ``(a, a, p)`` -- the anchor takes the
  positive slot and a same-class sample the negative slot, so a margin loss *pushes apart* two
  images of one class.  This regularises the embedding towards a flatter singular-value spectrum
  (higher ρ in Roth et al.'s terms), which they relate to better generalisation.

Randomness comes from torch's global generator (as pml's ``DistanceWeightedMiner``), so a
training run seeded per epoch draws the same triplets again on resume.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.miners import BaseMiner
from pytorch_metric_learning.utils import common_functions as c_f

__all__ = ["RhoDistanceMiner", "inverse_sphere_distance_weights"]


def inverse_sphere_distance_weights(
    distances: torch.Tensor, labels: torch.Tensor, dim: int, cutoff: float = 0.5
) -> torch.Tensor:
    """Negative-sampling probabilities of distance-weighted sampling, one row per anchor.

    Args:
        distances: ``(B, B)`` float pairwise Euclidean distances of L2-normalised embeddings.
        labels: ``(B,)`` int labels.
        dim: embedding dimension ``D``.
        cutoff: distances below it are raised to it (Wu et al.'s 0.5).

    Returns:
        ``(B, B)`` float probabilities: row ``i`` is ``q^-1(d_ij)`` normalised over the samples of
        other classes (zero on ``i``'s own class); an all-zero row when ``i`` has no negative.
    """
    d = distances.clamp(min=float(cutoff))
    # 1 - d^2/4 reaches 0 only for antipodal points (d = 2); keep its log finite
    log_q = (2.0 - float(dim)) * torch.log(d) - (float(dim) - 3.0) / 2.0 * torch.log(
        (1.0 - 0.25 * d.pow(2)).clamp(min=1e-8)
    )
    same = labels[:, None] == labels[None, :]
    log_q = log_q.masked_fill(same, float("-inf"))
    has_neg = (~same).any(dim=1, keepdim=True)
    log_q = torch.where(has_neg, log_q, torch.zeros_like(log_q))
    w = torch.softmax(log_q, dim=1)  # exp(log q - max) / sum: stable
    return torch.where(has_neg, w, torch.zeros_like(w))


class RhoDistanceMiner(BaseMiner):
    """Distance-weighted triplets with a ρ push (see the module docstring).

    Args:
        rho: probability of the push triplet ``(a, a, p)`` per anchor (the ooDML R-Margin uses 0.4;
            Roth et al.'s default 0.2).
        cutoff: lower distance cutoff of distance-weighted sampling (0.5).

    ``miner(embeddings, labels)`` returns ``(anchors, positives, negatives)``: three ``(T,)``
    int64 tensors of batch indices, one triplet per eligible anchor, for any triplet-based pml
    loss (``MarginLoss``, ``TripletMarginLoss``...).
    """

    def __init__(self, rho: float = 0.2, cutoff: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rho) <= 1.0:
            raise ValueError(f"rho must be a probability in [0, 1] (got {rho})")
        self.rho = float(rho)
        self.cutoff = float(cutoff)
        self.add_to_recordable_attributes(list_of_names=["rho", "cutoff", "num_pushes"], is_stat=False)
        self.num_pushes = 0

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        dev = embeddings.device
        emb = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
        labels = labels.to(dev)
        n = len(labels)
        dist = torch.cdist(emb, emb)
        same = labels[:, None] == labels[None, :]
        others = same & ~torch.eye(n, dtype=torch.bool, device=dev)
        q = inverse_sphere_distance_weights(dist, labels, emb.shape[1], self.cutoff)
        ok = others.any(dim=1) & (q.sum(dim=1) > 0)
        anchors = torch.nonzero(ok).flatten()
        if len(anchors) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            self.num_pushes = 0
            return empty, empty.clone(), empty.clone()
        push = torch.rand(len(anchors), device=dev) < self.rho
        positives = torch.multinomial(others[anchors].float(), 1).flatten()
        negatives = torch.multinomial(q[anchors], 1).flatten()
        self.num_pushes = int(push.sum())
        a = anchors
        p = torch.where(push, anchors, positives)
        neg = torch.where(push, positives, negatives)
        return a, p, neg
