"""The embedding model: a timm backbone, global pooling, a linear embedding head, L2 normalisation.

::

    image -> backbone feature map -> pooling -> [features] -> Linear -> L2-normalise -> embedding

* The backbone is any timm model, created headless (``num_classes=0, global_pool=""``) so it
  returns its last feature map; weights come from :func:`oodml.weights.create_timm_model`
  (offline-safe; never silently random).
* Pooling: ``"avg"`` (global average), ``"max"`` (global max) or ``"avg+max"`` -- the *sum* of
  global average and global max pooling, the common choice in the DML literature (e.g. the
  ResNet-50 baselines of Roth et al. 2020 / ooDML, Proxy-Anchor): max pooling keeps strong local
  part activations, average pooling their context, and summing keeps the feature width.  For
  token-based backbones (ViT) ``"token"`` takes the class token and ``avg``/``max`` pool the patch
  tokens.
* :meth:`EmbeddingModel.forward_features` returns the pooled backbone features (for linear probes
  and head-only adaptation); :meth:`EmbeddingModel.embed_from_features` applies only the head.
* ``embed_dim=0``/``None``: no head; the embedding is the normalised pooled feature.
* ``embed_groups=g`` (DiVA): the embedding is ``g`` equal heads, each L2-normalised, concatenated
  and scaled by ``1/sqrt(g)`` (unit norm overall; the evaluated embedding is their concatenation).
* ``freeze_bn=True``: BatchNorm layers stay in eval mode (running statistics frozen) even in
  ``train()`` -- the usual DML protocol with small class-balanced batches; their affine
  parameters remain trainable.
* No device is hard-coded: move the model with ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oodml import backbones as _backbones  # noqa: F401  (registers oodml_convnet with timm)
from oodml.errors import BadInputError
from oodml.weights import PathLike, create_timm_model

POOLINGS = ("avg", "max", "avg+max", "token")
_POOL_ALIASES = {"avgmax": "avg+max", "avg_max": "avg+max", "max+avg": "avg+max", "mean": "avg", "cls": "token"}


class EmbeddingModel(nn.Module):
    """Backbone + pooling + optional linear embedding head + L2 normalisation.

    Use :func:`build_model` to create one; ``config`` holds the arguments that rebuild the same
    architecture: :func:`build_from_config` does so without loading weights, ready for a
    checkpoint's state dict.
    """

    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int | None = 512,
        pooling: str = "avg",
        freeze_bn: bool = False,
        channels_last: bool = True,
        normalize: bool = True,
        embed_groups: int = 1,
    ):
        super().__init__()
        pooling = _POOL_ALIASES.get(str(pooling).lower(), str(pooling).lower())
        if pooling not in POOLINGS:
            raise BadInputError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.pooling = pooling
        self.freeze_bn = bool(freeze_bn)
        self.channels_last = bool(channels_last)
        self.normalize = bool(normalize)
        self.feature_dim = int(backbone.num_features)
        self._output_fmt = str(getattr(backbone, "output_fmt", "NCHW"))
        self._num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
        if pooling == "token" and self._num_prefix_tokens < 1:
            raise BadInputError(
                f"pooling 'token' needs a backbone with a class token (a ViT); "
                f"{type(backbone).__name__} has none: use avg, max or avg+max"
            )
        if embed_dim is not None and int(embed_dim) < 0:
            raise BadInputError(f"embed_dim must be a positive integer, or 0 for no head (got {embed_dim})")
        self.head: nn.Module = nn.Linear(self.feature_dim, int(embed_dim)) if embed_dim else nn.Identity()
        self.embed_dim = int(embed_dim) if embed_dim else self.feature_dim
        self.embed_groups = int(embed_groups)
        if self.embed_groups < 1 or self.embed_dim % self.embed_groups:
            raise BadInputError(
                f"embed_groups ({embed_groups}) must be a positive divisor of the embedding dimension "
                f"({self.embed_dim})"
            )
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        self.config: dict[str, Any] = {}
        self.train()

    # ----------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> EmbeddingModel:
        """Set training mode; with ``freeze_bn`` every BatchNorm layer is kept in eval mode."""
        super().train(mode)
        if mode and self.freeze_bn:
            for module in self.batchnorm_layers():
                module.eval()
        return self

    def batchnorm_layers(self) -> Iterator[nn.Module]:
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                yield module

    # ----------------------------------------------------------------------------------------
    def _pool(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim == 2:  # already pooled by the backbone
            return f
        if f.ndim == 4:
            dims = (1, 2) if self._output_fmt == "NHWC" else (2, 3)
            if self.pooling == "avg":
                return f.mean(dim=dims)
            if self.pooling == "max":
                return f.amax(dim=dims)
            if self.pooling == "avg+max":
                return f.mean(dim=dims) + f.amax(dim=dims)
            raise BadInputError(f"pooling {self.pooling!r} does not apply to a feature map; use avg, max or avg+max")
        if f.ndim == 3:  # tokens (B, N, C)
            if self.pooling == "token":
                return f[:, 0]
            tokens = f[:, self._num_prefix_tokens :] if f.shape[1] > self._num_prefix_tokens else f
            if self.pooling == "avg":
                return tokens.mean(dim=1)
            if self.pooling == "max":
                return tokens.amax(dim=1)
            return tokens.mean(dim=1) + tokens.amax(dim=1)
        raise RuntimeError(f"unexpected backbone output of shape {tuple(f.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features, shape ``(B, feature_dim)`` (not normalised)."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._pool(self.backbone(x))

    def embed_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Apply only the head (and normalisation) to pooled features from :meth:`forward_features`."""
        z = self.head(features)
        if not self.normalize:
            return z
        if self.embed_groups > 1:
            heads = F.normalize(z.reshape(*z.shape[:-1], self.embed_groups, -1), p=2, dim=-1)
            return heads.reshape(z.shape) / self.embed_groups**0.5
        return F.normalize(z, p=2, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings, shape ``(B, embed_dim)``, unit L2 norm (unless ``normalize=False``)."""
        return self.embed_from_features(self.forward_features(x))

    # ----------------------------------------------------------------------------------------
    @property
    def data_config(self) -> dict[str, Any]:
        """The preprocessing the backbone expects (timm's ``input_size``, ``mean``, ``std``,
        ``interpolation``, ``crop_pct``)."""
        # timm is imported where a model is made (oodml.weights), not by importing this module.
        from timm.data import resolve_model_data_config

        return resolve_model_data_config(self.backbone)

    @property
    def weights_source(self) -> str:
        """Where the backbone weights came from: ``random``, ``file:<path>`` or ``cache:<path>``."""
        return str(getattr(self.backbone, "weights_source", "unknown"))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def extra_repr(self) -> str:
        return (
            f"pooling={self.pooling!r}, feature_dim={self.feature_dim}, embed_dim={self.embed_dim}, "
            f"freeze_bn={self.freeze_bn}, channels_last={self.channels_last}, normalize={self.normalize}"
        )


def build_model(
    backbone: str = "resnet50",
    pretrained: bool = True,
    weights: PathLike | None = None,
    embed_dim: int | None = 512,
    pooling: str = "avg",
    freeze_bn: bool = False,
    channels_last: bool = True,
    drop_path: float | None = None,
    normalize: bool = True,
    strict_weights: bool = True,
    embed_groups: int = 1,
    **backbone_kwargs: Any,
) -> EmbeddingModel:
    """Build an :class:`EmbeddingModel`.

    Args:
        backbone: a timm model name (``resnet50``, ``resnet50.tv_in1k``, ``vit_small_patch16_224.dino``...).
        pretrained: load the pretrained weights timm knows for ``backbone`` from the local caches
            (:class:`~oodml.errors.WeightsNotFoundError` if they are not there; never random).
        weights: a local weights file for the backbone (overrides ``pretrained``).
        embed_dim: output dimension of the linear head; ``0``/``None`` for no head.
        pooling: ``avg``, ``max``, ``avg+max`` (sum of both) or ``token`` (ViT class token).
        freeze_bn: keep BatchNorm statistics frozen during training.
        channels_last: use the channels-last memory format (faster on GPUs, harmless on CPU).
        drop_path: stochastic depth rate for backbones that support it.
        normalize: L2-normalise the output (default; the DML losses here assume it).
        strict_weights: with ``weights``, refuse files that do not fit the backbone.
        embed_groups: normalise the embedding in this many equal heads (DiVA's 4; default 1).
        backbone_kwargs: more ``timm.create_model`` arguments (e.g. ``img_size``).
    """
    timm_kwargs = dict(backbone_kwargs)
    timm_kwargs.update(num_classes=0, global_pool="")
    if drop_path is not None:
        timm_kwargs["drop_path_rate"] = float(drop_path)
    net = create_timm_model(backbone, pretrained=pretrained, weights=weights, strict=strict_weights, **timm_kwargs)
    model = EmbeddingModel(
        net,
        embed_dim=embed_dim,
        pooling=pooling,
        freeze_bn=freeze_bn,
        channels_last=channels_last,
        normalize=normalize,
        embed_groups=embed_groups,
    )
    model.config = {
        "backbone": backbone,
        "pretrained": bool(pretrained),
        "weights": str(weights) if weights is not None else None,
        "embed_dim": int(embed_dim) if embed_dim else 0,
        "pooling": model.pooling,
        "freeze_bn": bool(freeze_bn),
        "channels_last": bool(channels_last),
        "drop_path": drop_path,
        "normalize": bool(normalize),
        **({"embed_groups": int(embed_groups)} if int(embed_groups) != 1 else {}),
        **backbone_kwargs,
    }
    return model


def build_from_config(config: dict[str, Any]) -> EmbeddingModel:
    """Rebuild the architecture recorded in ``model.config`` *without loading any weights*
    (``pretrained=False``, ``weights=None``), ready for ``load_state_dict`` of a checkpoint."""
    cfg = dict(config)
    cfg.update(pretrained=False, weights=None)
    return build_model(**cfg)


def param_groups(
    model: EmbeddingModel, lr: float, head_lr_mult: float = 1.0, weight_decay: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the backbone at ``lr``, the head at ``lr * head_lr_mult``.

    Only parameters with ``requires_grad`` are included; empty groups are left out.  Each group
    has a ``name`` (``"backbone"``/``"head"``) for logging; ``weight_decay`` is set when given.
    """
    groups = []
    for name, params, group_lr in (
        ("backbone", model.backbone_parameters(), float(lr)),
        ("head", model.head_parameters(), float(lr) * float(head_lr_mult)),
    ):
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        group: dict[str, Any] = {"params": params, "lr": group_lr, "name": name}
        if weight_decay is not None:
            group["weight_decay"] = float(weight_decay)
        groups.append(group)
    return groups


__all__ = ["POOLINGS", "EmbeddingModel", "build_from_config", "build_model", "param_groups"]
