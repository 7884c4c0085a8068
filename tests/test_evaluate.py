"""oodml.evaluate, the command: JSON and table output, one-line errors for bad files and flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oodml.evaluate import evaluate_embeddings, main


def _clustered(n_classes=40, d=12, seed=0, max_size=9, spread=1.2):
    """Unequal class sizes 1..max_size (singletons included), classes as noisy centres."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_classes)
    y = np.repeat(np.arange(n_classes), sizes)
    y = y[rng.permutation(len(y))]
    centres = spread * rng.standard_normal((n_classes, d))
    x = (centres[y] + rng.standard_normal((len(y), d))).astype(np.float32)
    return x, y


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _write(tmp_path, name="emb.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_cli_json_prints_one_object(tmp_path, capsys):
    x, y = _clustered(seed=10)
    path = _write(tmp_path, embeddings=x, labels=np.array([f"c{v}" for v in y]))
    assert main([str(path), "--json", "--ks", "sop", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    got = json.loads(out)
    assert list(got) == [
        "recall@1",
        "recall@10",
        "recall@100",
        "recall@1000",
        "precision@1",
        "r_precision",
        "map@r",
        "nmi",
    ]
    assert got == pytest.approx(evaluate_embeddings(x, y, ks="sop"))
    assert main([str(path), "--ks", "1", "2", "4", "8", "-q"]) == 0
    table = capsys.readouterr().out
    assert "recall@8" in table and "map@r" in table and "nmi" in table


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("no_labels", "no 'labels'"),
        ("wrong_shape", "must be an (n, d)"),
        ("label_count", "one per embedding"),
        ("nan", "NaN"),
        ("pickled", "without pickle"),
        ("not_npz", "not a readable"),
        ("bad_ks", "--ks"),
    ],
)
def test_cli_bad_files_give_one_line_errors(tmp_path, capsys, case, expected):
    x, y = _clustered(seed=11)
    args = []
    if case == "missing":
        path = tmp_path / "nope.npz"
    elif case == "no_labels":
        path = _write(tmp_path, embeddings=x, targets=y)
    elif case == "wrong_shape":
        path = _write(tmp_path, embeddings=x[:, 0], labels=y)
    elif case == "label_count":
        path = _write(tmp_path, embeddings=x, labels=y[:-3])
    elif case == "nan":
        x[3, 1] = np.nan
        path = _write(tmp_path, embeddings=x, labels=y)
    elif case == "pickled":
        path = _write(tmp_path, embeddings=x, labels=np.array([{"c": v} for v in y], dtype=object))
    elif case == "not_npz":
        path = tmp_path / "emb.npz"
        path.write_text("not an archive")
    else:
        path = _write(tmp_path, embeddings=x, labels=y)
        args = ["--ks", "1", "two"]
    assert main([str(path), "--json", "-q", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    if case != "bad_ks":
        assert str(path) in lines[0]
