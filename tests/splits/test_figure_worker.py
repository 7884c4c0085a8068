"""The split figure drawn by the helper process of ``make_splits`` (oodml.splits.figure_worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oodml.errors import OodmlError
from oodml.splits.figure import plot_split_series
from oodml.splits.figure_worker import FigureWorker

SPLITS = Path(__file__).resolve().parents[2] / "splits" / "glyphs.json"


def test_the_child_writes_the_same_bytes_as_an_in_process_drawing(tmp_path):
    FigureWorker().start().draw(SPLITS, tmp_path / "child")
    plot_split_series(SPLITS, tmp_path / "here")
    for ext in ("png", "pdf"):
        child = (tmp_path / f"child.{ext}").read_bytes()
        assert len(child) > 1000 and child == (tmp_path / f"here.{ext}").read_bytes()


def test_a_failing_child_is_one_error_naming_the_figure_and_the_cause(tmp_path):
    worker = FigureWorker().start()
    with pytest.raises(
        OodmlError, match=r"drawing the split figure .*bad\.png failed: .*(No such file|does not exist)"
    ):
        worker.draw(tmp_path / "missing.json", tmp_path / "bad")
    assert not (tmp_path / "bad.png").exists()


def test_close_stops_an_idle_child_and_is_idempotent():
    worker = FigureWorker().start()
    proc = worker.proc
    worker.close()
    assert worker.proc is None and proc.returncode is not None
    worker.close()
    with pytest.raises(OodmlError, match="not started"):
        worker.wait()


def test_the_command_stops_its_figure_child_when_it_fails_first(tmp_path, monkeypatch, capsys):
    from oodml.splits import cli

    started = []
    real_start = FigureWorker.start

    def start(self):
        started.append(self)
        return real_start(self)

    monkeypatch.setattr(FigureWorker, "start", start)
    bad = tmp_path / "feats.npz"
    bad.write_bytes(b"not a zip")
    rc = cli.main(["--features-file", str(bad), "--out", str(tmp_path / "s.json"), "--figure", str(tmp_path / "f")])
    assert rc == 2
    assert len(started) == 1 and started[0].proc is None  # the idle child was stopped
    assert not (tmp_path / "f.png").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a readable .npz (not a zip archive" in err[0]
