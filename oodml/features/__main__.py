"""``python -m oodml.features``: see :mod:`oodml.features.cli`."""

import sys

from oodml.features.cli import build_parser, main  # noqa: F401 - build_parser: the README test parses with it

if __name__ == "__main__":
    sys.exit(main())
