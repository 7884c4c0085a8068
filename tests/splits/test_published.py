"""oodml.published_splits: the ooDML study's published split pickles imported faithfully, on
fake CARS (official car_ims/ and devkit layouts), CUB and SOP trees built here; names-only
import; provenance; the CLI (--import-oodml, --names-only, --redraw-episodes, --check
--recompute-fid)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodml.datasets import load_dataset
from oodml.errors import BadInputError, UnsafeFileError
from oodml.make_splits import cli as make_splits_cli
from oodml.published_splits import (
    EpisodeMappingError,
    dataset_from_filename,
    import_published,
    published_image_names,
)
from oodml.splits import SearchParams, import_oodml, load_splits, write_split_document

N_CLASSES = 6
CLASS_NAMES = [f"Make{c} Model {2000 + c}" for c in range(N_CLASSES)]

# (class id 1-based, side) of every CARS image in the official annotation order. Classes 1 and 4
# have a train and a test image that are both number 00001/00002 of their side: `_2` in the study.
CARS_IMAGES = [
    (1, "train"),
    (1, "test"),
    (2, "train"),
    (2, "test"),
    (3, "train"),
    (4, "test"),
    (4, "train"),
    (5, "train"),
    (5, "test"),
    (6, "test"),
    (6, "train"),
    (1, "train"),
    (2, "test"),
    (3, "test"),
    (4, "train"),
    (5, "test"),
    (6, "train"),
    (6, "test"),
    (3, "train"),
    (4, "test"),
]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path, format="JPEG")


def _class_names():
    arr = np.empty((1, N_CLASSES), dtype=object)
    for c, n in enumerate(CLASS_NAMES):
        arr[0, c] = n
    return arr


def _devkit_name_table():
    """Each official image's devkit side and file name (the k-th image of a side is {k:05d}.jpg)."""
    count = {"train": 0, "test": 0}
    out = []
    for _cls, side in CARS_IMAGES:
        count[side] += 1
        out.append((side, f"{count[side]:05d}.jpg"))
    return out


def make_cars_official(folder: Path, with_test_flag: bool = True) -> Path:
    from scipy.io import savemat

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class"] + (
        ["test"] if with_test_flag else []
    )
    ann = np.empty((1, len(CARS_IMAGES)), dtype=[(f, object) for f in fields])
    for i, (cls, side) in enumerate(CARS_IMAGES):
        rel = f"car_ims/{i + 1:06d}.jpg"
        _img(folder / rel, i)
        row = [
            rel,
            np.array([[1]]),
            np.array([[1]]),
            np.array([[5]]),
            np.array([[5]]),
            np.array([[cls]], dtype=np.uint8),
        ]
        if with_test_flag:
            row.append(np.array([[int(side == "test")]], dtype=np.uint8))
        ann[0, i] = tuple(row)
    savemat(str(folder / "cars_annos.mat"), {"annotations": ann, "class_names": _class_names()})
    return folder


def make_cars_devkit(folder: Path) -> Path:
    from scipy.io import savemat

    (folder / "devkit").mkdir(parents=True)
    savemat(str(folder / "devkit" / "cars_meta.mat"), {"class_names": _class_names()})
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    names = _devkit_name_table()
    for side in ("train", "test"):
        rows = [(i, cls) for i, (cls, s) in enumerate(CARS_IMAGES) if s == side]
        ann = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
        for j, (i, cls) in enumerate(rows):
            fname = names[i][1]
            _img(folder / f"cars_{side}" / fname, i)  # same pixels as the official image i
            ann[0, j] = (
                np.array([[1]]),
                np.array([[1]]),
                np.array([[5]]),
                np.array([[5]]),
                np.array([[cls]], dtype=np.uint8),
                fname,
            )
        mat = (
            folder / "devkit" / "cars_train_annos.mat" if side == "train" else folder / "cars_test_annos_withlabels.mat"
        )
        savemat(str(mat), {"annotations": ann})
    return folder


def study_names():
    """The study's image names per class: devkit names, `_2` for a test file whose name a train
    file of its class has."""
    out: dict[str, list[str]] = {c: [] for c in CLASS_NAMES}
    names = _devkit_name_table()
    order = sorted(range(len(CARS_IMAGES)), key=lambda i: (CARS_IMAGES[i][1] != "train", i))
    for i in order:
        c = CLASS_NAMES[CARS_IMAGES[i][0] - 1]
        n = names[i][1]
        out[c].append(n if n not in out[c] else n.replace(".jpg", "_2.jpg"))
    return out


