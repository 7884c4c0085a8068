"""End-to-end tests of ``python -m oodml.make_splits`` (build, --check, --import-oodml, figure)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from oodml.make_splits import cli
from oodml.splits import load_splits


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")


def synthetic_npz(path, C=40, per=6, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d)) * 3
    g = (np.arange(C) * 5) // C
    flip = rng.random(C) < 0.5
    g[flip] = rng.integers(0, 5, flip.sum())
    means = centres[g] + rng.normal(size=(C, d))
    lab = np.repeat(np.arange(C), per)
    x = (means[lab] + 0.5 * rng.normal(size=(lab.size, d))).astype(np.float32)
    np.savez(path, features=x, labels=np.array([f"k{c:02d}" for c in lab]))
    return path


def run(argv, capsys):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_from_features_file_check_and_tamper(tmp_path, capsys):
    npz = synthetic_npz(tmp_path / "feats.npz")
    out, fig = tmp_path / "splits" / "syn.json", tmp_path / "fig" / "splits_syn"
    args = [
        "--features-file",
        npz,
        "--dataset",
        "syn",
        "--out",
        out,
        "--figure",
        fig,
        "--num-splits",
        "6",
        "--episodes",
        "2",
        "--min-classes",
        "5",
        "--patience",
        "3",
    ]
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    assert "id" in stdout and "FID" in stdout and "start (std)" in stdout  # the summary table
    assert len([ln for ln in stdout.splitlines() if ln.strip()[:1].isdigit()]) == 6
    sf = load_splits(out)
    assert sf.provenance["source"] == "features-file" and sf.provenance["dataset"] == "syn"
    assert sf.provenance["params"]["num_splits"] == 6 and sf.provenance["params"]["min_classes"] == 5
    assert sf.ids == list(range(1, 7)) and sf.standard is not None
    png, pdf = fig.with_suffix(".png"), fig.with_suffix(".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    first = [p.read_bytes() for p in (out, png, pdf)]
    assert run(args, capsys)[0] == 0
    assert [p.read_bytes() for p in (out, png, pdf)] == first  # byte-identical files

    code, stdout, err = run(["--check", out, "--features-file", npz, "--quiet"], capsys)
    assert code == 0, err
    code, stdout, err = run(["--check", out, "--features-file", npz], capsys)
    assert code == 0 and "OK" in stdout
    # without the features file: a clear error
    code, _, err = run(["--check", out], capsys)
    assert code == 2 and "--features-file" in err
    # a tampered FID (order kept) is reported
    d = json.loads(out.read_text())
    d["series"][-1]["fid"] *= 1.001
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(d))
    code, stdout, err = run(["--check", bad, "--features-file", npz], capsys)
    assert code == 2 and err.startswith("error:") and "mismatch" in err and str(bad) in err
    assert "MISMATCH split 6" in stdout
    # other features: refused
    other = synthetic_npz(tmp_path / "other.npz", seed=1)
    code, _, err = run(["--check", out, "--features-file", other], capsys)
    assert code == 2 and "other features" in err


def make_folder_dataset(root, C=12, per=5, size=12, seed=0):
    """root/<class>/<i>.png: classes in 3 visual groups (bright, dark, striped)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(C):
        d = root / f"{c + 1:03d}.Class_{c}"
        d.mkdir(parents=True)
        base = [0.85, 0.2, 0.5][(c * 3) // C] * 255
        for i in range(per):
            img = np.clip(base + 25 * rng.normal(size=(size, size)) + (c % 4) * 10, 0, 255)
            if (c * 3) // C == 2:
                img[::3] = 255
            Image.fromarray(img.astype(np.uint8), "L").convert("RGB").save(d / f"img_{c}_{i}.png")
    return root


def test_build_from_folder_dataset_and_check(tmp_path, capsys):
    root = make_folder_dataset(tmp_path / "imgs")
    out = tmp_path / "folder.json"
    args = [
        "--dataset",
        "folder",
        "--root",
        root,
        "--features",
        "pixels",
        "--out",
        out,
        "--figure",
        "none",
        "--episodes",
        "2",
        "--min-classes",
        "3",
        "--num-splits",
        "4",
        "--level",
        "image",
    ]
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    from oodml.datasets import load_dataset

    ds = load_dataset("folder", root=root)
    sf = load_splits(out, dataset=ds)
    assert sf.provenance["extractor"] == "pixels" and sf.provenance["level"] == "image"
    assert sf.provenance["fingerprint"] == ds.fingerprint()
    assert sf.num_images == len(ds)
    assert not (tmp_path / "figures").exists()
    code, stdout, err = run(["--check", out, "--root", root], capsys)
    assert code == 0, err


def test_import_oodml(tmp_path, capsys):
    root = make_folder_dataset(tmp_path / "imgs", C=12, per=6)
    classes = sorted(p.name for p in root.iterdir())
    ds_files = {c: sorted(p.name for p in (root / c).iterdir()) for c in classes}
    ref = {}
    layouts = [
        (classes[:6], classes[6:], 20.5),
        (classes[1:7], [classes[0]] + classes[7:], 11.0),
        (classes[:4], classes[8:], 33.0),
    ]
    for key, (tr, te, fid) in enumerate(layouts, 1):
        ref[key] = {
            "train": tr,
            "test": te,
            "fid": np.float64(fid),
            "split_train": tr[2:],
            "split_val": tr[:2],
            "test_episodes": {2: {e: {c: ds_files[c][e : e + 2] for c in te} for e in (1, 2)}},
        }
    pkl = tmp_path / "folder_splits.pkl"
    pkl.write_bytes(pickle.dumps(ref))
    out, fig = tmp_path / "imported.json", tmp_path / "imported"
    code, stdout, err = run(
        ["--import-oodml", pkl, "--dataset", "folder", "--root", root, "--out", out, "--figure", fig], capsys
    )
    assert code == 0, err
    sf = load_splits(out)
    assert [s.fid for s in sf.series] == [11.0, 20.5, 33.0]
    assert sf.get(2).standard and sf.get(2).val == classes[:2]
    from oodml.datasets import load_dataset

    ds = load_dataset("folder", root=root)
    ep = sf.get(1).episodes[2][0]  # reference episode 1 of split with FID 11
    for c, ids in ep.items():
        assert [os.path.basename(ds.items[i].path) for i in ids] == ds_files[c][1:3]
    assert fig.with_suffix(".png").exists()
    code, stdout, err = run(["--check", out, "--root", root], capsys)
    assert code == 0, err
    # a pickle that would run code is refused, and nothing runs
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({1: {"train": Evil(), "test": [], "fid": 0.0}}))
    code, _, err = run(
        ["--import-oodml", evil, "--dataset", "folder", "--root", root, "--out", tmp_path / "e.json"], capsys
    )
    assert code == 2 and ("posix.system" in err or "os.system" in err) and "refusing" in err
    assert not marker.exists() and not (tmp_path / "e.json").exists()


