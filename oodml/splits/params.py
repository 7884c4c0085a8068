"""Constants and parameters of the split series: :class:`SearchParams` (an
:class:`oodml.config.Config`) and the defaults that scale with the number of classes.

See :mod:`oodml.splits.search` for what every parameter does in the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from oodml.config import Config
from oodml.errors import OodmlError

__all__ = [
    "SCHEMA",
    "KNOWN_SCHEMAS",
    "DEFAULT_SHOTS",
    "PHASES",
    "SEARCH_PHASES",
    "FID_RTOL",
    "FID_DIGITS",
    "MOVE_BUDGET",
    "SWAP_FRACTION",
    "SearchParams",
    "default_floor",
    "default_max_iters",
    "default_swaps",
    "resolve_params",
    "round_fid",
]

#: Schema tag of the split file; bump on incompatible changes.
SCHEMA = "oodml.splits/1"
KNOWN_SCHEMAS = (SCHEMA,)
#: Shots of the few-shot episodes.
DEFAULT_SHOTS = (1, 2, 5, 10)
#: Phase names in trajectory records.
PHASES = ("start", "easier", "harder", "removal")
#: Relative tolerance of :func:`check_split_file` when comparing recomputed FIDs.
FID_RTOL = 1e-5
#: Significant digits of the FIDs written in a split file (see "The file" above).
FID_DIGITS = 12


def round_fid(value: float) -> float:
    """``value`` rounded to :data:`FID_DIGITS` significant digits (what a split file stores):
    machine-independent where float64 results differ in their last digits between BLAS builds."""
    v = float(value)
    if not math.isfinite(v):
        return v
    return float(f"{v:.{FID_DIGITS}g}")


#: Phases the search can run (``SearchParams.phases``), in the order it runs them.
SEARCH_PHASES = ("easier", "harder", "removal")


@dataclass
class SearchParams(Config):
    """Every parameter of the search, selection, validation classes and episodes.

    ``swaps_per_iter=None``: :func:`default_swaps` of the smaller side.  ``max_iters=None``:
    :func:`default_max_iters` (``ceil(min(n_train, n_test, MOVE_BUDGET) / swaps_per_iter)``).  ``min_classes=None``:
    per side ``max(10, ceil(min_fraction · standard size))`` (see :func:`default_floor`).
    ``patience=None``: phases run ``max_iters`` iterations (no patience rule).

    The type hints are the schema (:meth:`~oodml.config.Config.from_dict` coerces YAML or flag
    text); :meth:`validate` holds the range rules and runs on direct construction too.
    """

    level: Literal["class", "image"] = "class"
    num_splits: int = 9
    swaps_per_iter: int | None = None  # None: default_swaps(min side), 2 up to 200 classes per side
    history: int = 5
    patience: int | None = 5
    max_iters: int | None = None
    min_classes: int | None = None
    min_fraction: float = 0.5
    phases: tuple[Literal["easier", "harder", "removal"], ...] = SEARCH_PHASES
    episodes: int = 10
    shots: tuple[int, ...] = DEFAULT_SHOTS
    val_fraction: float = 0.15
    #: FID evaluated every this many iterations of a phase (and at its last); 1 = every step.
    trajectory_stride: int = 1

    def __post_init__(self) -> None:
        self.phases = tuple(self.phases)
        self.shots = tuple(int(k) for k in self.shots)
        self.validate("SearchParams")

    def validate(self, source: str) -> None:
        """The range rules (messages name the command-line flag, as ``make_splits`` users see them)."""
        if self.level not in ("class", "image"):
            raise OodmlError(f"level must be 'class' or 'image', got {self.level!r}")
        for name in ("num_splits", "swaps_per_iter"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise OodmlError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("history", "episodes"):
            if int(getattr(self, name)) < 0:
                raise OodmlError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.patience is not None and int(self.patience) < 1:
            raise OodmlError(f"patience must be at least 1 (or None), got {self.patience}")
        if self.max_iters is not None and int(self.max_iters) < 0:
            raise OodmlError(f"max-iters must be at least 0, got {self.max_iters}")
        if self.min_classes is not None and int(self.min_classes) < 2:
            raise OodmlError(
                f"min-classes must be at least 2 (an FID needs two points per side), got {self.min_classes}"
            )
        if not 0.0 < float(self.min_fraction) <= 1.0:
            raise OodmlError(f"min-fraction must be in (0, 1], got {self.min_fraction}")
        bad = [p for p in self.phases if p not in SEARCH_PHASES]
        if bad:
            raise OodmlError(f"unknown phase {bad[0]!r}; choose from easier, harder, removal")
        if any(k < 1 for k in self.shots):
            raise OodmlError(f"shots must be positive, got {list(self.shots)}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise OodmlError(f"val-fraction must be in [0, 1), got {self.val_fraction}")
        if int(self.trajectory_stride) < 1:
            raise OodmlError(f"trajectory-stride must be at least 1, got {self.trajectory_stride}")

    def to_dict(self) -> dict:
        """Plain data as the split file's provenance records it (lists; ``trajectory_stride`` only
        when it is not the default 1, so files stay as they were before the option)."""
        d = super().to_dict()
        d["phases"] = list(self.phases)
        d["shots"] = list(self.shots)
        if self.trajectory_stride == 1:
            del d["trajectory_stride"]
        return d


#: Classes of a side one phase of the search moves (or removes) at most, by default.
MOVE_BUDGET = 2000
#: Share of the smaller side swapped per iteration, by default (at least 2 classes).
SWAP_FRACTION = 0.01


def default_swaps(n_small: int) -> int:
    """Default swaps per iteration for a smaller side of ``n_small`` classes:
    ``max(2, ceil(SWAP_FRACTION · n_small))`` (2 up to 200 classes; 114 for SOP's 11,316)."""
    return max(2, math.ceil(SWAP_FRACTION * int(n_small) - 1e-9))


def default_max_iters(n_small: int, swaps: int) -> int:
    """Default swap iterations per phase: ``ceil(min(n_small, MOVE_BUDGET) / swaps)`` (every class of
    the smaller side once, but at most ``MOVE_BUDGET`` classes moved per phase)."""
    return math.ceil(min(int(n_small), MOVE_BUDGET) / int(swaps))


def resolve_params(params: SearchParams, n_train: int, n_test: int) -> SearchParams:
    """A copy of ``params`` with ``swaps_per_iter`` resolved by :func:`default_swaps` when None."""

    if params.swaps_per_iter is not None:
        return params
    return replace(params, swaps_per_iter=default_swaps(min(int(n_train), int(n_test))))


def default_floor(side_size: int, fraction: float = 0.5) -> int:
    """Default removal floor of a side: ``max(10, ceil(fraction · side_size))``, at most the side."""
    return max(2, min(side_size, max(10, math.ceil(fraction * side_size - 1e-9))))
