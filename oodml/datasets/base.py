"""The dataset interface every loader returns.

An :class:`ImageDataset` is a list of :class:`Item` (an image file, a class name and an
optional superclass), the ordered list of classes, the dataset's *standard* train/test class
split, and a stable content fingerprint. Loaders only build the item list; everything else
(validation, class order, fingerprint, image decoding, subsets) lives here.

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("cub", root="~/data")
    img = ds.load_image(0)             # PIL.Image in RGB
    ds.train_classes, ds.test_classes  # the standard DML split
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oodml.errors import BadInputError

#: Bump when the fingerprint recipe changes (it keys on-disk caches).
FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class Item:
    """One image: its file, its class name and (optionally) its superclass name."""

    path: str
    label: str
    superclass: str | None = None


class ImageDataset:
    """A labelled image collection with an ordered class list and a standard class split.

    Parameters
    ----------
    name:
        Registry name (``cub``, ``cars``, ``sop``, ``omniglot``, ``folder``, ``csv``, ``glyphs``).
    root:
        The folder the item paths are relative to (used for the fingerprint and messages).
    items:
        The images. Order is preserved; it defines image ids (``0..n-1``).
    classes:
        All class names in their canonical order (defaults to sorted order of appearance).
    train_classes, test_classes:
        The dataset's standard split (defaults: first/second half of ``classes``).
    check_files:
        Verify up front that every image file exists (one clear error naming the first missing one).
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike,
        items: Sequence[Item],
        classes: Sequence[str] | None = None,
        train_classes: Sequence[str] | None = None,
        test_classes: Sequence[str] | None = None,
        check_files: bool = True,
        description: str = "",
    ):
        self.name = name
        self.root = Path(root)
        self.items: list[Item] = list(items)
        self.description = description
        if not self.items:
            raise BadInputError(f"dataset {name!r} at {self.root} contains no images; check the folder layout")
        counts = Counter(it.label for it in self.items)
        if classes is None:
            classes = sorted(counts)
        classes = list(classes)
        dup = [c for c, k in Counter(classes).items() if k > 1]
        if dup:
            raise BadInputError(
                f"dataset {name!r} at {self.root}: duplicate class name {dup[0]!r}; class names must be unique"
            )
        empty = [c for c in classes if counts.get(c, 0) == 0]
        if empty:
            raise BadInputError(
                f"dataset {name!r} at {self.root}: class {empty[0]!r} has no images; add images or remove the class"
            )
        class_set = set(classes)
        unknown = [c for c in counts if c not in class_set]
        if unknown:
            raise BadInputError(f"dataset {name!r} at {self.root}: image class {unknown[0]!r} is not in the class list")
        self.classes: list[str] = classes
        self._class_index = {c: i for i, c in enumerate(classes)}
        # superclass per class (must be consistent)
        sup: dict[str, str | None] = {}
        for it in self.items:
            prev = sup.setdefault(it.label, it.superclass)
            if prev != it.superclass:
                raise BadInputError(
                    f"dataset {name!r}: class {it.label!r} is listed under two superclasses "
                    f"({prev!r} and {it.superclass!r}) near {it.path}; fix the annotation"
                )
        self.class_superclass: dict[str, str | None] = {c: sup[c] for c in classes}
        if train_classes is None and test_classes is None:
            half = (len(classes) + 1) // 2
            train_classes, test_classes = classes[:half], classes[half:]
        self.train_classes: list[str] = list(train_classes or [])
        self.test_classes: list[str] = list(test_classes or [])
        bad = [c for c in self.train_classes + self.test_classes if c not in self._class_index]
        if bad:
            raise BadInputError(f"dataset {name!r}: split names unknown class {bad[0]!r}")
        overlap = set(self.train_classes) & set(self.test_classes)
        if overlap:
            raise BadInputError(
                f"dataset {name!r}: class {sorted(overlap)[0]!r} is on both sides of the standard split"
            )
        if check_files:
            self.check_files()
        self._fingerprint: str | None = None

    # ---- basic container protocol -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, images={len(self)}, classes={len(self.classes)}, "
            f"superclasses={len(self.superclasses)}, root={str(self.root)!r})"
        )

    # ---- labels ------------------------------------------------------------------------------
    @property
    def superclasses(self) -> list[str]:
        """Sorted distinct superclass names (empty if the dataset has none)."""
        return sorted({s for s in self.class_superclass.values() if s is not None})

    def class_index(self, name: str) -> int:
        return self._class_index[name]

    @property
    def labels(self) -> np.ndarray:
        """Class index (into :attr:`classes`) of every image, ``int64``, shape ``(n,)``."""
        return np.fromiter((self._class_index[it.label] for it in self.items), dtype=np.int64, count=len(self))

    @property
    def label_names(self) -> list[str]:
        return [it.label for it in self.items]

    def indices_by_class(self) -> OrderedDict[str, np.ndarray]:
        """Image ids of each class, in class order."""
        buckets: dict[str, list[int]] = {c: [] for c in self.classes}
        for i, it in enumerate(self.items):
            buckets[it.label].append(i)
        return OrderedDict((c, np.asarray(v, dtype=np.int64)) for c, v in buckets.items())

    def indices_of(self, classes: Iterable[str]) -> np.ndarray:
        """Sorted image ids whose class is in ``classes``."""
        wanted = set(classes)
        return np.asarray([i for i, it in enumerate(self.items) if it.label in wanted], dtype=np.int64)

    # ---- files -------------------------------------------------------------------------------
    def check_files(self) -> None:
        """Raise one clear error for the first image file that does not exist."""
        for it in self.items:
            if not os.path.isfile(it.path):
                raise BadInputError(
                    f"dataset {self.name!r}: image {it.path} is missing; the dataset at {self.root} is "
                    "incomplete: restore the file or re-download/re-extract the dataset"
                )

    def load_image(self, i: int):
        """Decode image ``i`` as an RGB ``PIL.Image``; an unreadable file is a clear error."""
        return open_image_rgb(self.items[i].path)

    # ---- identity ----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A stable SHA-256 over the content listing: dataset name, every item's path relative
        to the root, class, superclass and file size, and the standard split. Independent of
        where the dataset lives and of file times; changes when any file is added, removed,
        relabelled or replaced by one of a different size."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"oodml-dataset-v{FINGERPRINT_VERSION}\n{self.name}\n".encode())
            for it in self.items:
                try:
                    rel = os.path.relpath(it.path, self.root)
                except ValueError:
                    rel = it.path
                try:
                    size = os.path.getsize(it.path)
                except OSError:
                    size = -1
                h.update(f"{rel.replace(os.sep, '/')}\t{it.label}\t{it.superclass or ''}\t{size}\n".encode())
            h.update(("train:" + "\t".join(self.train_classes) + "\n").encode())
            h.update(("test:" + "\t".join(self.test_classes) + "\n").encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # ---- views -------------------------------------------------------------------------------
    def subset(self, classes: Iterable[str]) -> ImageDataset:
        """A dataset restricted to ``classes`` (kept in this dataset's class order)."""
        wanted = set(classes)
        unknown = wanted - set(self.classes)
        if unknown:
            raise BadInputError(f"dataset {self.name!r} has no class {sorted(unknown)[0]!r}")
        keep = [c for c in self.classes if c in wanted]
        return ImageDataset(
            self.name,
            self.root,
            [it for it in self.items if it.label in wanted],
            classes=keep,
            train_classes=[c for c in self.train_classes if c in wanted],
            test_classes=[c for c in self.test_classes if c in wanted],
            check_files=False,
            description=self.description,
        )

    def summary(self) -> dict:
        """The facts ``python -m oodml.datasets`` prints."""
        return {
            "dataset": self.name,
            "classes": len(self.classes),
            "images": len(self.items),
            "superclasses": len(self.superclasses),
            "train_classes": len(self.train_classes),
            "test_classes": len(self.test_classes),
        }


def open_image_rgb(path: str):
    """Open an image file as RGB, turning decoding problems into a clear :class:`BadInputError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise BadInputError(f"image {path} is missing; restore it or re-extract the dataset") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(
            f"image {path} cannot be decoded ({exc}); the file is corrupt: replace it or re-extract the dataset"
        ) from None
