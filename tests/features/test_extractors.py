"""Tests of :mod:`oodml.features.extractors`: the registry and the default extractors.

Every dataset here is a tiny folder tree of PNGs the test writes (fixtures in conftest.py); every
network gets random weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

from __future__ import annotations

import pytest

from oodml.errors import BadInputError
from oodml.features import (
    default_extractor,
    get_extractor,
    list_extractors,
)


def test_registry_names_and_defaults():
    assert list_extractors() == ["pixels", "hog", "inception", "resnet50"]
    assert default_extractor(None) == "pixels"
    assert default_extractor("glyphs") == "pixels"
    assert default_extractor("omniglot") == "pixels"
    assert default_extractor("cub200") == "resnet50"
    assert default_extractor("sop") == "resnet50"
    with pytest.raises(BadInputError, match="did you mean pixels"):
        get_extractor("pixel")
    with pytest.raises(BadInputError, match="has no weights"):
        get_extractor("hog", weights="x.pth")
