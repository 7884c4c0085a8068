"""The evaluation's options as one :class:`~oodml.config.Config` dataclass (the type hints are the
schema), the ``ks`` presets, and the evaluation's input error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from oodml.config import Config
from oodml.errors import BadInputError
from oodml.metrics.knn import BACKENDS
from oodml.metrics.registry import DEFAULT_METRICS, METRICS

__all__ = ["KS_PRESETS", "EvaluationInputError", "EvaluationOptions", "parse_ks"]

KS_PRESETS: dict[str, tuple[int, ...]] = {
    "default": (1, 2, 4, 8),
    "cub": (1, 2, 4, 8),
    "cars": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
}


class EvaluationInputError(BadInputError, ValueError):
    """Embeddings, labels or options that cannot be evaluated (also a ``ValueError``)."""


def parse_ks(ks: Any) -> tuple[int, ...]:
    """The k of Recall@k: ``None`` (1, 2, 4, 8), a preset name of :data:`KS_PRESETS`, one integer
    or integers (sorted, repeats dropped)."""
    if ks is None:
        return KS_PRESETS["default"]
    if isinstance(ks, str):
        key = ks.lower()
        if key not in KS_PRESETS:
            raise EvaluationInputError(
                f"unknown ks preset {ks!r}; use one of {sorted(KS_PRESETS)} or a list of integers"
            )
        return KS_PRESETS[key]
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    try:
        out = tuple(int(k) for k in ks)
    except (TypeError, ValueError):
        raise EvaluationInputError(f"ks must be integers or a preset name, got {ks!r}") from None
    if not out or any(k < 1 for k in out):
        raise EvaluationInputError(f"ks must be positive integers, got {ks!r}")
    return tuple(sorted(set(out)))


@dataclass
class EvaluationOptions(Config):
    """What :func:`~oodml.metrics.evaluate.evaluate_embeddings` computes and how (see there).

    Validated on construction: ``ks`` becomes a sorted tuple of integers, ``metrics`` a tuple of
    registered names (:data:`oodml.metrics.registry.METRICS`)."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    ks: tuple[int, ...] | None = field(default=None, metadata={"coerce": lambda v, key, source: parse_ks(v)})
    chunk_size: int | None = None
    nmi_seed: int = 0
    nmi_iters: int = 20
    nmi_kmeans: Literal["exact", "faiss"] = "exact"
    backend: Literal["auto", "numpy", "torch", "faiss"] = "auto"
    rho_skip: int = 0

    def __post_init__(self) -> None:
        self.validate("evaluation options")

    def validate(self, source: str) -> None:
        self.metrics = tuple(self.metrics)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise EvaluationInputError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
        self.ks = parse_ks(self.ks)
        if self.nmi_kmeans not in ("exact", "faiss"):
            raise EvaluationInputError(f"nmi_kmeans must be 'exact' or 'faiss', got {self.nmi_kmeans!r}")
        if int(self.rho_skip) < 0:
            raise EvaluationInputError(f"rho_skip must be >= 0, got {self.rho_skip}")
        if int(self.nmi_iters) < 0:
            raise EvaluationInputError(f"nmi_iters must be >= 0, got {self.nmi_iters}")
        if self.chunk_size is not None and int(self.chunk_size) < 1:
            raise EvaluationInputError(f"chunk_size must be a positive integer, got {self.chunk_size}")
        if self.backend != "auto" and self.backend not in BACKENDS:
            raise EvaluationInputError(f"backend must be 'auto' or one of {BACKENDS}, got {self.backend!r}")
        self.rho_skip, self.nmi_iters, self.nmi_seed = int(self.rho_skip), int(self.nmi_iters), int(self.nmi_seed)
