"""Search spaces: the range of each tunable hyperparameter an objective declares.

Every objective of the registry (:mod:`oodml.losses`) lists its tunable hyperparameters as
``ObjectiveSpec.search_space`` (key -> :class:`Tunable`) beside its defaults; a study's ``search``
block may override any range (see :mod:`oodml.search`, which runs the search itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oodml.errors import BadInputError

__all__ = ["Tunable", "is_number"]


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tunable:
    """The range of one hyperparameter: a float or integer interval (``log`` scale, optional
    ``step``) or a set of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: float | None = None
    choices: tuple = ()

    def __post_init__(self) -> None:
        if self.choices:
            return
        if self.low is None or self.high is None or not (float(self.low) < float(self.high)):
            raise ValueError(f"a range needs low < high (got {self.low!r}, {self.high!r})")
        if self.log and float(self.low) <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got {self.low!r})")

    @classmethod
    def parse(cls, value: Any, where: str) -> Tunable:
        """From study YAML: ``[low, high]``, ``{low, high, log, int, step}`` or ``{choices: [...]}``."""
        try:
            if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(v) for v in value):
                return cls(float(value[0]), float(value[1]))
            if isinstance(value, Mapping):
                bad = [k for k in value if k not in ("low", "high", "log", "int", "step", "choices")]
                if bad:
                    raise ValueError(f"unknown key {bad[0]!r} (valid: low, high, log, int, step, choices)")
                if "choices" in value:
                    ch = value["choices"]
                    if not isinstance(ch, (list, tuple)) or not ch:
                        raise ValueError("choices must be a non-empty list")
                    return cls(choices=tuple(ch))
                if not (is_number(value.get("low")) and is_number(value.get("high"))):
                    raise ValueError("low and high must be numbers")
                integer = bool(value.get("int", False))
                conv = int if integer else float
                step = value.get("step")
                if step is not None and (not is_number(step) or step <= 0):
                    raise ValueError("step must be a positive number")
                return cls(
                    conv(value["low"]),
                    conv(value["high"]),
                    log=bool(value.get("log", False)),
                    integer=integer,
                    step=None if step is None else conv(step),
                )
        except ValueError as exc:
            raise BadInputError(f"{where}: {exc}") from None
        raise BadInputError(
            f"{where}: a range must be [low, high], {{low, high, log: true}} or {{choices: [...]}}, got {value!r}"
        )

    def distribution(self):
        """The Optuna distribution of this range."""
        # lazy on purpose: optuna is a measured startup cost, needed only by a search
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices:
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def to_dict(self) -> dict:
        if self.choices:
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.integer:
            d["int"] = True
        if self.step is not None:
            d["step"] = self.step
        return d

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        f = (lambda v: str(int(v))) if self.integer else (lambda v: f"{float(v):g}")
        text = f"[{f(self.low)}, {f(self.high)}]"
        if self.log:
            text += " log"
        if self.step is not None:
            text += f" step {f(self.step)}"
        return text


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
