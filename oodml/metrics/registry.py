"""The metrics :func:`~oodml.metrics.evaluate.evaluate_embeddings` knows, one registered function each.

**A new metric is one function here**, decorated with :func:`register_metric`: it receives the
:class:`~oodml.metrics.context.MetricContext` (queries, gallery, labels, and on first use the
neighbour statistics, the k-means clusters, ...) and returns a float (keyed by its name) or a
``{key: float}`` mapping (as ``recall`` does, one key per k). ``needs`` names the expensive
pieces of the context it reads, so that they are computed once, as deep as the requested
metrics need:

``"neighbours"``  ``ctx.neighbours.first_rank`` / ``ctx.scored`` (rank of the first positive)
``"top_r"``       also ``ctx.neighbours.hits`` over each query's ``R`` nearest neighbours
``"top_1000"``    ``ctx.top_cutoff``: hits over the ``MAP_CUTOFF`` nearest, not clipped to ``R``
``"clusters"``    ``ctx.clusters``: the seeded k-means assignment of the queries

Registration order is the order of the results, and of :data:`ALL_METRICS`. The formulas live
on plain arrays in :mod:`~oodml.metrics.retrieval`, :mod:`~oodml.metrics.cluster` and
:mod:`~oodml.metrics.study_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oodml.metrics.cluster import nmi
from oodml.metrics.retrieval import map_at_r, precision_at_1, r_precision, recall_at_k
from oodml.metrics.study_metrics import average_precision_at_cutoff, intra_inter_ratio, pairwise_f1, rho_spectrum

if TYPE_CHECKING:  # pragma: no cover
    from oodml.metrics.context import MetricContext

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "METRICS",
    "NEEDS",
    "STUDY_METRICS",
    "Metric",
    "compute_metrics",
    "register_metric",
]

MetricValue = float | dict[str, float]

#: What a metric may ask the context for (see the module docstring).
NEEDS = ("neighbours", "top_r", "top_1000", "clusters")


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, function, the context pieces it reads, whether
    :data:`DEFAULT_METRICS` holds it, and whether it is a fraction (shown as a percentage)."""

    name: str
    compute: Callable[[MetricContext], MetricValue]
    needs: frozenset[str]
    default: bool
    fraction: bool


#: name → :class:`Metric`, in registration order.
METRICS: dict[str, Metric] = {}


def register_metric(
    name: str, *, needs: Iterable[str] = (), default: bool = False, fraction: bool = True
) -> Callable[[Callable[[MetricContext], MetricValue]], Callable[[MetricContext], MetricValue]]:
    """Decorator: register ``fn(ctx)`` as the metric ``name``."""
    needs = frozenset(needs)
    if not needs <= set(NEEDS):
        raise ValueError(f"metric {name!r}: unknown needs {sorted(needs - set(NEEDS))}; choose from {NEEDS}")

    def register(fn: Callable[[MetricContext], MetricValue]) -> Callable[[MetricContext], MetricValue]:
        if name in METRICS:
            raise ValueError(f"a metric named {name!r} is already registered")
        METRICS[name] = Metric(name, fn, needs, default, fraction)
        return fn

    return register


def needs_of(names: Iterable[str]) -> frozenset[str]:
    """The context pieces the metrics ``names`` read."""
    return frozenset().union(*(METRICS[n].needs for n in names))


def compute_metrics(ctx: MetricContext, names: Iterable[str]) -> dict[str, float]:
    """``{key: value}`` of the metrics ``names``, in registration order."""
    wanted = set(names)
    out: dict[str, float] = {}
    for name, metric in METRICS.items():
        if name in wanted:
            value = metric.compute(ctx)
            out.update(value if isinstance(value, dict) else {name: value})
    return out


# ----------------------------------------------------------------------------------------------
# the metrics
# ----------------------------------------------------------------------------------------------
@register_metric("recall", needs=["neighbours"], default=True)
def _recall(ctx: MetricContext) -> dict[str, float]:
    """Recall@k for every k of ``ks``."""
    first = ctx.neighbours.first_rank[ctx.scored]
    return {f"recall@{k}": recall_at_k(first, k) for k in ctx.options.ks}


@register_metric("precision@1", needs=["neighbours"], default=True)
def _precision_at_1(ctx: MetricContext) -> float:
    return precision_at_1(ctx.neighbours.first_rank[ctx.scored])


@register_metric("r_precision", needs=["neighbours", "top_r"], default=True)
def _r_precision(ctx: MetricContext) -> float:
    st = ctx.neighbours
    return r_precision(st.hits[ctx.scored], st.n_pos[ctx.scored])


@register_metric("map@r", needs=["neighbours", "top_r"], default=True)
def _map_at_r(ctx: MetricContext) -> float:
    st = ctx.neighbours
    return map_at_r(st.hits[ctx.scored], st.n_pos[ctx.scored])


@register_metric("nmi", needs=["clusters"], default=True)
def _nmi(ctx: MetricContext) -> float:
    return nmi(ctx.query_labels, ctx.clusters)


@register_metric("map@1000", needs=["top_1000"])
def _map_at_1000(ctx: MetricContext) -> float:
    st = ctx.top_cutoff
    scored = st.n_pos > 0
    size = st.n_pos + (ctx.query_self >= 0)  # the study divides by the class size, query included
    return average_precision_at_cutoff(st.hits[scored], size[scored])


@register_metric("f1", needs=["clusters"])
def _f1(ctx: MetricContext) -> float:
    return pairwise_f1(ctx.query_labels, ctx.clusters)


@register_metric("rho_spectrum", fraction=False)
def _rho_spectrum(ctx: MetricContext) -> float:
    return rho_spectrum(ctx.query, skip=ctx.options.rho_skip)


@register_metric("intra_inter_ratio", fraction=False)
def _intra_inter_ratio(ctx: MetricContext) -> float:
    return intra_inter_ratio(ctx.query, ctx.query_labels)


#: What :func:`~oodml.metrics.evaluate.evaluate_embeddings` computes unless told otherwise.
DEFAULT_METRICS: tuple[str, ...] = tuple(n for n, m in METRICS.items() if m.default)
#: The ooDML study's metrics and embedding diagnostics: every metric registered here.
STUDY_METRICS: tuple[str, ...] = DEFAULT_METRICS + tuple(n for n, m in METRICS.items() if not m.default)
#: Every metric name registered here.
ALL_METRICS: tuple[str, ...] = STUDY_METRICS
