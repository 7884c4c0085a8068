"""oodml.metrics.options: the evaluation's options are one Config dataclass."""

from __future__ import annotations

import pytest

from oodml.errors import BadInputError
from oodml.metrics.options import KS_PRESETS, EvaluationInputError, EvaluationOptions, parse_ks


def test_from_dict_coerces_by_the_type_hints():
    opts = EvaluationOptions.from_dict(
        {"ks": "SOP", "metrics": ["recall", "nmi"], "nmi_iters": "5", "chunk_size": "null", "backend": "Faiss"},
        source="study.yaml: evaluation",
    )
    assert opts.ks == KS_PRESETS["sop"] and opts.metrics == ("recall", "nmi")
    assert opts.nmi_iters == 5 and opts.chunk_size is None and opts.backend == "faiss"
    assert EvaluationOptions.from_dict(opts.to_dict()) == opts
    assert EvaluationOptions().ks == (1, 2, 4, 8)


def test_unknown_keys_and_bad_values_are_one_clear_error():
    with pytest.raises(BadInputError, match="did you mean 'nmi_seed'"):
        EvaluationOptions.from_dict({"nmi_sed": 1}, source="s.yaml")
    with pytest.raises(BadInputError, match="backend must be one of"):
        EvaluationOptions.from_dict({"backend": "cuda"}, source="s.yaml")
    with pytest.raises(EvaluationInputError, match="rho_skip"):
        EvaluationOptions(rho_skip=-1)  # direct construction validates too
    with pytest.raises(EvaluationInputError, match="unknown metric"):
        EvaluationOptions(metrics=("recall@1",))
    with pytest.raises(EvaluationInputError, match="positive"):
        parse_ks([0, 1])
    assert parse_ks([8, 1, 8]) == (1, 8) and parse_ks(3) == (3,)
