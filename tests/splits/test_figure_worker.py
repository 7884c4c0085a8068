"""The split figure drawn by the helper process of ``make_splits`` (oodml.splits.figure_worker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_a_figure_rendered_from_the_view_is_written_only_at_commit_and_equals_the_files_figure(tmp_path):
    """make_splits hands the child the figure's view of the document before the file is written;
    the child renders it at once and writes the files only when the parent commits."""
    from oodml.splits import load_splits
    from oodml.splits.figure import figure_view

    sf = load_splits(SPLITS)
    view = figure_view(sf.provenance, sf.trajectory, sf.series)
    worker = FigureWorker().start()
    worker.request_view(view, tmp_path / "child")
    assert worker.requested and not (tmp_path / "child.png").exists()
    worker.commit()
    worker.wait()
    plot_split_series(SPLITS, tmp_path / "here")
    for ext in ("png", "pdf"):
        assert (tmp_path / f"child.{ext}").read_bytes() == (tmp_path / f"here.{ext}").read_bytes()


def test_without_a_commit_the_child_writes_nothing(tmp_path):
    from oodml.splits import load_splits
    from oodml.splits.figure import figure_view

    sf = load_splits(SPLITS)
    worker = FigureWorker().start()
    worker.request_view(figure_view(sf.provenance, sf.trajectory, sf.series), tmp_path / "never")
    worker.wait()  # the parent ends without committing: the pipe closes
    assert not list(tmp_path.iterdir())
    with pytest.raises(OodmlError, match="no figure was requested"):
        FigureWorker().commit()


def test_a_command_that_fails_after_its_series_was_selected_leaves_no_figure(tmp_path, monkeypatch, capsys):
    from oodml.errors import BadInputError
    from oodml.splits import cli, make

    def refuse(doc, source, dataset=None):
        raise BadInputError(f"split file {source}: refused by the test")

    monkeypatch.setattr(make, "validate_split_document", refuse)
    table = tmp_path / "feats.npz"
    rng = np.random.default_rng(0)
    np.savez(table, features=rng.normal(size=(120, 8)).astype(np.float32), labels=np.repeat(np.arange(12), 10))
    rc = cli.main(["--features-file", str(table), "--out", str(tmp_path / "s.json"), "--figure", str(tmp_path / "f")])
    assert rc == 2 and "refused by the test" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npz"]  # no split file, no figure


@pytest.mark.parametrize(
    "argv, wanted",
    [
        (["--features-file", "f.npz"], True),
        ([], True),
        (["--figure", "out/fig"], True),
        (["--figure", "none"], False),
        (["--figure=NONE"], False),
        (["--check", "s.json"], False),
        (["--import-oodml=x.json"], False),
        (["--help"], False),
        (["-h"], False),
        (["--version"], False),
        (["--figure"], True),  # argparse reports the missing value
    ],
)
def test_the_early_start_guesses_from_the_raw_arguments(argv, wanted):
    from oodml.figure_process import wants_figure

    assert wants_figure(argv) is wanted


def test_an_early_process_is_adopted_once_or_stopped(monkeypatch):
    from oodml import figure_process

    monkeypatch.setattr(figure_process, "_early", None)
    figure_process.start_early(["--figure", "none"])
    assert figure_process.take_early() is None  # no figure: no process
    figure_process.start_early(["--features-file", "f.npz"])
    proc = figure_process.take_early()
    assert proc is not None and proc.poll() is None and figure_process.take_early() is None
    worker = FigureWorker()
    monkeypatch.setattr(figure_process, "_early", proc)
    assert worker.start().proc is proc  # the worker adopts it
    worker.close()
    figure_process.start_early([])
    early = figure_process._early
    figure_process.discard_early()  # not adopted: stopped
    assert early.returncode is not None and figure_process.take_early() is None
