"""What oodml reads from pytorch-metric-learning (pml): classes by name and their hyperparameters.

pml is imported at module top: the package already imports it (the ρ-distance miner subclasses
pml's ``BaseMiner``), so a lazy import would save nothing.
"""

from __future__ import annotations

import inspect
from typing import Any

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from oodml.errors import BadInputError

__all__ = ["init_param_names", "list_pml_losses", "list_pml_miners", "pml_class", "scalar_args"]

# pml constructor arguments we never expose as overrides (objects, or set from the split/model).
_NOT_OVERRIDABLE = {"num_classes", "embedding_size", "self", "args", "kwargs"}


def pml_class(module: Any, name: str, base: type, what: str, owner: str = "") -> type:
    """``pml:<ClassName>``: the class ``name`` of pml's ``module``, which must subclass ``base``."""
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        prefix = f"{owner}: " if owner else ""
        known = sorted(
            n
            for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and not n.startswith("Base")
        )
        raise BadInputError(
            f"{prefix}pytorch-metric-learning has no {what} class {name!r}; choose one of {', '.join(known)} "
            "(names are case-sensitive)"
        )
    return cls


def scalar_args(cls: type, inherited: bool = True) -> dict[str, Any]:
    """Constructor arguments with plain (scalar) defaults of a pml class (and, with ``inherited``,
    of its specific parent classes, e.g. ProxyNCALoss -> NCALoss's ``softmax_scale``)."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__ if inherited else (cls,):
        cname = klass.__name__
        if "__init__" not in vars(klass):
            continue
        if klass is not cls and not klass.__module__.startswith(("pytorch_metric_learning", "oodml")):
            continue
        if cname.startswith(("Base", "ModuleWithRecords", "Generic")) or cname.endswith("Mixin"):
            continue  # generic machinery (reducer, distance, regularisers): objects, not hyperparameters
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name in _NOT_OVERRIDABLE or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in out:
                continue
            default = None if p.default is inspect.Parameter.empty else p.default
            if default is None or isinstance(default, (bool, int, float, str)):
                out[p.name] = default
    return out


def init_param_names(cls: type) -> set[str]:
    """Every constructor argument name of a pml class and its pml parents."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and klass.__module__.startswith("pytorch_metric_learning"):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names


def list_pml_losses() -> list[str]:
    """Class names of pml's losses usable as ``pml:<ClassName>``."""
    return sorted(
        n
        for n, c in vars(pml_losses).items()
        if isinstance(c, type) and issubclass(c, pml_losses.BaseMetricLossFunction) and not n.startswith("Base")
    )


def list_pml_miners() -> list[str]:
    """Class names of pml's miners usable as ``miner=pml:<ClassName>``."""
    return sorted(
        n
        for n, c in vars(pml_miners).items()
        if isinstance(c, type) and issubclass(c, pml_miners.BaseMiner) and not n.startswith("Base")
    )
