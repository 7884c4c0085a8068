"""``python -m oodml.adapt``: see :mod:`oodml.adapt.cli` (``build_parser`` is here for the README check)."""

import sys

from oodml.adapt.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
