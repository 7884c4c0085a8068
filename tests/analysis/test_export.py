"""Tests of :mod:`oodml.analysis.export`: Markdown and booktabs tables."""

from __future__ import annotations

import pandas as pd

from oodml import analysis as A


def test_markdown_and_booktabs_writers():
    df = pd.DataFrame({"loss": ["a_b", "c&d"], "auc": [61.23456, float("nan")], "n": [3, 2]})
    md = A.to_markdown(df)
    assert md.splitlines()[1] == "| :--- | ---: | ---: |" and "| a_b | 61.23 | 3 |" in md and "| c&d |  | 2 |" in md
    tex = A.to_latex(df, caption="cap")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "{lrr}" in tex
    assert "a\\_b & 61.23 & 3 \\\\" in tex and "c\\&d &  & 2 \\\\" in tex