def cars_pickle(path: Path, episodes: bool = True) -> Path:
    """Three splits in the published structure, numpy string scalars as the study's pickles."""
    s = np.str_
    names = study_names()
    layouts = [
        (CLASS_NAMES[:3], CLASS_NAMES[3:], 8.59),
        (CLASS_NAMES[1:4], [CLASS_NAMES[0]] + CLASS_NAMES[4:], 14.33),
        (CLASS_NAMES[:2], CLASS_NAMES[4:], 86.48),
    ]
    data = {}
    for key, (tr, te, fid) in enumerate(layouts, 1):
        entry = {
            "train": [s(c) for c in sorted(tr)],
            "test": [s(c) for c in sorted(te)],
            "fid": np.float64(fid),
            "split_train": [s(c) for c in tr[1:]],
            "split_val": [s(c) for c in tr[:1]],
        }
        if episodes:
            entry["test_episodes"] = {
                k: {e: {s(c): [s(n) for n in (names[c][-k:] if e == 0 else names[c][:k])] for c in te} for e in (0, 1)}
                for k in (1, 2)
            }
        data[key] = entry
    path.write_bytes(pickle.dumps(data))
    return path


def _support_files(ds, ids):
    return [os.path.relpath(ds.items[i].path, ds.root) for i in ids]


# --------------------------------------------------------------------------------------------
def test_dataset_from_filename():
    assert dataset_from_filename("x/cub200_splits.pkl") == "cub"
    assert dataset_from_filename("cars196_splits.pkl") == "cars"
    assert dataset_from_filename("online_products_splits.pkl") == "sop"
    assert dataset_from_filename("mine.pkl") is None


def test_cars_image_names_on_both_layouts(tmp_path):
    off = load_dataset("cars", root=make_cars_official(tmp_path / "o" / "cars196"))
    dev = load_dataset("cars", root=make_cars_devkit(tmp_path / "d" / "stanford_cars"))
    want = study_names()
    for ds in (off, dev):
        names = published_image_names(ds)
        assert names.problem is None
        assert {c: sorted(t) for c, t in names.names.items()} == {c: sorted(v) for c, v in want.items()}
    # the `_2` image of class 0 is the cars_test 00001.jpg, i.e. official image 2 (the first test image)
    assert "00001_2.jpg" in want[CLASS_NAMES[0]]
    i_dev = published_image_names(dev).names[CLASS_NAMES[0]]["00001_2.jpg"]
    i_off = published_image_names(off).names[CLASS_NAMES[0]]["00001_2.jpg"]
    assert _support_files(dev, [i_dev]) == ["cars_test/00001.jpg"]
    assert _support_files(off, [i_off]) == ["car_ims/000002.jpg"]
    # the same picture on both layouts
    assert np.array_equal(np.asarray(Image.open(dev.items[i_dev].path)), np.asarray(Image.open(off.items[i_off].path)))


@pytest.mark.parametrize("layout", ["official", "devkit"])
def test_cars_import_keeps_every_split_fid_validation_list_and_episode(tmp_path, layout):
    make = make_cars_official if layout == "official" else make_cars_devkit
    ds = load_dataset("cars", root=make(tmp_path / "cars"))
    pkl = cars_pickle(tmp_path / "cars196_splits.pkl")
    doc = import_published(pkl, ds, SearchParams(episodes=2), seed=0)
    out = tmp_path / "cars.json"
    write_split_document(out, doc)
    sf = load_splits(out, dataset=ds)
    assert [s.fid for s in sf.series] == [8.59, 14.33, 86.48]
    assert [r["reference_id"] for r in sf.raw["series"]] == [1, 2, 3]
    assert sf.get(1).train == CLASS_NAMES[:3] and sf.get(1).val == CLASS_NAMES[:1] and sf.get(1).standard
    assert sf.get(2).val == [CLASS_NAMES[1]] and sf.get(3).test == CLASS_NAMES[4:]
    names = study_names()
    by_name = published_image_names(ds).names
    for s in sf.series:
        assert sorted(s.episodes) == [1, 2] and all(len(lst) == 2 for lst in s.episodes.values())
        for k, lst in s.episodes.items():
            for e, ep in enumerate(lst):
                assert set(ep) == set(s.test)
                for c, ids in ep.items():
                    want = names[c][-k:] if e == 0 else names[c][:k]
                    assert ids == sorted(by_name[c][n] for n in want)  # the published images, `_2` included
    prov = sf.provenance
    assert prov["parts"] == {"fids": "published", "validation": "published", "episodes": "published"}
    assert prov["redraw_episodes"] is False and prov["reference_file"] == "cars196_splits.pkl"
    assert all(r["sources"]["episodes"] == "published" for r in sf.raw["series"])
    # a `_2` image is among the kept episodes: class 0's last image is the cars_test 00001.jpg
    ep = sf.get(2).episodes[1][0][CLASS_NAMES[0]]
    assert _support_files(ds, ep) == (["cars_test/00001.jpg"] if layout == "devkit" else ["car_ims/000002.jpg"])


