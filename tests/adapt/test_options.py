"""Adaptation options (oodml.adapt.options): AdaptOptions, iterations per shot, the learning rate rule."""

from __future__ import annotations

import pytest

from oodml import adapt as A
from oodml.adapt import OPTIONS, AdaptOptions, resolve_lr
from oodml.errors import BadInputError


def test_iterations_parsing():
    assert A.parse_iterations(None, [2, 5]) == {2: 1000, 5: 1500}
    assert A.parse_iterations(["2=10", "5=20"], [2, 5]) == {2: 10, 5: 20}
    assert A.parse_iterations(["7"], [2, 5]) == {2: 7, 5: 7}
    assert A.parse_iterations(30, [1]) == {1: 30}
    assert A.parse_iterations({5: 3}, [2, 5]) == {2: 1000, 5: 3}
    with pytest.raises(BadInputError, match="k=n"):
        A.parse_iterations(["2=10", "oops"], [2])
    with pytest.raises(BadInputError, match="non-negative integer"):
        A.parse_iterations(["2=-1"], [2])


def test_adaptation_lr_mult_is_relative_to_the_run():
    assert "lr_mult" in OPTIONS and OPTIONS["lr_mult"] is None
    assert resolve_lr(None, 10, 1e-5) == pytest.approx(1e-4) and resolve_lr(3e-4, None, 1e-5) == 3e-4
    assert resolve_lr(None, None, 1e-5) is None  # the mode's default
    for args, msg in (((1e-4, 10, 1e-5), "not both"), ((None, -1, 1e-5), "positive"), ((None, 10, None), "training")):
        with pytest.raises(BadInputError, match=msg):
            resolve_lr(*args)


def test_adapt_options_are_the_schema_of_run_adaptation_opts():
    assert list(OPTIONS) == AdaptOptions.keys() and OPTIONS == AdaptOptions().to_dict()
    o = AdaptOptions.from_dict({"adapt": "full", "lr_mult": "10", "ks": [1, "2"], "iterations": ["2=5"]}, "test")
    assert (o.adapt, o.lr_mult, o.ks, o.iterations) == ("full", 10.0, (1, 2), ["2=5"])
    with pytest.raises(BadInputError, match="adapt must be one of head, full"):
        AdaptOptions.from_dict({"adapt": "everything"}, "test")
    with pytest.raises(BadInputError, match="did you mean 'probe_l2'"):
        AdaptOptions.from_dict({"probe_l3": 1.0}, "test")
    # "head"/"full" (which part adapts) and "fewshot"/"probe" (what is measured) are two names
    assert A.ADAPTED_PARTS == ("head", "full") and A.MODES == ("fewshot", "probe")
    assert not hasattr(A, "ADAPT_MODES")
