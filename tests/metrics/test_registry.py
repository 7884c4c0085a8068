"""oodml.metrics.registry: a metric is one registered function of the shared context."""

from __future__ import annotations

import numpy as np
import pytest

from oodml.evaluate import build_parser
from oodml.metrics import registry
from oodml.metrics.evaluate import evaluate_embeddings
from oodml.metrics.knn import neighbour_stats
from oodml.metrics.registry import ALL_METRICS, DEFAULT_METRICS, METRICS, STUDY_METRICS, register_metric


@pytest.fixture
def scratch_metrics():
    """Names registered by a test are removed afterwards."""
    before = set(METRICS)
    yield
    for name in set(METRICS) - before:
        del METRICS[name]


def test_the_built_in_metrics_in_their_order():
    assert DEFAULT_METRICS == ("recall", "precision@1", "r_precision", "map@r", "nmi")
    assert STUDY_METRICS == DEFAULT_METRICS + ("map@1000", "f1", "rho_spectrum", "intra_inter_ratio")
    assert ALL_METRICS == STUDY_METRICS == tuple(METRICS)
    assert [m for m in METRICS if not METRICS[m].fraction] == ["rho_spectrum", "intra_inter_ratio"]


def test_a_new_metric_is_one_registered_function(scratch_metrics, clustered):
    x, y = clustered(seed=20)

    @register_metric("top_r_hits", needs=["neighbours", "top_r"])
    def _top_r_hits(ctx):
        """Mean number of positives among the R nearest neighbours."""
        return float(ctx.neighbours.hits[ctx.scored].sum(1).mean())

    @register_metric("query_count")
    def _query_count(ctx):
        return float(len(ctx.query))

    got = evaluate_embeddings(x, y, metrics=("query_count", "map@r", "top_r_hits"))
    assert list(got) == ["map@r", "top_r_hits", "query_count"]  # registration order
    assert got["query_count"] == len(x)
    xn = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    st = neighbour_stats(xn, y, xn, y, np.arange(len(x)))
    assert got["top_r_hits"] == st.hits[st.n_pos > 0].sum(1).mean()
    # the command offers it too
    assert build_parser().parse_args(["e.npz", "--metrics", "top_r_hits"]).metrics == ["top_r_hits"]


def test_registration_errors(scratch_metrics):
    with pytest.raises(ValueError, match="already registered"):
        register_metric("nmi")(lambda ctx: 0.0)
    with pytest.raises(ValueError, match="unknown needs"):
        register_metric("x", needs=["neighbors"])
    assert registry.needs_of(["recall", "map@r"]) == {"neighbours", "top_r"}
