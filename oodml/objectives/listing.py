"""The registry as text and rows: ``python -m oodml.train --list-losses [--search-space]``."""

from __future__ import annotations

from typing import Any

from oodml.objectives.builtin import STUDY_METHODS
from oodml.objectives.miners import list_miners, miner_class
from oodml.objectives.pml import list_pml_losses, list_pml_miners, scalar_args
from oodml.objectives.registry import (
    ENTRY_POINT_GROUP,
    OBJECTIVES,
    ObjectiveSpec,
    beta_spec,
    load_entry_point_plugins,
    registered_specs,
    search_space,
)

__all__ = ["format_objectives_table", "format_search_spaces", "list_objectives"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _lr_text(spec: ObjectiveSpec) -> str:
    if not spec.params:
        return "-"
    if beta_spec(spec):
        return f"{spec.params}: {_fmt(spec.options['beta_lr'])} (beta_lr)"
    if spec.builder is not None:
        return f"{spec.params}: see summary"
    if spec.options.get("lr") is not None:
        return f"{spec.params}: {_fmt(spec.options['lr'])}"
    return f"{spec.params}: x{_fmt(spec.options['lr_mult'])} base lr"


def list_objectives() -> list[dict[str, Any]]:
    """One dict per objective: ``name``, ``loss`` (pml class), ``kind``, ``miner`` (name or None),
    ``defaults`` (every overridable key with its default, loss keys in our units), ``param_lr``
    (how the loss's own parameters are trained), ``notes``, ``summary`` and ``composite`` (built
    from other objectives, like S2SD and DiVA: its keys are its own, it takes no ``miner``)."""
    load_entry_point_plugins()
    rows = []
    for spec in registered_specs():
        defaults: dict[str, Any] = dict(spec.loss_keys())
        defaults.update(spec.options)
        defaults["regularizers"] = list(spec.regularizers)
        if spec.miner:
            mk = scalar_args(miner_class(spec.miner), inherited=False)
            mk.update(spec.miner_defaults)
            for sub, loss_key in spec.miner_tied.items():
                mk[sub] = spec.loss_defaults.get(loss_key, mk.get(sub))
            defaults.update({f"miner.{k}": v for k, v in mk.items()})
        notes = "; ".join(f"{k}: {note}" for k, (_, note) in spec.to_pml.items())
        rows.append(
            {
                "name": spec.name,
                "loss": spec.loss_class,
                "kind": spec.kind,
                "miner": spec.miner,
                "defaults": defaults,
                "param_lr": _lr_text(spec),
                "notes": notes,
                "summary": spec.summary,
                "composite": spec.builder is not None,
            }
        )
    return rows


def format_objectives_table() -> str:
    """A plain-text table of the objectives (used by ``python -m oodml.train --list-losses``)."""
    header = ("name", "kind", "pml loss", "miner", "own params lr", "defaults")
    lines = []
    for r in list_objectives():
        spec = OBJECTIVES[r["name"]]
        shown = [f"{k}={_fmt(v)}" for k, v in spec.loss_defaults.items()]
        shown += [f"{k}={_fmt(v)}" for k, v in spec.composite_defaults.items() if v not in ({}, [])]
        shown += [f"regularizers={list(spec.regularizers)}"] if spec.regularizers else []
        shown += [f"{k}={_fmt(v)}" for k, v in spec.options.items() if k not in ("lr", "lr_mult", "beta_lr")]
        shown += [f"miner.{k}={_fmt(r['defaults'][f'miner.{k}'])}" for k in (*spec.miner_defaults, *spec.miner_tied)]
        text = " ".join(shown) or "-"
        if r["notes"]:
            text += f"  [{r['notes']}]"
        lines.append((r["name"], r["kind"], r["loss"], r["miner"] or "-", r["param_lr"], text))
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header) - 1)]

    def join(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]

    out = [join(header), join(tuple("-" * w for w in widths) + ("-" * len(header[-1]),))]
    out += [join(line) for line in lines]
    out.append(
        "override with key=value (e.g. margin=0.1, beta_lr=1e-3, miner.epsilon=0.2, miner=none); "
        "kind 'pair' needs >= 2 samples per class in a batch; labels must be 0..num_classes-1"
    )
    out.append(f"ooDML study methods: {', '.join(STUDY_METHODS)}; regularizers=[uniformity] on top of any objective")
    out.append(
        "any pytorch-metric-learning loss as pml:<ClassName> (keyword arguments as key=value): "
        + ", ".join(f"pml:{n}" for n in list_pml_losses())
    )
    out.append(
        "miners (miner=<name>): "
        + ", ".join(list_miners())
        + "; or miner=pml:<ClassName>: "
        + ", ".join(f"pml:{n}" for n in list_pml_miners())
    )
    out.append(
        f"your own objectives: --plugin MODULE (calls oodml.losses.register_objective) or the "
        f"'{ENTRY_POINT_GROUP}' entry point group"
    )
    return "\n".join(out)


def format_search_spaces() -> str:
    """Text table of every objective's search space and defaults (``--list-losses --search-space``)."""
    rows = []
    for row in list_objectives():
        space = search_space(row["name"])
        if not space:
            rows.append((row["name"], "(none declared: give one under search.space in the study)", "", ""))
            continue
        for i, (key, t) in enumerate(space.items()):
            if key.startswith("train."):
                shown = f"train: {key[6:]}"
            else:
                d = row["defaults"].get(key)
                shown = "-" if d is None else (f"{d:g}" if isinstance(d, float) else str(d))
            rows.append((row["name"] if i == 0 else "", key, t.describe(), shown))
    header = ("name", "key", "range", "default")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(3)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3]
        for r in [header, tuple("-" * w for w in widths) + ("-------",), *rows]
    ]
    lines.append(
        "override in a study: search: {space: {<loss> or all: {<key>: [low, high] | {low, high, log: true} "
        "| {choices: [...]} | value | null}}}"
    )
    return "\n".join(lines)
