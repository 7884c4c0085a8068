"""``omniglot``: handwritten characters of 50 alphabets (Lake et al.), 20 drawings each.

Layout (the official zips of github.com/brendenlake/omniglot, extracted side by side)::

    <folder>/images_background/<alphabet>/<character>/*.png           30 alphabets, 964 characters
    <folder>/images_evaluation/<alphabet>/<character>/*.png           20 alphabets, 659 characters
    <folder>/images_background_small1/<alphabet>/<character>/*.png    5 alphabets, 136 characters
    <folder>/images_background_small2/<alphabet>/<character>/*.png    5 alphabets, 124 characters

``<folder>`` is searched under the data root (``--root``, else ``$OODML_DATA``, else
``~/.cache/oodml/data``): the root itself, ``omniglot`` (where ``--download`` puts it) and
``omniglot/python`` (a clone of the official repository). ``root`` may also be one of the four
subset folders itself.

A class is ``"<alphabet>/<character>"`` (e.g. ``"Greek/character03"``), its superclass the
alphabet. Classes are ordered by subset (background sets first), then alphabet, then character;
images sorted by name.

**Which subsets** (``subset=``): ``"background"``, ``"evaluation"``, ``"small1"``,
``"small2"`` (or the folder names), ``"all"`` (background + evaluation), or a list of them.
``None`` uses what is present: the background part is ``images_background`` if present, else
``images_background_small1``, else ``images_background_small2``; ``images_evaluation`` is added
when present. A small set cannot be combined with the full background set (they overlap).

**Standard split**: with a background set and the evaluation set both loaded, background classes
train and evaluation classes test (Omniglot's own protocol). Otherwise the split follows
alphabet boundaries: alphabets in sorted order go to train until at least half of the classes are
train, the remaining alphabets are test (a single alphabet is split at half of its characters).
For ``images_background_small1`` that is Balinese, Early_Aramaic and Greek (train) against Korean
and Latin (test).

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("omniglot", root="~/data", subset="small1")
    print(ds.summary())   # 136 classes, 2720 images, 5 superclasses
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from oodml.datasets.base import ImageDataset, Item
from oodml.datasets.download import candidate_dirs, fetch_dataset, not_found_message
from oodml.datasets.folder import scan_dir
from oodml.errors import BadInputError, DatasetNotFoundError
from oodml.paths import data_root

#: subset key -> folder name
SUBSETS = {
    "background": "images_background",
    "evaluation": "images_evaluation",
    "small1": "images_background_small1",
    "small2": "images_background_small2",
}
_BACKGROUND_PREFERENCE = ("background", "small1", "small2")
SUBDIRS = ("", "omniglot", "omniglot/python")
LAYOUT = (
    "images_background/<alphabet>/<character>/*.png and/or images_evaluation/..., "
    "images_background_small1/..., images_background_small2/... (the official Omniglot zips, extracted)"
)


def _subset_keys(subset: str | Iterable[str] | None) -> list[str] | None:
    """Normalise ``subset`` to a list of keys of :data:`SUBSETS` (``None`` stays ``None``)."""
    if subset is None:
        return None
    raw = subset.split(",") if isinstance(subset, str) else list(subset)
    by_folder = {v: k for k, v in SUBSETS.items()}
    keys: list[str] = []
    for s in raw:
        s = str(s).strip().lower()
        if s == "all":
            add = ["background", "evaluation"]
        elif s in SUBSETS:
            add = [s]
        elif s in by_folder:
            add = [by_folder[s]]
        elif s:
            raise BadInputError(
                f"omniglot: unknown subset {s!r}; choose background, evaluation, small1, small2, all, or a list of them"
            )
        else:
            add = []
        keys.extend(k for k in add if k not in keys)
    if not keys:
        raise BadInputError("omniglot: subset is empty; choose background, evaluation, small1, small2 or all")
    if "background" in keys and ("small1" in keys or "small2" in keys):
        raise BadInputError(
            "omniglot: the small background sets are drawn from images_background; load either the full "
            "background set or a small one, not both"
        )
    return keys


def _present(folder: Path) -> list[str]:
    return [k for k, d in SUBSETS.items() if (folder / d).is_dir()]


def _choose(present: list[str]) -> list[str]:
    keys = [k for k in _BACKGROUND_PREFERENCE if k in present][:1]
    if "evaluation" in present:
        keys.append("evaluation")
    return keys


def _scan_subset(sub_dir: str) -> tuple[list[Item], list[str]]:
    stray, alphabets = scan_dir(sub_dir)
    if stray:
        raise BadInputError(
            f"omniglot: images lie directly in {sub_dir} (e.g. {stray[0]}); expected {os.path.basename(sub_dir)}"
            "/<alphabet>/<character>/*.png"
        )
    if not alphabets:
        raise BadInputError(
            f"omniglot: {sub_dir} holds no alphabet folders; expected {os.path.basename(sub_dir)}/<alphabet>/"
            "<character>/*.png (an interrupted extraction? extract the zip again)"
        )
    items: list[Item] = []
    classes: list[str] = []
    for a in alphabets:
        a_dir = os.path.join(sub_dir, a)
        stray, chars = scan_dir(a_dir)
        if stray or not chars:
            what = f"images directly (e.g. {stray[0]})" if stray else "no character folders"
            raise BadInputError(
                f"omniglot: alphabet folder {a_dir} holds {what}; expected <alphabet>/<character>/*.png"
            )
        for c in chars:
            c_dir = os.path.join(a_dir, c)
            files, _ = scan_dir(c_dir)
            label = f"{a}/{c}"
            classes.append(label)
            items.extend(Item(os.path.join(c_dir, f), label, a) for f in files)
    return items, classes


def _alphabet_split(classes: list[str]) -> tuple[list[str], list[str]]:
    by_alpha: dict[str, list[str]] = {}
    for c in classes:
        by_alpha.setdefault(c.split("/", 1)[0], []).append(c)
    if len(by_alpha) == 1:
        half = (len(classes) + 1) // 2
        return classes[:half], classes[half:]
    train: list[str] = []
    test: list[str] = []
    for a in sorted(by_alpha):
        (train if 2 * len(train) < len(classes) else test).extend(by_alpha[a])
    return train, test


def load_omniglot(
    root: str | os.PathLike | None = None,
    download: bool = False,
    subset: str | Iterable[str] | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Load Omniglot (``subset`` picks the folders; ``download=True`` fetches missing ones)."""
    keys = _subset_keys(subset)
    base = data_root(root)
    by_folder = {v: k for k, v in SUBSETS.items()}
    folder: Path | None = None
    if base.name in by_folder and base.is_dir():  # root is a subset folder itself
        direct = by_folder[base.name]
        if keys is not None and keys != [direct]:
            raise BadInputError(
                f"omniglot: --root {base} is the {direct!r} subset folder but subset={subset!r} was asked; "
                "point --root at the folder holding the subsets instead"
            )
        folder, keys = base.parent, [direct]
    searched = candidate_dirs(base, SUBDIRS)

    def find() -> Path | None:
        for p in searched:
            present = _present(p)
            if (keys is None and present) or (keys is not None and all(k in present for k in keys)):
                return p
        return None

    if folder is None:
        folder = find()
    if folder is None and download:
        wanted = keys if keys is not None else ["background", "evaluation"]
        fetch_dataset("omniglot", root, files=[SUBSETS[k] + ".zip" for k in wanted], progress=progress)
        folder = find()
    if folder is None:
        files = None if keys is None else [SUBSETS[k] + ".zip" for k in keys]
        layout = LAYOUT if keys is None else " and ".join(f"{SUBSETS[k]}/<alphabet>/<character>/*.png" for k in keys)
        raise DatasetNotFoundError(not_found_message("omniglot", root, searched, layout, files))

    use = keys if keys is not None else _choose(_present(folder))
    base_abs = os.path.abspath(folder)
    items: list[Item] = []
    classes: list[str] = []
    origin: dict[str, str] = {}
    for k in use:
        sub_items, sub_classes = _scan_subset(os.path.join(base_abs, SUBSETS[k]))
        for c in sub_classes:
            if c in origin:
                raise BadInputError(
                    f"omniglot: class {c!r} is in both {SUBSETS[origin[c]]} and {SUBSETS[k]}; load them separately"
                )
            origin[c] = k
        items.extend(sub_items)
        classes.extend(sub_classes)
    if "evaluation" in use and len(use) > 1:
        train = [c for c in classes if origin[c] != "evaluation"]
        test = [c for c in classes if origin[c] == "evaluation"]
    else:
        train, test = _alphabet_split(classes)
    return ImageDataset(
        "omniglot",
        folder,
        items,
        classes=classes,
        train_classes=train,
        test_classes=test,
        check_files=False,  # listed from disk
        description="Omniglot (" + ", ".join(SUBSETS[k] for k in use) + ")",
    )