def test_cli_errors(tmp_path, capsys):
    code, _, err = run(["--check", tmp_path / "missing.json"], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run(["--features-file", tmp_path / "nope.npz", "--out", tmp_path / "x.json"], capsys)
    assert code == 2 and err.startswith("error:")
    npz = synthetic_npz(tmp_path / "f.npz")
    code, _, err = run(["--features-file", npz, "--swaps-per-iter", "0", "--out", tmp_path / "x.json"], capsys)
    assert code == 2 and "swaps-per-iter" in err
    assert not (tmp_path / "x.json").exists()


def test_features_file_never_imports_torch_or_timm(tmp_path):
    """A feature table needs no network: the whole command runs without importing torch or timm
    (checked in a fresh interpreter, since this test process has long imported them)."""
    import subprocess
    import sys

    npz = synthetic_npz(tmp_path / "feats.npz")
    code = (
        "import sys\n"
        "from oodml.make_splits import cli\n"
        f"rc = cli(['--features-file', {str(npz)!r}, '--out', {str(tmp_path / 's.json')!r},\n"
        f"          '--figure', {str(tmp_path / 'fig')!r}, '--episodes', '2', '--min-classes', '5', '-q'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'torchvision'})\n"
        "print('HEAVY', heavy, rc)\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(__import__("pathlib").Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])
        ),
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "HEAVY [] 0" in res.stdout, res.stdout + res.stderr
    assert (tmp_path / "s.json").exists() and (tmp_path / "fig.png").exists()


def test_controls_are_written_matched_checked_and_tamper_evident(tmp_path, capsys):
    import json as _json

    from oodml.controls import CONTROL_PHASE

    npz = synthetic_npz(tmp_path / "feats.npz")
    out = tmp_path / "syn.json"
    args = [
        "--features-file",
        npz,
        "--dataset",
        "syn",
        "--out",
        out,
        "--figure",
        "none",
        "--num-splits",
        "6",
        "--episodes",
        "2",
        "--min-classes",
        "5",
        "--patience",
        "3",
        "--controls",
        "3",
    ]
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    assert "control of" in stdout
    sf = load_splits(out)
    std = sf.standard
    removal = [s for s in sf.series if len(s.train) < len(std.train) or len(s.test) < len(std.test)]
    assert removal, "the synthetic search should reach the removal phase"
    assert len(sf.controls) == 3 * len(removal)
    assert [c.id for c in sf.controls] == list(range(max(sf.ids) + 1, max(sf.ids) + 1 + len(sf.controls)))
    for c in sf.controls:
        ref = sf.get(c.control_of)
        assert c.phase == CONTROL_PHASE and sf.get(c.id) is c
        assert len(c.train) == len(ref.train) and len(c.test) == len(ref.test)
        assert set(c.train) <= set(std.train) and set(c.test) <= set(std.test) and set(c.val) <= set(c.train)
        assert all(len(ep) == len(c.test) for ep in c.episodes[1])
    draws = {(c.control_of, c.draw): (tuple(c.train), tuple(c.test)) for c in sf.controls}
    assert len(set(draws.values())) == len(draws)  # the draws differ
    first = out.read_bytes()
    assert run(args, capsys)[0] == 0 and out.read_bytes() == first  # seeded: byte-identical

    code, stdout, err = run(["--check", out, "--features-file", npz, "--quiet"], capsys)
    assert code == 0, err
    assert f"{len(sf.controls)} control FIDs" in stdout and "OK" in stdout

    doc = _json.loads(first)
    doc["controls"][0]["fid"] *= 1.5
    out.write_text(_json.dumps(doc))
    code, stdout, err = run(["--check", out, "--features-file", npz, "--quiet"], capsys)
    assert code == 2 and "control" in stdout and "MISMATCH" in stdout

    doc = _json.loads(first)
    doc["controls"][0]["test"] = doc["controls"][0]["test"][:-1]
    doc["controls"][0]["episodes"] = {}
    out.write_text(_json.dumps(doc))
    code, _, err = run(["--check", out, "--features-file", npz, "--quiet"], capsys)
    assert code == 2 and "classes but split" in err and "Traceback" not in err
    doc = _json.loads(first)
    doc["controls"][0]["id"] = doc["series"][0]["id"]
    out.write_text(_json.dumps(doc))
    code, _, err = run(["--check", out, "--features-file", npz, "--quiet"], capsys)
    assert code == 2 and "used twice" in err
    code, _, err = run(["--check", out, "--controls", "2"], capsys)
    assert code == 2 and "--controls" in err


def test_without_a_child_process_the_command_draws_the_figure_itself(tmp_path, monkeypatch):
    from oodml.splits.figure_worker import FigureWorker

    def no_process(self):
        raise OSError("no processes here")

    monkeypatch.setattr(FigureWorker, "start", no_process)
    table = synthetic_npz(tmp_path / "feats.npz")
    out, stem = tmp_path / "s.json", tmp_path / "fig"
    assert cli(["--features-file", str(table), "--out", str(out), "--figure", str(stem), "-q"]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 1000 and (tmp_path / "fig.pdf").stat().st_size > 1000
