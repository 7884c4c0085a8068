"""Tests of :mod:`oodml.features.prefetch` (a ``--features-file`` read while the command imports)
and of the command's whole-process path that uses it (:func:`oodml.cli.exit_process`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import BadInputError
from oodml.features import files, prefetch

ROOT = Path(__file__).resolve().parents[2]


def _table(path: Path, seed: int = 0, classes: int = 12, per_class: int = 6, d: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"c{k:02d}" for k in range(classes)], per_class)
    feats = rng.normal(size=(labels.size, d)).astype(np.float32) + np.repeat(
        rng.normal(size=(classes, d)), per_class, 0
    )
    np.savez(path, features=feats, labels=labels)
    return path


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["--features-file", "f.npz", "--out", "s.json"], "f.npz"),
        (["--out", "s.json", "--features-file=dir/f.npz"], "dir/f.npz"),
        (["--check", "s.json", "--features-file", "f.npz"], "f.npz"),  # a check reads it too
        (["--features-file", "f.npz", "--help"], None),
        (["--version", "--features-file", "f.npz"], None),
        (["--dataset", "cub"], None),
        (["--features-file"], None),  # argparse will say what is missing
    ],
)
def test_the_file_is_guessed_from_the_raw_arguments(argv, wanted):
    assert prefetch.features_file_argument(argv) == wanted


def test_a_prefetched_table_is_the_table_read_directly_and_is_taken_once(tmp_path, monkeypatch):
    path = _table(tmp_path / "f.npz")
    monkeypatch.chdir(tmp_path)
    direct = files.load_features_file(path)
    prefetch.start(["--features-file", "f.npz"])  # relative here, absolute below: the same file
    calls = []
    real = files.load_features_file
    monkeypatch.setattr(files, "load_features_file", lambda p: calls.append(p) or real(p))
    got = prefetch.load_features_file(path)
    assert calls == []  # read by the thread (which held the real function), not again here
    np.testing.assert_array_equal(got.features, direct.features)
    assert (got.labels, got.classes, got.fingerprint) == (direct.labels, direct.classes, direct.fingerprint)
    again = prefetch.load_features_file(path)  # the prefetched table is handed out once
    assert calls == [path] and again.fingerprint == direct.fingerprint


def test_an_error_of_the_background_read_is_raised_by_the_caller(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BadInputError) as direct:
        files.load_features_file(bad)
    prefetch.start(["--features-file", str(bad)])
    with pytest.raises(BadInputError) as err:
        prefetch.load_features_file(bad)
    assert str(err.value) == str(direct.value) and "not a readable .npz" in str(err.value)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OODML_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("entry", [["-m", "oodml.make_splits"], ["-m", "oodml", "make_splits"]])
def test_the_command_as_a_process_writes_what_the_library_writes(tmp_path, entry):
    """Both entry points prefetch the table and end through exit_process: the split file is the
    library's, byte for byte, the summary reaches stdout, and a bad file is still one line."""
    from oodml.splits.make import make_splits

    path = _table(tmp_path / "f.npz", seed=1)
    lib = tmp_path / "lib.json"
    make_splits(features_file=path, out=lib, progress=False)
    res = _run([*entry, "--features-file", "f.npz", "--out", "cli.json", "--figure", "none", "--quiet"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "cli.json").read_bytes() == lib.read_bytes()
    assert res.stdout.startswith("wrote cli.json: ") and len(json.loads(lib.read_text())["series"]) >= 2
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    res = _run([*entry, "--features-file", "bad.npz", "--out", "x.json", "--quiet"], tmp_path)
    assert res.returncode == 2 and not (tmp_path / "x.json").exists()
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: features file bad.npz is not a readable .npz"), res.stderr


def test_the_fast_exit_only_when_nothing_but_the_launcher_runs_below(tmp_path):
    """A script file run by Python (as a console script is) may end at once; under a wrapping
    script (runpy, as benchmarks/bench_sop measures a stage), a profiler or pytest it may not, so
    their code after the command still runs (exit_process raises SystemExit there)."""
    from oodml.cli import _launched_directly, exit_process

    assert not _launched_directly()  # pytest's frames are below this one
    with pytest.raises(SystemExit) as exc:
        exit_process(3)
    assert exc.value.code == 3
    probe = tmp_path / "probe.py"
    probe.write_text("from oodml.cli import _launched_directly\nprint(_launched_directly())\n")
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(f"import runpy\nrunpy.run_path({str(probe)!r}, run_name='__main__')\n")
    assert _run([str(probe)], tmp_path).stdout.strip() == "True"
    assert _run([str(wrapper)], tmp_path).stdout.strip() == "False"
    assert _run(["-m", "cProfile", "-o", str(tmp_path / "p.out"), str(probe)], tmp_path).stdout.strip() == "False"


def test_a_command_run_by_a_wrapping_script_returns_to_it(tmp_path):
    """make_splits under runpy.run_module (a profiler's or benchmark's way) ends with SystemExit."""
    path = _table(tmp_path / "f.npz", seed=2)
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['make_splits', '--features-file', {str(path)!r}, '--out', 's.json', '--figure', 'none', '-q']\n"
        "try:\n    runpy.run_module('oodml.make_splits', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n    print('returned', exc.code)\n"
    )
    res = _run(["-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("returned 0") and (tmp_path / "s.json").exists()
