"""Hyperparameter overrides of an objective: ``key=value`` text from a command line, a YAML
mapping from a study file, and the check of each value against the kind of its default."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from oodml.errors import BadInputError

__all__ = ["NUMBER", "coerce_option", "flatten_overrides", "parse_overrides", "parse_value"]

#: A number as text, including what YAML 1.1 leaves as text (``5e-4``, ``1E3``).
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# override keys (last part) with a fixed set of text values
_CHOICES = {"type_of_triplets": ("all", "hard", "semihard", "easy")}


def parse_value(text: str) -> Any:
    """A ``key=value`` value: YAML (``yaml.safe_load``), plus numbers YAML 1.1 leaves as text
    (``5e-4``, ``1E3``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and NUMBER.match(value.strip()):
        return float(value)
    return value


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse command-line ``key=value`` strings into an overrides dict (later keys win).

    ``parse_overrides(["margin=0.1", "miner.type_of_triplets=hard", "miner=none"])``.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        text = str(item)
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInputError(f"loss option {text!r} is not key=value (e.g. margin=0.1 or miner.epsilon=0.2)")
        out[key] = parse_value(value.strip())
    return out


def flatten_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Expand ``miner: {type: x, epsilon: 0.2}`` (as in a YAML study file) into flat keys."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        key = str(key).strip()
        if key == "miner" and isinstance(value, Mapping):
            value = dict(value)
            kind = value.pop("type", value.pop("name", None))
            if kind is not None:
                flat["miner"] = kind
            for k, v in value.items():
                flat[f"miner.{k}"] = v
        else:
            flat[key] = value
    return flat


def coerce_option(owner: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the kind of ``default``; numeric strings become numbers.

    The kind comes from a default value (pml's constructor defaults), not from a type hint, which
    is why this is not :mod:`oodml.config`: pml's losses are the schema here."""
    if isinstance(value, str) and NUMBER.match(value.strip()):
        value = float(value) if not isinstance(default, str) else value
    base = key.rsplit(".", 1)[-1]
    if base in _CHOICES and value not in _CHOICES[base]:
        raise BadInputError(f"{owner}: {key} must be one of {', '.join(_CHOICES[base])} (got {value!r})")
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise BadInputError(f"{owner}: {key} must be true or false (got {value!r})")
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInputError(f"{owner}: {key} must be a number (got {value!r})")
        if not math.isfinite(float(value)):
            raise BadInputError(f"{owner}: {key} must be finite (got {value!r})")
        return value
    if isinstance(default, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "triplets_per_anchor":
            return int(value)
        if not isinstance(value, str):
            raise BadInputError(f"{owner}: {key} must be text (got {value!r})")
    return value
