"""oodml.config: the schema is the dataclass's type hints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from oodml.config import Config, check_keys, coerce_value
from oodml.errors import BadInputError


def _upper(value, key, source):
    if not isinstance(value, str):
        raise BadInputError(f"{source}: {key} must be text (got {value!r})")
    return value.upper()


@dataclass
class Options(Config):
    lr: float = 1e-3
    epochs: int = 3
    shots: tuple[int, ...] = (1, 5)
    ks: list[int] = field(default_factory=lambda: [1, 2])
    name: str | None = None
    workers: int | Literal["auto"] = "auto"
    amp: Literal["auto", "on", "off"] = "auto"
    pretrained: bool = True
    params: dict = field(default_factory=dict)
    out: Path | None = None
    code: str = field(default="A", metadata={"coerce": _upper})

    def validate(self, source: str) -> None:
        if self.epochs < 1:
            raise BadInputError(f"{source}: epochs must be at least 1 (got {self.epochs})")


def test_defaults_and_round_trip():
    o = Options.from_dict(None)
    assert o == Options()
    assert Options.from_dict(o.to_dict()) == o
    assert Options.keys()[:3] == ["lr", "epochs", "shots"]


def test_coercion_from_yaml_and_flag_text():
    o = Options.from_dict(
        {
            "lr": "2e-3",
            "epochs": "4",
            "shots": ["1", 2],
            "ks": (3,),
            "name": "null",
            "workers": "AUTO",
            "amp": "On",
            "pretrained": "no",
            "params": {"margin": 0.2},
            "out": "x/y",
            "code": "b",
        }
    )
    assert o.lr == 0.002 and o.epochs == 4 and o.shots == (1, 2) and o.ks == [3]
    assert o.name is None and o.workers == "auto" and o.amp == "on" and o.pretrained is False
    assert o.params == {"margin": 0.2} and o.out == Path("x/y") and o.code == "B"
    assert Options.from_dict({"workers": 2}).workers == 2
    assert Options.from_dict({"epochs": 5.0}).epochs == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lrr": 1}, r"f\.yaml: unknown key 'lrr'; did you mean 'lr'\? \(valid keys: lr, epochs"),
        ({"epochs": 2.5}, r"f\.yaml: epochs must be an integer \(got 2\.5\)"),
        ({"lr": "fast"}, r"f\.yaml: lr must be a number"),
        ({"lr": float("nan")}, r"lr must be a finite number"),
        ({"pretrained": "maybe"}, r"pretrained must be true or false"),
        ({"amp": "fast"}, r"amp must be one of auto, on, off"),
        ({"workers": "many"}, r"workers must be an integer or one of auto"),
        ({"shots": 5}, r"shots must be a list"),
        ({"params": [1]}, r"params must be a mapping"),
        ({"epochs": True}, r"epochs must be an integer"),
        ({"code": 3}, r"code must be text"),
        ({"epochs": 0}, r"f\.yaml: epochs must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_line(data, message):
    with pytest.raises(BadInputError, match=message):
        Options.from_dict(data, source="f.yaml")


def test_not_a_mapping():
    with pytest.raises(BadInputError, match="must be a mapping of Options keys, got list"):
        Options.from_dict([1, 2], source="f.yaml")


def test_replace_validates():
    o = Options().replace(lr="1e-2")
    assert o.lr == 0.01
    with pytest.raises(BadInputError, match="epochs must be at least 1"):
        o.replace(epochs=0)


def test_check_keys_and_coerce_value():
    check_keys({"a": 1}, ["a", "b"], "s.yaml")
    with pytest.raises(BadInputError, match=r"s\.yaml: unknown key executor\.'gpu'; did you mean 'gpus'\?"):
        check_keys({"gpu": 1}, ["gpus", "kind"], "s.yaml", where="executor.")
    assert coerce_value("3", int | None, "k", "s") == 3
    assert coerce_value("~", int | None, "k", "s") is None
    with pytest.raises(BadInputError, match="k must be an integer"):
        coerce_value(None, int, "k", "s")
