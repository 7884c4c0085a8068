"""Tests of :mod:`oodml.features.cli` (``python -m oodml.features``).

Every dataset here is a tiny folder tree of PNGs the test writes (fixtures in conftest.py); every
network gets random weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

from __future__ import annotations

from oodml.features import (
    FID_INCEPTION_FILE,
    load_features_file,
    main,
)


def test_cli_extracts_and_exports(folder_ds, tmp_path, capsys):
    out = tmp_path / "exported.npz"
    common = ["--dataset", "folder", "--root", str(folder_ds.root), "-q"]
    rc = main(common + ["--extractor", "hog", "--workers", "0", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "12 images, 4 classes" in text and "324-d" in text
    fs = load_features_file(out)
    assert fs.features.shape == (12, 324) and fs.classes == folder_ds.classes
    assert main(common + ["--extractor", "inception"]) == 2
    assert FID_INCEPTION_FILE in capsys.readouterr().err
