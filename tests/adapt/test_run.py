"""run_adaptation on a run folder (oodml.adapt.run): a repeated run writes the same record."""

from __future__ import annotations

import shutil

from oodml import adapt as A


def _fresh_copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    (dst / "adaptation.json").unlink(missing_ok=True)
    return dst


def test_fewshot_record_is_byte_identical_when_repeated(trained, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        run = _fresh_copy(trained, d)
        A.run_adaptation(run, mode="fewshot", shots=[2], episodes=2, iterations=20, progress=False)
    assert (a / "run" / "adaptation.json").read_bytes() == (b / "run" / "adaptation.json").read_bytes()
