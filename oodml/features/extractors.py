"""The extractor registry: a short name (``--extractor NAME``) → a factory building an
:class:`~oodml.features.base.Extractor`.  Adding an extractor is one entry in :data:`EXTRACTORS`
(its factory takes the optional weights path); ``timm:<model>`` is the one pattern beside them."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from oodml.datasets import canonical_name
from oodml.errors import BadInputError, OodmlError
from oodml.features.base import Extractor
from oodml.features.files import PathLike
from oodml.features.pretrained import (
    FID_INCEPTION_FILE,
    RESNET50_FILE,
    inception_extractor,
    resnet50_extractor,
    timm_extractor,
)
from oodml.features.weightsfree import hog_extractor, pixels_extractor

__all__ = [
    "EXTRACTORS",
    "PIXEL_DEFAULT_DATASETS",
    "ExtractorSpec",
    "default_extractor",
    "describe_extractors",
    "get_extractor",
    "list_extractors",
]

#: Datasets whose default extractor is the weights-free ``pixels`` (everything else: ``resnet50``).
PIXEL_DEFAULT_DATASETS = ("glyphs", "omniglot")


@dataclass(frozen=True)
class ExtractorSpec:
    """One registered extractor: its name, its factory ``(weights) -> Extractor`` and one line of help."""

    name: str
    factory: Callable[[PathLike | None], Extractor]
    description: str


#: The registry (the one place to add an extractor).
EXTRACTORS: dict[str, ExtractorSpec] = {
    spec.name: spec
    for spec in (
        ExtractorSpec("pixels", pixels_extractor, "grayscale 16x16 pixels, 256-d, weights-free"),
        ExtractorSpec(
            "hog", hog_extractor, "histogram of oriented gradients of a 32x32 grayscale image, 324-d, weights-free"
        ),
        ExtractorSpec(
            "inception",
            inception_extractor,
            f"pytorch-fid FID Inception-v3 pool3, 2048-d (weights {FID_INCEPTION_FILE})",
        ),
        ExtractorSpec(
            "resnet50",
            resnet50_extractor,
            f"torchvision ImageNet ResNet-50 average pool, 2048-d (weights {RESNET50_FILE})",
        ),
    )
}
TIMM_PATTERN = ("timm:<model>", "any timm model's pooled features (num_classes=0), timm's eval preprocessing")


def list_extractors() -> list[str]:
    """The registered extractor names (``timm:<model name>`` is accepted as well)."""
    return list(EXTRACTORS)


def describe_extractors() -> dict[str, str]:
    """One line per extractor (including the ``timm:<model>`` pattern), for help texts."""
    return {**{name: spec.description for name, spec in EXTRACTORS.items()}, TIMM_PATTERN[0]: TIMM_PATTERN[1]}


def get_extractor(name: str, weights: PathLike | None = None) -> Extractor:
    """Build the extractor ``name`` (see the module docstring); ``weights`` is a local weights
    file to use instead of the cached pretrained one.  Raises
    :class:`~oodml.errors.WeightsNotFoundError` when needed weights are not on disk."""
    if not isinstance(name, str) or not name.strip():
        raise BadInputError(f"extractor name must be a non-empty string, got {name!r}")
    key = name.strip()
    if key.lower().startswith("timm:"):
        return timm_extractor(key.split(":", 1)[1].strip(), weights)
    spec = EXTRACTORS.get(key.lower())
    if spec is None:
        close = difflib.get_close_matches(key.lower(), list(EXTRACTORS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BadInputError(
            f"unknown feature extractor {name!r}{hint}; choose one of {', '.join(EXTRACTORS)} or timm:<model name>"
        )
    return spec.factory(weights)


def default_extractor(dataset_name: str | None) -> str:
    """``pixels`` for the embedded ``glyphs`` dataset and ``omniglot``, ``resnet50`` (the ooDML
    protocol) for everything else."""
    try:
        canon = canonical_name(dataset_name)
    except OodmlError:
        canon = str(dataset_name).lower()
    return "pixels" if canon in PIXEL_DEFAULT_DATASETS else "resnet50"
