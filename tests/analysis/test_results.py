"""Tests of :mod:`oodml.analysis.results`: loading and validating a results table."""

from __future__ import annotations

import pytest

from oodml import analysis as A
from oodml import plot as P
from oodml.errors import BadInputError

COLS = list(A.REQUIRED_COLUMNS)


def test_table_missing_column_or_bad_value_is_a_clear_error(tmp_path, synthetic):
    df = synthetic({"g": [0.1, 0.2]}, ["margin"], [0])
    bad = tmp_path / "results.csv"
    df.drop(columns=["fid"]).to_csv(bad, index=False)
    with pytest.raises(BadInputError, match=r"results\.csv lacks column\(s\) fid"):
        A.load_results(bad)
    df2 = df.astype({"value": object})
    df2.loc[1, "value"] = "oops"
    df2.to_csv(bad, index=False)
    with pytest.raises(BadInputError, match=r"results\.csv, row 2 .*'value' has 'oops'"):
        A.load_results(bad)
    with pytest.raises(BadInputError, match="does not exist"):
        A.load_results(tmp_path / "missing.csv")
    assert P.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    df.to_csv(bad, index=False)
    with pytest.raises(BadInputError, match="no zero-shot rows of metric 'nmi'"):
        P.make_all(bad, tmp_path / "o", "nmi")
    # round trip: types normalised, the standard split (empty) kept as <NA>
    df.loc[0, "split"] = None
    df.to_csv(bad, index=False)
    back = A.load_results(bad)
    assert list(back.columns) == COLS and str(back["split"].dtype) == "Int64" and back["split"].isna().sum() == 1
