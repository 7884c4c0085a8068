"""The weights-free extractors ``pixels`` and ``hog`` (deterministic, instant, no file to find)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from oodml.features.base import Extractor, no_weights
from oodml.features.files import PathLike

__all__ = ["HOG", "GrayResize", "hog_extractor", "pixels_extractor"]


class GrayResize:
    """PIL image → grayscale (``"L"``) → ``size × size`` (PIL bilinear, antialiased) →
    float tensor ``(1, size, size)`` in [0, 1]."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img) -> torch.Tensor:
        g = img.convert("L").resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(g, dtype=np.float32) / np.float32(255.0)
        return torch.from_numpy(arr.copy())[None]


class HOG(nn.Module):
    """Histogram-of-oriented-gradients descriptor of ``(B, 1, S, S)`` images in [0, 1].

    Output ``(B, bins · block² · (S/cell - block + 1)²)``, block by block in row-major order and,
    within a block, bin-major (``[bin, cell]``); see the module docstring.
    """

    def __init__(self, size: int = 32, cell: int = 8, bins: int = 9, block: int = 2, clip: float = 0.2):
        super().__init__()
        if size % cell:
            raise ValueError("size must be a multiple of cell")
        self.size, self.cell, self.bins, self.block, self.clip = size, cell, bins, block, clip
        self.eps = 1e-3

    @property
    def dim(self) -> int:
        nb = self.size // self.cell - self.block + 1
        return self.bins * self.block * self.block * nb * nb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        gx = xp[:, :, 1:-1, 2:] - xp[:, :, 1:-1, :-2]
        gy = xp[:, :, 2:, 1:-1] - xp[:, :, :-2, 1:-1]
        b, _, h, w = x.shape
        mag = torch.hypot(gx, gy).reshape(b, 1, h * w)
        ang = torch.remainder(torch.atan2(gy, gx), math.pi).reshape(b, 1, h * w)  # unsigned, [0, π)
        pos = ang * (self.bins / math.pi) - 0.5  # bin k covers centre (k + 0.5)·π/bins
        lo = torch.floor(pos)
        w_hi = pos - lo
        lo_i = torch.remainder(lo.long(), self.bins)
        hi_i = torch.remainder(lo_i + 1, self.bins)
        # each pixel votes its magnitude into its two nearest bins (circularly), linearly weighted
        hist = torch.zeros(b, self.bins, h * w, dtype=x.dtype, device=x.device)
        hist.scatter_add_(1, lo_i, mag * (1 - w_hi))
        hist.scatter_add_(1, hi_i, mag * w_hi)
        hist = hist.reshape(b, self.bins, h, w)
        cells = F.avg_pool2d(hist, self.cell) * float(self.cell * self.cell)  # (B, bins, C, C)
        blocks = F.unfold(cells, kernel_size=self.block, stride=1).transpose(1, 2)  # (B, L, bins·block²)
        blocks = blocks / torch.sqrt((blocks * blocks).sum(-1, keepdim=True) + self.eps**2)
        blocks = blocks.clamp(max=self.clip)
        blocks = blocks / torch.sqrt((blocks * blocks).sum(-1, keepdim=True) + self.eps**2)
        return blocks.flatten(1)


def pixels_extractor(weights: PathLike | None) -> Extractor:
    no_weights("pixels", weights)
    return Extractor(
        "pixels",
        dim=256,
        preprocess_id="gray-L|pil-bilinear-16x16|scale-1/255|flatten",
        transform=GrayResize(16),
        model=nn.Flatten(1),
    )


def hog_extractor(weights: PathLike | None) -> Extractor:
    no_weights("hog", weights)
    model = HOG(size=32, cell=8, bins=9, block=2, clip=0.2)
    return Extractor(
        "hog",
        dim=model.dim,
        preprocess_id="gray-L|pil-bilinear-32x32|scale-1/255|hog-cell8-block2-bins9-unsigned-l2hys0.2",
        transform=GrayResize(32),
        model=model,
    )
