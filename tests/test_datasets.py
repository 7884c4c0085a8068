"""Dataset loaders on tiny trees in the official layouts, bad inputs, the CLI and the preview."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodml.datasets import load_dataset
from oodml.datasets.__main__ import main
from oodml.datasets.cars import load_cars
from oodml.datasets.cub import load_cub
from oodml.datasets.folder import load_csv, load_folder
from oodml.datasets.omniglot import load_omniglot
from oodml.datasets.sop import load_sop
from oodml.errors import BadInputError, DatasetNotFoundError, OodmlError

OMNIGLOT_SMALL1 = Path("/work/shared/data/omniglot/images_background_small1.zip")


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------
def _img(path: Path, value: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((6, 6, 3), value % 256, dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"))
    return path


def make_cub(folder: Path, n_classes: int = 4, per_class: int = 2) -> Path:
    """A CUB_200_2011 tree: images interleaved across classes, as ids in images.txt."""
    names = {c: f"{c:03d}.Bird_{c}" for c in range(1, n_classes + 1)}
    images, labels = [], []
    iid = 0
    for k in range(per_class):
        for c in range(1, n_classes + 1):
            iid += 1
            rel = f"{names[c]}/Bird_{c}_{k:04d}.jpg"
            _img(folder / "images" / rel, iid)
            images.append(f"{iid} {rel}")
            labels.append(f"{iid} {c}")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "classes.txt").write_text("\n".join(f"{c} {n}" for c, n in names.items()) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(f"{i} {i % 2}" for i in range(1, iid + 1)) + "\n")
    return folder


def make_cars_official(folder: Path, n_classes: int = 4, per_class: int = 2) -> Path:
    from scipy.io import savemat

    class_names = np.empty((1, n_classes), dtype=object)
    for c in range(n_classes):
        class_names[0, c] = f"Make{c} Model {2000 + c}"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    n = n_classes * per_class
    ann = np.empty((1, n), dtype=[(f, object) for f in fields])
    for i in range(n):
        cls = (i * 3) % n_classes + 1  # classes interleaved in annotation order
        rel = f"car_ims/{i + 1:06d}.jpg"
        _img(folder / rel, i)
        ann[0, i] = (
            rel,
            np.array([[1]]),
            np.array([[1]]),
            np.array([[5]]),
            np.array([[5]]),
            np.array([[cls]], dtype=np.uint8),
            np.array([[i % 2]], dtype=np.uint8),
        )
    savemat(str(folder / "cars_annos.mat"), {"annotations": ann, "class_names": class_names})
    return folder


def make_cars_devkit(folder: Path, n_classes: int = 4, nested: bool = False, test_in_devkit: bool = False) -> Path:
    """torchvision's StanfordCars layout: devkit/*.mat, cars_test_annos_withlabels.mat, cars_train/, cars_test/."""
    from scipy.io import savemat

    class_names = np.empty((1, n_classes), dtype=object)
    for c in range(n_classes):
        class_names[0, c] = f"Make{c} Model {2000 + c}"
    (folder / "devkit").mkdir(parents=True)
    savemat(str(folder / "devkit" / "cars_meta.mat"), {"class_names": class_names})
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    for side, classes in (("cars_train", [2, 1, 4]), ("cars_test", [3, 1])):
        ann = np.empty((1, len(classes)), dtype=[(f, object) for f in fields])
        img_dir = folder / side / side if nested else folder / side
        for i, cls in enumerate(classes):
            fname = f"{i + 1:05d}.jpg"
            _img(img_dir / fname, 10 * len(side) + i)
            ann[0, i] = (
                np.array([[1]]),
                np.array([[1]]),
                np.array([[5]]),
                np.array([[5]]),
                np.array([[cls]], dtype=np.uint8),
                fname,
            )
        if side == "cars_train":
            savemat(str(folder / "devkit" / "cars_train_annos.mat"), {"annotations": ann})
        else:
            where = folder / "devkit" if test_in_devkit else folder
            savemat(str(where / "cars_test_annos_withlabels.mat"), {"annotations": ann})
    return folder


