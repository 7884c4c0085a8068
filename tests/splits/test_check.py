"""Tests of oodml.splits.check: recomputing a split file's FIDs."""

from __future__ import annotations

import json

import pytest

from oodml.splits import (
    check_split_file,
    load_splits,
    write_split_document,
)


def test_check_recomputes_fids(tmp_path, doc40):
    doc, x, lab, cls = doc40
    path = tmp_path / "s.json"
    write_split_document(path, doc)
    rep = check_split_file(load_splits(path), x, lab, cls)
    assert rep.ok and len(rep.rows) == len(doc["series"]) + len(doc["trajectory"])
    d = json.loads(path.read_text())
    d["trajectory"][3]["fid"] *= 1.01
    path.write_text(json.dumps(d))
    rep = check_split_file(load_splits(path), x, lab, cls)
    assert not rep.ok and len(rep.mismatches) == 1 and rep.mismatches[0].startswith("step 3: stored FID")
    bad = [r for r in rep.rows if not r["ok"]]
    assert bad[0]["recomputed"] == pytest.approx(doc["trajectory"][3]["fid"], rel=1e-9)
