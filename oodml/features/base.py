"""The :class:`Extractor` object every feature extractor returns: a frozen network and its
preprocessing, with what the cache key depends on (see :mod:`oodml.features`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from oodml.errors import BadInputError
from oodml.features.files import PathLike

__all__ = ["Extractor", "no_weights"]


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Extractor:
    """A frozen feature extractor: ``transform`` (PIL RGB image → tensor) then ``model``
    (batch → ``(B, dim)`` tensor).

    Attributes
    ----------
    name:
        Registry name (``pixels``, ``hog``, ``inception``, ``resnet50``, ``timm:<model>``).
    dim:
        Feature dimension ``d``.
    preprocess_id:
        A string that identifies the preprocessing (part of the cache key).
    transform:
        Picklable callable mapping a PIL RGB image to the model's input tensor (one image).
    model:
        The frozen network (``eval()`` mode, no gradients).  Networks with weights files are
        built on first access, so a cache hit never loads them.
    weights_id:
        ``"sha256:<hex>"`` of the weights file, or ``"none"`` for weights-free extractors.
    weights_source:
        Where the weights come from (``"none"``, ``"file:<path>"``, ``"cache:<path>"``).
    """

    def __init__(
        self,
        name: str,
        *,
        dim: int,
        preprocess_id: str,
        transform: Callable[[Any], torch.Tensor],
        weights_id: str = "none",
        weights_source: str = "none",
        model: nn.Module | None = None,
        build: Callable[[], nn.Module] | None = None,
    ):
        if model is None and build is None:
            raise ValueError("an Extractor needs a model or a build function")
        self.name = name
        self.dim = int(dim)
        self.preprocess_id = preprocess_id
        self.transform = transform
        self.weights_id = weights_id
        self.weights_source = weights_source
        self._model = _freeze(model) if model is not None else None
        self._build = build
        self._lock = threading.Lock()

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _freeze(self._build())  # type: ignore[misc]
        return self._model

    @property
    def model_loaded(self) -> bool:
        """Whether the network has been built (and its weights read) yet."""
        return self._model is not None

    def identity(self) -> dict[str, str]:
        """What the cache key depends on, besides the dataset."""
        return {"extractor": self.name, "weights": self.weights_id, "preprocess": self.preprocess_id}

    def __repr__(self) -> str:
        return (
            f"Extractor(name={self.name!r}, dim={self.dim}, weights={self.weights_source!r}, "
            f"preprocess={self.preprocess_id!r})"
        )


def no_weights(name: str, weights: PathLike | None) -> None:
    """Refuse a weights file for an extractor that has none."""
    if weights is not None:
        raise BadInputError(f"extractor {name!r} has no weights; drop --weights {weights} (weights=)")