def test_official_layout_without_test_flags_stops_and_redraws_only_when_asked(tmp_path):
    ds = load_dataset("cars", root=make_cars_official(tmp_path / "cars", with_test_flag=False))
    pkl = cars_pickle(tmp_path / "cars196_splits.pkl")
    with pytest.raises(EpisodeMappingError) as exc:
        import_published(pkl, ds, SearchParams(episodes=2))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "first image" in msg and "no 'test' flag" in msg and "devkit layout" in msg and "--redraw-episodes" in msg
    doc = import_published(pkl, ds, SearchParams(episodes=2, shots=(1, 2)), redraw_episodes=True)
    assert doc["provenance"]["redraw_episodes"] is True
    assert doc["provenance"]["parts"]["episodes"].startswith("redrawn")
    assert all(s["sources"]["episodes"].startswith("redrawn") for s in doc["series"])
    write_split_document(tmp_path / "r.json", doc)
    assert load_splits(tmp_path / "r.json", dataset=ds).get(1).episodes  # drawn ones, valid


def test_unmappable_file_and_mismatches_are_one_clear_line(tmp_path):
    ds = load_dataset("cars", root=make_cars_devkit(tmp_path / "cars"))
    pkl = cars_pickle(tmp_path / "cars196_splits.pkl")
    data = pickle.loads(pkl.read_bytes())
    data[2]["test_episodes"][1][0][np.str_(CLASS_NAMES[0])] = [np.str_("09999.jpg")]
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(
        EpisodeMappingError, match=r"names image '09999.jpg' of class 'Make0 Model 2000'.*layouts that work"
    ):
        import_published(bad, ds)
    data = pickle.loads(pkl.read_bytes())
    data[1]["train"] = [np.str_("Nonexistent Car 1999")] + data[1]["train"]
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(BadInputError, match="matches no class"):
        import_published(bad, ds)
    data = pickle.loads(pkl.read_bytes())
    data[1]["split_val"] = [np.str_(CLASS_NAMES[5])]
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(BadInputError, match="split_val class 'Make5 Model 2005' is not a train class"):
        import_published(bad, ds)


def test_names_only_import_without_images_resolves_when_a_run_starts(tmp_path):
    pkl = cars_pickle(tmp_path / "cars196_splits.pkl")
    doc = import_published(pkl, None, SearchParams(episodes=2))  # no dataset anywhere
    assert doc["provenance"]["names_only"] is True and doc["provenance"]["dataset"] == "cars"
    assert doc["num_images"] == 0 and doc["provenance"]["parts"]["episodes"] == "published"
    out = tmp_path / "cars_names.json"
    write_split_document(out, doc)
    sf = load_splits(out)  # valid on its own
    assert sf.get(2).episodes[1][0][CLASS_NAMES[0]] == ["00001_2.jpg"]
    # resolved on each layout it equals the direct import
    for layout, make in (("devkit", make_cars_devkit), ("official", make_cars_official)):
        ds = load_dataset("cars", root=make(tmp_path / layout))
        direct = tmp_path / f"{layout}.json"
        write_split_document(direct, import_published(pkl, ds, SearchParams(episodes=2)))
        a, b = load_splits(out, dataset=ds), load_splits(direct, dataset=ds)
        assert a.num_images == len(ds) and a.classes == b.classes
        for sa, sb in zip(a.series, b.series):
            assert (sa.fid, sa.train, sa.test, sa.val, sa.episodes, sa.standard, sa.phase) == (
                sb.fid,
                sb.train,
                sb.test,
                sb.val,
                sb.episodes,
                sb.standard,
                sb.phase,
            )
    # and a run starts from it: the trainer's class resolution reads the names-only file
    from oodml.train import TrainConfig, resolve_classes

    rc = resolve_classes(TrainConfig(dataset="cars", root=str(tmp_path / "devkit"), splits=str(out), split=2), ds)
    assert rc.test_classes == [CLASS_NAMES[0]] + CLASS_NAMES[4:] and rc.val_classes == [CLASS_NAMES[1]]
    # a names-only file on a layout that cannot name its images: one clear error
    ds_flagless = load_dataset("cars", root=make_cars_official(tmp_path / "flagless", with_test_flag=False))
    with pytest.raises(EpisodeMappingError, match="no 'test' flag"):
        load_splits(out, dataset=ds_flagless)


