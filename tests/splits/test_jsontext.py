"""Tests of oodml.splits.jsontext: the one-pass canonical serialiser."""

from __future__ import annotations

import json

import numpy as np

from oodml.splits import (
    dumps_split_document,
)


def test_one_pass_serialiser_matches_the_canonical_json():
    """dumps_split_document == the former json.loads(dumps_json(doc)) + indent-walk, numpy included."""
    from oodml.io import dumps_json

    doc = {
        "a": [1, 2, np.int64(3)],
        "b": {"x": np.arange(4), "y": []},
        7: 'é"',
        "c": [{}, {"q": (1.5, float("nan"), None, True, np.float32(0.1))}],
        "e": [[1], [2, [3]]],
        "f": np.float64(np.inf),
        "g": [np.bool_(True), "s"],
        "h": np.array([0.5, 2.0]),
    }
    text = dumps_split_document(doc)
    assert json.loads(text) == json.loads(dumps_json(doc))
    assert text == (
        '{\n "a": [1, 2, 3],\n "b": {\n  "x": [0, 1, 2, 3],\n  "y": []\n },\n "7": "é\\"",\n'
        ' "c": [\n  {},\n  {\n   "q": [1.5, null, null, true, 0.10000000149011612]\n  }\n ],\n'
        ' "e": [\n  [1],\n  [\n   2,\n   [3]\n  ]\n ],\n "f": null,\n "g": [true, "s"],\n "h": [0.5, 2.0]\n}\n'
    )
