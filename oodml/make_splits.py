"""``python -m oodml.make_splits``: build, check or import a dataset's FID-graded split series.

The command lives in :mod:`oodml.splits.cli` (options, examples); this module keeps the name
that the README, ``oodml make_splits`` and users' scripts run and import.
"""

from __future__ import annotations

import sys

from oodml.splits.cli import build_parser, cli, format_summary, main

__all__ = ["build_parser", "cli", "format_summary", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
