"""``folder`` and ``csv``: your own images, as a folder tree or as a table.

``folder`` — ``root`` is a folder in one of two layouts, detected automatically::

    root/<class>/<image>                  one level: class name = "<class>", no superclass
    root/<superclass>/<class>/<image>     two levels: class name = "<superclass>/<class>"
                                          (unique even if two superclasses reuse a class
                                          folder name), superclass = "<superclass>"

A top-level folder holding images is a class, one holding folders is a superclass; a mix of the
two (or a folder holding both images and folders) is an error naming the folder. Images are
files ending in .jpg .jpeg .png .bmp .gif .webp .tif .tiff (any case); other files and hidden
entries (names starting with ``.``) are ignored. A class folder without images is an error.

``csv`` — ``root`` is a CSV file with a header row and the columns ``path``, ``label`` and
optionally ``superclass`` (any order; extra columns ignored). Relative paths are resolved against
the CSV's folder. A bad row (missing column, empty path or label, missing image, an image listed
twice) is an error naming the CSV file and the line.

Both: ``root`` is required (there is no default location and nothing to download). Classes are
in sorted order; images sorted by path (``folder``) or in table order (``csv``). **Standard
split**: the first half of the sorted classes (rounded up) train, the rest test.

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("folder", root="~/my_images")      # or load_dataset("csv", root="labels.csv")
    print(ds.summary())
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from oodml.datasets.base import ImageDataset, Item
from oodml.errors import BadInputError, DatasetNotFoundError

#: File name endings recognised as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

FOLDER_LAYOUT = "root/<class>/<image> or root/<superclass>/<class>/<image>"
CSV_LAYOUT = "a CSV file with a header row and the columns path,label[,superclass]"


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with an image extension (any case)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_dir(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Sorted ``(image file names, sub-folder names)`` of ``path``, hidden entries ignored."""
    images: list[str] = []
    dirs: list[str] = []
    with os.scandir(path) as it:
        for e in it:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    dirs.append(e.name)
                elif e.is_file() and is_image_name(e.name):
                    images.append(e.name)
            except OSError:
                continue
    images.sort()
    dirs.sort()
    return images, dirs


def _require_root(root: str | os.PathLike | None, name: str, layout: str) -> Path:
    if root is None:
        raise BadInputError(
            f"the {name!r} dataset needs --root (root=) pointing at your data: {layout}; there is no default location"
        )
    return Path(root).expanduser()


def _half_split(classes: list[str]) -> tuple[list[str], list[str]]:
    half = (len(classes) + 1) // 2
    return classes[:half], classes[half:]