def _cub(folder: Path) -> Path:
    names = [f"{c:03d}.Bird_{c}" for c in range(1, 7)]
    images, labels, iid = [], [], 0
    for k in range(4):
        for c, n in enumerate(names, 1):
            iid += 1
            rel = f"{n}/{n.split('.')[1]}_{k:04d}_{iid}.jpg"
            _img(folder / "images" / rel, iid)
            images.append(f"{iid} {rel}")
            labels.append(f"{iid} {c}")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "classes.txt").write_text("\n".join(f"{c} {n}" for c, n in enumerate(names, 1)) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(f"{i} {i % 2}" for i in range(1, iid + 1)) + "\n")
    return folder


def _sop(folder: Path) -> Path:
    iid = 0
    for fname, cids in (
        ("Ebay_train.txt", [1, 1, 1, 2, 2, 2, 3, 3, 3]),
        ("Ebay_test.txt", [4, 4, 4, 5, 5, 5, 6, 6, 6]),
    ):
        lines = ["image_id class_id super_class_id path"]
        for cid in cids:
            iid += 1
            rel = f"bicycle_final/{110000 + cid}_{iid}.JPG"
            _img(folder / rel, iid)
            lines.append(f"{iid} {cid} 1 {rel}")
        (folder / fname).write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("name", ["cub", "sop"])
def test_cub_and_sop_episodes_by_file_name(tmp_path, name):
    if name == "cub":
        ds = load_dataset("cub", root=_cub(tmp_path / "CUB_200_2011"))
    else:
        ds = load_dataset("sop", root=_sop(tmp_path / "Stanford_Online_Products"))
    cls = list(ds.classes)
    by = ds.indices_by_class()
    files = {c: [os.path.basename(ds.items[i].path) for i in by[c]] for c in cls}
    tr, te = cls[:3], cls[3:]
    pkl = tmp_path / ("cub200_splits.pkl" if name == "cub" else "online_products_splits.pkl")
    pkl.write_bytes(
        pickle.dumps(
            {
                1: {
                    "train": [np.str_(c) for c in tr],
                    "test": [np.str_(c) for c in te],
                    "fid": np.float64(3.43),
                    "split_train": tr[1:],
                    "split_val": tr[:1],
                    "test_episodes": {2: {0: {np.str_(c): [np.str_(f) for f in files[c][1:3]] for c in te}}},
                }
            }
        )
    )
    out = tmp_path / "s.json"
    assert (
        make_splits_cli(
            ["--import-oodml", str(pkl), "--root", str(tmp_path), "--out", str(out), "--figure", "none", "--quiet"]
        )
        == 0
    )  # dataset from the file name
    sf = load_splits(out, dataset=ds)
    assert sf.provenance["dataset"] == name and sf.get(1).val == tr[:1]
    for c, ids in sf.get(1).episodes[2][0].items():
        assert [os.path.basename(ds.items[i].path) for i in ids] == sorted(files[c][1:3])


