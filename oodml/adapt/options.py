"""The options of adaptation: constants, :class:`AdaptOptions` (the ``**opts`` of
:func:`~oodml.adapt.run_adaptation`), iterations per shot and the learning rate rule."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from oodml.config import Config
from oodml.errors import BadInputError

__all__ = [
    "ADAPTED_PARTS",
    "DEFAULT_EPISODES",
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "DEFAULT_SHOTS",
    "FULL_LR",
    "HEAD_LR",
    "MODES",
    "OPTIONS",
    "PROBE_FRACTION",
    "PROBE_ITERATIONS",
    "PROBE_L2",
    "AdaptOptions",
    "default_iterations",
    "parse_iterations",
    "resolve_lr",
]

#: What an adaptation measures: few-shot adaptation and/or linear probes (``--mode``).
MODES = ("fewshot", "probe")
#: Which part of the network few-shot adaptation trains (``--adapt``): the embedding layer or all of it.
AdaptedPart = Literal["head", "full"]
ADAPTED_PARTS: tuple[str, ...] = get_args(AdaptedPart)
DEFAULT_SHOTS = (2, 5)
DEFAULT_EPISODES = 10
HEAD_LR = 1e-4
FULL_LR = 1e-5
DEFAULT_METRICS = ("recall", "precision@1", "r_precision", "map@r", "nmi")
DEFAULT_KS = (1, 2, 4, 8)
PROBE_L2 = 1e-3
PROBE_ITERATIONS = 200
PROBE_FRACTION = 0.5


@dataclass
class AdaptOptions(Config):
    """The options of :func:`~oodml.adapt.run_adaptation` (its ``**opts``; ``None``: from the run).

    :meth:`from_dict` checks keys and types; ranges are checked where the values are used
    (:func:`~oodml.adapt.fewshot_adaptation`, :func:`~oodml.adapt.linear_probe`), which a
    notebook may also call directly.
    """

    adapt: AdaptedPart = "head"
    loss: str = "margin"
    loss_params: dict[str, Any] | None = None
    iterations: Any = None  # None, a number, {k: n} or ["2=1000", "5=1500"] (parse_iterations)
    lr: float | None = None
    lr_mult: float | None = None  # lr = the run's training lr x lr_mult (the ooDML few-shot stage: x10)
    weight_decay: float = 0.0
    batch_size: int | None = None
    m_per_class: int | None = None
    seed: int = 0
    ks: tuple[int, ...] = DEFAULT_KS
    metrics: tuple[str, ...] = DEFAULT_METRICS
    fraction: float = PROBE_FRACTION
    probe_l2: float = PROBE_L2
    probe_iterations: int = PROBE_ITERATIONS
    device: Any = "auto"  # auto, cpu, cuda[:N] or a torch.device (oodml.device.resolve_device)
    embed_batch_size: int = 256
    progress: bool = True


#: The option names of :func:`~oodml.adapt.run_adaptation` and their defaults (a view of
#: :class:`AdaptOptions`, kept for callers that list or check the keys).
OPTIONS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(AdaptOptions)}


def default_iterations(k: int) -> int:
    """The ooDML head protocol: 1000 iterations for up to 2 shots, 1500 from 5 shots on (and
    linearly in between)."""
    if k <= 2:
        return 1000
    if k >= 5:
        return 1500
    return int(round(1000 + (k - 2) * 500 / 3))


def parse_iterations(spec: Any, shots: Iterable[int]) -> dict[int, int]:
    """Iterations per ``k``: ``None`` (defaults), one number, a mapping ``{k: n}`` or strings
    ``["2=1000", "5=1500"]`` / ``"1000"`` (shots not named keep the default)."""
    shots = [int(k) for k in shots]
    out = {k: default_iterations(k) for k in shots}
    if spec is None:
        return out

    def as_int(v: Any, what: str) -> int:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        if isinstance(v, bool) or not math.isfinite(f) or f != int(f) or f < 0:
            raise BadInputError(
                f"iterations {what} must be a non-negative integer (got {v!r}); e.g. --iterations 2=1000 5=1500"
            )
        return int(f)

    if isinstance(spec, str):
        spec = spec.replace(",", " ").split()
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        if len(spec) == 1 and "=" not in str(spec[0]):
            return {k: as_int(spec[0], "") for k in shots}
        items = []
        for s in spec:
            key, sep, val = str(s).partition("=")
            if not sep:
                raise BadInputError(
                    f"iterations entry {s!r} is not k=n; use e.g. --iterations 2=1000 5=1500 or one number"
                )
            items.append((key, val))
    else:
        return {k: as_int(spec, "") for k in shots}
    for key, val in items:
        k = as_int(key, "shot key")
        out_k = as_int(val, f"for {k} shots")
        if k in out:
            out[k] = out_k
    return out


def resolve_lr(lr: float | None, lr_mult: float | None, run_lr: float | None) -> float | None:
    """The adaptation learning rate: ``lr`` as given, or ``lr_mult`` x the run's training rate
    ``run_lr`` (the ooDML few-shot stage uses 10 x), or ``None`` for the mode's default."""
    if lr_mult is None:
        return lr
    if lr is not None:
        raise BadInputError(f"give either lr ({lr}) or lr_mult ({lr_mult}) for adaptation, not both")
    if (
        isinstance(lr_mult, bool)
        or not isinstance(lr_mult, (int, float))
        or not lr_mult > 0
        or not math.isfinite(lr_mult)
    ):
        raise BadInputError(f"lr_mult must be a positive number (got {lr_mult!r})")
    if run_lr is None:
        raise BadInputError(
            "lr_mult needs the run's training learning rate, and the run config has none; give lr instead"
        )
    return float(run_lr) * float(lr_mult)
