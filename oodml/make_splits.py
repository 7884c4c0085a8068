"""``python -m oodml.make_splits``: build, check or import a dataset's FID-graded split series.

The command lives in :mod:`oodml.splits.cli` (options, examples); this module keeps the name
that the README, ``oodml make_splits`` and users' scripts run and import.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the figure's drawing process imports while this one does (oodml.figure_process),
    from oodml.figure_process import start_early  # and a --features-file is read while it imports its code

    start_early(sys.argv[1:])
    from oodml.features import prefetch

    prefetch.start(sys.argv[1:])

from oodml.splits.cli import build_parser, cli, format_summary, main  # noqa: E402

__all__ = ["build_parser", "cli", "format_summary", "main"]

if __name__ == "__main__":  # pragma: no cover
    from oodml.cli import exit_process

    exit_process(main())
