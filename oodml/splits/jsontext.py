"""The canonical text of a split document (:func:`dumps_split_document`): indented JSON with
flat lists (class names, image ids) on one line, byte-identical for identical documents."""

from __future__ import annotations

import json

import numpy as np

from oodml.io import _jsonable

__all__ = ["dumps_split_document"]

_SCALARS = (str, int, float, bool, type(None))
_LEAF_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # C-accelerated, ", " separators
_encode_str = json.encoder.encode_basestring  # what json.dumps(s, ensure_ascii=False) returns for a str


def _scalar(v):
    """A scalar as plain JSON data, normalised like :func:`oodml.io.dumps_json` (numpy scalars to
    Python, non-finite floats to ``None``, paths to strings)."""
    if type(v) is int or type(v) is str or v is None or type(v) is bool:
        return v

    return _jsonable(v)


def _leaf_text(items: list) -> str | None:
    """One-line JSON of a flat list of scalars, or ``None`` when ``items`` holds a container.

    Fast path: lists of plain ``int`` or ``str`` (image ids, class names: nearly all of a file's
    bytes) go to the C encoder in one call, without a Python-level visit per value."""
    kinds = set(map(type, items))
    if kinds == {int}:
        return repr(items)  # a list of Python ints prints exactly as JSON does ("[1, 2, 3]")
    if kinds <= {int, str}:
        return "[" + ", ".join([_encode_str(v) if type(v) is str else repr(v) for v in items]) + "]"
    if not all(isinstance(v, _SCALARS) or np.isscalar(v) and not isinstance(v, (bytes, np.bytes_)) for v in items):
        return None
    return _LEAF_ENCODER.encode([_scalar(v) for v in items])


def _dump(obj, indent: int, level: int, out: list[str]) -> None:
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, tuple):
        obj = list(obj)
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        out.append("{\n")
        last = len(obj) - 1
        for n, (k, v) in enumerate(obj.items()):
            out.append(pad + _encode_str(str(k)) + ": ")
            leaf = _leaf_text(v) if type(v) is list else None  # fast path: an episode's id lists
            if leaf is not None:
                out.append(leaf)
            else:
                _dump(v, indent, level + 1, out)
            out.append(",\n" if n < last else "\n")
        out.append(end + "}")
    elif isinstance(obj, list):
        leaf = _leaf_text(obj)
        if leaf is not None:  # includes the empty list
            out.append(leaf)
            return
        out.append("[\n")
        last = len(obj) - 1
        for n, v in enumerate(obj):
            out.append(pad)
            _dump(v, indent, level + 1, out)
            out.append(",\n" if n < last else "\n")
        out.append(end + "]")
    else:
        out.append(_LEAF_ENCODER.encode(_scalar(obj)))


def dumps_split_document(doc: dict) -> str:
    """Canonical text of a split document: values normalised as by :func:`oodml.io.dumps_json`
    (numpy to Python, NaN/inf to ``null``), nested containers indented, flat lists (class names,
    image ids) on one line, trailing newline.

    One pass over the document; flat lists of ``int``/``str`` (and numpy integer arrays) are
    encoded by the C JSON encoder in one call each."""
    out: list[str] = []
    _dump(doc, 1, 0, out)
    return "".join(out) + "\n"
