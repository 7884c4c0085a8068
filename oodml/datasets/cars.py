"""``cars``: Stanford Cars / CARS196 (196 car models, 16,185 images).

Three layouts are recognised, in this order of preference:

(a) the official files (``car_ims.tgz`` extracted next to ``cars_annos.mat``)::

        <folder>/cars_annos.mat     annotations[i].relative_im_path = "car_ims/000001.jpg",
                                    annotations[i].class (1-based), class_names{k}
        <folder>/car_ims/000001.jpg ...

    Classes are ``class_names`` in class-id order; images in annotation order.

(b) the devkit layout (the train/test release with ``car_devkit.tgz``, as torchvision's
    ``StanfordCars`` and the Kaggle mirrors lay it out)::

        <folder>/devkit/cars_meta.mat                 class_names{k}
        <folder>/devkit/cars_train_annos.mat          annotations[i].fname, .class (1-based)
        <folder>/cars_test_annos_withlabels.mat       the same for the test images (also found
                                                      in devkit/)
        <folder>/cars_train/00001.jpg ...             (a nested cars_train/cars_train/ is accepted)
        <folder>/cars_test/00001.jpg ...

    Classes are ``class_names`` in class-id order; images are the train annotations, then the test
    annotations (16,185 in all, the same images as (a)).  This release's own train/test halves
    mix all classes; like every DML protocol, oodml ignores them and splits by class.

(c) the class-folder layout many DML codebases use::

        <folder>/images/<class name>/*.jpg

    Classes are the folder names in sorted order; images sorted by name.

``<folder>`` is searched under the data root (``--root``, else ``$OODML_DATA``, else
``~/.cache/oodml/data``): the root itself, ``cars196``, ``cars`` (where ``--download`` puts it)
and ``stanford_cars``.

**Standard split**: classes 1-98 train, 99-196 test by class order (in general the first half,
rounded up). **Superclass**: none. The make (``Aston Martin``, ``AM General``, ``Land Rover``...)
would be a natural superclass, but it is not a separate field and cannot be cut cleanly from the
model names (makes have one to three words), so it is left out rather than guessed.

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("cars", root="~/data")
    print(ds.summary())   # 196 classes, 16185 images, 98 train / 98 test classes
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from oodml.datasets.base import ImageDataset, Item
from oodml.datasets.download import find_dataset_dir
from oodml.datasets.folder import scan_dir
from oodml.errors import BadInputError

SUBDIRS = ("", "cars196", "cars", "stanford_cars")
LAYOUT = (
    "cars_annos.mat next to car_ims/*.jpg (the official car_ims.tgz, extracted, and cars_annos.mat), "
    "or devkit/cars_meta.mat + devkit/cars_train_annos.mat + cars_test_annos_withlabels.mat next to "
    "cars_train/ and cars_test/ (torchvision's StanfordCars layout), or images/<class name>/*.jpg"
)
ANNOTATIONS = "cars_annos.mat"
DEVKIT_META = "devkit/cars_meta.mat"
DEVKIT_TRAIN = "devkit/cars_train_annos.mat"
DEVKIT_TEST = "cars_test_annos_withlabels.mat"


def _is_official(p: Path) -> bool:
    return (p / ANNOTATIONS).is_file()


def _is_devkit(p: Path) -> bool:
    return (p / DEVKIT_META).is_file() and (p / DEVKIT_TRAIN).is_file()


def _is_class_folders(p: Path) -> bool:
    # ``images/`` alone is ambiguous (CUB has one too, next to its images.txt).
    return (p / "images").is_dir() and not (p / "images.txt").is_file()


def _is_cars(p: Path) -> bool:
    return _is_official(p) or _is_devkit(p) or _is_class_folders(p)


def _as_list(x) -> list:
    """A MATLAB value loaded with ``squeeze_me=True`` as a flat Python list."""
    return list(np.atleast_1d(np.asarray(x, dtype=object)).ravel())


def _text(x) -> str:
    while isinstance(x, np.ndarray):
        if x.size != 1:
            raise ValueError(f"expected one string, got an array of shape {x.shape}")
        x = x.ravel()[0]
    if isinstance(x, bytes):
        x = x.decode("utf-8")
    return str(x).strip()


def _read_mat(mat_path: Path, keys: tuple[str, ...], what: str) -> dict:
    """A MATLAB file with the variables ``keys``, or one clear BadInputError."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(mat_path), squeeze_me=True, struct_as_record=True)
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise BadInputError(
            f"cars: {mat_path} cannot be read as a MATLAB file ({type(exc).__name__}: {exc}); "
            f"it is corrupt or truncated: download {mat_path.name} again"
        ) from None
    for key in keys:
        if key not in mat:
            raise BadInputError(f"cars: {mat_path} has no {key!r} variable; expected {what}")
    return mat