def test_cli_names_only_check_and_recompute_fid(tmp_path, capsys):
    pkl = cars_pickle(tmp_path / "cars196_splits.pkl")
    out = tmp_path / "names.json"
    assert make_splits_cli(["--import-oodml", str(pkl), "--names-only", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "names only" in text and "episodes published" in text
    assert json.loads(out.read_text())["provenance"]["names_only"] is True
    root = tmp_path / "data"
    make_cars_devkit(root / "stanford_cars")
    assert make_splits_cli(["--check", str(out), "--root", str(root), "--quiet"]) == 0
    assert "episodes published" in capsys.readouterr().out
    assert (
        make_splits_cli(
            ["--check", str(out), "--root", str(root), "--recompute-fid", "--features", "pixels", "--quiet"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "recomputed 3 split FIDs with pixels features" in text and "published order" in text
    assert "8.59" in text and "86.48" in text
    # flags out of place: one line, no traceback
    assert make_splits_cli(["--names-only", "--quiet"]) == 2
    assert "go with --import-oodml" in capsys.readouterr().err
    flagless = tmp_path / "flagless"
    make_cars_official(flagless / "cars196", with_test_flag=False)
    assert (
        make_splits_cli(
            ["--import-oodml", str(pkl), "--root", str(flagless), "--out", str(tmp_path / "x.json"), "--quiet"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--redraw-episodes" in err and not (tmp_path / "x.json").exists()


# ------------------------------------------------------------------------------ ooDML import
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path, make_dataset):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "evil_splits.pkl"
    pkl.write_bytes(pickle.dumps({1: {"train": ["a"], "test": ["b"], "fid": 1.0, "x": _Evil(marker)}}))
    with pytest.raises(UnsafeFileError, match="system"):
        import_oodml(pkl, make_dataset(["a", "b", "c", "d"]))
    assert not marker.exists()


def reference_pkl(cls, ds, tmp_path, int_ids=False, with_episodes=True):
    """A pickle in the reference's structure: {id: {train, test, fid, split_train, split_val,
    test_episodes}} with numpy values, as create_dataset_splits.py writes."""
    half = len(cls) // 2
    rng = np.random.default_rng(0)
    splits = {}
    layouts = [
        (cls[:half], cls[half:], 50.0),
        (cls[1 : half + 1], [cls[0]] + cls[half + 1 :], 40.0),
        (cls[: half - 3], cls[half + 3 :], 90.0),
        (cls[2:half] + cls[:2][::-1], cls[half:], 50.0),
    ]
    layouts = layouts[:3]
    by = ds.indices_by_class()
    for i, (tr, te, fid) in enumerate(layouts, 1):
        entry = {
            "train": sorted(tr),
            "test": sorted(te),
            "fid": np.float64(fid),
            "split_train": sorted(tr)[2:],
            "split_val": sorted(tr)[:2],
        }
        if with_episodes:
            entry["test_episodes"] = {
                k: {
                    e: {
                        c: [os.path.basename(ds.items[j].path) for j in rng.choice(by[c], k, replace=False)] for c in te
                    }
                    for e in range(1, 4)
                }
                for k in (2, 5)
            }
        if int_ids:
            pos = {c: n + 1 for n, c in enumerate(cls)}
            entry = {"train": np.array([pos[c] for c in tr]), "test": [np.int64(pos[c]) for c in te], "fid": float(fid)}
        splits[i] = entry
    path = tmp_path / ("ints.pkl" if int_ids else "ref.pkl")
    path.write_bytes(pickle.dumps(splits))
    return path


def test_import_oodml_reference_structure(tmp_path, make_dataset):
    cls = [f"{i:03d}.Bird_{i}" for i in range(1, 21)]
    ds = make_dataset(cls, per=7)
    path = reference_pkl(cls, ds, tmp_path)
    doc = import_oodml(path, ds, SearchParams(episodes=2), seed=0)
    assert doc["provenance"]["source"] == "oodml-import"
    out = tmp_path / "imported.json"
    write_split_document(out, doc)
    sf = load_splits(out, dataset=ds)
    assert [s.fid for s in sf.series] == [40.0, 50.0, 90.0]
    assert [s.phase for s in sf.series] == ["easier", "start", "removal"]
    std = sf.get(2)
    assert std.standard and std.train == cls[:10] and std.val == cls[:2]
    # reference episodes (file names) became image ids of the right classes; others generated
    assert sorted(std.episodes) == [2, 5] and len(std.episodes[2]) == 3
    for k, lst in std.episodes.items():
        for ep in lst:
            assert set(ep) == set(std.test)
            for c, ids in ep.items():
                assert len(ids) == k and all(ds.items[i].label == c for i in ids)
    assert sf.get(3).train == cls[:7]
    # integer ids (1-based, numpy arrays) map by position
    ints = import_oodml(reference_pkl(cls, ds, tmp_path, int_ids=True), ds, SearchParams(episodes=1))
    assert [s["train"] for s in ints["series"]] == [s.train for s in sf.series]
    assert sorted(ints["series"][0]["episodes"]) == ["1", "10", "2", "5"]  # generated
    # names that match nothing: a clear error
    with pytest.raises(BadInputError, match="matches no class"):
        import_oodml(path, make_dataset([f"x{i}" for i in range(20)], per=7))
