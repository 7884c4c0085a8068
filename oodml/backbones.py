"""Small backbones for small images, registered with timm so every part of oodml builds them by name.

ImageNet architectures downsample by 32 (a stride-2 stem, a max pool, three stride-2 stages): a
32-pixel glyph becomes a single pixel after the stem's first few layers, and a from-scratch
``resnet10t`` at 32 px reaches only ~0.4 Recall@1 on the embedded dataset. The embedded quick
study needs a network that trains in about a minute on two CPU cores *and* sees its 32-pixel
inputs, so oodml registers one with timm's model registry:

``oodml_convnet``
    three stages of two 3×3 convolutions (BatchNorm, ReLU) with 2×2 max pooling after each
    stage, widths 32 / 64 / 128, no stride in the stem: a 32-px input gives a 4×4 feature map of
    128 channels (~0.3 M parameters, ~40 MFLOPs per image). ``widths=(…)`` changes the widths.
    It has **no pretrained weights**: ``pretrained=True`` is refused with a clear error instead of
    silently giving a random network.

``oodml_convnet_s``
    the same network at half the widths (16 / 32 / 64: ~0.07 M parameters, ~10 MFLOPs per image).
    What the embedded quick study trains: a training step at batch 64 costs about a quarter of
    ``oodml_convnet``'s on one CPU thread, and with a higher learning rate (3e-3, 8 epochs) it
    reaches Recall@1 ≈ 0.73 on the standard glyph split against ≈ 0.80 for the wide network's 12
    epochs at 1e-3, at about a fifth of the CPU time.

Use it like any timm model::

    from oodml.models import build_model
    model = build_model("oodml_convnet", pretrained=False, embed_dim=64)   # or --backbone oodml_convnet

Importing :mod:`oodml.models` registers it (idempotently).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from oodml.errors import BadInputError

_DEFAULT_CFG = {
    "url": "",
    "num_classes": 0,
    "input_size": (3, 32, 32),
    "pool_size": (4, 4),
    "crop_pct": 32 / 36,
    "interpolation": "bilinear",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "first_conv": "stages.0.0",
    "classifier": "head",
    "architecture": "oodml_convnet",
}


class ConvNet(nn.Module):
    """A VGG-style convolutional network for small images, with timm's model interface
    (``num_features``, ``forward_features``, ``forward_head``, ``reset_classifier``)."""

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        in_chans: int = 3,
        num_classes: int = 0,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        stages = []
        c = in_chans
        for w in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            c = w
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        self.drop_rate = float(drop_rate)
        self.global_pool = global_pool
        self.head: nn.Module = nn.Linear(c, num_classes) if num_classes else nn.Identity()
        self.num_classes = num_classes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean((2, 3))
        elif self.global_pool == "max":
            x = x.amax((2, 3))
        if self.drop_rate:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


#: Registered variants: timm name -> default widths.
VARIANTS = {"oodml_convnet": (32, 64, 128), "oodml_convnet_s": (16, 32, 64)}


def _oodml_convnet(pretrained: bool = False, *, name: str = "oodml_convnet", **kwargs: Any) -> ConvNet:
    if pretrained:
        raise BadInputError(
            f"backbone {name!r} has no pretrained weights; train it from scratch "
            "(pretrained: false / --no-pretrained) or give a weights file"
        )
    # timm passes its own bookkeeping arguments; the network takes only its own
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "drop_path_rate", "features_only"):
        kwargs.pop(key, None)
    kwargs.setdefault("widths", VARIANTS[name])
    model = ConvNet(**kwargs)
    model.pretrained_cfg = {**_DEFAULT_CFG, "architecture": name}
    model.default_cfg = model.pretrained_cfg
    return model


def register() -> None:
    """Register the backbones with timm (idempotent)."""
    import timm  # lazy on purpose: timm (with torchvision) costs seconds of startup
    from timm.models import register_model

    for name in VARIANTS:
        if not timm.is_model(name):
            register_model(_entry_point(name))


def _entry_point(name: str):
    """The timm entry point of variant ``name`` (timm registers a function under its own name)."""

    def entry(pretrained: bool = False, **kwargs: Any) -> ConvNet:
        return _oodml_convnet(pretrained=pretrained, name=name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"oodml's small-image ConvNet, widths {VARIANTS[name]} (see :mod:`oodml.backbones`)."
    return entry


register()