def make_sop(folder: Path) -> Path:
    """Train: classes 1,2 (bicycle), 3 (chair); test: classes 4 (chair), 5 (toaster)."""
    rows = {
        "Ebay_train.txt": [
            (1, 1, "bicycle_final"),
            (1, 1, "bicycle_final"),
            (2, 1, "bicycle_final"),
            (3, 2, "chair_final"),
        ],
        "Ebay_test.txt": [(4, 2, "chair_final"), (4, 2, "chair_final"), (5, 3, "toaster_final")],
    }
    iid = 0
    for fname, entries in rows.items():
        lines = ["image_id class_id super_class_id path"]
        for cid, sid, sdir in entries:
            iid += 1
            rel = f"{sdir}/{100 + cid}_{iid}.JPG"
            _img(folder / rel, iid, "JPEG")
            lines.append(f"{iid} {cid} {sid} {rel}")
        (folder / fname).write_text("\n".join(lines) + "\n")
    return folder


def make_omniglot_subset(folder: Path, alphabets: dict[str, int], per_class: int = 2) -> Path:
    for a, n_chars in alphabets.items():
        for c in range(1, n_chars + 1):
            for k in range(1, per_class + 1):
                _img(folder / a / f"character{c:02d}" / f"{c:04d}_{k:02d}.png", 255 - k)
    return folder


def make_folder_one_level(folder: Path) -> Path:
    _img(folder / "cat" / "a.jpg", 1)
    _img(folder / "cat" / "B.PNG", 2, "PNG")
    _img(folder / "dog" / "x.jpeg", 3)
    _img(folder / "emu" / "y.webp", 4, "WEBP")
    (folder / "cat" / "notes.txt").write_text("not an image")
    _img(folder / "cat" / ".hidden.jpg", 5)
    _img(folder / ".thumbs" / "t.jpg", 6)
    return folder


# ---------------------------------------------------------------------------------------------
# CUB
# ---------------------------------------------------------------------------------------------
def test_cub_official_layout(tmp_path, monkeypatch):
    make_cub(tmp_path / "CUB_200_2011")
    ds = load_cub(root=tmp_path)
    assert ds.name == "cub" and ds.root == tmp_path / "CUB_200_2011"
    assert ds.classes == ["001.Bird_1", "002.Bird_2", "003.Bird_3", "004.Bird_4"]
    assert ds.train_classes == ["001.Bird_1", "002.Bird_2"] and ds.test_classes == ["003.Bird_3", "004.Bird_4"]
    assert len(ds) == 8 and ds.superclasses == []
    assert ds.items[0].label == "001.Bird_1" and ds.items[1].label == "002.Bird_2"  # images.txt order
    assert all(os.path.isabs(it.path) for it in ds.items)
    assert ds.load_image(0).mode == "RGB"
    # the same dataset through the registry, an alias and $OODML_DATA
    monkeypatch.setenv("OODML_DATA", str(tmp_path))
    assert load_dataset("cub200").fingerprint() == ds.fingerprint()


def test_cub_standard_split_is_class_ids_1_to_100(tmp_path):
    make_cub(tmp_path / "cub", n_classes=200, per_class=1)
    ds = load_cub(root=tmp_path)
    assert len(ds.classes) == 200 and len(ds.train_classes) == 100
    assert ds.train_classes[-1].startswith("100.") and ds.test_classes[0].startswith("101.")


def test_cub_missing_root_message(tmp_path):
    root = tmp_path / "nothing"
    with pytest.raises(DatasetNotFoundError) as err:
        load_cub(root=root)
    msg = str(err.value)
    assert "\n" not in msg
    assert "CUB-200-2011 (cub)" in msg and "from --root" in msg
    for sub in ("", "/CUB_200_2011", "/cub200", "/cub"):
        assert f"{root}{sub}," in msg or f"{root}{sub} " in msg
    assert "images.txt" in msg and "--download" in msg
    assert "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz" in msg and "--root" in msg


def test_missing_root_names_env_source(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_DATA", str(tmp_path / "env_root"))
    with pytest.raises(DatasetNotFoundError, match=r"\$OODML_DATA"):
        load_sop()
    monkeypatch.delenv("OODML_DATA")
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError, match="default cache"):
        load_cars()


def test_cub_wrong_layout(tmp_path):
    folder = make_cub(tmp_path / "CUB_200_2011")
    (folder / "classes.txt").unlink()
    with pytest.raises(BadInputError, match="no classes.txt"):
        load_cub(root=tmp_path)


