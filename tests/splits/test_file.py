"""Tests of oodml.splits.file: writing, loading and validating split files."""

from __future__ import annotations

import json

import pytest

from oodml.errors import BadInputError
from oodml.splits import (
    dumps_split_document,
    load_splits,
    write_split_document,
)


def test_file_is_byte_identical_and_loads(tmp_path, doc40, make_dataset, small_doc):
    doc = doc40[0]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_split_document(a, doc)
    write_split_document(b, small_doc()[0])  # recomputed from scratch
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.json"
    write_split_document(c, small_doc(seed=1)[0])
    assert c.read_bytes() != a.read_bytes()  # the seed changes val/episodes
    sf = load_splits(a, dataset=make_dataset(doc40[3]))
    assert sf.ids == [1, 2, 3, 4, 5] and sf.provenance["seed"] == 0
    s = sf.get(3)
    assert s.fit_classes == [c for c in s.train if c not in s.val]
    assert set(s.episodes) == {1, 2, 5, 10} and isinstance(next(iter(s.episodes[2][0].values()))[0], int)
    assert sf.standard is not None and sf.standard.standard
    with pytest.raises(BadInputError, match="no split with id 9"):
        sf.get(9)
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left


def tamper(tmp_path, doc, fn, name="bad.json"):
    d = json.loads(dumps_split_document(doc))
    fn(d)
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize(
    "fn,match",
    [
        (lambda d: d["series"][1]["test"].append(d["series"][1]["train"][0]), "both train and test"),
        (lambda d: d["series"][0]["train"].append("no-such-class"), "unknown class 'no-such-class'"),
        (lambda d: d.__setitem__("schema", "oodml.splits/99"), "unknown schema"),
        (lambda d: d["series"][2].__setitem__("id", d["series"][1]["id"]), "appears twice"),
        (lambda d: d["series"][0].__setitem__("fid", d["series"][-1]["fid"] + 1), "order of FID"),
        (lambda d: d["series"][0]["val"].append(d["series"][0]["test"][0]), "not a train class"),
        (lambda d: d["series"][0]["episodes"]["2"][0].__setitem__(d["series"][0]["test"][0], [1]), "2 distinct"),
        (lambda d: d["series"][0]["episodes"]["1"][0].__setitem__(d["series"][0]["train"][0], [0]), "not a test class"),
        (lambda d: d["series"][0]["episodes"]["2"][0].__setitem__(d["series"][0]["test"][0], [3, 3]), "2 distinct"),
        (lambda d: d["series"][0]["episodes"]["1"][0].__setitem__(d["series"][0]["test"][0], [True]), "1 distinct"),
        (lambda d: d["series"][0]["episodes"]["1"][0].__setitem__(d["series"][0]["test"][0], [10**6]), "1 distinct"),
        (lambda d: d["series"][0]["episodes"]["1"][0].__setitem__(d["series"][0]["test"][0], [2**70]), "1 distinct"),
        (lambda d: d["trajectory"][1].__setitem__("phase", "sideways"), "unknown phase"),
        (lambda d: d.pop("series"), "missing field 'series'"),
    ],
)
def test_bad_files_are_refused_with_the_file_named(tmp_path, doc40, fn, match):
    path = tamper(tmp_path, doc40[0], fn)
    with pytest.raises(BadInputError, match=match) as err:
        load_splits(path)
    assert str(path) in str(err.value)


def test_dataset_checks(tmp_path, doc40, make_dataset):
    doc, _, _, cls = doc40
    path = tmp_path / "s.json"
    write_split_document(path, doc)
    renamed = make_dataset(cls)
    renamed.name = "renamed"
    with pytest.warns(UserWarning, match="fingerprint differs"):
        load_splits(path, dataset=renamed)
    other = make_dataset([c.upper() for c in cls])
    with pytest.raises(BadInputError, match="does not exist in dataset"):
        load_splits(path, dataset=other)
    with pytest.raises(BadInputError, match="images"):
        load_splits(path, dataset=make_dataset(cls, per=5))

    # an episode image that belongs to another class
    def wrong_image(d):
        s = d["series"][0]
        c = s["test"][0]
        s["episodes"]["1"][0][c] = [0]  # image 0 belongs to class 0 (a train class here)

    bad = tamper(tmp_path, doc, wrong_image)
    with pytest.raises(BadInputError, match="belongs to"):
        load_splits(bad, dataset=make_dataset(cls))
    (tmp_path / "trunc.json").write_text(path.read_text()[:100])
    with pytest.raises(BadInputError, match="not valid JSON"):
        load_splits(tmp_path / "trunc.json")
    with pytest.raises(BadInputError, match="does not exist"):
        load_splits(tmp_path / "missing.json")


def test_read_series_gives_the_entries_a_study_plans_with(tmp_path):
    from oodml.errors import BadInputError
    from oodml.splits import read_series

    good = tmp_path / "s.json"
    good.write_text('{"series": [{"id": 1, "fid": 0.5}, {"id": 2, "fid": 0.9}]}')
    assert [s["id"] for s in read_series(good)] == [1, 2]
    bad = tmp_path / "bad.json"
    bad.write_text('{"series": [{"fid": 0.5}]}')
    with pytest.raises(BadInputError, match=r"bad\.json \(datasets\[0\]\.splits\) has no valid 'series' list"):
        read_series(bad, "datasets[0].splits")
