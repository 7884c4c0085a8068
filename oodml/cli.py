"""Helpers shared by the thin command-line entry points (``python -m oodml.<stage>``)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

from oodml.errors import OodmlError


def run_cli(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI ``main(argv)``: a user-fixable :class:`OodmlError` is printed as one line
    (``error: ...``) on stderr with exit status 2, without a traceback. Bugs keep theirs."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            code = main(argv)
        except OodmlError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        return int(code or 0)

    return wrapper


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def progress_disabled(quiet: bool = False) -> bool:
    """Progress bars are off with ``--quiet`` or ``OODML_QUIET=1``."""
    return bool(quiet) or os.environ.get("OODML_QUIET", "") not in ("", "0")