def test_cub_garbled_line(tmp_path):
    folder = make_cub(tmp_path / "CUB_200_2011")
    with open(folder / "image_class_labels.txt", "a") as fh:
        fh.write("oops\n")
    with pytest.raises(BadInputError, match="image_class_labels.txt line 9"):
        load_cub(root=tmp_path)


def test_missing_image(tmp_path):
    folder = make_cub(tmp_path / "CUB_200_2011")
    gone = folder / "images" / "003.Bird_3" / "Bird_3_0001.jpg"
    gone.unlink()
    with pytest.raises(BadInputError, match=f"{gone}.*missing"):
        load_cub(root=tmp_path)


def test_unreadable_image(tmp_path):
    folder = make_cub(tmp_path / "CUB_200_2011")
    ds = load_cub(root=tmp_path)
    Path(ds.items[3].path).write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(BadInputError, match="cannot be decoded"):
        ds.load_image(3)
    assert folder.exists()


def test_empty_class(tmp_path):
    folder = make_cub(tmp_path / "CUB_200_2011")
    with open(folder / "classes.txt", "a") as fh:
        fh.write("5 005.Lonely_Bird\n")
    with pytest.raises(BadInputError, match="005.Lonely_Bird.*no images"):
        load_cub(root=tmp_path)


def test_duplicate_class_names(tmp_path):
    folder = make_cub(tmp_path / "CUB_200_2011")
    text = (folder / "classes.txt").read_text().replace("4 004.Bird_4", "4 003.Bird_3")
    (folder / "classes.txt").write_text(text)
    with pytest.raises(BadInputError, match="duplicate class name '003.Bird_3'"):
        load_cub(root=tmp_path)


# ---------------------------------------------------------------------------------------------
# CARS196
# ---------------------------------------------------------------------------------------------
def test_cars_official_layout(tmp_path):
    make_cars_official(tmp_path / "cars196")
    ds = load_cars(root=tmp_path)
    assert ds.root == tmp_path / "cars196"
    assert ds.classes == [f"Make{c} Model {2000 + c}" for c in range(4)]
    assert ds.train_classes == ds.classes[:2] and ds.test_classes == ds.classes[2:]
    assert len(ds) == 8 and ds.superclasses == []
    assert [Path(it.path).name for it in ds.items[:2]] == ["000001.jpg", "000002.jpg"]
    assert ds.items[1].label == "Make3 Model 2003"  # annotation 2 has class 4


@pytest.mark.parametrize("nested,test_in_devkit", [(False, False), (True, True)])
def test_cars_devkit_layout(tmp_path, nested, test_in_devkit):
    folder = make_cars_devkit(tmp_path / "stanford_cars", nested=nested, test_in_devkit=test_in_devkit)
    ds = load_cars(root=tmp_path)
    assert ds.root == folder
    assert ds.classes == [f"Make{c} Model {2000 + c}" for c in range(4)]
    assert ds.train_classes == ds.classes[:2] and ds.test_classes == ds.classes[2:]
    # train annotations first, then test; labels from the 1-based class ids
    assert [it.label for it in ds.items] == [ds.classes[c - 1] for c in (2, 1, 4, 3, 1)]
    sides = [Path(it.path).parent.name for it in ds.items]
    assert sides == ["cars_train"] * 3 + ["cars_test"] * 2
    assert all(Path(it.path).is_file() for it in ds.items)


