"""The miners an objective may use, by short name (``miner=<name>``) or as ``miner=pml:<ClassName>``.

A new miner is one entry of :data:`MINERS` (and, if wanted, an alias in :data:`MINER_ALIASES`).
"""

from __future__ import annotations

from typing import Any

from pytorch_metric_learning import miners as M

from oodml.errors import BadInputError
from oodml.objectives.distance_weighted import DistanceWeightedMiner
from oodml.objectives.pml import pml_class
from oodml.objectives.rho_distance import RhoDistanceMiner

__all__ = ["MINERS", "MINER_ALIASES", "list_miners", "miner_class", "resolve_miner_name"]

#: Registry name -> miner class.
MINERS: dict[str, type] = {
    "distance_weighted": DistanceWeightedMiner,  # pml's, sampled in one pass (oodml.objectives.distance_weighted)
    "multisimilarity": M.MultiSimilarityMiner,
    "triplet_margin": M.TripletMarginMiner,
    "pair_margin": M.PairMarginMiner,
    "batch_hard": M.BatchHardMiner,
    "batch_easy_hard": M.BatchEasyHardMiner,
    "angular": M.AngularMiner,
    "hdc": M.HDCMiner,
    "uniform_histogram": M.UniformHistogramMiner,
    "rho_distance": RhoDistanceMiner,  # oodml.objectives.rho_distance (R-Margin)
}

MINER_ALIASES = {
    "distance": "distance_weighted",
    "ms": "multisimilarity",
    "triplet": "triplet_margin",
    "rho": "rho_distance",
}
_NO_MINER = {"none", "null", "off", "no", "false", ""}


def miner_class(name: str) -> type:
    """The class of a registry miner name or of ``pml:<ClassName>``."""
    if name.startswith("pml:"):
        return pml_class(M, name[4:], M.BaseMiner, "miner")
    return MINERS[name]


def list_miners() -> list[str]:
    return sorted(MINERS)


def resolve_miner_name(name: Any, owner: str = "") -> str | None:
    """The registry name (or ``pml:<ClassName>``) of a miner as a user wrote it; ``None`` for no miner."""
    if name is None or name is False or (isinstance(name, str) and name.strip().lower() in _NO_MINER):
        return None
    if str(name).strip()[:4].lower() == "pml:":
        cls = pml_class(M, str(name).strip()[4:].strip(), M.BaseMiner, "miner", owner)
        return f"pml:{cls.__name__}"
    key = str(name).strip().lower().replace("-", "_")
    key = MINER_ALIASES.get(key, key)
    if key not in MINERS:
        prefix = f"{owner}: " if owner else ""
        raise BadInputError(
            f"{prefix}unknown miner {name!r}; choose none, pml:<ClassName> or one of {', '.join(sorted(MINERS))}"
        )
    return key
