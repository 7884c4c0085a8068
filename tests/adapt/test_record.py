"""The record adaptation.json and its rows (oodml.adapt.record)."""

from __future__ import annotations

from oodml import adapt as A


def test_rows_of_a_hand_written_record():
    s = lambda m, c: {"mean": m, "ci95": c}  # noqa: E731
    record = {
        "fewshot": {
            "shots": {
                "10": {
                    "adapted": {"recall@1": s(0.6, 0.1)},
                    "zero_shot": {"recall@1": s(0.5, 0.05)},
                    "gain": {"recall@1": s(0.1, 0.02)},
                },
                "2": {
                    "adapted": {"recall@1": s(0.55, None)},
                    "zero_shot": {"recall@1": s(0.5, None)},
                    "gain": {"recall@1": s(0.05, None)},
                },
            }
        },
        "probe": {
            "shots": {"2": {"embedding": s(0.3, 0.01), "backbone": s(0.4, 0.02)}},
            "half": {"embedding": 0.7, "backbone": 0.8},
        },
    }
    rows = A.adaptation_rows(record)
    assert rows[:3] == [
        {"stage": "few-shot-2", "metric": "recall@1", "value": 0.55, "ci95": None},
        {"stage": "few-shot-2", "metric": "recall@1_zero_shot", "value": 0.5, "ci95": None},
        {"stage": "few-shot-2", "metric": "recall@1_gain", "value": 0.05, "ci95": None},
    ]
    assert [r["stage"] for r in rows] == ["few-shot-2"] * 3 + ["few-shot-10"] * 3 + ["linear-probe"] * 4
    assert rows[-1] == {"stage": "linear-probe", "metric": "top1_backbone_half", "value": 0.8, "ci95": None}
    assert A.adaptation_rows({}) == []
    table = A.format_rows(rows)
    assert "few-shot-10" in table and "0.1000" in table