def test_cars_devkit_without_test_labels(tmp_path):
    folder = make_cars_devkit(tmp_path / "cars")
    (folder / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(BadInputError, match="no cars_test_annos_withlabels.mat.*put it in"):
        load_cars(root=tmp_path)


def test_cars_devkit_missing_image_folder(tmp_path):
    import shutil

    folder = make_cars_devkit(tmp_path / "cars")
    shutil.rmtree(folder / "cars_test")
    with pytest.raises(BadInputError, match="no cars_test/ folder; extract cars_test.tgz"):
        load_cars(root=tmp_path)


def test_cars_class_folder_layout(tmp_path):
    for i, c in enumerate(["Volvo 240 1993", "Acura TL 2012", "BMW M3 2012"]):
        _img(tmp_path / "stanford_cars" / "images" / c / f"{i}.jpg", i)
        _img(tmp_path / "stanford_cars" / "images" / c / f"{i}b.jpg", i)
    ds = load_cars(root=tmp_path)
    assert ds.classes == ["Acura TL 2012", "BMW M3 2012", "Volvo 240 1993"]
    assert ds.train_classes == ["Acura TL 2012", "BMW M3 2012"] and len(ds) == 6


def test_cars_annotations_without_images_folder(tmp_path):
    folder = make_cars_official(tmp_path / "cars")
    for p in (folder / "car_ims").iterdir():
        p.unlink()
    (folder / "car_ims").rmdir()
    with pytest.raises(BadInputError, match="no car_ims/ folder.*car_ims.tgz"):
        load_cars(root=tmp_path)


def test_cars_corrupt_mat(tmp_path):
    folder = tmp_path / "cars"
    folder.mkdir()
    (folder / "cars_annos.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 20)
    with pytest.raises(BadInputError, match="cars_annos.mat"):
        load_cars(root=tmp_path)


# ---------------------------------------------------------------------------------------------
# SOP
# ---------------------------------------------------------------------------------------------
def test_sop_official_layout(tmp_path):
    make_sop(tmp_path / "Stanford_Online_Products")
    ds = load_sop(root=tmp_path)
    assert ds.classes == ["bicycle/00001", "bicycle/00002", "chair/00003", "chair/00004", "toaster/00005"]
    assert ds.train_classes == ["bicycle/00001", "bicycle/00002", "chair/00003"]
    assert ds.test_classes == ["chair/00004", "toaster/00005"]
    assert ds.superclasses == ["bicycle", "chair", "toaster"]
    assert len(ds) == 7 and ds.items[0].superclass == "bicycle"
    assert ds.class_superclass["chair/00004"] == "chair"


def test_sop_class_in_both_files(tmp_path):
    folder = make_sop(tmp_path / "sop")
    with open(folder / "Ebay_test.txt", "a") as fh:
        fh.write("99 2 1 bicycle_final/102_2.JPG\n")
    with pytest.raises(BadInputError, match="class 2 is listed in both.*Ebay_train.txt.*Ebay_test.txt"):
        load_sop(root=tmp_path)


def test_sop_wrong_layout(tmp_path):
    folder = make_sop(tmp_path / "sop")
    (folder / "Ebay_test.txt").unlink()
    with pytest.raises(BadInputError, match="no Ebay_test.txt"):
        load_sop(root=tmp_path)
    make_sop(folder)
    lines = (folder / "Ebay_train.txt").read_text().splitlines()
    (folder / "Ebay_train.txt").write_text("\n".join(lines[1:]) + "\n")  # header lost
    with pytest.raises(BadInputError, match="header line"):
        load_sop(root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Omniglot
# ---------------------------------------------------------------------------------------------
def test_omniglot_background_and_evaluation(tmp_path):
    make_omniglot_subset(tmp_path / "omniglot" / "images_background", {"Latin": 2, "Greek": 3})
    make_omniglot_subset(tmp_path / "omniglot" / "images_evaluation", {"Atlantean": 2})
    ds = load_omniglot(root=tmp_path)
    assert ds.classes[:3] == ["Greek/character01", "Greek/character02", "Greek/character03"]
    assert ds.train_classes == ds.classes[:5] and ds.test_classes == ["Atlantean/character01", "Atlantean/character02"]
    assert ds.superclasses == ["Atlantean", "Greek", "Latin"] and len(ds) == 14
    only_eval = load_omniglot(root=tmp_path, subset="evaluation")
    assert only_eval.classes == ["Atlantean/character01", "Atlantean/character02"]
    assert only_eval.train_classes == ["Atlantean/character01"]  # one alphabet: half of its characters


def test_omniglot_alphabet_split_and_direct_subset_root(tmp_path):
    sub = make_omniglot_subset(
        tmp_path / "images_background_small1", {"Cyrillic": 3, "Alpha": 2, "Bengali": 4, "Greek": 1}
    )
    ds = load_omniglot(root=tmp_path)
    # sorted alphabets: Alpha(2) Bengali(4) -> 6 of 10 classes train; Cyrillic, Greek test
    assert [c.split("/")[0] for c in ds.train_classes] == ["Alpha"] * 2 + ["Bengali"] * 4
    assert {c.split("/")[0] for c in ds.test_classes} == {"Cyrillic", "Greek"}
    direct = load_omniglot(root=sub)
    assert direct.classes == ds.classes and direct.fingerprint() == ds.fingerprint()
    with pytest.raises(DatasetNotFoundError, match="images_background/<alphabet>"):
        load_omniglot(root=tmp_path, subset="background")
    with pytest.raises(BadInputError, match="unknown subset"):
        load_omniglot(root=tmp_path, subset="everything")


def test_omniglot_missing_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_omniglot(root=tmp_path)
    msg = str(err.value)
    assert "Omniglot (omniglot)" in msg and f"{tmp_path / 'omniglot'}" in msg and "images_background.zip" in msg


def test_omniglot_real_small1(tmp_path):
    if not OMNIGLOT_SMALL1.is_file():
        pytest.skip(f"real data {OMNIGLOT_SMALL1} is not on this machine")
    with zipfile.ZipFile(OMNIGLOT_SMALL1) as zf:
        zf.extractall(tmp_path)
    ds = load_dataset("omniglot", root=tmp_path)
    assert (len(ds.classes), len(ds), len(ds.superclasses)) == (136, 2720, 5)
    assert len(ds.train_classes) + len(ds.test_classes) == 136
    assert ds.class_superclass["Greek/character01"] == "Greek"
    assert ds.load_image(0).size == (105, 105)


# ---------------------------------------------------------------------------------------------
# folder / csv
# ---------------------------------------------------------------------------------------------
def test_folder_one_level(tmp_path):
    ds = load_folder(make_folder_one_level(tmp_path / "imgs"))
    assert ds.classes == ["cat", "dog", "emu"] and ds.superclasses == []
    assert [Path(it.path).name for it in ds.items] == ["B.PNG", "a.jpg", "x.jpeg", "y.webp"]
    assert ds.train_classes == ["cat", "dog"] and ds.test_classes == ["emu"]


def test_folder_two_levels(tmp_path):
    root = tmp_path / "imgs"
    _img(root / "birds" / "robin" / "1.png", 1)
    _img(root / "birds" / "crow" / "1.png", 2)
    _img(root / "fish" / "robin" / "1.png", 3)  # same folder name under another superclass
    _img(root / "fish" / "cod" / "1.tif", 4, "TIFF")
    ds = load_dataset("folder", root=root)
    assert ds.classes == ["birds/crow", "birds/robin", "fish/cod", "fish/robin"]
    assert ds.superclasses == ["birds", "fish"] and ds.class_superclass["fish/robin"] == "fish"
    assert ds.train_classes == ["birds/crow", "birds/robin"]


def test_folder_bad_layouts(tmp_path):
    with pytest.raises(BadInputError, match="needs --root"):
        load_folder(None)
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_folder(tmp_path / "absent")
    mixed = tmp_path / "mixed"
    _img(mixed / "cat" / "a.png")
    _img(mixed / "animals" / "dog" / "b.png")
    with pytest.raises(BadInputError, match="mixes layouts"):
        load_folder(mixed)
    flat = tmp_path / "flat"
    _img(flat / "a.png")
    with pytest.raises(BadInputError, match="directly in the root"):
        load_folder(flat)
    empty = make_folder_one_level(tmp_path / "empty")
    (empty / "gnu").mkdir()
    (empty / "gnu" / "readme.txt").write_text("no images here")
    with pytest.raises(BadInputError, match="'gnu' has no images"):
        load_folder(empty)
    both = tmp_path / "both"
    _img(both / "cat" / "a.png")
    _img(both / "cat" / "kitten" / "b.png")
    with pytest.raises(BadInputError, match="both images and folders"):
        load_folder(both)


def test_csv_loader(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _img(tmp_path / "pics" / name)
    _img(tmp_path / "elsewhere.png")
    table = tmp_path / "tables" / "labels.csv"
    table.parent.mkdir()
    table.write_text(
        "path,label,superclass\n"
        f"../pics/a.png,robin,bird\n../pics/b.png,crow,bird\n\n../pics/c.png,cod,\n{tmp_path / 'elsewhere.png'},cod,\n"
    )
    ds = load_csv(table)
    assert ds.classes == ["cod", "crow", "robin"] and len(ds) == 4
    assert ds.class_superclass == {"cod": None, "crow": "bird", "robin": "bird"}
    assert ds.items[0].path == str(tmp_path / "pics" / "a.png")
    assert ds.train_classes == ["cod", "crow"]


@pytest.mark.parametrize(
    "body,match",
    [
        ("pic.png,robin\nother.png\n", r"line 3: 1 column"),
        ("pic.png,robin\npic2.png,\n", r"line 3: the label .* is empty"),
        ("pic.png,robin\nnope.png,crow\n", r"line 3: image .*nope.png does not exist"),
        ("pic.png,robin\npic.png,crow\n", r"line 3: pic.png is already listed on line 2"),
    ],
)
def test_csv_bad_rows(tmp_path, body, match):
    _img(tmp_path / "pic.png")
    _img(tmp_path / "pic2.png")
    table = tmp_path / "bad.csv"
    table.write_text("path,label\n" + body)
    with pytest.raises(BadInputError, match=f"bad.csv {match}"):
        load_csv(table)


def test_csv_bad_header_and_root(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file,class\nx.png,a\n")
    with pytest.raises(BadInputError, match="t.csv.*no 'path' column"):
        load_csv(table)
    with pytest.raises(BadInputError, match="needs --root"):
        load_dataset("csv")
    with pytest.raises(DatasetNotFoundError, match="is a folder"):
        load_csv(tmp_path)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def test_cli_text_and_json(tmp_path, capsys):
    make_sop(tmp_path / "Stanford_Online_Products")
    assert main(["--dataset", "sop", "--root", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "sop" in out and "classes:        5" in out and "3 train classes, 2 test classes" in out
    assert main(["--dataset", "online_products", "--root", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {
        "dataset": "sop",
        "classes": 5,
        "images": 7,
        "superclasses": 3,
        "train_classes": 3,
        "test_classes": 2,
    }


def test_cli_errors(tmp_path, capsys):
    assert main(["--dataset", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'nope'")
    assert main(["--dataset", "cars", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Stanford Cars (CARS196) (cars) dataset not found") and err.count("\n") == 1


def test_cli_subprocess(tmp_path):
    make_omniglot_subset(tmp_path / "images_background", {"Latin": 2, "Greek": 2})
    env = {**os.environ, "OODML_QUIET": "1"}
    env.pop("OODML_DATA", None)
    cmd = [sys.executable, "-m", "oodml.datasets", "--dataset", "omniglot", "--root"]
    ok = subprocess.run(cmd + [str(tmp_path), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        "dataset": "omniglot",
        "classes": 4,
        "images": 8,
        "superclasses": 2,
        "train_classes": 2,
        "test_classes": 2,
    }
    assert ok.stdout.count("\n") == 1
    bad = subprocess.run(cmd + [str(tmp_path / "missing")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: Omniglot (omniglot) dataset not found") and bad.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------
def test_sample_grid_is_deterministic(tmp_path):
    from oodml.datasets.preview import choose_samples, save_sample_grid

    make_sop(tmp_path / "sop")
    ds = load_sop(root=tmp_path)
    rows = choose_samples(ds, n_classes=3, per_class=1, seed=1)
    assert rows == choose_samples(ds, n_classes=3, per_class=1, seed=1) and len(rows) == 3
    first = save_sample_grid(ds, tmp_path / "out" / "grid", n_classes=3, per_class=2, seed=1)
    blobs = [p.read_bytes() for p in first]
    second = save_sample_grid(ds, tmp_path / "out" / "grid", n_classes=3, per_class=2, seed=1)
    assert [p.name for p in second] == ["grid.png", "grid.pdf"]
    assert [p.read_bytes() for p in second] == blobs
    assert blobs[0].startswith(b"\x89PNG") and blobs[1].startswith(b"%PDF")
    assert sorted(os.listdir(tmp_path / "out")) == ["grid.pdf", "grid.png"]


def test_unknown_dataset_name():
    with pytest.raises(OodmlError, match="unknown dataset"):
        load_dataset("imagenet")


def test_many_classes_validate_fast():
    """SOP has 22,634 classes: building the dataset must stay linear in the number of classes."""
    import time

    from oodml.datasets import ImageDataset, Item

    items = [Item(f"/nowhere/{i}.jpg", f"c{i // 5:05d}") for i in range(120_000)]
    start = time.perf_counter()
    ds = ImageDataset("sop", "/nowhere", items, check_files=False)
    assert len(ds.classes) == 24_000
    assert time.perf_counter() - start < 5.0
