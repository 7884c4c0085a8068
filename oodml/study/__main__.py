"""``python -m oodml.study``: see :mod:`oodml.study.cli`."""

import sys

from oodml.study.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
