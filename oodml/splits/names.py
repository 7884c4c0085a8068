"""Mapping the ooDML study's published names onto a dataset: class names (:class:`_NameMapper`)
and support-image names (:func:`published_image_names`, :func:`_map_episodes`), for
:mod:`oodml.splits.published`.

Image names
-----------
The study stored its images as ``images/<class>/<file>`` and names support images by
``<file>``. CUB, SOP and class-folder layouts use the file name as it is on disk. For CARS the
published names are the devkit's (``cars_train/`` and ``cars_test/`` merged into class
folders); where a ``cars_test`` file has the name of a ``cars_train`` file of the same class,
it is ``NNNNN_2.jpg`` (the train file keeps the plain name). On the devkit layout this is read
from the devkit's annotations; on the official ``car_ims/`` layout from ``cars_annos.mat``,
whose ``test`` flag gives each image's side and its number within that side (the k-th image of
a side in annotation order is that side's ``{k:05d}.jpg``, the order both releases share).
Official annotations without a ``test`` flag cannot be mapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oodml.datasets import cars as C
from oodml.errors import BadInputError

__all__ = ["WORKING_LAYOUTS", "EpisodeMappingError", "ImageNames", "published_image_names"]

#: Layouts whose image names map the published episodes (for the error message).
WORKING_LAYOUTS = {
    "cars": "the devkit layout (devkit/*.mat + cars_train/ + cars_test/), the official car_ims/ + cars_annos.mat "
    "with its test flags, or images/<class>/<devkit file name>",
    "cub": "the official CUB_200_2011 layout (images/<class>/<file>)",
    "sop": "the official Stanford_Online_Products layout (<category>_final/<file>)",
}


class EpisodeMappingError(BadInputError):
    """A published episode names an image the dataset layout cannot give."""


# ============================================================================================
# Image names as the study wrote them
# ============================================================================================
@dataclass
class ImageNames:
    """``names[class][published image name] = dataset item index`` and how they were made."""

    names: dict[str, dict[str, int]]
    layout: str
    problem: str | None = None  # why this layout cannot name its images the study's way
    ambiguous: dict[str, set] = field(default_factory=dict)  # names shared by two images of a class


def _basename_names(dataset, layout: str) -> ImageNames:
    names: dict[str, dict[str, int]] = {c: {} for c in dataset.classes}
    ambiguous: dict[str, set] = {}
    for i, it in enumerate(dataset.items):
        b = os.path.basename(it.path)
        table = names.setdefault(it.label, {})
        if b in table:
            ambiguous.setdefault(it.label, set()).add(b)
        table[b] = i
    for c, bad in ambiguous.items():
        for b in bad:
            names[c].pop(b, None)
    return ImageNames(names, layout, ambiguous=ambiguous)


def _devkit_names(sides: list[tuple[str, str]], labels: list[str], classes) -> dict[str, dict[str, int]]:
    """Merge (side, devkit file name) per item into class folders: train first, a test file
    whose name a train file of its class already has becomes ``NNNNN_2.jpg``."""
    names: dict[str, dict[str, int]] = {c: {} for c in classes}
    order = sorted(range(len(sides)), key=lambda i: (sides[i][0] != "cars_train", i))
    for i in order:
        side, fname = sides[i]
        table = names.setdefault(labels[i], {})
        name = fname
        if name in table:
            stem, ext = os.path.splitext(fname)
            name = f"{stem}_2{ext}"
            if name in table:
                raise BadInputError(
                    f"cars: class {labels[i]!r} has three images named {fname}; the annotations "
                    "are not the official ones"
                )
        table[name] = i
    return names


def published_image_names(dataset) -> ImageNames:
    """How the study named every image of ``dataset`` (see the module docstring)."""
    if dataset.name != "cars":
        return _basename_names(dataset, "file names on disk")
    folder = Path(dataset.root)
    labels = [it.label for it in dataset.items]
    if C._is_official(folder):
        mat_path = folder / C.ANNOTATIONS
        mat = C._read_mat(mat_path, ("annotations",), "the official cars_annos.mat")
        ann = np.atleast_1d(mat["annotations"]).ravel()
        if "test" not in (ann.dtype.names or ()):
            return ImageNames(
                {},
                "official car_ims/",
                problem=(
                    f"{mat_path} has no 'test' flag, so its car_ims/ names cannot be turned into the devkit names the "
                    "study's episodes use"
                ),
            )
        if len(ann) != len(dataset.items):
            return ImageNames({}, "official car_ims/", problem=f"{mat_path} does not list the dataset's images")
        counters = {"cars_train": 0, "cars_test": 0}
        sides = []
        for flag in ann["test"]:
            side = "cars_test" if int(np.asarray(flag).ravel()[0]) else "cars_train"
            counters[side] += 1
            sides.append((side, f"{counters[side]:05d}.jpg"))
        return ImageNames(_devkit_names(sides, labels, dataset.classes), "official car_ims/ (via its test flags)")
    if C._is_devkit(folder):
        sides = []
        for it in dataset.items:
            parent = os.path.basename(os.path.dirname(it.path))
            sides.append(("cars_test" if parent == "cars_test" else "cars_train", os.path.basename(it.path)))
        return ImageNames(_devkit_names(sides, labels, dataset.classes), "devkit cars_train/ + cars_test/")
    return _basename_names(dataset, "class folders")


# ============================================================================================
# Mapping names onto a dataset
# ============================================================================================
def _map_episodes(eps: dict, test: list[str], mapper, names: ImageNames, where: str, layouts: str):
    out: dict[int, list[dict[str, list[int]]]] = {}
    test_set = set(test)
    for k, lst in eps.items():
        conv_list = []
        for e, ep in enumerate(lst):
            conv: dict[str, list[int]] = {}
            for cname, files in ep.items():
                c = mapper(cname)
                if c not in test_set:
                    raise BadInputError(f"{where}: {k}-shot episode {e + 1} names class {cname!r}, not a test class")
                if len(files) != k or len(set(files)) != k:
                    raise BadInputError(
                        f"{where}: {k}-shot episode {e + 1} gives class {cname!r} {len(files)} "
                        f"images ({len(set(files))} distinct), expected {k}"
                    )
                if names.problem:
                    raise EpisodeMappingError(
                        f"{where}: cannot map the published episodes (first image {files[0]!r} of class {cname!r}) on "
                        f"the {names.layout} layout: {names.problem}; layouts that work: {layouts}"
                    )
                table = names.names.get(c, {})
                ids = []
                for f in files:
                    if f not in table:
                        why = (
                            "two images of that class have this name"
                            if f in names.ambiguous.get(c, ())
                            else f"the {names.layout} layout has no image of that name in that class"
                        )
                        raise EpisodeMappingError(
                            f"{where}: published {k}-shot episode {e + 1} names image {f!r} of class {cname!r}, "
                            f"which cannot be mapped ({why}); layouts that work: {layouts}"
                        )
                    ids.append(table[f])
                conv[c] = sorted(ids)
            conv_list.append(conv)
        out[k] = conv_list
    return out


class _NameMapper:
    """Maps reference class names (folder names, product ids, integer ids) onto dataset classes."""

    def __init__(self, dataset, all_values: list, source: str):
        self.ds = dataset
        self.source = source
        self.classes = list(dataset.classes)
        exact = {c: c for c in self.classes}
        tables = [exact]

        def add_table(keyfn):
            t: dict[str, str] = {}
            clash = set()
            for c in self.classes:
                for key in keyfn(c):
                    if key in t and t[key] != c:
                        clash.add(key)
                    t[key] = c
            for key in clash:
                del t[key]
            tables.append(t)

        norm = lambda s: "".join(ch for ch in s.lower() if ch.isalnum())  # noqa: E731
        self._norm = norm
        add_table(lambda c: [c.rsplit("/", 1)[-1]])  # "bicycle/00001" -> "00001"
        add_table(lambda c: [norm(c), norm(c.rsplit("/", 1)[-1]), norm(c.split(".", 1)[-1])])
        by_cls = dataset.indices_by_class()

        def prefixes(c):  # SOP reference names a class by its images' file-name prefix
            keys = {os.path.basename(dataset.items[i].path).split("_")[0] for i in by_cls[c]}
            return list(keys) if len(keys) == 1 else []

        add_table(prefixes)
        self.tables = tables
        ints = [v for v in all_values if isinstance(v, int)]
        self.int_base = 0 if (not ints or 0 in ints) else 1

    def __call__(self, v) -> str:
        if isinstance(v, int):
            i = v - self.int_base
            if 0 <= i < len(self.classes):
                return self.classes[i]
            raise BadInputError(
                f"{self.source}: class id {v} is outside 1..{len(self.classes)} / 0..{len(self.classes) - 1} "
                f"of dataset {self.ds.name!r}; is this the pkl for another dataset?"
            )
        for t in self.tables[:2]:
            if v in t:
                return t[v]
        for key in (self._norm(v), self._norm(v.rsplit("/", 1)[-1]), self._norm(v.split(".", 1)[-1])):
            if key in self.tables[2]:
                return self.tables[2][key]
        if v in self.tables[3]:
            return self.tables[3][v]
        if v.isdigit():
            return self(int(v))
        raise BadInputError(
            f"{self.source}: class {v!r} matches no class of dataset {self.ds.name!r} "
            f"(e.g. {self.classes[0]!r}); is this the pkl for another dataset?"
        )
