"""One progress bar for every stage: tqdm on stderr, off with ``--quiet`` or ``OODML_QUIET=1``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tqdm import tqdm

__all__ = ["progress_bar", "progress_disabled"]


def progress_disabled(quiet: bool = False) -> bool:
    """Progress bars are off with ``--quiet`` or ``OODML_QUIET=1``."""
    return bool(quiet) or os.environ.get("OODML_QUIET", "") not in ("", "0")


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar with the project's defaults: on stderr, not left behind (``leave=False``), shown
    only when the work takes more than a moment (``delay=0.5`` s), disabled when ``enabled`` is
    false or :func:`progress_disabled`. Any tqdm keyword (``total``, ``desc``, ``unit``, ...)
    passes through and overrides a default."""
    from tqdm.auto import tqdm  # lazy on purpose: ~0.3 s that commands reading a file need not pay

    options: dict[str, Any] = {"leave": False, "delay": 0.5, "dynamic_ncols": True}
    options.update(kwargs)
    options["disable"] = bool(kwargs.get("disable", False)) or not enabled or progress_disabled()
    return tqdm(iterable, **options)
