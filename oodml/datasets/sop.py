"""``sop``: Stanford Online Products (22,634 products of 12 kinds, 120,053 images).

Layout (the official ``Stanford_Online_Products.zip``, extracted)::

    Stanford_Online_Products/
        Ebay_train.txt    image_id class_id super_class_id path     (header line, then one image a line)
        Ebay_test.txt     same columns                              e.g. "1 1 1 bicycle_final/111085122871_0.JPG"
        bicycle_final/*.JPG, cabinet_final/*.JPG, ...

Paths are relative to the folder holding the txt files. Searched under the data root
(``--root``, else ``$OODML_DATA``, else ``~/.cache/oodml/data``): the root itself,
``Stanford_Online_Products``, ``online_products``, ``sop`` and ``sop/Stanford_Online_Products``
(where ``--download`` puts it).

**Names**: the superclass is the first path component without its ``_final`` suffix
(``bicycle_final`` -> ``bicycle``). A class (one product) is named
``"<superclass>/<class_id zero-padded to 5 digits>"``, e.g. ``"bicycle/00001"``: unique (class
ids are), stable (independent of which other classes are present), readable, and sorting by it
groups products by kind. Classes are ordered by class id (train file first, then test file);
images in file order.

**Standard split**: the files' split — classes of ``Ebay_train.txt`` train (11,318), classes
of ``Ebay_test.txt`` test (11,316). A class id in both files is an error.

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("sop", root="~/data")
    print(ds.summary())   # 22634 classes, 120053 images, 12 superclasses
"""

from __future__ import annotations

import os
from pathlib import Path

from oodml.datasets.base import ImageDataset, Item
from oodml.datasets.download import find_dataset_dir
from oodml.errors import BadInputError

SUBDIRS = ("", "Stanford_Online_Products", "online_products", "sop", "sop/Stanford_Online_Products")
FILES = ("Ebay_train.txt", "Ebay_test.txt")
LAYOUT = (
    "Stanford_Online_Products/ with Ebay_train.txt and Ebay_test.txt (header 'image_id class_id "
    "super_class_id path') and the image folders bicycle_final/ ... toaster_final/"
)
HEADER = ["image_id", "class_id", "super_class_id", "path"]


def superclass_name(rel_path: str) -> str:
    """``"bicycle_final/1_0.JPG"`` -> ``"bicycle"``."""
    first = rel_path.split("/", 1)[0]
    return first[: -len("_final")] if first.endswith("_final") else first


def class_name(superclass: str, class_id: int) -> str:
    """The SOP class name: ``"<superclass>/<class_id:05d>"``."""
    return f"{superclass}/{class_id:05d}"


def _parse(path: Path, folder: str) -> tuple[list[Item], dict[int, str]]:
    """Items of one Ebay_*.txt and its ``class_id -> class name`` map (ordered by id)."""
    if not path.is_file():
        raise BadInputError(
            f"sop: {path.parent} has {FILES[0] if path.name == FILES[1] else FILES[1]} but no {path.name}; "
            f"expected {LAYOUT}: re-extract Stanford_Online_Products.zip"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"sop: cannot read {path}: {exc}") from None
    if not lines or lines[0].split() != HEADER:
        got = lines[0][:60] if lines else "nothing"
        raise BadInputError(
            f"sop: {path} should start with the header line '{' '.join(HEADER)}' but has {got!r}; "
            "is this the official file?"
        )
    items: list[Item] = []
    names: dict[int, str] = {}
    sep = os.sep
    for n, line in enumerate(lines[1:], 2):
        parts = line.split(maxsplit=3)
        if len(parts) != 4:
            if not parts:
                continue
            raise BadInputError(
                f"sop: {path} line {n} is {line[:60]!r}; expected '{' '.join(HEADER)}' (is the file truncated?)"
            )
        try:
            cid = int(parts[1])
        except ValueError:
            raise BadInputError(f"sop: {path} line {n}: class_id {parts[1]!r} is not a number") from None
        rel = parts[3].strip()
        if "/" not in rel:
            raise BadInputError(
                f"sop: {path} line {n}: path {rel!r} has no product-kind folder (e.g. bicycle_final/...)"
            )
        sup = superclass_name(rel)
        name = names.get(cid)
        if name is None:
            name = names[cid] = class_name(sup, cid)
        elif not name.startswith(sup + "/"):
            raise BadInputError(
                f"sop: {path} line {n}: class {cid} lies in {rel.split('/', 1)[0]}/ but earlier images of it in "
                f"{name.split('/', 1)[0]}_final/; fix the file"
            )
        items.append(Item(folder + sep + rel if sep == "/" else os.path.join(folder, rel), name, sup))
    if not items:
        raise BadInputError(f"sop: {path} lists no images; re-extract Stanford_Online_Products.zip")
    return items, {k: names[k] for k in sorted(names)}


def load_sop(
    root: str | os.PathLike | None = None,
    download: bool = False,
    progress: bool = True,
) -> ImageDataset:
    """Load Stanford Online Products from the data root (``download=True`` fetches it if missing)."""
    folder = find_dataset_dir(
        "sop",
        root,
        SUBDIRS,
        lambda p: any((p / f).is_file() for f in FILES),
        LAYOUT,
        download,
        progress=progress,
    )
    base = os.path.abspath(folder)
    train_items, train_names = _parse(folder / FILES[0], base)
    test_items, test_names = _parse(folder / FILES[1], base)
    both = sorted(set(train_names) & set(test_names))
    if both:
        raise BadInputError(
            f"sop: class {both[0]} is listed in both {folder / FILES[0]} and {folder / FILES[1]} "
            f"({len(both)} such classes); the standard split needs disjoint classes: restore the official files"
        )
    train = list(train_names.values())
    test = list(test_names.values())
    return ImageDataset(
        "sop",
        folder,
        train_items + test_items,
        classes=train + test,
        train_classes=train,
        test_classes=test,
        description="Stanford Online Products",
    )
