"""Where data and caches live.

Datasets: the ``root`` argument (``--root``), else the ``OODML_DATA`` environment variable, else
``<cache>/data``. Caches (generated embedded dataset, extracted features, decoded-image caches):
the ``OODML_CACHE`` environment variable, else ``$XDG_CACHE_HOME/oodml``, else ``~/.cache/oodml``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (created on demand), optionally a sub-folder of it."""
    base = os.environ.get("OODML_CACHE")
    if base:
        root = Path(base).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "oodml"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: explicit ``root``, else ``$OODML_DATA``, else ``<cache>/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("OODML_DATA")
    if env:
        return Path(env).expanduser()
    return cache_dir("data")


def data_root_source(root: str | os.PathLike | None = None) -> str:
    """Say where :func:`data_root` took its answer from (for error messages)."""
    if root is not None:
        return "--root"
    if os.environ.get("OODML_DATA"):
        return "$OODML_DATA"
    return "the default cache folder"


def find_base_dir(study_path: Path) -> Path:
    """The folder relative paths of a study file are resolved against: the nearest folder above
    the study file holding ``pyproject.toml`` or ``.git``; else the study folder, or its parent
    when it is called ``studies``."""
    folder = study_path.resolve().parent
    for d in (folder, *folder.parents):
        if (d / "pyproject.toml").is_file() or (d / ".git").exists():
            return d
    return folder.parent if folder.name == "studies" else folder
