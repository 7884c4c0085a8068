"""Regularisers added on top of any objective (``regularizers: [uniformity]``).

A new regulariser is one entry of :data:`REGULARIZERS`: an ``nn.Module`` taking ``embed_dim`` and
scalar keyword options, called ``(embeddings, labels)`` -> scalar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from oodml.errors import BadInputError
from oodml.objectives.overrides import coerce_option
from oodml.objectives.pml import scalar_args
from oodml.objectives.uniformity import UniformityRegularizer

__all__ = ["REGULARIZERS", "make_regularizers"]

#: Name -> regulariser class.
REGULARIZERS: dict[str, type] = {"uniformity": UniformityRegularizer}


def make_regularizers(items: Any, embed_dim: int, owner: str = "") -> list[nn.Module]:
    """Regularisers from a list of names or ``{name: ..., <constructor arguments>}`` mappings
    (``[uniformity]``, ``[{name: uniformity, weight: 0.5, chunk: 8}]``)."""
    prefix = f"{owner}: " if owner else ""
    classes = REGULARIZERS
    if items is None or items is False:
        return []
    if isinstance(items, (str, Mapping)):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise BadInputError(f"{prefix}regularizers must be a list of names or {{name, ...}} mappings (got {items!r})")
    out = []
    for item in items:
        kwargs = dict(item) if isinstance(item, Mapping) else {"name": item}
        reg_name = str(kwargs.pop("name", "")).strip().lower()
        if reg_name not in classes:
            raise BadInputError(f"{prefix}unknown regularizer {reg_name or item!r}; choose one of {', '.join(classes)}")
        cls = classes[reg_name]
        allowed = scalar_args(cls, inherited=False)
        allowed.pop("embed_dim", None)
        for k, v in kwargs.items():
            if k not in allowed:
                raise BadInputError(
                    f"{prefix}regularizer {reg_name}: unknown option {k!r}; valid: {', '.join(allowed)}"
                )
            kwargs[k] = coerce_option(
                owner or reg_name, f"{reg_name}.{k}", v, allowed[k] if allowed[k] is not None else 1.0
            )
        try:
            out.append(cls(embed_dim=embed_dim, **kwargs))
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"{prefix}regularizer {reg_name} rejected {kwargs} ({exc})") from None
    return out
