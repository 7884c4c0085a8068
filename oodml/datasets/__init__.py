"""Datasets: one small interface (:class:`ImageDataset`) and a registry of loaders.

Three lines load any dataset::

    from oodml.datasets import load_dataset
    ds = load_dataset("cub", root="/data")          # or "cars", "sop", "omniglot", "glyphs", ...
    print(ds.summary())

Names: ``cub``, ``cars``, ``sop``, ``omniglot``, ``folder`` (``root/<class>/*`` or
``root/<superclass>/<class>/*``), ``csv`` (a table of path, label, optional superclass) and
``glyphs``, the embedded dataset that is generated offline and is the default everywhere no
dataset is named.

Where data lives: ``root=`` / ``--root``, else ``$OODML_DATA``, else ``~/.cache/oodml/data``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from oodml.datasets.base import ImageDataset, Item, open_image_rgb
from oodml.errors import OodmlError

#: The embedded dataset, used wherever no dataset is named.
DEFAULT_DATASET = "glyphs"

# name -> "module:function"; each function has signature
#   load(root: str | os.PathLike | None = None, download: bool = False, **kwargs) -> ImageDataset
_REGISTRY: dict[str, str] = {
    "cub": "oodml.datasets.cub:load_cub",
    "cars": "oodml.datasets.cars:load_cars",
    "sop": "oodml.datasets.sop:load_sop",
    "omniglot": "oodml.datasets.omniglot:load_omniglot",
    "folder": "oodml.datasets.folder:load_folder",
    "csv": "oodml.datasets.folder:load_csv",
    "glyphs": "oodml.datasets.glyphs:load_glyphs",
}

#: Accepted spellings of the registry names (as used by other DML codebases).
ALIASES = {
    "cub200": "cub",
    "cub-200-2011": "cub",
    "cub_200_2011": "cub",
    "cars196": "cars",
    "stanford_cars": "cars",
    "online_products": "sop",
    "stanford_online_products": "sop",
    "embedded": DEFAULT_DATASET,
}


def dataset_names() -> list[str]:
    """The registry's dataset names."""
    return list(_REGISTRY)


def canonical_name(name: str | None) -> str:
    """Map a user-typed name (or ``None``) to a registry name, with a clear error if unknown."""
    if name is None:
        return DEFAULT_DATASET
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise OodmlError(f"unknown dataset {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return key


def get_loader(name: str | None) -> Callable[..., ImageDataset]:
    module, func = _REGISTRY[canonical_name(name)].split(":")
    return getattr(importlib.import_module(module), func)


def load_dataset(
    name: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = False,
    **kwargs,
) -> ImageDataset:
    """Load a dataset by registry name (``None`` means the embedded default).

    ``root`` is the data root (or, for ``folder``/``csv``, the folder or table itself);
    ``download=True`` fetches the official archives when the dataset is missing.
    """
    return get_loader(name)(root=root, download=download, **kwargs)


__all__ = [
    "DEFAULT_DATASET",
    "ImageDataset",
    "Item",
    "canonical_name",
    "dataset_names",
    "get_loader",
    "load_dataset",
    "open_image_rgb",
]
