"""The adversarial uniformity regulariser of the ooDML study's *MaxEntropy* method.

A small discriminator ``D`` (an MLP, ``chunk -> hidden -> 1``) learns to tell *chunks* of the
embeddings from uniform noise in ``[-1, 1]^chunk``; the embedding is trained to fool it, which
spreads the embeddings out (maximum entropy).  With ``B`` embeddings of dimension ``E`` split into
``E / chunk`` consecutive chunks ``c`` (``B * E / chunk`` rows), each scaled by ``scale``, and
``N`` noise rows ``u`` (as many as chunks), with the logistic loss ``bce``::

    discriminator loss  L_D = mean bce(D(u), 1) + mean bce(D(sg[c]), 0)
    generator loss      L_G = mean bce(D_sg(c), 1)
    regulariser         weight * L_G + L_D

``sg`` stops gradients: ``L_D`` trains only the discriminator and ``L_G`` only the embedding
(``D_sg`` uses detached discriminator weights), so the single backward pass of the training loop
updates both players correctly, and the discriminator's parameters live in the objective (in the
optimizer and in checkpoints).

Scale: the coordinates of a unit vector spread evenly in ``E`` dimensions have second moment
``1 / E``, those of uniform noise in ``[-1, 1]`` have ``1 / 3``; ``scale=None`` (default) uses
``sqrt(E / 3)`` so that an evenly spread embedding and the noise have the same scale and only
their *shape* is told apart.  Noise is drawn from torch's global generator (seeded per epoch by
the trainer).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = ["UniformityRegularizer"]


class UniformityRegularizer(nn.Module):
    """Adversarial uniformity regulariser (see the module docstring).

    Args:
        embed_dim: embedding dimension ``E`` (a multiple of ``chunk``).
        weight: weight of the generator term (0.2 in the study).
        chunk: chunk size (dimension of the discriminator's input).
        hidden: hidden width of the discriminator.
        scale: factor applied to the chunks (``None``: ``sqrt(E / 3)``).
        lr_mult: learning rate of the discriminator relative to the base rate.

    ``reg(embeddings)`` (``(B, E)`` float) returns the scalar ``weight * L_G + L_D``; the last
    terms are kept in ``reg.last`` (``generator``, ``discriminator``, ``accuracy``) for logging.
    """

    name = "uniformity"

    def __init__(
        self,
        embed_dim: int,
        weight: float = 0.2,
        chunk: int = 16,
        hidden: int = 128,
        scale: float | None = None,
        lr_mult: float = 1.0,
    ):
        super().__init__()
        self.lr_mult = float(lr_mult)
        if int(chunk) < 1 or int(embed_dim) % int(chunk):
            raise ValueError(f"chunk ({chunk}) must divide the embedding dimension ({embed_dim})")
        self.embed_dim, self.chunk, self.weight = int(embed_dim), int(chunk), float(weight)
        self.scale = float(scale) if scale is not None else math.sqrt(self.embed_dim / 3.0)
        self.discriminator = nn.Sequential(
            nn.Linear(self.chunk, int(hidden)), nn.LeakyReLU(0.2), nn.Linear(int(hidden), 1)
        )
        self.last: dict[str, float] = {}

    def chunks(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` -> ``(B * E / chunk, chunk)`` scaled chunks."""
        return embeddings.reshape(-1, self.chunk) * self.scale

    def losses(self, embeddings: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_G, L_D)`` for ``embeddings`` (``noise``: ``(N, chunk)`` in [-1, 1], drawn when None)."""
        c = self.chunks(embeddings)
        if noise is None:
            noise = torch.rand(c.shape, device=c.device, dtype=c.dtype) * 2.0 - 1.0
        d_real = self.discriminator(noise).flatten()
        d_fake = self.discriminator(c.detach()).flatten()
        l_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
            d_fake, torch.zeros_like(d_fake)
        )
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        g = functional_call(self.discriminator, frozen, (c,)).flatten()
        l_g = F.binary_cross_entropy_with_logits(g, torch.ones_like(g))
        with torch.no_grad():
            acc = 0.5 * ((d_real > 0).float().mean() + (d_fake <= 0).float().mean())
        self.last = {"generator": float(l_g.detach()), "discriminator": float(l_d.detach()), "accuracy": float(acc)}
        return l_g, l_d

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        l_g, l_d = self.losses(embeddings)
        return self.weight * l_g + l_d

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, chunk={self.chunk}, weight={self.weight:g}, scale={self.scale:g}"
