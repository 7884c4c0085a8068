"""One config mechanism for every stage: dataclasses whose type hints are the schema.

A stage's options are a dataclass that derives from :class:`Config`. Its field annotations say
what each key accepts; :meth:`Config.from_dict` derives everything else from them:

- **unknown keys** are one clear error naming the closest valid key (``did you mean 'lr'?``);
- **coercion** from what YAML, JSON or a command line hands over: ``"1e-3"`` → ``0.001`` for a
  ``float``, ``"yes"`` → ``True`` for a ``bool``, ``"null"``/``"none"`` → ``None`` for an optional
  field, each element of a ``list[int]`` or ``tuple[str, ...]``, a ``Literal[...]`` checked
  against its choices, unions tried in the order written (``int | Literal["auto"]``);
- **defaults** are the dataclass defaults; :meth:`Config.to_dict` gives plain data back.

A field that needs more than its type (case-folding, a preset name, a cross-field rule) says so
in ``field(metadata={"coerce": fn})`` (``fn(value, key, source)`` returns the value or raises
:class:`~oodml.errors.BadInputError`) or in the class's :meth:`Config.validate`, which
``from_dict`` calls last. Mappings that are not (yet) a dataclass, such as a study file's
blocks, are checked with :func:`check_keys` and give the same error.

Example::

    @dataclass
    class ProbeOptions(Config):
        lr: float = 1e-3
        shots: tuple[int, ...] = (1, 5)
        device: str = "auto"

    ProbeOptions.from_dict({"lr": "2e-3", "shots": [1, 2]}, source="study.yaml: adaptation")
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from oodml.errors import BadInputError

__all__ = ["Config", "check_keys", "closest", "coerce_value"]

C = TypeVar("C", bound="Config")

_NULLS = ("none", "null", "~", "")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def closest(key: object, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the valid key closest to ``key`` (empty when none is close)."""
    match = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def check_keys(mapping: Mapping[str, Any], valid: Iterable[str], source: str, where: str = "") -> None:
    """Raise one clear :class:`BadInputError` for the first key of ``mapping`` not in ``valid``.

    ``source`` names the file (or config) and ``where`` the block inside it (``"executor."``), so
    the message reads ``study.yaml: unknown key executor.'gpu'; did you mean 'gpus'? (valid keys: ...)``.
    """
    valid = list(valid)
    for key in mapping:
        if key not in valid:
            raise BadInputError(
                f"{source}: unknown key {where}{key!r}{closest(key, valid)} (valid keys: {', '.join(valid)})"
            )


class _Mismatch(Exception):
    """A value does not fit one type (internal: unions try the next member)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp in (str, Path):
        return "text"
    if origin is Literal:
        return "one of " + ", ".join(repr(c) if not isinstance(c, str) else c for c in typing.get_args(tp))
    if origin in (list, tuple) or tp in (list, tuple):
        return "a list"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "a mapping of key: value"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _union(value: Any, tp: Any, args: tuple) -> Any:
    optional = type(None) in args
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NULLS):
        if optional:
            return None
        raise _Mismatch(_describe(tp))
    for member in args:
        if member is type(None):
            continue
        try:
            return _coerce(value, member)
        except _Mismatch:
            continue
    raise _Mismatch(_describe(tp))


def _literal(value: Any, tp: Any, choices: tuple) -> Any:
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
        if isinstance(choice, str) and isinstance(value, str) and value.strip().lower() == choice.lower():
            return choice
    raise _Mismatch(_describe(tp))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Mismatch("true or false")


def _number(value: Any, tp: type) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if tp is float or any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise _Mismatch(_describe(tp)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Mismatch(_describe(tp))
    if tp is int:
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise _Mismatch("an integer")
        return int(value)
    if not math.isfinite(float(value)):
        raise _Mismatch("a finite number")
    return float(value)


def _text(value: Any, tp: type) -> str | Path:
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise _Mismatch("a path")
        return Path(value)
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise _Mismatch("text")
    return value


def _mapping(value: Any, args: tuple) -> dict:
    if not isinstance(value, Mapping):
        raise _Mismatch("a mapping of key: value")
    if not args:
        return dict(value)
    kt, vt = args
    return {_coerce(k, kt): _coerce(v, vt) for k, v in value.items()}


def _sequence(value: Any, tp: Any, origin: Any, args: tuple) -> list | tuple:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _Mismatch("a list")
    items = list(value)
    container = tuple if (tp is tuple or origin is tuple) else list
    if not args:
        return container(items)
    if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise _Mismatch(f"a list of {len(args)} values")
        return tuple(_coerce(v, t) for v, t in zip(items, args, strict=True))
    return container(_coerce(v, args[0]) for v in items)


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (raises :class:`_Mismatch` with what was expected)."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _coerce(value, args[0])
    if origin in (Union, types.UnionType):
        return _union(value, tp, args)
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch("null")
    if origin is Literal:
        return _literal(value, tp, args)
    if tp is bool:
        return _bool(value)
    if tp in (int, float):
        return _number(value, tp)
    if tp in (str, Path):
        return _text(value, tp)
    if tp in (dict, Mapping) or origin in (dict, Mapping):
        return _mapping(value, args)
    if tp in (list, tuple) or origin in (list, tuple):
        return _sequence(value, tp, origin, args)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch(_describe(tp))
    return value  # a typing construct we do not interpret: passed through unchanged


def coerce_value(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` coerced to the annotation ``tp``; a mismatch is one :class:`BadInputError`
    (``{source}: {key} must be {what} (got {value!r})``)."""
    try:
        return _coerce(value, tp)
    except _Mismatch as exc:
        raise BadInputError(f"{source}: {key} must be {exc.what} (got {value!r})") from None


@dataclasses.dataclass
class Config:
    """Base of every options dataclass; see the module docstring."""

    @classmethod
    def keys(cls) -> list[str]:
        """The valid keys, in the order the fields are declared."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name → its resolved annotation (the schema)."""
        hints = typing.get_type_hints(cls, include_extras=True)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def coerce_field(cls, key: str, value: Any, source: str) -> Any:
        """One field's value coerced by its ``metadata["coerce"]`` or else its annotation."""
        f = {f.name: f for f in dataclasses.fields(cls)}[key]
        custom = f.metadata.get("coerce")
        if custom is not None:
            return custom(value, key, source)
        return coerce_value(value, cls.field_types()[key], key, source)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, source: str | None = None) -> C:
        """Build from plain data (YAML, JSON, parsed flags): unknown keys, wrong types and
        failed :meth:`validate` rules are one clear :class:`BadInputError` naming ``source``."""
        source = source or cls.__name__
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise BadInputError(f"{source} must be a mapping of {cls.__name__} keys, got {type(data).__name__}")
        valid = cls.keys()
        check_keys(data, valid, source)
        obj = cls(**{k: cls.coerce_field(k, v, source) for k, v in data.items()})
        obj.validate(source)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """Plain data (a deep copy): ``from_dict(to_dict())`` gives an equal config."""
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with ``changes`` applied (coerced like :meth:`from_dict`)."""
        return type(self).from_dict({**self.to_dict(), **changes}, source=type(self).__name__)

    def validate(self, source: str) -> None:
        """Cross-field rules; the default has none. Raise :class:`BadInputError` with ``source``."""
