"""``cub``: Caltech-UCSD Birds-200-2011 (200 bird species, 11,788 images).

Layout (the official ``CUB_200_2011.tgz``, extracted)::

    CUB_200_2011/
        images.txt              <image id> <path under images/>
                                e.g. "1 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
        image_class_labels.txt  <image id> <class id>
        classes.txt             <class id> <class name>              e.g. "1 001.Black_footed_Albatross"
        images/NNN.Name/*.jpg

Searched, under the data root (``--root``, else ``$OODML_DATA``, else ``~/.cache/oodml/data``):
the root itself, ``CUB_200_2011``, ``cub200``, ``cub``, ``cub200/CUB_200_2011`` and
``cub/CUB_200_2011`` (where ``--download`` puts it).

Classes are the names of ``classes.txt`` in class-id order; images are in ``images.txt``
order. There are no superclasses. **Standard split** (the DML convention, not the image-level
``train_test_split.txt``): classes 1-100 train, 101-200 test — in general the first half of the
classes in class-id order (rounded up), so a reduced copy still splits in two.

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("cub", root="~/data")
    print(ds.summary())   # 200 classes, 11788 images, 100 train / 100 test classes
"""

from __future__ import annotations

import os
from pathlib import Path

from oodml.datasets.base import ImageDataset, Item
from oodml.datasets.download import find_dataset_dir
from oodml.errors import BadInputError

SUBDIRS = ("", "CUB_200_2011", "cub200", "cub", "cub200/CUB_200_2011", "cub/CUB_200_2011")
LAYOUT = (
    "CUB_200_2011/ with images.txt, image_class_labels.txt, classes.txt and images/NNN.Name/*.jpg "
    "(the official CUB_200_2011.tgz, extracted)"
)


def _read_pairs(path: Path, folder: Path) -> list[tuple[str, str, int]]:
    """Lines ``<int> <text>`` as ``(id, text, line number)``; blank lines skipped."""
    if not path.is_file():
        raise BadInputError(
            f"cub: {folder} has images.txt but no {path.name}; expected {LAYOUT}: re-extract CUB_200_2011.tgz"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cub: cannot read {path}: {exc}") from None
    out: list[tuple[str, str, int]] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise BadInputError(
                f"cub: {path} line {n} is {line[:60]!r}; expected '<number> <value>' (is the file truncated?)"
            )
        out.append((parts[0], parts[1].strip(), n))
    if not out:
        raise BadInputError(f"cub: {path} is empty; re-extract CUB_200_2011.tgz")
    return out


def load_cub(
    root: str | os.PathLike | None = None,
    download: bool = False,
    progress: bool = True,
) -> ImageDataset:
    """Load CUB-200-2011 from the data root (``download=True`` fetches it if missing)."""
    folder = find_dataset_dir(
        "cub", root, SUBDIRS, lambda p: (p / "images.txt").is_file(), LAYOUT, download, progress=progress
    )
    base = os.path.abspath(folder)
    images = _read_pairs(folder / "images.txt", folder)
    labels_path = folder / "image_class_labels.txt"
    labels = _read_pairs(labels_path, folder)
    class_rows = _read_pairs(folder / "classes.txt", folder)

    class_name: dict[int, str] = {}
    for cid, name, n in class_rows:
        if int(cid) in class_name:
            raise BadInputError(f"cub: {folder / 'classes.txt'} line {n} repeats class id {cid}; fix or re-extract it")
        class_name[int(cid)] = name
    ids = sorted(class_name)
    classes = [class_name[i] for i in ids]

    image_class: dict[str, int] = {}
    for iid, cid, n in labels:
        if not cid.isdigit() or int(cid) not in class_name:
            raise BadInputError(
                f"cub: {labels_path} line {n} gives image {iid} the class {cid!r}, which classes.txt does not list"
            )
        image_class[iid] = int(cid)

    items: list[Item] = []
    img_dir = os.path.join(base, "images")
    for iid, rel, n in images:
        cid = image_class.get(iid)
        if cid is None:
            raise BadInputError(
                f"cub: image {iid} ({rel}, images.txt line {n}) has no class in {labels_path}; re-extract the dataset"
            )
        items.append(Item(os.path.join(img_dir, rel), class_name[cid], None))

    half = (len(classes) + 1) // 2
    return ImageDataset(
        "cub",
        folder,
        items,
        classes=classes,
        train_classes=classes[:half],
        test_classes=classes[half:],
        description="CUB-200-2011 birds",
    )