def load_folder(
    root: str | os.PathLike | None = None,
    download: bool = False,
    progress: bool = True,
) -> ImageDataset:
    """Load an image folder (``root/<class>/*`` or ``root/<superclass>/<class>/*``).

    ``download`` and ``progress`` are accepted for interface symmetry; there is nothing to fetch.
    """
    del progress
    folder = _require_root(root, "folder", FOLDER_LAYOUT)
    if not folder.is_dir():
        hint = " (nothing can be downloaded for it)" if download else ""
        raise DatasetNotFoundError(
            f"folder dataset not found: {folder} (from --root) is not a folder{hint}; expected {FOLDER_LAYOUT}; "
            "pass the folder holding your class folders with --root"
        )
    base = os.path.abspath(folder)
    top_images, top_dirs = scan_dir(base)
    if top_images:
        raise BadInputError(
            f"folder dataset {folder}: images lie directly in the root (e.g. {top_images[0]}); expected "
            f"{FOLDER_LAYOUT}: move them into one folder per class"
        )
    if not top_dirs:
        raise BadInputError(f"folder dataset {folder} holds no class folders; expected {FOLDER_LAYOUT}")

    scanned = {d: scan_dir(os.path.join(base, d)) for d in top_dirs}
    for d, (imgs, subs) in scanned.items():
        if imgs and subs:
            raise BadInputError(
                f"folder dataset {folder}: {d}/ holds both images and folders; expected {FOLDER_LAYOUT}, "
                "with a folder holding either images (a class) or class folders (a superclass)"
            )
    class_dirs = [d for d, (imgs, _) in scanned.items() if imgs]
    super_dirs = [d for d, (_, subs) in scanned.items() if subs]
    if class_dirs and super_dirs:
        raise BadInputError(
            f"folder dataset {folder} mixes layouts: {class_dirs[0]}/ holds images (a class) but "
            f"{super_dirs[0]}/ holds folders (a superclass); use either {FOLDER_LAYOUT} throughout"
        )

    items: list[Item] = []
    classes: list[str] = []
    if not super_dirs:  # one level (folders without images become empty classes: an error below)
        for d in top_dirs:
            classes.append(d)
            items.extend(Item(os.path.join(base, d, f), d, None) for f in scanned[d][0])
    else:
        for sup in top_dirs:
            subs = scanned[sup][1]
            if not subs:
                raise BadInputError(
                    f"folder dataset {folder}: superclass folder {sup}/ holds no class folders; "
                    "remove it or add classes"
                )
            for c in subs:
                cdir = os.path.join(base, sup, c)
                imgs, deeper = scan_dir(cdir)
                if deeper:
                    raise BadInputError(
                        f"folder dataset {folder}: {sup}/{c}/ holds folders ({deeper[0]}/); expected "
                        f"{FOLDER_LAYOUT}, at most two levels deep"
                    )
                label = f"{sup}/{c}"
                classes.append(label)
                items.extend(Item(os.path.join(cdir, f), label, sup) for f in imgs)
    if not items:
        raise BadInputError(f"folder dataset {folder} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    classes.sort()
    train, test = _half_split(classes)
    return ImageDataset(
        "folder", folder, items, classes=classes, train_classes=train, test_classes=test, check_files=False
    )


def load_csv(
    root: str | os.PathLike | None = None,
    download: bool = False,
    progress: bool = True,
) -> ImageDataset:
    """Load images listed in a CSV table (columns ``path,label[,superclass]``, header required).

    ``download`` and ``progress`` are accepted for interface symmetry; there is nothing to fetch.
    """
    del progress
    table = _require_root(root, "csv", CSV_LAYOUT)
    if not table.is_file():
        hint = " (nothing can be downloaded for it)" if download else ""
        what = "is a folder, not a CSV file" if table.is_dir() else "does not exist"
        raise DatasetNotFoundError(
            f"csv dataset not found: {table} (from --root) {what}{hint}; expected {CSV_LAYOUT}; "
            "pass the CSV file with --root"
        )
    base = os.path.dirname(os.path.abspath(table))
    try:
        fh = open(table, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise BadInputError(f"cannot read CSV file {table}: {exc}") from None
    items: list[Item] = []
    seen: dict[str, int] = {}
    with fh:
        try:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise BadInputError(f"CSV file {table} is empty; expected {CSV_LAYOUT}")
            cols = [h.strip().lower() for h in header]
            missing = [c for c in ("path", "label") if c not in cols]
            if missing:
                raise BadInputError(
                    f"CSV file {table}: the header (line 1: {','.join(header)}) has no {missing[0]!r} column; "
                    f"expected {CSV_LAYOUT}"
                )
            i_path, i_label = cols.index("path"), cols.index("label")
            i_sup = cols.index("superclass") if "superclass" in cols else None
            need = max(i_path, i_label, i_sup if i_sup is not None else 0) + 1
            for row in reader:
                line = reader.line_num
                if not row or all(not v.strip() for v in row):
                    continue
                if len(row) < need:
                    raise BadInputError(
                        f"CSV file {table} line {line}: {len(row)} column(s) but the header has {len(cols)}; "
                        "every row needs path,label[,superclass]"
                    )
                rel, label = row[i_path].strip(), row[i_label].strip()
                sup = (row[i_sup].strip() or None) if i_sup is not None else None
                if not rel:
                    raise BadInputError(f"CSV file {table} line {line}: the path is empty; fill it in or drop the row")
                if not label:
                    raise BadInputError(f"CSV file {table} line {line}: the label of {rel} is empty; fill it in")
                path = os.path.normpath(os.path.join(base, os.path.expanduser(rel)))
                if path in seen:
                    raise BadInputError(
                        f"CSV file {table} line {line}: {rel} is already listed on line {seen[path]}; "
                        "list each image once"
                    )
                seen[path] = line
                if not os.path.isfile(path):
                    raise BadInputError(
                        f"CSV file {table} line {line}: image {path} does not exist; fix the path (relative paths "
                        "are resolved against the CSV's folder) or drop the row"
                    )
                items.append(Item(path, label, sup))
        except csv.Error as exc:
            raise BadInputError(f"CSV file {table} line {reader.line_num} is malformed: {exc}") from None
        except UnicodeDecodeError as exc:
            raise BadInputError(f"CSV file {table} is not UTF-8 text ({exc}); save it as UTF-8") from None
    if not items:
        raise BadInputError(f"CSV file {table} lists no images; expected {CSV_LAYOUT}")
    classes = sorted({it.label for it in items})
    train, test = _half_split(classes)
    return ImageDataset(
        "csv", Path(base), items, classes=classes, train_classes=train, test_classes=test, check_files=False
    )