def _annotations(mat: dict, mat_path: Path, path_field: str, what: str) -> list[tuple[str, int]]:
    """(image path as written, 1-based class id) of every annotation in ``mat``."""
    ann = np.atleast_1d(mat["annotations"]).ravel()
    fields = ann.dtype.names or ()
    for f in (path_field, "class"):
        if f not in fields:
            raise BadInputError(
                f"cars: the annotations in {mat_path} have no {f!r} field (fields: {', '.join(fields) or 'none'}); "
                f"expected {what}"
            )
    out = []
    for i, (rel, cls) in enumerate(zip(ann[path_field], ann["class"])):
        try:
            out.append((_text(rel), int(np.asarray(cls).ravel()[0])))
        except (ValueError, TypeError, IndexError) as exc:
            raise BadInputError(f"cars: annotation {i + 1} in {mat_path} is malformed ({exc})") from None
    return out


def _items(pairs, class_names, img_dir: str, mat_path: Path) -> list[Item]:
    n_cls = len(class_names)
    items: list[Item] = []
    for i, (rel, cid) in enumerate(pairs):
        if not 1 <= cid <= n_cls:
            raise BadInputError(
                f"cars: annotation {i + 1} in {mat_path} ({rel}) has class {cid}, outside 1..{n_cls}; "
                "the file is not the official one"
            )
        items.append(Item(os.path.join(img_dir, rel), class_names[cid - 1], None))
    return items


def _load_official(folder: Path) -> tuple[list[Item], list[str]]:
    mat_path = folder / ANNOTATIONS
    what = "the official cars_annos.mat (annotations with relative_im_path and class, and class_names)"
    mat = _read_mat(mat_path, ("annotations", "class_names"), what)
    class_names = [_text(c) for c in _as_list(mat["class_names"])]
    pairs = _annotations(mat, mat_path, "relative_im_path", what)
    if not (folder / "car_ims").is_dir():
        raise BadInputError(
            f"cars: {folder} has {ANNOTATIONS} but no car_ims/ folder; extract car_ims.tgz into {folder}"
        )
    return _items(pairs, class_names, os.path.abspath(folder), mat_path), class_names


def _devkit_images(folder: Path, side: str) -> str:
    """``cars_train``/``cars_test`` folder (or the nested copy some mirrors unpack to)."""
    d = folder / side
    if (d / side).is_dir():
        d = d / side
    if not d.is_dir():
        raise BadInputError(
            f"cars: {folder} has the devkit annotations but no {side}/ folder; extract {side}.tgz into {folder}"
        )
    return os.path.abspath(d)


def _load_devkit(folder: Path) -> tuple[list[Item], list[str]]:
    meta_path = folder / DEVKIT_META
    meta = _read_mat(meta_path, ("class_names",), "the devkit's cars_meta.mat (class_names)")
    class_names = [_text(c) for c in _as_list(meta["class_names"])]
    test_path = folder / DEVKIT_TEST
    if not test_path.is_file() and (folder / "devkit" / DEVKIT_TEST).is_file():
        test_path = folder / "devkit" / DEVKIT_TEST
    if not test_path.is_file():
        raise BadInputError(
            f"cars: {folder} has the devkit but no {DEVKIT_TEST} (the test images' labels, published "
            f"separately from car_devkit.tgz); put it in {folder}"
        )
    items: list[Item] = []
    for side, mat_path in (("cars_train", folder / DEVKIT_TRAIN), ("cars_test", test_path)):
        what = f"the devkit's {mat_path.name} (annotations with fname and class)"
        pairs = _annotations(_read_mat(mat_path, ("annotations",), what), mat_path, "fname", what)
        items += _items(pairs, class_names, _devkit_images(folder, side), mat_path)
    return items, class_names


def _load_class_folders(folder: Path) -> tuple[list[Item], list[str]]:
    img_root = os.path.join(os.path.abspath(folder), "images")
    stray, classes = scan_dir(img_root)
    if stray:
        raise BadInputError(
            f"cars: images lie directly in {img_root} (e.g. {stray[0]}); expected images/<class name>/*.jpg"
        )
    if not classes:
        raise BadInputError(f"cars: {img_root} holds no class folders; expected images/<class name>/*.jpg")
    items: list[Item] = []
    for c in classes:
        files, _ = scan_dir(os.path.join(img_root, c))
        items.extend(Item(os.path.join(img_root, c, f), c, None) for f in files)
    return items, classes


def load_cars(
    root: str | os.PathLike | None = None,
    download: bool = False,
    progress: bool = True,
) -> ImageDataset:
    """Load CARS196 from the data root (``download=True`` fetches the official files if missing)."""
    folder = find_dataset_dir("cars", root, SUBDIRS, _is_cars, LAYOUT, download, progress=progress)
    if _is_official(folder):
        items, classes = _load_official(folder)
        check = True
    elif _is_devkit(folder):
        items, classes = _load_devkit(folder)
        check = True
    else:
        items, classes = _load_class_folders(folder)
        check = False  # listed from disk
    half = (len(classes) + 1) // 2
    return ImageDataset(
        "cars",
        folder,
        items,
        classes=classes,
        train_classes=classes[:half],
        test_classes=classes[half:],
        check_files=check,
        description="Stanford Cars (CARS196)",
    )
