"""oodml.io: atomic writes, canonical JSON, safe YAML, restricted unpickling, safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import BadInputError, UnsafeFileError
from oodml.io import (
    atomic_open,
    atomic_write,
    dumps_json,
    file_digest,
    load_yaml,
    read_json,
    restricted_pickle_load,
    safe_extract,
    stable_hash,
    write_json,
)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert _listing(tmp_path) == ["sub", "sub/out.txt"]


def test_atomic_open_error_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as fh:
            fh.write(b"half of the new cont")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["out.bin"]


def test_atomic_open_error_creates_nothing_when_new(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new.txt", "w") as fh:
            fh.write("partial")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_atomic_open_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "a"):
            pass


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------
def test_canonical_json_is_deterministic(tmp_path):
    obj = {
        "b": np.float32(0.5),
        "a": [np.int64(3), np.arange(3), float("nan"), float("inf")],
        "flag": np.bool_(True),
        "path": Path("x/y"),
    }
    write_json(tmp_path / "one.json", obj)
    write_json(tmp_path / "two.json", dict(obj))
    one = (tmp_path / "one.json").read_bytes()
    assert one == (tmp_path / "two.json").read_bytes()
    assert one.endswith(b"\n")
    back = json.loads(one)
    assert list(back) == ["b", "a", "flag", "path"]  # insertion order kept
    assert back["a"] == [3, [0, 1, 2], None, None]
    assert back["flag"] is True and back["path"] == "x/y"
    assert read_json(tmp_path / "one.json") == back
    assert dumps_json({"k": 1}, indent=None) == '{"k": 1}\n'


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_read_json_truncated_is_clear(tmp_path):
    p = tmp_path / "cut.json"
    p.write_text('{"a": [1, 2', encoding="utf-8")
    with pytest.raises(BadInputError, match="cut.json.*not valid JSON"):
        read_json(p)
    with pytest.raises(BadInputError, match="does not exist"):
        read_json(tmp_path / "absent.json")


# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------
def test_load_yaml_refuses_python_tags(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"x: !!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="evil.yaml"):
        load_yaml(p)
    assert not marker.exists()


def test_load_yaml_plain(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("a: 1\nb: [x, y]\n", encoding="utf-8")
    assert load_yaml(p) == {"a": 1, "b": ["x", "y"]}


# ---------------------------------------------------------------------------------------------
# pickle
# ---------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_restricted_pickle_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"weights": _Evil(f"touch {marker}")}))
    with pytest.raises(UnsafeFileError, match=r"evil\.pkl.*(posix|os)\.system"):
        restricted_pickle_load(p)
    assert not marker.exists()


def test_restricted_pickle_loads_plain_data(tmp_path):
    p = tmp_path / "ok.pkl"
    data = {"x": np.arange(4, dtype=np.float32), "names": ["a", "b"], "n": 3, "t": (1.5, None)}
    p.write_bytes(pickle.dumps(data))
    back = restricted_pickle_load(p)
    assert back["names"] == ["a", "b"] and back["t"] == (1.5, None)
    np.testing.assert_array_equal(back["x"], data["x"])


def test_restricted_pickle_truncated(tmp_path):
    p = tmp_path / "cut.pkl"
    p.write_bytes(pickle.dumps(list(range(100)))[:20])
    with pytest.raises(BadInputError, match="cut.pkl"):
        restricted_pickle_load(p)


# ---------------------------------------------------------------------------------------------
# archives
# ---------------------------------------------------------------------------------------------
def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_safe_extract_good_archives(tmp_path):
    tgz = _tar(tmp_path / "good.tgz", [("data/a.txt", b"A"), ("data/sub/b.txt", b"B"), _symlink("data/link", "a.txt")])
    zp = _zip(tmp_path / "good.zip", [("other/c.txt", b"C")])
    out = tmp_path / "out"
    assert safe_extract(tgz, out) == ["data"]
    assert safe_extract(zp, out) == ["other"]
    assert (out / "data" / "sub" / "b.txt").read_bytes() == b"B"
    assert (out / "data" / "link").read_bytes() == b"A"
    assert (out / "other" / "c.txt").read_bytes() == b"C"
    assert not [p for p in out.iterdir() if p.name.startswith(".extract-")]


@pytest.mark.parametrize(
    "kind,member",
    [
        ("tar", "../escaped.txt"),
        ("tar", "data/../../escaped.txt"),
        ("tar", "/tmp/oodml-absolute-escape.txt"),
        ("zip", "../escaped.txt"),
        ("zip", "/tmp/oodml-absolute-escape.txt"),
    ],
)
def test_safe_extract_refuses_escaping_members(tmp_path, kind, member):
    members = [("data/ok.txt", b"ok"), (member, b"evil")]
    archive = _tar(tmp_path / "evil.tgz", members) if kind == "tar" else _zip(tmp_path / "evil.zip", members)
    out = tmp_path / "out"
    with pytest.raises(UnsafeFileError, match=r"evil\.(tgz|zip).*outside"):
        safe_extract(archive, out)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/oodml-absolute-escape.txt").exists()
    assert _listing(out) == []  # nothing extracted, not even the harmless member


@pytest.mark.parametrize("link", ["../../outside.txt", "/etc/passwd"])
def test_safe_extract_refuses_escaping_symlinks(tmp_path, link):
    archive = _tar(tmp_path / "link.tgz", [("data/ok.txt", b"ok"), _symlink("data/evil", link)])
    out = tmp_path / "out"
    with pytest.raises(UnsafeFileError, match="link.tgz"):
        safe_extract(archive, out)
    assert _listing(out) == []


def test_safe_extract_refuses_device_files(tmp_path):
    dev = tarfile.TarInfo("data/null")
    dev.type = tarfile.CHRTYPE
    archive = _tar(tmp_path / "dev.tgz", [dev])
    with pytest.raises(UnsafeFileError, match="special file"):
        safe_extract(archive, tmp_path / "out")


def test_safe_extract_truncated_or_not_an_archive(tmp_path):
    big = os.urandom(200_000)
    tgz = _tar(tmp_path / "full.tgz", [("data/big.bin", big)])
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(tgz.read_bytes()[: len(tgz.read_bytes()) // 2])
    with pytest.raises(BadInputError, match="cut.tgz"):
        safe_extract(cut, tmp_path / "out")
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"this is an HTML error page, not an archive")
    with pytest.raises(BadInputError, match="junk.tgz.*neither"):
        safe_extract(junk, tmp_path / "out2")
    assert not [p for p in (tmp_path / "out").iterdir()]


def test_file_digest_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 3_000_001)
    assert file_digest(p, chunk=1 << 16) == hashlib.md5(b"x" * 3_000_001).hexdigest()
    assert file_digest(p, "sha256") == hashlib.sha256(b"x" * 3_000_001).hexdigest()
