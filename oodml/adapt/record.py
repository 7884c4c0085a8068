"""The record ``RUN_DIR/adaptation.json``: written atomically, a mode already recorded there kept
(:func:`write_record`), and read back as long-format rows (:func:`adaptation_rows`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oodml.adapt.options import MODES
from oodml.errors import OodmlError
from oodml.io import read_json, write_json

__all__ = ["RECORD_NAME", "SCHEMA", "adaptation_rows", "format_rows", "write_record"]

SCHEMA = "oodml.adapt/1"
RECORD_NAME = "adaptation.json"


def _merge(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """Keep the modes of an earlier ``adaptation.json`` of the same run that were not re-run
    (modes in the fixed order of :data:`MODES`)."""
    header = {key: value for key, value in new.items() if key not in MODES}
    modes = {m: new[m] for m in MODES if m in new}
    if (
        isinstance(old, dict)
        and old.get("schema") == SCHEMA
        and all(old.get(key) == value for key, value in header.items())
    ):  # same run and split; otherwise the old record describes another model: dropped
        for m in MODES:
            if m not in modes and m in old:
                modes[m] = old[m]
    return {**header, **{m: modes[m] for m in MODES if m in modes}}


def write_record(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` to ``run_dir/adaptation.json`` atomically, keeping the modes recorded
    there that were not re-run (:func:`_merge`); returns what was written."""
    path = Path(run_dir) / RECORD_NAME
    old = None
    if path.is_file():
        try:
            old = read_json(path, "adaptation record")
        except OodmlError:
            old = None  # unreadable: replaced by the new record
    out = _merge(old, record)
    write_json(path, out)
    return out


def _ci(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def adaptation_rows(adaptation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows ``{"stage", "metric", "value", "ci95"}`` of an adaptation record.

    Few-shot (``stage`` ``few-shot-<k>``): for each metric ``m`` (``recall@1`` ...) the adapted
    mean ``m``, ``m_zero_shot`` and ``m_gain`` (paired per-episode gain). Linear probe (``stage``
    ``linear-probe``): ``top1_embedding_<k>shot``, ``top1_backbone_<k>shot`` (mean over
    episodes) and ``top1_embedding_half``, ``top1_backbone_half`` (``ci95`` None)."""
    rows: list[dict[str, Any]] = []

    def value(v: Any) -> float:
        return float("nan") if v is None else float(v)

    fs = adaptation.get("fewshot")
    if fs:
        for k in sorted(fs.get("shots", {}), key=int):
            rec = fs["shots"][k]
            stage = f"few-shot-{int(k)}"
            for m, s in rec["adapted"].items():
                rows.append({"stage": stage, "metric": m, "value": value(s["mean"]), "ci95": _ci(s["ci95"])})
                z, g = rec["zero_shot"][m], rec["gain"][m]
                rows.append(
                    {"stage": stage, "metric": f"{m}_zero_shot", "value": value(z["mean"]), "ci95": _ci(z["ci95"])}
                )
                rows.append({"stage": stage, "metric": f"{m}_gain", "value": value(g["mean"]), "ci95": _ci(g["ci95"])})
    pr = adaptation.get("probe")
    if pr:
        for k in sorted(pr.get("shots", {}), key=int):
            rec = pr["shots"][k]
            for rep in ("embedding", "backbone"):
                rows.append(
                    {
                        "stage": "linear-probe",
                        "metric": f"top1_{rep}_{int(k)}shot",
                        "value": value(rec[rep]["mean"]),
                        "ci95": _ci(rec[rep]["ci95"]),
                    }
                )
        half = pr.get("half")
        if half:
            for rep in ("embedding", "backbone"):
                rows.append(
                    {"stage": "linear-probe", "metric": f"top1_{rep}_half", "value": value(half[rep]), "ci95": None}
                )
    return rows


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`adaptation_rows` (value ± ci95)."""
    if not rows:
        return "(no adaptation results)"
    header = ("stage", "metric", "value", "± ci95")
    body = [
        (r["stage"], r["metric"], f"{r['value']:.4f}", "" if r["ci95"] is None else f"{r['ci95']:.4f}") for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(b) for b in body)])
